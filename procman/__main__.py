"""``python -m procman``: same as the ``procman`` command."""

import sys

from procman.cli import main

sys.exit(main())
