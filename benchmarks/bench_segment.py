"""Benchmark of segment() and regions(): pixel false-positive rate, region
recall and mask IoU against the pixel threshold's target.

On the splits of ``bench_explain.py`` (magnetic tiles, cookies and the PIPED
paper types with masks; cookies fit on 15 normal images instead of 30, which
would leave one normal test cookie), fits the default detector on normal
images and sets ``pixel_threshold_`` two ways, at target pixel
false-positive rates of 0.01 and 0.001:

* ``training``: ``calibrate_pixels()``, from the sample of training images
  that ``fit`` keeps, explained out-of-fold for the patch memory (the
  default that ``segment`` uses);
* ``held-out``: ``calibrate_pixels(X)`` on normal test images. The realized
  rate of each normal test image is measured under the threshold set on the
  other half of them (two seeded folds), so no image sets its own
  threshold; on the defective images, the threshold of all normal test
  images.

Then it measures, at each image's resolution: the realized pixel FPR (the
share of normal test pixels above the threshold, pooled), the share of
normal test images with at least one region, the region recall (the share
of ground-truth 8-connected defect regions that a predicted region
overlaps) and the mean mask IoU of the defective images, next to the IoU of
the best single threshold chosen with the masks themselves (an oracle: what
the maps allow). A check of the out-of-fold default: a detector fitted on
half of the training images, whose ``calibrate_pixels()`` threshold is
applied to the maps of the other half, truly held out. Timings are medians
of ``--repeats`` runs. Writes ``benchmarks/results/segment.md``.

    python benchmarks/bench_segment.py
"""

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import environment, markdown_table, publish
from bench_explain import check_data, data_arguments, data_sets

from skanomaly import EfficientNetGaussianDetector
from skanomaly.metrics import region_hits
from skanomaly.segmentation import map_sample, masks_from_maps, pixel_threshold

ROOT = Path(__file__).resolve().parents[1]
FPRS = (0.01, 0.001)
# The goal for the mean mask IoU on magnetic tiles and cookies at the
# default threshold (training sample, fpr 0.01); see the results page.
IOU_GOAL = 0.3
# Defective images whose regions() call is timed.
N_TIMED = 8


def _threshold(maps, fpr):
    """calibrate_pixels(X)'s threshold, from the maps of X (computed once)."""
    return pixel_threshold([map_sample(m) for m in maps], fpr)


def _flags(maps, threshold):
    """Pixels above ``threshold`` and their total, over ``maps``."""
    return sum(int((m > threshold).sum()) for m in maps), sum(m.size for m in maps)


def _halves(n, seed=0):
    order = np.random.default_rng(seed).permutation(n)
    return order[: n // 2], order[n // 2 :]


def _cross_fpr(maps, fpr):
    """Pooled realized FPR and share of images with a region of the normal
    ``maps``, each half under the threshold set on the other half."""
    halves = _halves(len(maps))
    flagged = total = with_region = 0
    for calibrate, measure in (halves, halves[::-1]):
        threshold = _threshold([maps[i] for i in calibrate], fpr)
        part = [maps[i] for i in measure]
        f, t = _flags(part, threshold)
        flagged, total = flagged + f, total + t
        with_region += sum(bool((m > threshold).any()) for m in part)
    return flagged / total, with_region / len(maps)


def out_of_fold_check(fit, batch_size, fpr=FPRS[0]):
    """Fit on half of ``fit``; the realized FPR on the other half under the
    default ``calibrate_pixels()`` threshold and under the in-sample one
    (the first half's own maps)."""
    first, second = _halves(len(fit))
    detector = EfficientNetGaussianDetector(batch_size=batch_size).fit([fit[i] for i in first])
    held = detector.explain([fit[i] for i in second])
    default = detector.calibrate_pixels(fpr=fpr).pixel_threshold_
    in_sample = _threshold(detector.explain([fit[i] for i in first]), fpr)
    rates = []
    for threshold in (default, in_sample):
        flagged, total = _flags(held, threshold)
        rates.append(flagged / total)
    return rates


def region_recall(truths, maps, threshold):
    """The share of the 8-connected regions of the ``truths`` masks that a
    region of ``maps > threshold`` overlaps."""
    hits = region_hits(truths, maps, threshold)
    return hits["found"].sum() / max(hits["defects"].sum(), 1)


def mean_iou(truths, predicted):
    """Mean IoU of the masks, over the images with a defect."""
    return float(
        np.mean([(t & p).sum() / (t | p).sum() for t, p in zip(truths, predicted) if t.any()])
    )


def oracle_iou(truths, maps, n_thresholds=60):
    """The mean IoU of the best single threshold (chosen with the masks)."""
    values = np.concatenate([map_sample(m) for m in maps])
    candidates = np.quantile(values, np.linspace(0.5, 0.999, n_thresholds))
    return max(mean_iou(truths, [m > c for m in maps]) for c in candidates)


def _median_seconds(repeats, function, *args, **kwargs):
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(*args, **kwargs)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def run(args):
    torch.set_num_threads(args.threads)
    rows, per_set = [], []
    for name, (fit, X, masks) in data_sets(args, cookies_fit=args.cookies_fit):
        detector = EfficientNetGaussianDetector(batch_size=args.batch_size).fit(fit)
        truths = [np.asarray(m, dtype=bool) for m in masks]
        defective = [i for i, t in enumerate(truths) if t.any()]
        normal = [i for i, t in enumerate(truths) if not t.any()]
        maps = detector.explain(X)
        normal_maps = [maps[i] for i in normal]
        defect_maps, defect_truths = [maps[i] for i in defective], [truths[i] for i in defective]
        calibration = _median_seconds(args.repeats, detector.calibrate_pixels, fpr=FPRS[0])
        timed = [X[i] for i in defective[:N_TIMED]]
        regions = _median_seconds(args.repeats, detector.regions, timed) / len(timed)
        for fpr in FPRS:
            if detector.pixel_calibration_["fpr"] != fpr:
                detector.calibrate_pixels(fpr=fpr)
            thresholds = {
                "training": detector.pixel_threshold_,
                "held-out": _threshold(normal_maps, fpr),
            }
            for source, threshold in thresholds.items():
                if source == "training":
                    flagged, total = _flags(normal_maps, threshold)
                    realized = flagged / total
                    with_region = np.mean([(m > threshold).any() for m in normal_maps])
                else:
                    realized, with_region = _cross_fpr(normal_maps, fpr)
                predicted = masks_from_maps(defect_maps, threshold)
                row = [
                    name,
                    source,
                    fpr,
                    threshold,
                    realized,
                    with_region,
                    region_recall(defect_truths, defect_maps, threshold),
                    mean_iou(defect_truths, predicted),
                ]
                rows.append(row)
                print(
                    "| {} | {} | {:g} | {:.3g} | {:.4f} | {:.2f} | {:.2f} | {:.3f} |".format(*row),
                    flush=True,
                )
        per_set.append(
            [
                name,
                len(fit),
                len(normal),
                len(defective),
                oracle_iou(defect_truths, defect_maps),
                *out_of_fold_check(fit, args.batch_size),
                calibration,
                regions,
            ]
        )
        print(per_set[-1], flush=True)
    return rows, per_set


def _formatted(rows):
    return [
        [n, s, f"{f:g}", f"{t:.3g}", f"{r:.4f}", f"{w:.2f}", f"{rec:.2f}", f"{iou:.3f}"]
        for n, s, f, t, r, w, rec, iou in rows
    ]


def piped_means(rows):
    """Each column's mean over the PIPED types, per threshold source and fpr."""
    out = []
    for fpr in FPRS:
        for source in ("training", "held-out"):
            group = [r for r in rows if r[0].startswith("PIPED") and r[1] == source and r[2] == fpr]
            if group:
                means = np.mean([r[4:] for r in group], axis=0)
                out.append(
                    [
                        f"PIPED ({len(group)} types)",
                        source,
                        f"{fpr:g}",
                        "",
                        f"{means[0]:.4f}",
                        f"{means[1]:.2f}",
                        f"{means[2]:.2f}",
                        f"{means[3]:.3f}",
                    ]
                )
    return out


def goal_line(rows):
    """Whether the IoU goal is met on magnetic tiles and cookies."""
    default = {r[0]: r[7] for r in rows if r[1] == "training" and r[2] == FPRS[0]}
    found = {name: default[name] for name in ("magnetic tile", "cookies") if name in default}
    if not found:
        return ""
    met = all(iou >= IOU_GOAL for iou in found.values())
    measured = ", ".join(f"{name} {iou:.3f}" for name, iou in found.items())
    return (
        f"**Goal: mean mask IoU >= {IOU_GOAL} on magnetic tiles and cookies with the "
        f"default threshold (training sample, fpr {FPRS[0]:g}). Measured: {measured}: "
        f"{'met' if met else 'not met'}.**"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    data_arguments(parser)
    parser.add_argument(
        "--cookies-fit",
        type=int,
        default=15,
        help="normal cookies to fit on (of 31; bench_explain's 30 leave one)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "segment.md"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    check_data(args)
    rows, per_set = run(args)
    command = shlex.join(sys.argv[1:] if argv is None else argv)
    header = [
        "data set",
        "threshold from",
        "target FPR",
        "threshold",
        "realized pixel FPR",
        "normal images with a region",
        "region recall",
        "mean IoU",
    ]
    text = "\n".join(
        [
            "# segment() and regions() benchmark",
            "",
            f"Generated by `python benchmarks/bench_segment.py {command}`. {environment()}",
            "",
            'Default detector (tf_efficientnet_lite0, `explain_method="descent"`), on the splits '
            "of `bench_explain.py`: magnetic tiles fit on the first "
            f"{args.n_fit} normal images and test on {args.n_test} images, half normal, half "
            f"defective; cookies fit on {args.cookies_fit} (of 31 normal cookies) and test on "
            f"the other normal ones and {args.n_test - args.n_test // 2} cracked ones; each "
            "PIPED paper type with masks fits on 24 normal patches and tests on the other 24 "
            f"and the 48 defective ones (split of seed {args.piped_seed}). Pixel threshold "
            "from `training`: "
            "`calibrate_pixels()`, the sample of (at most 16) training images that `fit` keeps, "
            "each explained without its own patches in the patch memory; from `held-out`: "
            "`calibrate_pixels(X)` on the normal test images, each half of them measured under "
            "the threshold of the other half (two seeded folds), the defective images under "
            "that of all of them. Realized pixel FPR: the share of the normal test images' "
            "pixels above the threshold, at their own resolution. Region recall: the share of "
            "the ground-truth 8-connected defect regions that a predicted region overlaps. Mean "
            "IoU: of the predicted and true masks of the defective images.",
            "",
            goal_line(rows),
            "",
            markdown_table(header, _formatted(rows) + piped_means(rows)),
            "",
            "## What the maps allow, the out-of-fold check and the cost",
            "",
            "Oracle IoU: the mean IoU of the best single threshold, chosen with the defect "
            "masks (not a method: the ceiling of thresholding these maps). Out-of-fold check: a "
            "detector fitted on half of the training images (seeded), the realized pixel FPR "
            f"(target {FPRS[0]:g}) on the other half, truly held out, under its default "
            "`calibrate_pixels()` threshold and under the in-sample threshold of the first "
            "half's own maps. `calibrate_pixels()`: "
            f"median seconds over {args.repeats} runs (explaining the training sample again). "
            f"`regions()`: median seconds per image over {args.repeats} runs on {N_TIMED} "
            "defective images (nearly all of it is `explain`).",
            "",
            markdown_table(
                [
                    "data set",
                    "fit images",
                    "normal test",
                    "defective test",
                    "oracle IoU",
                    "held-out FPR, default",
                    "held-out FPR, in-sample",
                    "calibrate_pixels() s",
                    "regions() s/image",
                ],
                [
                    [n, a, b, c, f"{o:.3f}", f"{d:.4f}", f"{i:.4f}", f"{cal:.2f}", f"{reg:.3f}"]
                    for n, a, b, c, o, d, i, cal, reg in per_set
                ],
            ),
            "",
        ]
    )
    publish(text, None if args.no_write else args.output)


if __name__ == "__main__":
    main()
