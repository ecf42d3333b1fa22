"""
Tuning with GridSearchCV
========================

Two searches with :class:`~sklearn.model_selection.GridSearchCV`:

1. over the feature ``levels``, scored by image ROC AUC on solar cells with
   image labels;
2. over ``lam``, the L1 weight of the gradient-based heat maps of
   :meth:`~skanomaly.EfficientNetGaussianDetector.explain`, scored by AU-PRO
   against pixel masks with :data:`skanomaly.metrics.pro_scorer`.

Both train on normal images only, through an explicit ``cv`` split, and use
a single validation split to stay fast; with more data, use several.
"""

# %%
# Which levels?
# -------------
# 16 normal cells to fit, 8 normal and 8 defective ones to validate.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV

from skanomaly import EfficientNetGaussianDetector
from skanomaly.datasets import load_elpv, load_magnetic_tile, shared_data_dir
from skanomaly.metrics import pro_scorer

cells = load_elpv(max_samples=300)
rng = np.random.default_rng(0)
normal = np.flatnonzero(cells.y == 1)
defective = rng.choice(np.flatnonzero(cells.y == -1), size=8, replace=False)
index = np.concatenate([normal[:24], defective])
X, y = cells.X[index], cells.y[index]
split = [(np.arange(16), np.arange(16, 32))]  # fit on the first 16 (normal)

# %%
# Levels are given by name (or index, 0 = ``stem`` ... 8 = ``head`` for
# Lite0). The forward pass stops at the deepest level asked for, so shallow
# candidates are also cheaper. ``refit=False``: refitting on all of ``X``
# would include the defective cells.
level_grid = {
    "levels": [
        ("stem", "stage1", "stage2"),
        ("stage3", "stage4", "stage5"),
        "all",
    ]
}
search = GridSearchCV(
    EfficientNetGaussianDetector(), level_grid, scoring="roc_auc", cv=split, refit=False
)
search.fit(X, y)
for levels, auc in zip(search.cv_results_["param_levels"], search.cv_results_["mean_test_score"]):
    print(f"{levels!s:40s} ROC AUC {auc:.3f}")
print("best:", search.best_params_)

fig, ax = plt.subplots(figsize=(6, 2.6))
names = ["stem-stage2", "stage3-5", "all"]
ax.barh(names, search.cv_results_["mean_test_score"], color="tab:blue")
ax.set_xlim(0.5, 1.0)
ax.set_xlabel("validation ROC AUC")
ax.invert_yaxis()
fig.tight_layout()

# %%
# Which ``lam``? Data with pixel masks
# ------------------------------------
# Tuning a heat map needs ground-truth masks. If the magnetic tile defect
# data set (Huang et al., 2018) is available in
# :func:`~skanomaly.datasets.shared_data_dir`, we use its real defects and
# masks. Otherwise we make **synthetic** defects: dark scratches pasted into
# normal ELPV cells, whose masks we know by construction. Synthetic scratches
# are only a stand-in for real defects; tune on real masks when you have
# them.


def paste_scratches(images, rng, n_scratches=2, width=3.0, darkness=0.3):
    """Darken random line segments; return the images and their masks."""
    images = images.copy()
    n, height, width_px = images.shape[:3]
    rows, cols = np.mgrid[:height, :width_px]
    masks = np.zeros((n, height, width_px), dtype=bool)
    for i in range(n):
        for _ in range(n_scratches):
            start = rng.uniform(0.15, 0.85, size=2) * (height, width_px)
            angle = rng.uniform(0, np.pi)
            length = rng.uniform(0.2, 0.4) * height
            end = start + length * np.array([np.sin(angle), np.cos(angle)])
            # Distance of every pixel to the segment start-end.
            d = end - start
            t = np.clip(((rows - start[0]) * d[0] + (cols - start[1]) * d[1]) / (d @ d), 0, 1)
            dist = np.hypot(rows - start[0] - t * d[0], cols - start[1] - t * d[1])
            masks[i] |= dist <= width / 2
        images[i][masks[i]] = (images[i][masks[i]] * darkness).astype(images.dtype)
    return images, masks


data_dir = shared_data_dir()
if data_dir is not None and (data_dir / "magnetic_tile").is_dir():
    source = "magnetic tiles (real defects)"
    good = load_magnetic_tile(classes="Free", max_per_class=18, resize=224)
    bad = load_magnetic_tile(classes=["Blowhole", "Break", "Crack", "Fray"],
                             max_per_class=1, resize=224)
    X_loc = np.concatenate([good.X, bad.X])
    masks = np.concatenate([good.masks, bad.masks])
    n_fit = 16  # the first 16 Free tiles; 2 Free and 4 defective to validate
else:
    source = "ELPV cells with synthetic scratches"
    clean = cells.X[normal[24:42]]
    scratched, scratch_masks = paste_scratches(cells.X[normal[42:46]], rng)
    X_loc = np.concatenate([clean, scratched])
    masks = np.concatenate([np.zeros(clean.shape[:3], dtype=bool), scratch_masks])
    n_fit = 16
print(f"{source}: {len(X_loc)} images, {masks[n_fit:].any(axis=(1, 2)).sum()} "
      "with defects in the validation split")

# %%
# ``lam`` only matters to the gradient methods, here ``"spatial_grad"`` with
# few steps to keep the example fast. The masks are passed as ``y``; the
# scorer calls ``explain`` on the validation images and computes AU-PRO.
# The ``"spatial"`` map (no gradients) is added as a baseline.
lam_grid = [
    {"explain_method": ["spatial"]},
    {"explain_method": ["spatial_grad"], "lam": [0.0, 0.1]},
]
detector = EfficientNetGaussianDetector(
    levels=("stage3", "stage4", "stage5", "stage6"), n_steps=3, step_size=0.02
)
loc_split = [(np.arange(n_fit), np.arange(n_fit, len(X_loc)))]
lam_search = GridSearchCV(detector, lam_grid, scoring=pro_scorer, cv=loc_split, refit=False)
lam_search.fit(X_loc, masks)
for params, pro in zip(lam_search.cv_results_["params"], lam_search.cv_results_["mean_test_score"]):
    print(f"{params}  AU-PRO {pro:.3f}")

# %%
# A larger ``lam`` pulls the descent back towards the original image, so only
# pixels with strong gradients keep changing; whether that sharpens a defect
# or hides it depends on the data, which is what the search measures. Note
# that the fitted Gaussians do not depend on ``lam``: only ``explain`` does.

# %%
# The best heat maps on the validation images
# -------------------------------------------
best = EfficientNetGaussianDetector(
    levels=("stage3", "stage4", "stage5", "stage6"), n_steps=3, step_size=0.02,
    **lam_search.best_params_,
).fit(X_loc[:n_fit])
shown = np.arange(len(X_loc) - 4, len(X_loc))
maps = best.explain(X_loc[shown])
fig, axes = plt.subplots(2, 4, figsize=(9, 4.6))
for column, (i, anomaly_map) in enumerate(zip(shown, maps)):
    axes[0, column].imshow(X_loc[i])
    axes[0, column].contour(masks[i], levels=[0.5], colors="lime", linewidths=0.8)
    axes[1, column].imshow(anomaly_map, cmap="jet")
    for ax in axes[:, column]:
        ax.axis("off")
axes[0, 0].set_title("image, true defect outlined", loc="left", fontsize=9)
axes[1, 0].set_title(f"explain(), {lam_search.best_params_}", loc="left", fontsize=9)
fig.suptitle(source)
fig.tight_layout()
plt.show()
