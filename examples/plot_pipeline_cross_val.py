"""
A Pipeline in cross-validation
==============================

The detector is a scikit-learn estimator, so it goes at the end of a
:class:`~sklearn.pipeline.Pipeline` and into
:func:`~sklearn.model_selection.cross_val_score` with ``scoring="roc_auc"``.
One thing differs from supervised learning: ``fit`` ignores ``y`` and
models *every* image it is given, so the training folds should hold normal
images only. Explicit splits do that.
"""

# %%
# Data: normal and defective solar cells
# --------------------------------------
# 24 normal and 6 defective monocrystalline cells from ELPV, labelled +1
# (normal) and -1 (defective) as scikit-learn's outlier detectors expect.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skanomaly import EfficientNetGaussianDetector
from skanomaly.datasets import load_elpv

cells = load_elpv(max_samples=300)
rng = np.random.default_rng(0)
normal = np.flatnonzero(cells.y == 1)[:24]
defective = rng.choice(np.flatnonzero(cells.y == -1), size=6, replace=False)
X = cells.X[np.concatenate([normal, defective])]
y = cells.y[np.concatenate([normal, defective])]
print(X.shape, np.bincount(y + 1)[[0, 2]])  # defective, normal

# %%
# A preprocessing step
# --------------------
# Any transformer of image arrays can come first. Here a
# :class:`~sklearn.preprocessing.FunctionTransformer` crops the frame of each
# cell, where the busbars meet the cell edge and the cell cutting varies.


def crop_frame(images, border=8):
    """Drop ``border`` pixels on every side of ``(n, H, W, C)`` images."""
    return images[:, border:-border, border:-border]


pipeline = make_pipeline(
    FunctionTransformer(crop_frame),
    EfficientNetGaussianDetector(levels=("stage4", "stage5", "stage6", "stage7", "head")),
)
pipeline  # noqa: B018 (sphinx-gallery shows the last expression of a cell)

# %%
# Splits that train on normal images only
# ---------------------------------------
# Each split trains on two thirds of the normal cells and tests on the other
# third plus a third of the defective ones. ``cross_val_score`` accepts any
# iterable of ``(train, test)`` index pairs as ``cv``.


def normal_only_splits(y, n_splits=3, seed=0):
    """(train, test) pairs: train on normal (+1) images only."""
    normal, anomalous = np.flatnonzero(y == 1), np.flatnonzero(y == -1)
    kfold = KFold(n_splits, shuffle=True, random_state=seed)
    anomalous_folds = np.array_split(np.random.default_rng(seed).permutation(anomalous), n_splits)
    for (train, test), extra in zip(kfold.split(normal), anomalous_folds):
        yield normal[train], np.concatenate([normal[test], extra])


splits = list(normal_only_splits(y))
for train, test in splits:
    print(
        f"train: {len(train)} normal; test: {np.sum(y[test] == 1)} normal, "
        f"{np.sum(y[test] == -1)} defective"
    )

# %%
# Cross-validated ROC AUC
# -----------------------
# The ``"roc_auc"`` scorer ranks the test images by ``decision_function``;
# the threshold does not matter. The network is loaded once and shared by
# every clone of the pipeline.
scores = cross_val_score(pipeline, X, y, scoring="roc_auc", cv=splits)
print("ROC AUC per split:", np.round(scores, 3))
print(f"mean {scores.mean():.3f} +/- {scores.std():.3f}")

# %%
# With an ordinary :class:`~sklearn.model_selection.StratifiedKFold` the
# training folds would include defective cells, which widen the fitted
# Gaussians and hide similar defects: that protocol underestimates the
# detector.
#
# What the detector sees
# ----------------------
# The first step's output for three normal and three defective cells.
shown = np.concatenate([np.flatnonzero(y == 1)[:3], np.flatnonzero(y == -1)[:3]])
cropped = pipeline[0].fit_transform(X[shown])
fig, axes = plt.subplots(1, 6, figsize=(10, 2))
for ax, image, label in zip(axes, cropped, y[shown]):
    ax.imshow(image)
    ax.set_title("normal" if label == 1 else "defective", fontsize=9)
    ax.axis("off")
fig.tight_layout()
plt.show()
