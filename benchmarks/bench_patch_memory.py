"""Which patches the memory keeps when many normal images are fitted.

The patch memory that the maps, the descent and the worst-patch scores
search holds at most 16,384 rows (20 MB with Lite0's default features), so that a
search stays a few milliseconds per image. An MVTec AD category has 200-400
training images, 157,000-314,000 patches at 224 px: the memory holds one in
10-20 of them. This script compares three memories on magnetic tiles that no
other benchmark uses (``bench_left_out.py``'s pool: the defect-free tiles
after the first 100, and the defective ones after the first five of each
class). Per seed it draws 300 defect-free tiles to fit, 100 others and 20
defective tiles of each class to test:

- ``uniform``: a uniform sample of 16,384 patches, the memory before the
  k-centre memory;
- ``k-centres (default)``: 16,384 rows chosen by greedy k-centre selection
  (PatchCore's coreset rule) from a uniform sample of up to 65,536;
- ``every patch``: the whole sample, every training patch: the most a
  memory can know, at up to 14 times the search.

For each it fits two detectors: ``image_score="pooled+patches"`` (default
features; its maps are the default descent's and the ``"patches"`` map) and
``image_score="patches"`` with ``patch_neighborhood=3`` (the worst patch
alone). Fit seconds are the first detector's, explain seconds per image the
descent's.

    python benchmarks/bench_patch_memory.py [--seeds 0 1 ...] [--out FILE]
"""

import argparse
import shlex
import sys
import time

import numpy as np
from _common import environment, markdown_table, per_seed, publish
from bench_explain import map_metrics
from bench_left_out import left_out_tiles, split
from sklearn.metrics import roc_auc_score

import skanomaly.patches
from skanomaly import EfficientNetGaussianDetector
from skanomaly.datasets import shared_data_dir

N_FIT, N_NORMAL, PER_CLASS = 300, 100, 20
# (row, memory rows, share of the uniform sample): the two module settings
# that choose the memory.
MEMORIES = [
    ("uniform", skanomaly.patches.PATCH_MEMORY_SIZE, 1),
    ("k-centres (default)", skanomaly.patches.PATCH_MEMORY_SIZE, skanomaly.patches._POOL_FACTOR),
    ("every patch", 10**9, 1),
]
COLUMNS = [
    "memory rows",
    "fit s",
    "image AUROC, pooled+patches",
    "image AUROC, patches (k=3)",
    "descent map: pixel AUROC",
    "descent map: AU-PRO",
    "patches map: pixel AUROC",
    "patches map: AU-PRO",
    "explain s/img",
]


def measure(fit, X, masks, labels):
    """``{column: value}`` of one memory on one split."""
    detector = EfficientNetGaussianDetector(image_score="pooled+patches")
    started = time.perf_counter()
    detector.fit(fit)
    values = {"memory rows": len(detector.patches_), "fit s": time.perf_counter() - started}
    values["image AUROC, pooled+patches"] = roc_auc_score(labels, -detector.score_samples(X))
    started = time.perf_counter()
    descent = detector.explain(X)
    values["explain s/img"] = (time.perf_counter() - started) / len(X)
    maps = {"descent": descent, "patches": detector.set_params(explain_method="patches").explain(X)}
    for name, anomaly_maps in maps.items():
        pixel, pro, _ = map_metrics(masks, anomaly_maps)
        values[f"{name} map: pixel AUROC"], values[f"{name} map: AU-PRO"] = pixel, pro
    worst = EfficientNetGaussianDetector(image_score="patches", patch_neighborhood=3).fit(fit)
    values["image AUROC, patches (k=3)"] = roc_auc_score(labels, -worst.score_samples(X))
    return values


def run(seeds):
    data, free, defects = left_out_tiles()
    results = {name: [] for name, _, _ in MEMORIES}
    for seed in seeds:
        fit, X, masks, labels, _ = split(data, free, defects, seed, N_FIT, N_NORMAL, PER_CLASS)
        for name, size, pool_factor in MEMORIES:
            skanomaly.patches.PATCH_MEMORY_SIZE, skanomaly.patches._POOL_FACTOR = size, pool_factor
            results[name].append(measure(fit, X, masks, labels))
            print(f"seed {seed} | {name} | {results[name][-1]}", file=sys.stderr, flush=True)
    return results


def cell(column, values):
    if column == "memory rows":
        return " / ".join(str(v) for v in values)
    if column in ("fit s", "explain s/img"):
        return " / ".join(f"{v:.2f}" for v in values) + f" ({np.median(values):.2f} median)"
    return per_seed(values)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if shared_data_dir() is None:
        sys.exit("The shared data is absent: set SKANOMALY_DATA (see ../shared/data/README.md).")
    command = shlex.join(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    results = run(args.seeds)
    minutes = (time.perf_counter() - started) / 60
    seeds = " / ".join(str(s) for s in args.seeds)
    rows = [
        [name, *(cell(c, [v[c] for v in values]) for c in COLUMNS)]
        for name, values in results.items()
    ]
    text = "\n".join(
        [
            "## The patch memory of a fit on 300 images",
            "",
            f"`python benchmarks/bench_patch_memory.py {command}`, {minutes:.1f} min. Protocol: the "
            f"module docstring of benchmarks/bench_patch_memory.py. Left-out magnetic tiles: "
            f"{N_FIT} defect-free tiles to fit, {N_NORMAL} others and {PER_CLASS} defective "
            f"tiles of each class to test, per seed ({seeds}; accuracy: each seed, then the "
            "mean). Lite0 defaults besides `image_score`; AU-PRO up to a false-positive rate "
            "of 0.3.",
            "",
            markdown_table(["memory", *COLUMNS], rows),
            "",
            environment(),
        ]
    )
    publish(text, args.out)


if __name__ == "__main__":
    main()
