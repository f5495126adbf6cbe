"""``python -m pandagpm``: the ``pandagpm`` command (pandagpm.cli)."""

import sys

from .cli import main

sys.exit(main())
