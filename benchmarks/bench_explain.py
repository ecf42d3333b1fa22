"""Benchmark of the explain() variants: pixel AUROC, AU-PRO, s/image.

Reads the optional third-party data under ``../shared/data`` (magnetic tiles
and cookies, see its README), fits one detector per data set on normal images
and times ``explain`` for each variant on a test set of half normal, half
defective images. Writes the table to ``benchmarks/results/explain.md``.

    python benchmarks/bench_explain.py --n-fit 24 --n-test 16
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import environment, publish

from skanomaly import EfficientNetGaussianDetector
from skanomaly.datasets import shared_data_dir

ROOT = Path(__file__).resolve().parents[1]

# name -> explain parameters (beyond the detector defaults)
VARIANTS = {
    "reference": {"explain_method": "reference", "smoothing": 0.0, "n_steps": 50, "step_size": 0.005},
    "reference+blur": {"explain_method": "reference", "smoothing": 4.0, "n_steps": 50, "step_size": 0.005},
    "spatial": {"explain_method": "spatial", "smoothing": 4.0},
    "weighted": {"explain_method": "weighted", "smoothing": 4.0, "n_steps": 50, "step_size": 0.005},
    "spatial_grad": {"explain_method": "spatial_grad", "smoothing": 4.0, "n_steps": 10, "step_size": 0.02},
    "spatial_grad_prior": {
        "explain_method": "spatial_grad_prior", "smoothing": 4.0, "n_steps": 10, "step_size": 0.02
    },
}


def load_magnetic_tile(root, n_fit, n_test):
    """Normal tiles to fit; a test set of half normal tiles, half defective
    ones taken from the defect classes in turn (non-empty masks only)."""
    from skanomaly.datasets import load_magnetic_tile as load

    free = load(root, classes=["Free"], max_per_class=n_fit + n_test // 2)
    defects = load(root, classes=["Blowhole", "Break", "Crack", "Fray", "Uneven"])
    by_class = {}
    for i in np.flatnonzero([m.any() for m in defects.masks]):
        by_class.setdefault(defects.defect_type[i], []).append(i)
    picked = [i for group in zip(*by_class.values()) for i in group][: n_test - n_test // 2]
    X = list(free.X[n_fit:]) + [defects.X[i] for i in picked]
    masks = list(free.masks[n_fit:]) + [defects.masks[i] for i in picked]
    return list(free.X[:n_fit]), X, masks


def load_cookies(root, n_fit, n_test):
    """Cookies halved to 288x384; normal ones to fit, then a test set of
    half normal, half cracked cookies with their masks."""
    from skanomaly.datasets import load_cookies as load

    cookies = load(root, resize=(384, 288))
    normal, cracked = np.flatnonzero(cookies.y == 1), np.flatnonzero(cookies.y == -1)
    test = np.r_[normal[n_fit : n_fit + n_test // 2], cracked[: n_test - n_test // 2]]
    return cookies.X[normal[:n_fit]], cookies.X[test], cookies.masks[test]


def _metrics(masks, maps):
    from skanomaly.metrics import pixel_roc_auc, pro_score

    auroc = pixel_roc_auc(masks, maps)
    pro = pro_score(masks, maps, max_fpr=0.3)
    # inside/outside: mean map inside the defect over mean outside it, on the
    # defective images, after subtracting the smallest value of all maps (so a
    # constant offset, which changes neither AUROC nor AU-PRO, does not count).
    low = min(float(m.min()) for m in maps)
    ratios = []
    for mask, m in zip(masks, maps):
        m = m - low
        if mask.any() and (~mask).any():
            ratios.append(m[mask].mean() / max(m[~mask].mean(), 1e-12))
    return auroc, pro, float(np.mean(ratios))


def run(args):
    torch.set_num_threads(args.threads)
    rows = []
    loaders = {"magnetic_tile": load_magnetic_tile, "cookies": load_cookies}
    for dataset in args.datasets:
        fit, X, masks = loaders[dataset](shared_data_dir() / dataset, args.n_fit, args.n_test)
        det = EfficientNetGaussianDetector(batch_size=args.batch_size)
        det.fit(fit)
        for name in args.variants:
            det.set_params(**VARIANTS[name])
            det.explain(X[:1])  # warm up
            t0 = time.perf_counter()
            maps = det.explain(X)
            seconds = (time.perf_counter() - t0) / len(X)
            auroc, pro, ratio = _metrics(masks, maps)
            row = (name, dataset, auroc, pro, ratio, seconds)
            rows.append(row)
            print("| {} | {} | {:.3f} | {:.3f} | {:.2f} | {:.3f} |".format(*row), flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-fit", type=int, default=24)
    parser.add_argument("--n-test", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--datasets", nargs="+", default=["magnetic_tile", "cookies"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "explain.md"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if shared_data_dir() is None:
        sys.exit("The shared data is absent: set SKANOMALY_DATA (see ../shared/data/README.md).")
    rows = run(args)
    command = " ".join(sys.argv[1:] if argv is None else argv)
    header = [
        "# explain() benchmark",
        "",
        f"Generated by `python benchmarks/bench_explain.py {command}`. {environment()}",
        "",
        f"Backbone tf_efficientnet_lite0 (bundled offline weights) at its 224x224 input; "
        f"fit on the first {args.n_fit} normal images of each data set; "
        f"{args.n_test} test images per data set, half normal, half defective "
        "(magnetic tiles: defect classes in turn, at their original sizes; cookies: "
        "halved to 288x384). Maps at the input resolution. inside/outside: mean map "
        "inside the defect over mean outside it, averaged over defective images, after "
        "subtracting the minimum of all maps. "
        "s/image: wall time of explain() over the test set, per image, after a warm-up.",
        "",
        "Variant parameters: "
        + "; ".join(f"`{k}`: {v}" for k, v in VARIANTS.items() if k in args.variants),
        "",
        "| variant | data set | pixel AUROC | AU-PRO (FPR<=0.3) | inside/outside | s/image |",
        "|---|---|---|---|---|---|",
    ]
    table = "\n".join(
        header + ["| {} | {} | {:.3f} | {:.3f} | {:.2f} | {:.3f} |".format(*r) for r in rows]
    )
    publish(table + "\n", None if args.no_write else args.output)


if __name__ == "__main__":
    main()
