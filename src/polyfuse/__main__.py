"""``python -m polyfuse``."""

import sys

from polyfuse.cli import main

sys.exit(main())
