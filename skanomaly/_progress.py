"""The one progress bar of the package: tqdm on stderr, or nothing."""

import sys

__all__ = ["progress"]


def progress(iterable=None, *, enabled, total=None, desc=None, unit="image"):
    """``iterable`` wrapped in a tqdm bar on stderr when ``enabled``.

    Without ``iterable``, the bar itself, to be advanced with ``update(n)``
    and closed with ``close()`` (or used as a context manager). A disabled
    bar is tqdm's own no-op, so callers never test for None.
    """
    # tqdm is imported here so that `skanomaly --help` does not pay for it.
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr)
