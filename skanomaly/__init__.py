"""skanomaly: training-free visual anomaly detection for scikit-learn."""

from ._version import __version__
from .detector import EfficientNetGaussianDetector

__all__ = ["EfficientNetGaussianDetector", "__version__"]
