"""Magnetic tiles that no other benchmark uses: do the choices hold there?

Every default of the detector and its maps was chosen on the benchmarks'
splits, and the options next to them (``image_score``,
``patch_neighborhood``) were measured there too. Those splits use only the
first 100 defect-free magnetic tiles and the first five of each defect class
by file name (``bench_explain.py`` fewer; ``bench_threshold.py`` uses them
all, but only to measure realized false-positive rates). This script uses
the rest, which no choice has seen. For each seed it draws, from the
defect-free tiles after the first 100, 60 to fit and 100 others to test, and
20 defective tiles of each class after its first five, with non-empty
masks, all at their original sizes (the network resizes them). It reports
the image AUROC of each image score (and of the default one with max
pooling) and the pixel AUROC and AU-PRO (up to a
false-positive rate of 0.3) of each map, per seed and their mean.

Each detector is fitted once per seed with the parameters of its row and
then both scores and explains, so a map row and an image row of the same
fit share the patch memory.

``--write-mvtec DIR`` instead writes the first seed's split in the MVTec AD
layout, for ``bench_peers.py --mvtec DIR`` to compare anomalib's PaDiM and
PatchCore on the same tiles (it resizes them to the network's input on
loading, as it does all its data).

    python benchmarks/bench_left_out.py [--seeds 0 1 2] [--write-mvtec DIR]
"""

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import environment, markdown_table, per_seed, publish
from bench_explain import map_metrics
from PIL import Image
from sklearn.metrics import roc_auc_score

from skanomaly import EfficientNetGaussianDetector
from skanomaly.datasets import load_magnetic_tile, shared_data_dir

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["Blowhole", "Break", "Crack", "Fray", "Uneven"]
# The first tiles of each class by file name, which the other benchmarks use.
USED_FREE, USED_PER_CLASS = 100, 5

# One fit each: (fit parameters, image score row, {map row: explain parameters}).
FITS = [
    (
        {},
        "pooled+patches (default), k=(1, 3)",
        {
            "descent (default, k=(1, 3))": {},
            "spatial": {"explain_method": "spatial"},
            "patches, k=(1, 3)": {"explain_method": "patches"},
        },
    ),
    ({"image_score": "pooled"}, "pooled", {}),
    ({"image_score": "pooled", "pooling": "max"}, "pooled, pooling='max'", {}),
    ({"patch_neighborhood": 1}, "pooled+patches, k=1", {"descent, k=1": {}}),
    (
        {"patch_neighborhood": 3},
        "pooled+patches, k=3",
        {"descent, k=3": {}, "patches, k=3 (PatchCore's map)": {"explain_method": "patches"}},
    ),
    ({"image_score": "patches", "patch_neighborhood": 3}, "patches, k=3", {}),
    ({"score_coreset": 1.0}, "pooled+patches, k=(1, 3), score_coreset=1.0", {}),
    ({"pooling": "max"}, "pooled+patches, pooling='max'", {}),
]


def left_out_tiles():
    """``(data, free, defects)``: all the tiles, the indices of the
    defect-free ones after the first 100, and per class those of the
    defective ones after its first five with non-empty masks."""
    data = load_magnetic_tile()
    free = np.flatnonzero(data.defect_type == "good")[USED_FREE:]
    defects = {}
    for name in CLASSES:
        rows = np.flatnonzero(data.defect_type == name.lower())[USED_PER_CLASS:]
        defects[name] = [i for i in rows if data.masks[i].any()]
    return data, free, defects


def split(data, free, defects, seed, n_fit, n_normal, per_class):
    """One seed's ``(fit images, test images, test masks, labels, names)``;
    labels 1 for defective, names ``good`` or the defect class."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(free)
    picked = [i for name in CLASSES for i in rng.permutation(defects[name])[:per_class]]
    test = [*order[n_fit : n_fit + n_normal], *picked]
    labels = np.r_[np.zeros(n_normal), np.ones(len(picked))]
    X = [data.X[i] for i in test]
    names = [str(data.defect_type[i]) for i in test]
    return [data.X[i] for i in order[:n_fit]], X, [data.masks[i] for i in test], labels, names


def write_mvtec(folder, fit, X, masks, names):
    """A split as an MVTec AD category: ``train/good``, ``test/<name>``
    (``good`` or the defect class) and ``ground_truth/<class>/<image>_mask.png``."""
    folder = Path(folder)
    items = [("train", "good", image, None) for image in fit]
    items += [("test", name, image, mask) for image, mask, name in zip(X, masks, names)]
    for i, (part, name, image, mask) in enumerate(items):
        (folder / part / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / part / name / f"{i:04d}.png")
        if name != "good":
            (folder / "ground_truth" / name).mkdir(parents=True, exist_ok=True)
            mask_image = Image.fromarray(mask.astype(np.uint8) * 255)
            mask_image.save(folder / "ground_truth" / name / f"{i:04d}_mask.png")


def run(args):
    torch.set_num_threads(args.threads)
    data, free, defects = left_out_tiles()
    image_rows, map_rows = {}, {}
    for seed in args.seeds:
        fit, X, masks, labels, _ = split(
            data, free, defects, seed, args.n_fit, args.n_normal, args.per_class
        )
        for parameters, image_row, maps in FITS:
            detector = EfficientNetGaussianDetector(batch_size=args.batch_size, **parameters)
            detector.fit(fit)
            auroc = roc_auc_score(labels, -detector.score_samples(X))
            image_rows.setdefault(image_row, []).append(auroc)
            print(f"seed {seed} | {image_row} | image AUROC {auroc:.3f}", flush=True)
            for map_row, explain in maps.items():
                detector.set_params(**explain)
                pixel, pro, _ = map_metrics(masks, detector.explain(X))
                map_rows.setdefault(map_row, []).append((pixel, pro))
                print(f"seed {seed} | {map_row} | {pixel:.3f} / {pro:.3f}", flush=True)
    return image_rows, map_rows


def page(args, image_rows, map_rows, minutes, command):
    seeds = " / ".join(str(s) for s in args.seeds)
    return "\n".join(
        [
            "## Left-out magnetic tiles",
            "",
            f"`python benchmarks/bench_left_out.py {command}`, {minutes:.1f} min. Protocol: "
            f"the module docstring of benchmarks/bench_left_out.py. Per seed: {args.n_fit} "
            f"defect-free tiles to fit, {args.n_normal} others and {args.per_class} defective "
            "tiles of each class to test, none of them used by another benchmark; Lite0 "
            "defaults besides each row's parameters; k is `patch_neighborhood`.",
            "",
            markdown_table(
                ["image score", f"image AUROC (seeds {seeds}, mean)"],
                [[name, per_seed(v)] for name, v in image_rows.items()],
            ),
            "",
            markdown_table(
                [
                    "map",
                    f"pixel AUROC (seeds {seeds}, mean)",
                    f"AU-PRO, FPR <= 0.3 (seeds {seeds}, mean)",
                ],
                [
                    [name, per_seed([p for p, _ in v]), per_seed([q for _, q in v])]
                    for name, v in map_rows.items()
                ],
            ),
            "",
            environment(),
        ]
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-fit", type=int, default=60)
    parser.add_argument("--n-normal", type=int, default=100)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/left_out.md"))
    parser.add_argument("--write-mvtec", metavar="DIR", help="write the first seed's split")
    args = parser.parse_args(argv)
    if shared_data_dir() is None:
        sys.exit("The shared data is absent: set SKANOMALY_DATA (see ../shared/data/README.md).")
    if args.write_mvtec:
        data, free, defects = left_out_tiles()
        fit, X, masks, _, names = split(
            data, free, defects, args.seeds[0], args.n_fit, args.n_normal, args.per_class
        )
        write_mvtec(args.write_mvtec, fit, X, masks, names)
        return
    started = time.perf_counter()
    image_rows, map_rows = run(args)
    minutes = (time.perf_counter() - started) / 60
    command = shlex.join(sys.argv[1:] if argv is None else argv)
    publish(page(args, image_rows, map_rows, minutes, command), args.output)


if __name__ == "__main__":
    main()
