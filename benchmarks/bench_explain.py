"""Benchmark of the explain() methods: pixel AUROC, AU-PRO, s/image.

Reads the optional third-party data under ``../shared/data`` (magnetic tiles,
cookies and the PIPED paper types, see its README), fits one detector per
data set on normal images and times ``explain`` for each variant on a test
set. The median seconds per image come from ``--repeats`` timed runs (after
a warm-up); the metrics from the first. Writes the tables to
``benchmarks/results/explain.md``.

    python benchmarks/bench_explain.py
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

from skanomaly import EfficientNetGaussianDetector
from skanomaly.datasets import load_cookies, load_magnetic_tile, load_piped, shared_data_dir
from skanomaly.metrics import pixel_roc_auc, pro_score

ROOT = Path(__file__).resolve().parents[1]

# name -> explain parameters (beyond the detector defaults)
VARIANTS = {
    "descent": {},
    "descent lam=0.01": {"lam": 0.01},
    "descent lam=0.1": {"lam": 0.1},
    "descent lam=1": {"lam": 1.0},
    # The blur of every map, in pixels at the network's input size
    # (PatchCore's 4 is the default); written to their own page.
    "descent smoothing=0": {"smoothing": 0.0},
    "descent smoothing=2": {"smoothing": 2.0},
    "descent smoothing=8": {"smoothing": 8.0},
    "spatial": {"explain_method": "spatial"},
    "patches": {"explain_method": "patches"},
    "reference": {
        "explain_method": "reference",
        "n_steps": 50,
        "step_size": 0.005,
        "smoothing": 0.0,
    },
}
# Variants of a fit parameter: name -> (fit parameters, explain parameters),
# a detector fitted with the former (and the defaults) explaining with the
# latter.
FIT_VARIANTS = {
    "descent patch_neighborhood=1": ({"patch_neighborhood": 1}, {}),
    "descent patch_neighborhood=3": ({"patch_neighborhood": 3}, {}),
    "descent patch_coreset=0.1": ({"patch_coreset": 0.1}, {}),
    "patches patch_coreset=0.1": ({"patch_coreset": 0.1}, {"explain_method": "patches"}),
}
# The seed's method takes about a second per image: not on every PIPED type.
SLOW = {"reference"}
# Not in the default run: their page is benchmarks/results/explain_smoothing.md
# (docs/benchmarks.rst has its command).
SMOOTHING = {v for v in VARIANTS if "smoothing" in v}


def magnetic_tile(n_fit, n_test):
    """Normal tiles to fit; a test set of half normal tiles, half defective
    ones taken from the defect classes in turn (non-empty masks only), at
    their original sizes."""
    free = load_magnetic_tile(classes=["Free"], max_per_class=n_fit + n_test // 2)
    defects = load_magnetic_tile(classes=["Blowhole", "Break", "Crack", "Fray", "Uneven"])
    by_class = {}
    for i in np.flatnonzero([m.any() for m in defects.masks]):
        by_class.setdefault(defects.defect_type[i], []).append(i)
    picked = [i for group in zip(*by_class.values()) for i in group][: n_test - n_test // 2]
    X = list(free.X[n_fit:]) + [defects.X[i] for i in picked]
    masks = list(free.masks[n_fit:]) + [defects.masks[i] for i in picked]
    return list(free.X[:n_fit]), X, masks


def cookies(n_fit, n_test):
    """Cookies halved to 288x384; normal ones to fit, then a test set of
    half normal, half cracked cookies with their masks."""
    data = load_cookies(resize=(384, 288))
    normal, cracked = np.flatnonzero(data.y == 1), np.flatnonzero(data.y == -1)
    test = np.r_[normal[n_fit : n_fit + n_test // 2], cracked[: n_test - n_test // 2]]
    return data.X[normal[:n_fit]], data.X[test], data.masks[test]


def piped(paper_type, seed=0):
    """24 normal patches to fit; the other 24 normal and the 48 defective
    ones to test (a seeded split)."""
    data = load_piped(paper_type, resize=128)
    rng = np.random.default_rng(seed)
    normal = rng.permutation(np.flatnonzero(data.y == 1))
    test = np.r_[normal[24:], np.flatnonzero(data.y == -1)]
    return data.X[normal[:24]], data.X[test], data.masks[test]


def data_sets(args, cookies_fit=None):
    """``(name, (fit, X, masks))`` of each data set named in ``args``;
    ``cookies_fit`` normal cookies to fit (default ``args.n_fit``)."""
    if "magnetic_tile" in args.datasets:
        yield "magnetic tile", magnetic_tile(args.n_fit, args.n_test)
    if "cookies" in args.datasets:
        yield "cookies", cookies(cookies_fit or args.n_fit, args.n_test)
    if "piped" in args.datasets:
        for paper_type in args.piped_types:
            yield f"PIPED {paper_type}", piped(paper_type, args.piped_seed)


def map_metrics(masks, maps):
    """``(pixel AUROC, AU-PRO up to FPR 0.3, inside/outside ratio)`` of
    ``maps`` against ``masks``; shared with ``bench_descent_gate.py``."""
    auroc = pixel_roc_auc(masks, maps)
    pro = pro_score(masks, maps, max_fpr=0.3)
    # inside/outside: mean map inside the defect over mean outside it, on the
    # defective images, after subtracting the smallest value of all maps (so a
    # constant offset, which changes neither AUROC nor AU-PRO, does not count).
    low = min(float(m.min()) for m in maps)
    ratios = [
        (m - low)[mask].mean() / max((m - low)[~mask].mean(), 1e-12)
        for mask, m in zip(masks, maps)
        if mask.any() and (~mask).any()
    ]
    return auroc, pro, float(np.mean(ratios))


def run(args):
    torch.set_num_threads(args.threads)
    rows = []
    for name, (fit, X, masks) in data_sets(args):
        # (detector, its parameters as fitted) per fit variant: every explain
        # variant starts from those, not from the previous variant's.
        fitted = {}
        for variant in args.variants:
            if variant in SLOW and name.startswith("PIPED"):
                continue
            options, explain = FIT_VARIANTS.get(variant, ({}, VARIANTS.get(variant)))
            key = tuple(sorted(options.items()))
            if key not in fitted:
                new = EfficientNetGaussianDetector(batch_size=args.batch_size, **options)
                fitted[key] = (new.fit(fit), new.get_params())
            detector, defaults = fitted[key]
            detector.set_params(**{**defaults, **explain})
            detector.explain(X[:1])  # warm-up
            seconds = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                maps = detector.explain(X)
                seconds.append((time.perf_counter() - start) / len(X))
            auroc, pro, ratio = map_metrics(masks, maps)
            row = [variant, name, auroc, pro, ratio, statistics.median(seconds)]
            rows.append(row)
            print("| {} | {} | {:.3f} | {:.3f} | {:.2f} | {:.3f} |".format(*row), flush=True)
    return rows


def piped_summary(rows):
    """Mean over the PIPED types, and on how many the default is at least
    as good as the spatial map on both metrics."""
    by = {}
    for variant, name, auroc, pro, _, seconds in rows:
        if name.startswith("PIPED"):
            by.setdefault(variant, {})[name] = (auroc, pro, seconds)
    if "descent" not in by or "spatial" not in by:
        return []
    spatial = by["spatial"]
    out = []
    for variant, results in by.items():
        wins = sum(
            results[n][0] >= spatial[n][0] and results[n][1] >= spatial[n][1] for n in results
        )
        out.append(
            [
                variant,
                f"{np.mean([r[0] for r in results.values()]):.3f}",
                f"{np.mean([r[1] for r in results.values()]):.3f}",
                f"{wins}/{len(results)}",
                f"{np.mean([r[2] for r in results.values()]):.3f}",
            ]
        )
    return out


def data_arguments(parser):
    """The data options, shared with ``bench_segment.py``."""
    parser.add_argument("--n-fit", type=int, default=30)
    parser.add_argument("--n-test", type=int, default=40)
    parser.add_argument("--datasets", nargs="+", default=["magnetic_tile", "cookies", "piped"])
    parser.add_argument(
        "--piped-types", nargs="+", default=None, help="default: every paper type with masks"
    )
    parser.add_argument(
        "--piped-seed", type=int, default=0, help="seed of the PIPED split (the pages use 0)"
    )


def check_data(args):
    """Exit when the shared data is absent; fill in the PIPED types."""
    if shared_data_dir() is None:
        sys.exit("The shared data is absent: set SKANOMALY_DATA (see ../shared/data/README.md).")
    if args.piped_types is None:
        from skanomaly.datasets import piped_types

        # PA_ZPB01_RL's masks cannot be paired; PU_PNG01_TL has no defects.
        args.piped_types = [t for t in piped_types() if t not in ("PA_ZPB01_RL", "PU_PNG01_TL")]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    data_arguments(parser)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16, help="the detector default")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=[v for v in [*VARIANTS, *FIT_VARIANTS] if v not in SMOOTHING],
        choices=[*VARIANTS, *FIT_VARIANTS],
    )
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "explain.md"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    check_data(args)
    rows = run(args)
    # Quoted, so that the page's command runs as printed (variant names have spaces).
    command = shlex.join(sys.argv[1:] if argv is None else argv)
    text = "\n".join(
        [
            "# explain() benchmark",
            "",
            f"Generated by `python benchmarks/bench_explain.py {command}`. {environment()}",
            "",
            "Backbone tf_efficientnet_lite0 (bundled offline weights) at its 224x224 input. "
            f"Magnetic tiles and cookies: fit on the first {args.n_fit} normal images, "
            f"{args.n_test} test images, half normal, half defective (tiles: defect classes "
            "in turn, at their original sizes; cookies: halved to 288x384). PIPED: each "
            "paper type with masks, fit on 24 normal patches, test on the other 24 and the "
            f"48 defective ones (split of seed {args.piped_seed}). inside/outside: mean map "
            "inside the defect over mean outside it, averaged over defective images, after "
            "subtracting the minimum of all maps. s/image: median over "
            f"{args.repeats} timed runs of explain() on the test set, per image, after a "
            "warm-up.",
            "",
            "Variants: "
            + "; ".join(
                f"`{k}`: {v or 'defaults'}" for k, v in VARIANTS.items() if k in args.variants
            )
            + "".join(
                f"; `{k}`: {explain or 'defaults'}, of a detector fitted with {fit}"
                for k, (fit, explain) in FIT_VARIANTS.items()
                if k in args.variants
            ),
            "",
            markdown_table(
                [
                    "variant",
                    "data set",
                    "pixel AUROC",
                    "AU-PRO (FPR<=0.3)",
                    "inside/outside",
                    "s/image",
                ],
                [
                    [v, n, f"{a:.3f}", f"{p:.3f}", f"{r:.2f}", f"{s:.3f}"]
                    for v, n, a, p, r, s in rows
                ],
            ),
            "",
            "## PIPED, all paper types with masks",
            "",
            markdown_table(
                [
                    "variant",
                    "mean pixel AUROC",
                    "mean AU-PRO",
                    "types >= spatial on both",
                    "s/image",
                ],
                piped_summary(rows),
            ),
            "",
        ]
    )
    publish(text, None if args.no_write else args.output)


if __name__ == "__main__":
    main()
