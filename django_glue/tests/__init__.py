"""Deprecated name of :mod:`django_glue.test` (Channels 1.0's ``channels.tests``, renamed in 1.1)."""
import warnings

warnings.warn("django_glue.tests is deprecated; use django_glue.test", DeprecationWarning, stacklevel=2)

from django_glue.test import *  # noqa: E402,F401,F403
from django_glue.test import __all__  # noqa: E402,F401
