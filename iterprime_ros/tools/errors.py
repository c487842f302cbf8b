"""The one error type the offline tools raise for something the user can fix.

Why its own module: replay, eval and bench raise it too; they import it from here rather than
from the CLI module, which imports them.
"""


class UserError(Exception):
    """Something the user can fix; printed as one line, exit status 2."""
