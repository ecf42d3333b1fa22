"""
Choosing a threshold
====================

``score_samples`` ranks images; ``predict`` needs a threshold, ``offset_``.
This example compares two ways to set it on real solar cells:

* ``contamination`` (the default): a percentile of *out-of-fold* scores of
  the training images, each scored by Gaussians fitted without it;
* :meth:`~skanomaly.EfficientNetGaussianDetector.calibrate`: a quantile of
  the scores of held-out normal images, at a target false-positive rate.

and reads the result off the ROC curve of a labelled test set.
"""

# %%
# Data
# ----
# Monocrystalline ELPV cells: 30 normal ones to fit, 20 other normal ones to
# calibrate, and a test set of 20 normal and 20 defective cells.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_curve

from skanomaly import EfficientNetGaussianDetector
from skanomaly.datasets import load_elpv

cells = load_elpv(max_samples=300)
rng = np.random.default_rng(0)
normal = rng.permutation(np.flatnonzero(cells.y == 1))
defective = rng.choice(np.flatnonzero(cells.y == -1), size=20, replace=False)
X_fit = cells.X[normal[:30]]
X_cal = cells.X[normal[30:50]]
X_test = cells.X[np.concatenate([normal[50:70], defective])]
y_test = np.repeat([1, -1], 20)

target_fpr = 0.1
# The pooled score alone: its out-of-fold threshold uses every training
# image. The default score adds the worst patch, whose threshold rests on
# at most 64 of them (so it cannot aim below 1 in 65 new normal images);
# calibrate works the same for both.
detector = EfficientNetGaussianDetector(contamination=target_fpr, image_score="pooled")
detector.fit(X_fit)
offset_contamination = detector.offset_
train_scores = detector.score_samples(X_fit)
test_scores = detector.score_samples(X_test)

# %%
# Threshold from held-out normal images
# -------------------------------------
# ``calibrate`` scores the held-out images and sets ``offset_`` to their
# conformal ``fpr`` quantile; no defective image is needed. It keeps their
# sorted scores in ``calibration_scores_``.
detector.calibrate(X_cal, fpr=target_fpr)
offset_calibrated = detector.offset_
cal_scores = detector.calibration_scores_


def rates(offset):
    """False-positive and true-positive rate on the test set."""
    flagged = test_scores < offset
    return flagged[y_test == 1].mean(), flagged[y_test == -1].mean()


for name, offset in [("contamination", offset_contamination), ("calibrate", offset_calibrated)]:
    fpr, tpr = rates(offset)
    print(
        f"{name:14s} offset_ = {offset:8.1f}: flags {fpr:.0%} of normal and "
        f"{tpr:.0%} of defective test cells (target FPR {target_fpr:.0%})"
    )

# %%
# Why not the training scores themselves
# --------------------------------------
# The Gaussians were fitted to the training images, so these score much
# higher (closer to the mean) than new normal images do; with few images
# per channel the gap is large, and a percentile of the in-sample training
# scores, as :class:`~sklearn.covariance.EllipticEnvelope` takes, would flag
# nearly every new normal image. Out-of-fold and held-out normal images
# score like new ones.
bins = np.histogram_bin_edges(np.concatenate([train_scores, cal_scores, test_scores]), 30)
fig, ax = plt.subplots(figsize=(8, 3.4))
ax.hist(train_scores, bins, alpha=0.6, label="training (in-sample)")
ax.hist(cal_scores, bins, alpha=0.6, label="held-out normal")
ax.hist(test_scores[y_test == 1], bins, histtype="step", linewidth=2, label="test normal")
ax.hist(
    test_scores[y_test == -1],
    bins,
    histtype="step",
    linewidth=2,
    color="crimson",
    label="test defective",
)
ax.axvline(offset_contamination, color="black", linestyle="--", label="contamination")
ax.axvline(offset_calibrated, color="black", label="calibrate")
ax.set_xlabel("score_samples (higher = more normal)")
ax.set_ylabel("cells")
ax.legend(fontsize=8, loc="upper left")
fig.tight_layout()

# %%
# The operating points on the ROC curve
# -------------------------------------
# With labelled defects, the ROC curve of a validation set shows every
# threshold at once; pick the one whose trade-off you accept and set
# ``detector.offset_`` to it. The anomalous class is the positive one here,
# so the curve uses ``-score_samples``.
fpr, tpr, thresholds = roc_curve(y_test == -1, -test_scores)
fig, ax = plt.subplots(figsize=(4.2, 4))
ax.plot(fpr, tpr, color="tab:blue", label="test ROC")
for name, offset, marker in [
    ("contamination", offset_contamination, "s"),
    ("calibrate", offset_calibrated, "o"),
]:
    point = rates(offset)
    ax.plot(
        *point,
        marker,
        color="black",
        markerfacecolor="white" if marker == "s" else "black",
        label=f"{name}",
    )
ax.axvline(target_fpr, color="gray", linestyle=":", label=f"target FPR {target_fpr:.0%}")
ax.set_xlabel("false-positive rate (normal cells flagged)")
ax.set_ylabel("true-positive rate (defects flagged)")
ax.legend(fontsize=8, loc="lower right")
fig.tight_layout()
plt.show()

# %%
# With ``n`` held-out images the smallest false-positive rate ``calibrate``
# can aim at is about ``1 / (n + 1)``, and the realized rate varies from
# one set of new images to the next: use as many held-out normal images as
# you can spare. :meth:`~skanomaly.EfficientNetGaussianDetector.p_values`
# turns the same held-out scores into a p-value per image.
