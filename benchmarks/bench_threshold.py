"""Realized false-positive rate of thresholds set from normal images only.

For each data set (ELPV's polycrystalline cells among them, on which no
benchmark chose anything), normal images are split three ways (seeded):
fit, calibration and test. The detectors are fitted on the first part;
thresholds come from ``contamination`` (the default score's conformal
quantile of training images scored as new ones; the pooled score's
percentile of out-of-fold scores, and its chi-squared reference) or from
``calibrate(X_calibration, fpr)``; the table gives the fraction of the
held-out normal test images each threshold flags, next to its target, and
the fraction of anomalous images it catches.

    python benchmarks/bench_threshold.py [--n-fit 100] [--n-calibrate 100]
"""

import argparse
from pathlib import Path

import numpy as np
from _common import environment, markdown_table, publish

from skanomaly import EfficientNetGaussianDetector
from skanomaly.datasets import load_cookies, load_elpv, load_magnetic_tile, shared_data_dir


def datasets(args):
    elpv = load_elpv(cell_type="mono")
    yield "ELPV mono", elpv.X[elpv.y == 1], elpv.X[elpv.y == -1]
    # No benchmark chose anything on the polycrystalline cells.
    elpv = load_elpv(cell_type="poly")
    yield "ELPV poly (left out)", elpv.X[elpv.y == 1], elpv.X[elpv.y == -1]
    root = shared_data_dir()
    if root is None:
        return
    tiles = load_magnetic_tile(root / "magnetic_tile", resize=224)
    yield "magnetic tiles", tiles.X[tiles.y == 1], tiles.X[tiles.y == -1]
    cookies = load_cookies(root / "cookies", resize=(224, 168))
    yield "cookies", cookies.X[cookies.y == 1], cookies.X[cookies.y == -1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-fit", type=int, default=100)
    parser.add_argument("--n-calibrate", type=int, default=100)
    parser.add_argument("--fprs", type=float, nargs="+", default=[0.01, 0.05, 0.1])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "threshold.md"))
    args = parser.parse_args()

    rows = []
    for name, normal, anomalous in datasets(args):
        rng = np.random.default_rng(args.seed)
        normal = normal[rng.permutation(len(normal))]
        # Small sets (cookies) are split in proportion instead.
        n_fit = min(args.n_fit, len(normal) // 3)
        n_cal = min(args.n_calibrate, len(normal) // 3)
        fit, cal, test = normal[:n_fit], normal[n_fit : n_fit + n_cal], normal[n_fit + n_cal :]
        detector = EfficientNetGaussianDetector(contamination=0.05).fit(fit)
        # (label, target, offset, the scores it applies to: test normals, anomalies)
        scores = (detector.score_samples(test), detector.score_samples(anomalous))
        thresholds = [("contamination=0.05 (the default)", 0.05, detector.offset_, scores)]
        # threshold="chi2" is the law of the pooled distances alone: it
        # thresholds the pooled score, next to that score's out-of-fold one.
        for threshold in ("out_of_fold", "chi2"):
            pooled = EfficientNetGaussianDetector(
                contamination=0.05, image_score="pooled", threshold=threshold
            ).fit(fit)
            label = f"contamination=0.05, image_score='pooled', threshold={threshold!r}"
            pooled_scores = (pooled.score_samples(test), pooled.score_samples(anomalous))
            thresholds.append((label, 0.05, pooled.offset_, pooled_scores))
        for fpr in args.fprs:
            detector.calibrate(cal, fpr=fpr)
            thresholds.append((f"calibrate(fpr={fpr})", fpr, detector.offset_, scores))
        for label, target, offset, (test_scores, anomalous_scores) in thresholds:
            rows.append(
                [
                    name,
                    f"{len(fit)}/{len(cal)}/{len(test)}",
                    label,
                    f"{target:.2f}",
                    f"{np.mean(test_scores < offset):.3f}",
                    f"{np.mean(anomalous_scores < offset):.3f}",
                ]
            )
    table = markdown_table(
        [
            "data",
            "fit/calibrate/test normals",
            "threshold",
            "target FPR",
            "realized FPR",
            "recall on anomalies",
        ],
        rows,
    )
    text = f"### Thresholds from normal images only\n\n{table}\n\n{environment()}\n"
    publish(text, args.out)


if __name__ == "__main__":
    main()
