"""Choosing detection settings from normal images alone: does it pick well?

Issue 13 asks that the data-dependent settings be tunable with a few
labelled anomalies or from normal data alone. Without labels, the usual
stand-in is a synthetic defect: here cut-and-paste (Li et al., CVPR 2021;
a rectangle of the image pasted elsewhere, or a thin "scar", with a small
brightness change), made from the normal training images only.

For each data set and seed, the normal training images are split into 3
folds; each candidate (``input_size`` 224 or 320, ``pooling`` mean or
max, ``standardize`` or not) is fitted on two folds and scored on the third
fold's normal images and their cut-and-paste copies. The candidate of the
best mean synthetic AUROC is then fitted on all training images and scored
on the real test set, next to the default and to the candidate that was
best on the test set in hindsight. Magnetic tiles, cookies and ELPV mono
use bench_peers' splits (seeds 0-2), every PIPED paper type with
impurities bench_detection's (28 training images, seeds 0-2). The
Gaussians and score rules are bench_detection's (``_detection_rules.py``);
features are extracted without a cache (a few minutes in all).

    python benchmarks/bench_selection.py [--out benchmarks/results/selection.md]
"""

import sys
import time

import numpy as np
from _common import markdown_table
from _detection_data import extract, publish_pool_table
from _detection_rules import auroc, gaussian_scores

BACKBONE = "tf_efficientnet_lite0"
SEEDS = range(3)
N_FOLDS = 3
# (input_size, pooling, standardize); the first is the detector's default.
CANDIDATES = [
    (size, pooling, standardize)
    for size in (224, 320)
    for pooling in ("mean", "max")
    for standardize in (False, True)
]
# The detector's standardize=False sums the level distances; True z-scores
# each level by the training images' out-of-fold distances first.
RULES = {False: "sum", True: "zscore"}


def cut_paste(image, rng, scar):
    """A copy of ``image`` with one rectangle (2-15% of the area, aspect
    0.3-3.3) or thin scar (1-5% by 10-30% of the sides) pasted elsewhere
    from the same image, its brightness scaled by 0.9-1.1 and shifted by up
    to 10 grey levels, and the boolean mask of the pasted pixels (shared
    with ``bench_map_selection.py``)."""
    out = image.copy()
    h, w = out.shape[:2]
    if scar:
        ph, pw = round(h * rng.uniform(0.01, 0.05)), round(w * rng.uniform(0.1, 0.3))
        if rng.random() < 0.5:
            ph, pw = round(pw * h / w), round(ph * w / h)
    else:
        area = rng.uniform(0.02, 0.15) * h * w
        aspect = np.exp(rng.uniform(np.log(0.3), np.log(3.3)))
        ph, pw = round(np.sqrt(area / aspect)), round(np.sqrt(area * aspect))
    ph, pw = min(max(ph, 2), h - 1), min(max(pw, 2), w - 1)
    (y0, y1), (x0, x1) = rng.integers(0, h - ph, 2), rng.integers(0, w - pw, 2)
    patch = out[y0 : y0 + ph, x0 : x0 + pw].astype(np.float32)
    patch = patch * rng.uniform(0.9, 1.1) + rng.uniform(-10, 10)
    out[y1 : y1 + ph, x1 : x1 + pw] = np.clip(patch, 0, 255).astype(np.uint8)
    mask = np.zeros((h, w), dtype=bool)
    mask[y1 : y1 + ph, x1 : x1 + pw] = True
    return out, mask


def evaluate(pool, seed):
    """``{candidate: (synthetic AUROC, test AUROC)}`` for one split."""
    train, test = pool.splits[seed]
    X_train, X_test, y_test = pool.images(train), pool.images(test), pool.y[test]
    rng = np.random.default_rng(seed)
    X_synthetic = [cut_paste(im, rng, scar=i % 2 == 1)[0] for i, im in enumerate(X_train)]
    folds = np.arange(len(X_train)) % N_FOLDS
    features = {
        size: [extract(images, BACKBONE, size, False) for images in (X_train, X_synthetic, X_test)]
        for size in {c[0] for c in CANDIDATES}
    }
    results = {}
    for size, pooling, standardize in CANDIDATES:
        fit, synthetic, test_rows = (f[pooling] for f in features[size])
        values = []
        for fold in range(N_FOLDS):
            held = folds == fold
            normal = [r[held] for r in fit]
            anomalous = [r[held] for r in synthetic]
            scores = gaussian_scores(
                [r[~held] for r in fit],
                [np.concatenate(p) for p in zip(normal, anomalous)],
                RULES[standardize],
            )
            labels = np.r_[np.ones(held.sum()), -np.ones(held.sum())]
            values.append(auroc(labels, scores))
        test_auroc = auroc(y_test, gaussian_scores(fit, test_rows, RULES[standardize]))
        results[(size, pooling, standardize)] = (float(np.mean(values)), test_auroc)
    return results


def _name(candidate):
    size, pooling, standardize = candidate
    return f"{size}/{pooling}" + ("/std" if standardize else "")


def table(pools, names):
    rows, changes = [], []
    for name in names:
        for seed in SEEDS:
            started = time.perf_counter()
            results = evaluate(pools[name], seed)
            chosen = max(results, key=lambda c: results[c][0])
            hindsight = max(results, key=lambda c: results[c][1])
            default = results[CANDIDATES[0]][1]
            change = results[chosen][1] - default
            changes.append(change)
            rows.append(
                [
                    name,
                    seed,
                    f"{default:.3f}",
                    _name(chosen),
                    f"{results[chosen][0]:.3f}",
                    f"{results[chosen][1]:.3f}",
                    f"{change:+.3f}",
                    _name(hindsight),
                    f"{results[hindsight][1]:.3f}",
                ]
            )
            print(
                "| "
                + " | ".join(map(str, rows[-1]))
                + f" | ({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    changes = np.array(changes)
    summary = (
        f"Over {len(changes)} splits the chosen setting changed the test AUROC by "
        f"{changes.mean():+.3f} on average: better on {(changes > 0.0005).sum()}, "
        f"worse on {(changes < -0.0005).sum()}, the same on the rest; "
        f"largest gain {changes.max():+.3f}, largest loss {changes.min():+.3f}."
    )
    header = [
        "data set",
        "seed",
        "default (224/mean)",
        "chosen on cut-paste",
        "its cut-paste AUROC",
        "its test AUROC",
        "change",
        "best on test",
        "its test AUROC",
    ]
    return markdown_table(header, rows) + "\n\n" + summary


def main():
    publish_pool_table(
        "selection",
        __doc__,
        "Choosing detection settings from normal images alone",
        "Candidates: input size 224 or 320, mean or max pooling, with or without "
        "standardize (`/std`); image AUROC.",
        table,
        SEEDS,
    )


if __name__ == "__main__":
    main()
