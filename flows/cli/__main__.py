"""`python -m flows.cli`: the `finsentry` command."""

import sys

from flows.cli import main

sys.exit(main())
