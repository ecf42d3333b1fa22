"""Constants shared by the command line and the models.

Kept free of torch so that ``skanomaly --help`` can use them without loading it.
"""

EXPLAIN_METHODS = ("reference", "spatial", "weighted", "spatial_grad", "spatial_grad_prior")

# Autocast dtypes of EfficientNetGaussianDetector(precision=...).
PRECISIONS = ("auto", "float32", "float16", "bfloat16")
