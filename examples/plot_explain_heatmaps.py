"""
Heat maps with explain
======================

:meth:`~skanomaly.EfficientNetGaussianDetector.explain` returns one anomaly
map per image, at the image's resolution, higher where the image looks
unusual; :func:`~skanomaly.plotting.overlay_heatmap` blends it over the
image. This example follows the production path: score every image,
explain only those that the detector flags.
"""

# %%
# Fit on normal cells, score a batch
# ----------------------------------
# 30 normal monocrystalline ELPV cells to fit, 10 more to set the threshold,
# and a batch of 8 normal and 8 defective cells to inspect.
import matplotlib.pyplot as plt
import numpy as np

from skanomaly import EfficientNetGaussianDetector
from skanomaly.datasets import load_elpv
from skanomaly.plotting import overlay_heatmap

cells = load_elpv(max_samples=300)
rng = np.random.default_rng(1)
normal = np.flatnonzero(cells.y == 1)
defective = rng.choice(np.flatnonzero(cells.y == -1), size=8, replace=False)
X_batch = cells.X[np.concatenate([normal[40:48], defective])]
y_batch = np.repeat([1, -1], 8)

detector = EfficientNetGaussianDetector().fit(cells.X[normal[:30]])
detector.calibrate(cells.X[normal[30:40]], fpr=0.1)

decision = detector.decision_function(X_batch)
flagged = np.flatnonzero(decision < 0)
print(
    f"{len(flagged)} of {len(X_batch)} cells flagged "
    f"({np.sum(y_batch[flagged] == -1)} of them truly defective)"
)

# %%
# Explain only the flagged cells
# ------------------------------
# The default ``explain_method="descent"`` changes each image, a few
# gradient steps, until its patches look normal, and sharpens the geometric
# mean of the two maps below where it had to change. We show the (at most) four most anomalous
# flagged cells and, for comparison, the most normal cell of the batch.
# One ``vmin``/``vmax`` for all overlays keeps their colours comparable:
# every map has a hottest spot, normal images included.
worst = flagged[np.argsort(decision[flagged])][:4]
if len(worst) == 0:  # nothing flagged: show the lowest scores anyway
    worst = np.argsort(decision)[:4]
shown = np.append(worst, np.argmax(decision))
maps = detector.explain(X_batch[shown])
vmin, vmax = np.percentile(maps, [1, 99.5])

fig, axes = plt.subplots(2, len(shown), figsize=(2.3 * len(shown), 4.8))
for column, (i, anomaly_map) in enumerate(zip(shown, maps)):
    truth = "normal" if y_batch[i] == 1 else "defective"
    axes[0, column].imshow(X_batch[i])
    axes[0, column].set_title(f"{truth}\ndecision {decision[i]:.0f}", fontsize=9)
    overlay = overlay_heatmap(X_batch[i], anomaly_map, vmin=vmin, vmax=vmax, alpha=0.45)
    axes[1, column].imshow(overlay)
    for ax in axes[:, column]:
        ax.axis("off")
axes[1, 0].set_title('explain_method="descent"', loc="left", fontsize=9)
fig.tight_layout()

# %%
# The maps without gradients
# --------------------------
# ``"spatial"`` and ``"patches"`` need no gradients: one forward pass per
# image, and for ``"patches"`` a nearest-neighbour search of every patch.
# The descent sharpens their geometric mean; the second, each patch's
# distance to its nearest normal patch, also weights the descent's steps and
# is PatchCore's map. Which follows the defects best
# depends on the data (the Benchmarks page measures them on masks).
# Parameters are changed with ``set_params``, without refitting. A threshold
# drawn at the 99th percentile of each map outlines its hottest region.
pair = worst[:2]
methods = {"descent": maps[: len(pair)]}  # shown starts with worst
for method in ("spatial", "patches"):
    detector.set_params(explain_method=method)
    methods[method] = detector.explain(X_batch[pair])

fig, axes = plt.subplots(1, 3 * len(pair), figsize=(12, 2.3))
for k, i in enumerate(pair):
    for ax, (name, method_maps) in zip(axes[3 * k : 3 * k + 3], methods.items()):
        ax.imshow(
            overlay_heatmap(
                X_batch[i], method_maps[k], alpha=0.45, threshold=np.percentile(method_maps[k], 99)
            )
        )
        ax.set_title(name, fontsize=9)
        ax.axis("off")
fig.tight_layout()
plt.show()

# %%
# Masks and regions
# -----------------
# An inspection line wants outlines, areas and positions rather than colours.
# The pixel threshold, like the image threshold, comes from normal images
# only: ``calibrate_pixels`` sets it so that about ``fpr`` of the pixels of
# new normal images lie above it. Here it uses the 10 held-out normal cells;
# without images, it uses training images that ``fit`` kept, each explained
# as if it were new. ``segment`` returns boolean masks at each image's size,
# ``regions`` one row per connected region.
detector.set_params(explain_method="descent")
detector.calibrate_pixels(cells.X[normal[30:40]], fpr=0.01)
table = detector.regions(X_batch[worst], min_area=25)
print(" image  area  top left bottom right    peak")
for i, area, top, left, bottom, right, peak in zip(
    *(table[k] for k in ("image", "area", "top", "left", "bottom", "right", "peak"))
):
    print(f"{worst[i]:6d} {area:5d} {top:4d} {left:4d} {bottom:6d} {right:5d} {peak:7.1f}")

fig, axes = plt.subplots(1, len(worst), figsize=(2.3 * len(worst), 2.6))
for k, (ax, i, anomaly_map) in enumerate(zip(np.atleast_1d(axes), worst, maps)):
    ax.imshow(
        overlay_heatmap(
            X_batch[i],
            anomaly_map,
            vmin=vmin,
            vmax=vmax,
            alpha=0.45,
            threshold=detector.pixel_threshold_,
        )
    )
    ax.set_title(f"{np.sum(table['image'] == k)} region(s)", fontsize=9)
    ax.axis("off")
fig.tight_layout()
plt.show()

# %%
# Reading the maps
# ----------------
# The score says *whether* a cell is anomalous, the map only *where* it looks
# so. Read a map when the score has flagged its image, compare maps on one
# colour scale, and expect soft outlines: the spatial map lives on feature
# grids of 28 x 28 down to 7 x 7 locations, the patch map on 28 x 28, the
# descent sharpens their mean where pixels had to change, and all are
# blurred. The user guide's section on ``explain`` says more about when to
# trust it.
