"""`python -m fedtext.bench`: see fedtext/bench/cli.py."""

from fedtext.bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
