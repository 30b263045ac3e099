"""`python -m alocc` runs the same CLI as the `alocc` console script."""

import sys

from alocc.cli import main

sys.exit(main())
