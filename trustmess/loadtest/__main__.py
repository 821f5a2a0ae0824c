"""``python -m trustmess.loadtest --help``."""

import sys

from trustmess.loadtest.cli import main

if __name__ == "__main__":
    sys.exit(main())
