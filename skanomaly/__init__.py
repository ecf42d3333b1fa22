"""skanomaly: training-free visual anomaly detection for scikit-learn."""

from ._version import __version__

__all__ = ["EfficientNetGaussianDetector", "__version__", "load", "save"]

# Where each lazily loaded name lives.
_LAZY = {
    "EfficientNetGaussianDetector": "detector",
    "load": "persistence",
    "save": "persistence",
}


# The detector imports torch, which takes seconds: loading it on first access
# (PEP 562) keeps ``import skanomaly`` and ``skanomaly --help`` fast.
def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
