"""`python -m iterprime_ros` = the `iterprime` command."""
import sys

from .cli import main

sys.exit(main())
