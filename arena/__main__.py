"""`python -m arena`: the `arena` command; what `torchrun ... -m arena generate ...` runs."""

import sys

from arena.cli import main

sys.exit(main())
