"""``python -m procman.interface LAYER ...`` (same as ``procman interface``)."""

from procman.interface.cli import exit_now, main

exit_now(main())
