"""How the command line talks to its user: one-line errors and warnings.

:mod:`skanomaly.cli` and :mod:`skanomaly.inspection` raise these errors,
and :func:`skanomaly.cli.main` turns them into one ``skanomaly: error:``
line and an exit code.
"""

import sys

__all__ = ["ImageReadError", "UsageError", "say", "warn"]


class UsageError(Exception):
    """Bad command line or input: one line on stderr, exit code 2."""


class ImageReadError(Exception):
    """An unreadable image under ``--strict``: exit code 1."""


def say(message):
    """Print ``message`` on stderr at once, between progress bars."""
    print(message, file=sys.stderr, flush=True)


def warn(message):
    """Print ``message`` on stderr as a ``skanomaly: warning:`` line."""
    say(f"skanomaly: warning: {message}")
