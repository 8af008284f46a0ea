"""Templates of the demo (a package only so that setuptools ships the .html files)."""
