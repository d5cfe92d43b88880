# Hugging Face Docker Space: the app on port 8501 (README front matter: app_port), run as
# uid 1000, writable data under the home directory. Installs with scripts/setup.sh, the same
# step the README's quick start runs, so CI exercises it.
FROM python:3.11-slim-bookworm

RUN useradd --create-home --uid 1000 user
USER user
ENV HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH \
    FEDTEXT_CACHE=/home/user/data/cache \
    FEDTEXT_DATA=/home/user/data \
    PYTHONUNBUFFERED=1
# Made by the user: a builder without BuildKit creates a missing WORKDIR as root, and
# setup.sh writes .venv and .cache in it.
RUN mkdir /home/user/app
WORKDIR /home/user/app

COPY --chown=user pyproject.toml uv.lock README.md ./
COPY --chown=user scripts ./scripts
COPY --chown=user fedtext ./fedtext
RUN scripts/setup.sh
COPY --chown=user . .
# Build the Shakespeare client data at image build time, so the first visitor does not wait.
RUN .venv/bin/python -m fedtext data --limit 1 >/dev/null

EXPOSE 8501
CMD [".venv/bin/streamlit", "run", "app.py", "--server.port=8501", "--server.address=0.0.0.0"]
