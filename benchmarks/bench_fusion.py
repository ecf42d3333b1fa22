"""The pooled score plus PatchCore's patch score, on cached features.

PatchCore (Roth et al., CVPR 2022) scores an image by its worst patch: the
largest distance of a patch feature to its nearest patch of the normal
images. The pooled Gaussians see the whole image at once and miss small
defects that one patch shows. This benchmark measures, on bench_peers'
splits (magnetic tiles, cookies, ELPV mono; seeds 0-2) and on every PIPED
paper type with impurities (bench_detection's splits, seeds 0-2); the
detector ships the k=3 sum as ``image_score="pooled+patches"``
(bench_image_score.py measures it end to end):

- ``pooled``: the detector's score (the default, mean pooling);
- ``patch max``: the largest nearest-patch distance, on the detector's patch
  features (``stage3`` and ``stage5``, each location averaged over k x k,
  zero-padded: ``patch_neighborhood``) against the patch memory that
  ``fit`` keeps for ``explain`` (:class:`~skanomaly.patches.PatchReservoir`:
  at most 16,384 rows, chosen by greedy k-centre selection from a uniform
  sample of up to four times as many);
- ``fused``: the sum of both, each standardised by normal images alone: the
  pooled score by the mean and standard deviation of the training images'
  out-of-fold scores (5 folds), the patch score by those of each training
  image's patch score against the sample without its own patches;
- ``coreset 10%`` (k=3, the detector's ``patch_coreset=0.1``): the same,
  against a memory a tenth of that size, chosen the same way: PatchCore's
  coreset (Roth et al., 2022), which keeps the patches farthest from those
  already kept; a memory ten times smaller to search, for scores and maps;
- ``stage5 only`` (k=3): the patch features of ``stage5`` alone, on its own
  14 x 14 grid instead of ``stage3``'s 28 x 28: a quarter of the patches,
  112 channels instead of 152, so about a fifth of the search. Not in the
  detector: its patch memory serves the maps too, which need the finer grid.
- ``patch Gaussian`` (k=3): no search at all. One Ledoit-Wolf Gaussian of
  all the training images' patch features, shared by every location; an
  image's score is its largest patch Mahalanobis distance, standardised by
  the training images' own, each under the Gaussian of the other folds (5).
  It costs one matrix product per image instead of a search: the
  candidate for a fused score at about the pooled score's speed.

Features come from one forward pass per image (``_detection_data.extract``)
and the Gaussians from ``_detection_rules.py`` (equal to the detector's to
rounding). A few minutes in all.

    python benchmarks/bench_fusion.py [--out benchmarks/results/fusion.md]
"""

import sys
import time

import numpy as np
from _common import markdown_table
from _detection_data import extract, publish_pool_table
from _detection_rules import LevelModel, auroc, combine, gaussian_scores, out_of_fold

from skanomaly.patches import PatchReservoir, worst_patch_distances

BACKBONE = "tf_efficientnet_lite0"
SEEDS = range(3)
NEIGHBORHOODS = (1, 3)
# The coarser patch features of the "stage5 only" columns, at k=3.
COARSE = (3, ("stage5",))
# Share of the patch sample kept by the coreset columns (PatchCore's 10%).
CORESET = 0.1


def _standardized(scores, normal):
    return (scores - normal.mean()) / normal.std()


def _patch_scores(train_rows, test_rows, seed, coreset=None):
    """Largest nearest-patch distance of each test image, and of each
    training image against the memory without its own patches; the memory
    as the detector's ``fit`` chooses it, with ``patch_coreset=coreset``."""
    reservoir = PatchReservoir(seed=seed)
    reservoir.add(train_rows)
    memory, _, _ = reservoir.memory(coreset=1.0 if coreset is None else coreset)
    test = worst_patch_distances(test_rows, memory)
    train = np.concatenate(
        [worst_patch_distances([rows], reservoir.without([i])) for i, rows in enumerate(train_rows)]
    )
    return test, train


def _gaussian_patch_scores(train_rows, test_rows, n_folds=5):
    """Largest patch Mahalanobis distance of each test image under one
    Gaussian of all training patches, and of each training image under the
    Gaussian of the other folds' patches."""
    model = LevelModel(np.concatenate(train_rows))
    test = [model.distances(r).max() for r in test_rows]
    fold = np.arange(len(train_rows)) % min(n_folds, len(train_rows))
    train = np.empty(len(train_rows))
    for f in np.unique(fold):
        model = LevelModel(np.concatenate([r for r, g in zip(train_rows, fold) if g != f]))
        for i in np.flatnonzero(fold == f):
            train[i] = model.distances(train_rows[i]).max()
    return np.array(test), train


def evaluate(pool, seed):
    """``{column: AUROC}`` for one split."""
    train, test = pool.splits[seed]
    y = pool.y[test]
    fit_features, test_features = (
        extract(pool.images(index), BACKBONE, 224, False, patches=(*NEIGHBORHOODS, COARSE))
        for index in (train, test)
    )
    fit, rows = fit_features["mean"], test_features["mean"]
    pooled = gaussian_scores(fit, rows, "sum")
    pooled_normal = combine(out_of_fold(fit, np.arange(len(train))), "sum")
    results = {"pooled": auroc(y, pooled)}
    variants = [(k, None, f"k={k}") for k in NEIGHBORHOODS]
    variants.append((3, CORESET, f"k=3, coreset {CORESET:.0%}"))
    variants.append((COARSE, None, "k=3, stage5 only"))
    for entry, coreset, name in variants:
        patch, patch_normal = _patch_scores(
            fit_features[("patches", entry)],
            test_features[("patches", entry)],
            seed,
            coreset,
        )
        results[f"patch max, {name}"] = auroc(y, patch)
        fused = _standardized(pooled, pooled_normal) + _standardized(patch, patch_normal)
        results[f"fused, {name}"] = auroc(y, fused)
    patch, patch_normal = _gaussian_patch_scores(
        fit_features[("patches", 3)], test_features[("patches", 3)]
    )
    results["patch Gaussian max, k=3"] = auroc(y, patch)
    fused = _standardized(pooled, pooled_normal) + _standardized(patch, patch_normal)
    results["fused, patch Gaussian, k=3"] = auroc(y, fused)
    return results


def table(pools, names):
    rows, per_set = [], {}
    for name in names:
        started = time.perf_counter()
        values = [evaluate(pools[name], seed) for seed in SEEDS]
        columns = list(values[0])
        means = {c: np.mean([v[c] for v in values]) for c in columns}
        per_set[name] = means
        rows.append(
            [name]
            + [" / ".join(f"{v[c]:.3f}" for v in values) + f" ({means[c]:.3f})" for c in columns]
        )
        print(f"{name}: {rows[-1][1:]} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    summary = []
    for column in columns[1:]:
        changes = np.array([per_set[n][column] - per_set[n]["pooled"] for n in names])
        summary.append(
            f"`{column}` against `pooled`, mean of seeds: {changes.mean():+.3f} on average over "
            f"the {len(names)} data sets, higher on {(changes > 0.0005).sum()}, lower on "
            f"{(changes < -0.0005).sum()} (largest loss {changes.min():+.3f})."
        )
    header = ["data set", *(f"{c} (seeds 0 / 1 / 2, mean)" for c in columns)]
    return markdown_table(header, rows) + "\n\n" + "\n".join(f"- {s}" for s in summary)


def main():
    publish_pool_table(
        "fusion",
        __doc__,
        "The pooled score plus the patch score, on cached features",
        "Image AUROC; Lite0 at 224 px, mean pooling; k is the patch neighbourhood.",
        table,
        SEEDS,
    )


if __name__ == "__main__":
    main()
