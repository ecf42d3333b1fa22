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
        where = f" ({category.__name__} at {_raised_at()})" if verbose else ""
        text = f"{message}{where}"
        if text not in shown:
            shown.add(text)
            warn(text)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _raised_at():
    """``file:line`` of the call to :func:`warnings.warn` being shown: the
    first frame above the warnings machinery. The warning's own file and
    line follow its ``stacklevel``, which points a library user at their
    call, and the command line at its console script."""
    frame = sys._getframe(2)
    while frame.f_back is not None and frame.f_globals.get("__name__") in _WARNINGS_MODULES:
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


# Where Python's warnings machinery runs in Python code (its C part has no
# frames): newer versions keep it in _py_warnings.
_WARNINGS_MODULES = ("warnings", "_py_warnings")
