"""
Deploying a detector as one ONNX file
=====================================

An inspection PC often has neither torch nor skanomaly. A fitted detector can
be written as one ONNX graph, from uint8 images to scores and heat maps, with
its threshold in the file's metadata, and run by onnxruntime (or OpenVINO).
This example fits on real solar cells (ELPV), exports, runs the file with
onnxruntime alone and compares what it returns with the library's own
answers. The :ref:`deployment` page gives the details; its speed is measured
by ``benchmarks/bench_export.py``.
"""

# %%
# Fit and set the threshold
# -------------------------
# 30 normal cells to fit, 10 other normal cells for the threshold
# (:meth:`~skanomaly.EfficientNetGaussianDetector.calibrate`), and a test
# set of 8 normal and 8 defective cells.
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from skanomaly import EfficientNetGaussianDetector
from skanomaly.datasets import load_elpv

cells = load_elpv(max_samples=300)
rng = np.random.default_rng(0)
# Shuffled: neighbouring cells in the file come from the same panel.
normal = rng.permutation(np.flatnonzero(cells.y == 1))
defective = rng.choice(np.flatnonzero(cells.y == -1), size=8, replace=False)
X_test = cells.X[np.concatenate([normal[40:48], defective])]
y_test = np.repeat([1, -1], 8)

detector = EfficientNetGaussianDetector().fit(cells.X[normal[:30]])
detector.calibrate(cells.X[normal[30:40]], fpr=0.1)

# %%
# Export
# ------
# ``maps=True`` adds a second output, the ``"spatial"`` heat maps of
# :meth:`~skanomaly.EfficientNetGaussianDetector.explain` at each image's
# size. The command line does the same with
# ``skanomaly export model.skanomaly model.onnx --maps``.
from skanomaly.export import read_onnx_metadata  # noqa: E402 (introduced here)

workdir = tempfile.TemporaryDirectory()  # removed at the end
folder = Path(workdir.name)
detector.export_onnx(folder / "model.onnx", maps=True)
meta = read_onnx_metadata(folder / "model.onnx")
print(f"{(folder / 'model.onnx').stat().st_size / 2**20:.1f} MiB")
print({key: meta[key] for key in ("offset", "outputs", "input_size")})

# %%
# Run it with onnxruntime alone
# -----------------------------
# This is all the inspection PC runs: the file, uint8 RGB pixels in, scores
# and maps out, and the threshold from the metadata. The runtime returns
# the metadata as text; here ``float`` reads the threshold.
import onnxruntime as ort  # noqa: E402 (introduced here)

session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
offset = float(session.get_modelmeta().custom_metadata_map["offset"])
scores, maps = session.run(["scores", "maps"], {"images": X_test})
labels = np.where(scores - offset < 0, -1, 1)
print(
    f"flagged: {np.sum(labels[y_test == 1] == -1)} of 8 normal cells, "
    f"{np.sum(labels[y_test == -1] == -1)} of 8 defective cells"
)

# %%
# The same answers as the library
# -------------------------------
# The file's scores are float32 and the library's float64: they agree to
# about 1e-6 relative here (the test suite allows 1e-4), so both sides of
# the threshold are the same. The maps agree with ``explain`` with the
# ``"spatial"`` method.
library_scores = detector.score_samples(X_test)
library_maps = detector.set_params(explain_method="spatial").explain(X_test)
gap = np.abs(scores - library_scores).max() / np.abs(library_scores).max()
map_gap = max(np.abs(m - ref).max() / ref.max() for m, ref in zip(maps, library_maps))
print(f"largest score difference: {gap:.1e} of the largest score")
print(f"largest map difference: {map_gap:.1e} of the map's maximum")
assert np.array_equal(labels, detector.predict(X_test))

fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
axes[0].scatter(library_scores, scores, c=np.where(y_test == 1, "tab:blue", "crimson"))
axes[0].axvline(detector.offset_, color="gray", ls="--")
axes[0].axhline(offset, color="gray", ls=":")
axes[0].set(xlabel="score_samples (library)", ylabel="scores (onnxruntime)")
axes[0].set_title("blue: normal, red: defective\nlines: the threshold", fontsize=9)
worst = int(np.argmin(scores))
for ax, image, title in zip(
    axes[1:],
    (X_test[worst], library_maps[worst], maps[worst]),
    ("the lowest-scoring cell", "explain (library)", "maps (onnxruntime)"),
):
    ax.imshow(image, cmap=None if image.ndim == 3 else "inferno")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
fig.tight_layout()
plt.show()
workdir.cleanup()
