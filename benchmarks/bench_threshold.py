"""Realized false-positive rate of thresholds set from normal images only.

For each data set (ELPV's polycrystalline cells among them, on which no
benchmark chose anything) and each seed, normal images are split three ways:
fit, calibration and test. The detectors are fitted on the first part;
thresholds come from ``contamination`` (the default score's conformal
quantile of training images scored as new ones; the pooled score's
percentile of out-of-fold scores, and its chi-squared reference) or from
``calibrate(X_calibration, fpr)``; the table gives the fraction of the
held-out normal test images each threshold flags, next to its target, and
the fraction of anomalous images it catches, seed by seed and on average:
a threshold set from a few images moves with the images drawn, which one
seed cannot show. The detectors of one seed share a feature cache.
``--score-sample 16`` measures the default's threshold as it was before it
kept 64 training images (threshold_sample16.md).

    python benchmarks/bench_threshold.py [--n-fit 100] [--n-calibrate 100] [--seeds 0 1 2]
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
from _common import environment, markdown_table, per_seed, publish

import skanomaly._stream
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


def thresholds(fit, cal, test, anomalous, fprs, memory):
    """``(label, target, realized FPR, recall)`` of each threshold fitted
    on ``fit`` (and calibrated on ``cal``)."""
    detector = EfficientNetGaussianDetector(contamination=0.05, memory=memory).fit(fit)
    # (label, target, offset, the scores it applies to: test normals, anomalies)
    scores = (detector.score_samples(test), detector.score_samples(anomalous))
    found = [("contamination=0.05 (the default)", 0.05, detector.offset_, scores)]
    # threshold="chi2" is the law of the pooled distances alone: it
    # thresholds the pooled score, next to that score's out-of-fold one.
    for threshold in ("out_of_fold", "chi2"):
        pooled = EfficientNetGaussianDetector(
            contamination=0.05, image_score="pooled", threshold=threshold, memory=memory
        ).fit(fit)
        label = f"contamination=0.05, image_score='pooled', threshold={threshold!r}"
        pooled_scores = (pooled.score_samples(test), pooled.score_samples(anomalous))
        found.append((label, 0.05, pooled.offset_, pooled_scores))
    for fpr in fprs:
        detector.calibrate(cal, fpr=fpr)
        found.append((f"calibrate(fpr={fpr})", fpr, detector.offset_, scores))
    return [
        (label, target, np.mean(normal < offset), np.mean(defective < offset))
        for label, target, offset, (normal, defective) in found
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-fit", type=int, default=100)
    parser.add_argument("--n-calibrate", type=int, default=100)
    parser.add_argument("--fprs", type=float, nargs="+", default=[0.01, 0.05, 0.1])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--score-sample",
        type=int,
        default=skanomaly._stream.SCORE_SAMPLE_SIZE,
        help="training images the default score's threshold measures",
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "threshold.md"))
    args = parser.parse_args()
    default_sample = skanomaly._stream.SCORE_SAMPLE_SIZE
    # Looked up by each fit (FitState), so that a run can compare sizes.
    skanomaly._stream.SCORE_SAMPLE_SIZE = args.score_sample

    rows = []
    for name, normal, anomalous in datasets(args):
        # Small sets (cookies) are split in proportion instead.
        n_fit = min(args.n_fit, len(normal) // 3)
        n_cal = min(args.n_calibrate, len(normal) // 3)
        by_seed = []
        for seed in args.seeds:
            shuffled = normal[np.random.default_rng(seed).permutation(len(normal))]
            fit, cal = shuffled[:n_fit], shuffled[n_fit : n_fit + n_cal]
            with tempfile.TemporaryDirectory() as memory:
                by_seed.append(
                    thresholds(fit, cal, shuffled[n_fit + n_cal :], anomalous, args.fprs, memory)
                )
        for found in zip(*by_seed):
            label, target = found[0][:2]
            rows.append(
                [
                    name,
                    f"{n_fit}/{n_cal}/{len(normal) - n_fit - n_cal}",
                    label,
                    f"{target:.2f}",
                    per_seed([fpr for *_, fpr, _ in found]),
                    per_seed([recall for *_, recall in found]),
                ]
            )
    table = markdown_table(
        [
            "data",
            "fit/calibrate/test normals",
            "threshold",
            "target FPR",
            f"realized FPR (seeds {', '.join(map(str, args.seeds))}, mean)",
            "recall on anomalies (same)",
        ],
        rows,
    )
    sample = (
        ""
        if args.score_sample == default_sample
        else f"The default score's threshold measured at most {args.score_sample} training "
        f"images here (--score-sample), not {default_sample}.\n\n"
    )
    text = f"### Thresholds from normal images only\n\n{sample}{table}\n\n{environment()}\n"
    publish(text, args.out)


if __name__ == "__main__":
    main()
