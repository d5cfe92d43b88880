# The two commands of the README's quick start; each sets itself up first.
.PHONY: app test lint tutorial bench space

app:
	scripts/setup.sh
	.venv/bin/streamlit run app.py

test:
	scripts/setup.sh --test
	.venv/bin/ruff format --check fedtext ui tests app.py scripts
	.venv/bin/ruff check fedtext ui tests app.py scripts
	.venv/bin/python -m pytest
	.venv/bin/python -m pytest -m classroom tests/test_load.py tests/test_same_settings.py tests/test_classroom_browser.py

lint:
	scripts/setup.sh --test
	.venv/bin/ruff format fedtext ui tests app.py scripts
	.venv/bin/ruff check fedtext ui tests app.py scripts

tutorial:
	scripts/setup.sh
	.venv/bin/python -m fedtext tutorial

# Times the engine and the page on this machine; writes bench/ and docs/benchmarks.md's table.
bench:
	scripts/setup.sh --test
	.venv/bin/python -m fedtext.bench --update-readme

# Builds the Hugging Face Space's image from the Dockerfile and runs the browser test against it
# (needs root; `scripts/space_check.sh --user` replays the Dockerfile without an engine).
space:
	scripts/setup.sh --test
	scripts/space_check.sh
