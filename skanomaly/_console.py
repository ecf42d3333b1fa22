"""How the command line talks to its user: one-line errors and warnings.

:mod:`skanomaly.cli` and :mod:`skanomaly.inspection` raise these errors,
and :func:`skanomaly.cli.main` turns them into one ``skanomaly: error:``
line and an exit code.
"""

import contextlib
import sys
import warnings

__all__ = ["ImageReadError", "UsageError", "one_line_warnings", "say", "warn"]


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


@contextlib.contextmanager
def one_line_warnings(verbose=False):
    """Show Python warnings as :func:`warn` lines (with their file and line
    under ``verbose``): a command-line user needs the message, not the
    library's source line that raised it. Each message is shown once: a
    command may build its network, or meet the same condition, twice."""
    shown = set()

    def show(message, category, filename, lineno, file=None, line=None):
        where = f" ({category.__name__} at {filename}:{lineno})" if verbose else ""
        text = f"{message}{where}"
        if text not in shown:
            shown.add(text)
            warn(text)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
