"""The detector's image scores, end to end: ``image_score="pooled"``
against ``"pooled+patches"``.

``"pooled+patches"`` ships what benchmarks/bench_fusion.py measured on
cached features: the pooled distance plus the worst patch's distance to its
nearest training patch, each standardised by normal images alone. Here the
estimator itself is fitted and scored, so the figures include what the
benchmark could not: the standardisation and ``offset_`` that ``fit``
derives from at most 16 training images, and the time ``score_samples``
takes. On bench_peers' splits (magnetic tiles, cookies, ELPV mono; 60
training images) and every PIPED paper type with impurities (28 training
images), seeds 0-2, Lite0 at its default 224 px: the fused score as it
ships (its worst patch searched in the first tenth of the patch memory,
``score_coreset=0.1``), searched in the whole memory, and with max pooling
(a lever of its own, bench_detection):

- image AUROC of ``score_samples``, mean over the seeds;
- the share of the test split's normal images that ``predict`` flags, with
  ``contamination=0.05`` (what the threshold promises);
- seconds per image of ``score_samples`` (batch 16), median over splits.

PIPED was in neither the choice of the patch features nor of
``patch_neighborhood``, nor in the trial of max pooling with the fused score
or of ``score_coreset`` (on the tiles, cookies and ELPV); it guards against
regressions. About 12 minutes.

    python benchmarks/bench_image_score.py [--out benchmarks/results/image_score.md]
"""

import sys
import time

import numpy as np
from _common import markdown_table
from _detection_data import publish_pool_table
from _detection_rules import auroc

from skanomaly import EfficientNetGaussianDetector

SEEDS = range(3)
# (column, parameters); the first is the default.
CONFIGS = [
    ("pooled", {"image_score": "pooled"}),
    ("pooled+patches", {"image_score": "pooled+patches"}),
    ("pooled+patches, whole memory", {"image_score": "pooled+patches", "score_coreset": 1.0}),
    ("pooled+patches, max pooling", {"image_score": "pooled+patches", "pooling": "max"}),
]


def evaluate(pool, seed, parameters):
    """``(AUROC, share of normal test images flagged, s/img of score_samples)``."""
    train, test = pool.splits[seed]
    detector = EfficientNetGaussianDetector(explain_method="spatial", **parameters)
    detector.fit(pool.images(train))
    started = time.perf_counter()
    scores = detector.score_samples(pool.images(test))
    seconds = (time.perf_counter() - started) / len(test)
    y = pool.y[test]
    flagged = float(np.mean(scores[y == 1] < detector.offset_))
    return auroc(y, -scores), flagged, seconds


def table(pools, names):
    rows, gains, times = [], {c: [] for c, _ in CONFIGS[1:]}, {c: [] for c, _ in CONFIGS}
    for name in names:
        started = time.perf_counter()
        row, base = [name], None
        for column, parameters in CONFIGS:
            results = np.array([evaluate(pools[name], seed, parameters) for seed in SEEDS])
            mean_auroc, mean_flagged = results[:, 0].mean(), results[:, 1].mean()
            times[column].extend(results[:, 2])
            if base is None:
                base = mean_auroc
            else:
                gains[column].append(mean_auroc - base)
            seeds = " / ".join(f"{a:.3f}" for a in results[:, 0])
            row.append(f"{seeds} ({mean_auroc:.3f}); {mean_flagged:.0%}")
        rows.append(row)
        print(f"{row} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    header = ["data set", *(f"{c}: AUROC seeds 0 / 1 / 2 (mean); flagged" for c, _ in CONFIGS)]
    summary = [
        f"`{column}` against `pooled`: {np.mean(g):+.3f} on average over the {len(g)} "
        f"data sets, higher on {(np.array(g) > 0.0005).sum()}, lower on "
        f"{(np.array(g) < -0.0005).sum()} (largest loss {min(g):+.3f})."
        for column, g in gains.items()
    ]
    summary += [
        f"`score_samples` with `{column}`: {np.median(t) * 1000:.1f} ms per image (median "
        "over splits)."
        for column, t in times.items()
    ]
    return markdown_table(header, rows) + "\n\n" + "\n".join(f"- {s}" for s in summary)


def main():
    publish_pool_table(
        "image_score",
        __doc__,
        "Image scores of the detector: pooled, and pooled plus the worst patch",
        'Lite0, mean pooling unless named, `explain_method="spatial"` (explain is not '
        'measured); "flagged" is the share of the test split\'s normal images below '
        "`offset_` at `contamination=0.05`, mean of seeds.",
        table,
        SEEDS,
    )


if __name__ == "__main__":
    main()
