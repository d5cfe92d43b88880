"""`python -m fedtext`: the command line."""

import sys

from fedtext.cli import main

if __name__ == "__main__":
    sys.exit(main())
