"""``python -m trustmess.client``: see :mod:`trustmess.client.cli`."""

import sys

from trustmess.client.cli import main

sys.exit(main())
