"""skanomaly: training-free visual anomaly detection for scikit-learn."""

from .detector import EfficientNetGaussianDetector

__version__ = "0.1.0"

__all__ = ["EfficientNetGaussianDetector", "__version__"]
