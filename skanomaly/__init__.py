"""skanomaly: training-free visual anomaly detection for scikit-learn."""

from ._version import __version__

__all__ = ["EfficientNetGaussianDetector", "__version__"]


# The detector imports torch, which takes seconds: loading it on first access
# (PEP 562) keeps ``import skanomaly`` and ``skanomaly --help`` fast.
def __getattr__(name):
    if name == "EfficientNetGaussianDetector":
        from .detector import EfficientNetGaussianDetector

        globals()[name] = EfficientNetGaussianDetector
        return EfficientNetGaussianDetector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
