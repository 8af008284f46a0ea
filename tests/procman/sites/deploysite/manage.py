#!/usr/bin/env python
"""manage.py of the site the deployment tests (nginx, doctor, reload --wait) run."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "deploysite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
