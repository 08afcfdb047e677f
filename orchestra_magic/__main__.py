"""`python -m orchestra_magic` is the `orchestra` command."""

import sys

from .cli import main

sys.exit(main())
