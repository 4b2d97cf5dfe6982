"""``python -m pygan`` is the ``pygan`` command."""

import sys

from .cli import main

sys.exit(main())
