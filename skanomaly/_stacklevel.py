"""Where the package's warnings point: the user's line.

Apart from :mod:`skanomaly._compat`, which imports scikit-learn: the
modules that warn include those that the command line's help loads, and
that must not wait for scikit-learn.
"""

import functools
import importlib.util
import os
import sys

__all__ = ["user_stacklevel"]


@functools.cache
def _libraries():
    """The folders of this package and of scikit-learn (whose
    validate_params wrapper adds frames between a public function and its
    caller), found without importing scikit-learn."""
    sklearn = importlib.util.find_spec("sklearn").origin
    return tuple(os.path.dirname(path) + os.sep for path in (__file__, sklearn))


def user_stacklevel():
    """The ``stacklevel`` that attributes a warning, warned by the function
    that calls this one, to the first frame outside this package and
    scikit-learn: the user's line, however many wrappers lie between."""
    libraries = _libraries()
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(libraries):
        frame, level = frame.f_back, level + 1
    return level
