"""`python -m iterprime_ros` = the `iterprime` command."""

import sys

from .tools.cli import main

sys.exit(main())
