"""Benchmark of the explain() variants: pixel AUROC, AU-PRO, s/image.

Reads the optional third-party data under ``../shared/data`` (magnetic tiles
and cookies, see its README), fits one detector per data set on normal images
and times ``explain`` for each variant on a test set of half normal, half
defective images. Writes the table to ``docs/explain_benchmark.md``.

    python benchmarks/bench_explain.py --n-fit 24 --n-test 16
"""

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from skanomaly import EfficientNetGaussianDetector
from skanomaly import localization

ROOT = Path(__file__).resolve().parents[1]

# name -> explain parameters (beyond the detector defaults)
VARIANTS = {
    "reference": dict(explain_method="reference", smoothing=0.0, n_steps=50, step_size=0.005),
    "reference+blur": dict(explain_method="reference", smoothing=4.0, n_steps=50, step_size=0.005),
    "spatial": dict(explain_method="spatial", smoothing=4.0),
    "weighted": dict(explain_method="weighted", smoothing=4.0, n_steps=50, step_size=0.005),
    "spatial_grad": dict(explain_method="spatial_grad", smoothing=4.0, n_steps=10, step_size=0.02),
    "spatial_grad_prior": dict(
        explain_method="spatial_grad_prior", smoothing=4.0, n_steps=10, step_size=0.02
    ),
}


def data_dir():
    try:
        from skanomaly.datasets import shared_data_dir

        d = shared_data_dir()
        if d is not None:
            return Path(d)
    except Exception:
        pass
    return ROOT.parent / "shared" / "data"


def _read(path, mode="RGB", scale=1):
    with Image.open(path) as im:
        im = im.convert(mode)
        if scale != 1:
            size = (im.width // scale, im.height // scale)
            im = im.resize(size, Image.BILINEAR if mode != "L" else Image.NEAREST)
        return np.asarray(im)


def load_magnetic_tile(n_fit, n_test):
    root = data_dir() / "magnetic_tile"
    free = sorted((root / "MT_Free" / "Imgs").glob("*.jpg"))
    fit = [_read(p) for p in free[:n_fit]]
    normal = free[n_fit : n_fit + n_test // 2]
    classes = ["MT_Blowhole", "MT_Break", "MT_Crack", "MT_Fray", "MT_Uneven"]
    lists = {c: sorted((root / c / "Imgs").glob("*.jpg")) for c in classes}
    defective, i = [], 0
    while len(defective) < n_test - len(normal):
        for c in classes:
            if i < len(lists[c]) and len(defective) < n_test - len(normal):
                mask = _read(lists[c][i].with_suffix(".png"), "L") >= 128
                if mask.any():
                    defective.append((lists[c][i], mask))
        i += 1
    X = [_read(p) for p in normal] + [_read(p) for p, _ in defective]
    masks = [np.zeros(x.shape[:2], bool) for x in X[: len(normal)]] + [m for _, m in defective]
    return fit, X, masks


def load_cookies(n_fit, n_test):
    root = data_dir() / "cookies"
    normals = sorted((root / "training-images").glob("normal-*.jpg"))
    anomalies = sorted((root / "training-images").glob("anomaly-*.jpg"))
    fit = [_read(p, scale=2) for p in normals[:n_fit]]
    X = [_read(p, scale=2) for p in normals[n_fit : n_fit + n_test // 2]]
    masks = [np.zeros(x.shape[:2], bool) for x in X]
    for p in anomalies[: n_test - len(X)]:
        X.append(_read(p, scale=2))
        mask = _read(root / "mask-images" / p.name.replace(".jpg", ".png"), scale=2)
        masks.append(mask.max(axis=-1) > 0)
    return fit, np.stack(X), np.stack(masks)


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
        fit, X, masks = loaders[dataset](args.n_fit, args.n_test)
        det = EfficientNetGaussianDetector(batch_size=args.batch_size)
        det.fit(fit)
        if getattr(det, "spatial_", None) is None:
            det.spatial_ = localization.fit_spatial(det, fit)
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
    parser.add_argument("--output", default=str(ROOT / "docs" / "explain_benchmark.md"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if not (data_dir() / "magnetic_tile").is_dir():
        sys.exit(f"Data not found under {data_dir()}; see ../shared/data/README.md.")
    rows = run(args)
    import skanomaly
    import timm

    header = [
        "# explain() benchmark",
        "",
        f"Generated by `python benchmarks/bench_explain.py {' '.join(sys.argv[1:] if argv is None else argv)}` "
        f"on {datetime.date.today().isoformat()}: {platform.processor() or platform.machine()}, "
        f"{args.threads} CPU threads (os.cpu_count()={os.cpu_count()}), Python "
        f"{platform.python_version()}, torch {torch.__version__}, timm {timm.__version__}, "
        f"skanomaly {getattr(skanomaly, '__version__', '?')}.",
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
    print(table)
    if not args.no_write:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(table + "\n")


if __name__ == "__main__":
    main()
