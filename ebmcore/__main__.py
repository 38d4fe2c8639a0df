"""``python -m ebmcore`` runs the command line."""

import sys

from ebmcore.cli import main

sys.exit(main())
