"""``python -m procman.interface LAYER ...`` (same as ``procman interface``)."""

import sys

from procman.interface.cli import main

sys.exit(main())
