"""
Tuning with GridSearchCV
========================

Two searches with :class:`~sklearn.model_selection.GridSearchCV`:

1. over the feature ``levels``, scored by image ROC AUC on solar cells with
   image labels;
2. over ``lam``, the L1 weight of the energy descent behind the heat maps of
   :meth:`~skanomaly.EfficientNetGaussianDetector.explain`, ``levels`` and
   ``patch_neighborhood``, scored by AU-PRO against pixel masks with
   :data:`skanomaly.metrics.pro_scorer` and by the image ROC AUC the masks
   imply, on the feature cache (``memory=``);

then the pixel threshold of the defect masks, chosen on the same masks.

Both train on normal images only, through an explicit ``cv`` split, and use
a single validation split to stay fast; with more data, use several.
"""

# %%
# Which levels?
# -------------
# 16 normal cells to fit, 16 normal and 16 defective ones to validate.
import tempfile

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV

from skanomaly import EfficientNetGaussianDetector
from skanomaly.datasets import load_elpv, load_magnetic_tile, shared_data_dir
from skanomaly.metrics import masks_image_roc_auc_scorer, pro_scorer, region_hits

cells = load_elpv(max_samples=300)
rng = np.random.default_rng(0)
normal = np.flatnonzero(cells.y == 1)
defective = rng.choice(np.flatnonzero(cells.y == -1), size=16, replace=False)
index = np.concatenate([normal[:32], defective])
X, y = cells.X[index], cells.y[index]
split = [(np.arange(16), np.arange(16, 48))]  # fit on the first 16 (normal)

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
    good = load_magnetic_tile(classes="Free", max_per_class=22, resize=224)
    bad = load_magnetic_tile(
        classes=["Blowhole", "Break", "Crack", "Fray"], max_per_class=2, resize=224
    )
    X_loc = np.concatenate([good.X, bad.X])
    masks = np.concatenate([good.masks, bad.masks])
    n_fit = 16  # the first 16 Free tiles; 6 Free and 8 defective to validate
else:
    source = "ELPV cells with synthetic scratches"
    clean = cells.X[normal[32:54]]
    scratched, scratch_masks = paste_scratches(cells.X[normal[54:62]], rng)
    X_loc = np.concatenate([clean, scratched])
    masks = np.concatenate([np.zeros(clean.shape[:3], dtype=bool), scratch_masks])
    n_fit = 16
print(
    f"{source}: {len(X_loc)} images, {masks[n_fit:].any(axis=(1, 2)).sum()} "
    "with defects in the validation split"
)

# %%
# ``lam`` is in units of each image's largest weighted gradient: a
# pixel changes only where its gradient exceeds that fraction, so ``lam=0``
# changes pixels densely, ``lam=0.1`` sparsely, and from ``lam=1`` on nothing
# changes and the map is the prior, the geometric mean of the ``"spatial"``
# and ``"patches"`` maps. ``levels`` moves the image
# scores, not the maps. The masks are passed as ``y``; the scorers call
# ``explain`` and ``score_samples`` on the validation images. With
# ``memory=``, the network runs, and the patch memory is chosen, once per
# image and ``patch_neighborhood`` for all fits: the candidates differ in
# what is computed from the cached features, and the cached patch features
# depend on it. ``patch_neighborhood``
# changes the patch features the descent compares (PatchCore's 3 x 3 average
# with 3), which helps centred objects more than textures; ``(1, 3)``, the
# default, puts both side by side, each patch compared at both scales: the
# search says which suits these images.
lams = [0.0, 0.01, 0.1, 1.0]
grid = {
    "lam": lams,
    "levels": [("stage3", "stage4", "stage5", "stage6"), "all"],
    "patch_neighborhood": [1, 3, (1, 3)],
}
cache_dir = tempfile.TemporaryDirectory()  # removed at the end
cache = cache_dir.name
loc_split = [(np.arange(n_fit), np.arange(n_fit, len(X_loc)))]
search = GridSearchCV(
    EfficientNetGaussianDetector(memory=cache),
    grid,
    scoring={"AU-PRO": pro_scorer, "image ROC AUC": masks_image_roc_auc_scorer},
    cv=loc_split,
    refit=False,
)
search.fit(X_loc, masks)
results = search.cv_results_
for params, pro, auc in zip(
    results["params"], results["mean_test_AU-PRO"], results["mean_test_image ROC AUC"]
):
    print(f"{params}  AU-PRO {pro:.3f}  image ROC AUC {auc:.3f}")

# %%
# The score against ``lam``
# -------------------------
fig, ax = plt.subplots(figsize=(6, 3))
for levels, style in (("all", "o-"), (("stage3", "stage4", "stage5", "stage6"), "s--")):
    rows = [
        i
        for i, p in enumerate(results["params"])
        if p["levels"] == levels and p["patch_neighborhood"] == (1, 3)
    ]
    ax.plot(
        [max(results["params"][i]["lam"], 1e-3) for i in rows],
        results["mean_test_AU-PRO"][rows],
        style,
        label=f"levels={levels if levels == 'all' else 'stage3-6'}",
    )
ax.set_xscale("log")
ax.set_xlabel("lam (0 drawn at 1e-3)")
ax.set_ylabel("validation AU-PRO (patch_neighborhood=(1, 3))")
ax.legend()
fig.tight_layout()

# %%
# One image at three ``lam``
# --------------------------
# The descent moves pixels where the image looks least normal; a larger
# ``lam`` holds more of them at their value, and the map falls back to the
# prior, the geometric mean of the ``"spatial"`` and ``"patches"`` maps.
detector = EfficientNetGaussianDetector(memory=cache).fit(X_loc[:n_fit])
shown = n_fit + int(np.argmax(masks[n_fit:].sum(axis=(1, 2))))
fig, axes = plt.subplots(1, 4, figsize=(10, 2.9))
axes[0].imshow(X_loc[shown])
axes[0].contour(masks[shown], levels=[0.5], colors="lime", linewidths=0.8)
axes[0].set_title("image, defect outlined", fontsize=9)
for ax, lam in zip(axes[1:], (0.0, 0.1, 1.0)):
    anomaly_map = detector.set_params(lam=lam).explain(X_loc[shown : shown + 1])[0]
    ax.imshow(anomaly_map, cmap="jet")
    ax.set_title(f"lam={lam:g}", fontsize=9)
for ax in axes:
    ax.axis("off")
fig.suptitle(source)
fig.tight_layout()

# %%
# The pixel threshold, from the same masks
# ----------------------------------------
# :meth:`~skanomaly.EfficientNetGaussianDetector.segment` and
# :meth:`~skanomaly.EfficientNetGaussianDetector.regions` outline the pixels
# above ``pixel_threshold_``, which ``calibrate_pixels()`` sets from normal
# images alone, for about 1% of their pixels. With masks,
# :func:`~skanomaly.metrics.region_hits` counts at any threshold the defects
# that the regions find and the regions outside every defect: here, the
# share of defects found and of normal validation images with a region.
# Nothing is outlined on those normal images above their highest map value.
detector.set_params(lam=0.0)
val_maps, val_masks = detector.explain(X_loc[n_fit:]), masks[n_fit:]
is_normal = ~val_masks.any(axis=(1, 2))
calibrated = detector.calibrate_pixels().pixel_threshold_
quiet = float(val_maps[is_normal].max())
thresholds = np.linspace(np.median(val_maps), val_maps.max(), 150)
found, with_region = [], []
for threshold in thresholds:
    hits = region_hits(val_masks, val_maps, threshold)
    found.append(hits["found"].sum() / hits["defects"].sum())
    with_region.append((hits["false_regions"][is_normal] > 0).mean())
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(thresholds, found, label="defects found")
ax.plot(thresholds, with_region, label="normal images with a region")
ax.axvline(calibrated, ls="--", color="gray", label="calibrate_pixels() (1% of pixels)")
ax.axvline(quiet, ls=":", color="black", label="no region on the normal images")
ax.set_xlabel("pixel threshold (map value)")
ax.set_ylabel("share")
ax.legend(fontsize=8)
fig.tight_layout()

# %%
# The threshold that outlines nothing on the normal images is set as given,
# as ``skanomaly calibrate MODEL --pixel-threshold VALUE`` does (``skanomaly
# evaluate --masks`` prints it). Which to choose is the line's trade-off:
# fewer false regions, fewer defects found.
detector.calibrate_pixels(threshold=quiet)
print(detector.pixel_calibration_["source"], f"{detector.pixel_threshold_:.4g}")
plt.show()
cache_dir.cleanup()
