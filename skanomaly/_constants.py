"""Constants shared by the command line and the models.

Kept free of torch so that ``skanomaly --help`` can use them without loading it.
"""

EXPLAIN_METHODS = ("descent", "spatial", "patches", "reference")

# Stages whose pre-pooling maps get a spatial Gaussian for localization
# (28x28, 14x14, 14x14 and 7x7 for Lite0 at 224 px; chosen by
# benchmarks/bench_explain.py).
SPATIAL_LEVELS = ("stage3", "stage4", "stage5", "stage6")

# Stages whose locations are the patch features of the nearest-neighbour
# memory that the default explain method descends (28x28 and 14x14 for Lite0
# at 224 px; chosen by benchmarks/bench_explain.py).
PATCH_LEVELS = ("stage3", "stage5")

# Sides of the square of locations averaged into each patch feature
# (patch_neighborhood=...), and the combinations whose features are put side
# by side, one patch at several scales (skanomaly.features.patch_features).
PATCH_NEIGHBORHOODS = (1, 3, 5)
PATCH_NEIGHBORHOOD_SCALES = ((1, 3), (1, 5), (3, 5), (1, 3, 5))
# The default: single locations for the maps' detail, 3 x 3 averages for the
# image scores (benchmarks/results/explain.md, fusion.md).
PATCH_NEIGHBORHOOD = (1, 3)

# Autocast dtypes of EfficientNetGaussianDetector(precision=...).
PRECISIONS = ("auto", "float32", "float16", "bfloat16")

# Global poolings of the feature maps (EfficientNetGaussianDetector(pooling=...)).
POOLINGS = ("max", "mean")

# Views of the normal images added at fit time (augment=...; skanomaly._augment).
AUGMENTS = ("flips", "rotations", "dihedral", "shifts")

# Image scores (image_score=...): the pooled Gaussians' distances alone,
# with the worst patch's distance to its nearest normal patch added, or the
# worst patch's distance alone.
IMAGE_SCORES = ("pooled", "pooled+patches", "patches")

# What the warnings about a threshold that the training images set poorly advise.
CALIBRATE_ADVICE = (
    "Set the threshold with calibrate() (skanomaly calibrate on the command line) "
    "on held-out normal images"
)
