"""Data and cached features for ``bench_detection.py``.

Each data set is a pool of images with labels and seeded splits made with
``bench_peers._split`` (so that seed 0 is exactly the peers table's split).
Features are the pooled features of every level of every image the splits
use, extracted once per feature configuration (backbone, input size, aspect
rule, augmentation of the image) and cached as ``.npz`` files, so that every
score rule is evaluated offline.
"""

import argparse
import hashlib
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import threadpoolctl
import torch
from _common import environment, publish
from bench_peers import _split

from skanomaly._constants import PATCH_LEVELS
from skanomaly._images import ImageSource
from skanomaly.features import FeatureExtractor, patch_features, pool, resolve_levels


class Pool:
    """Images of one data set, with the seeded splits of the benchmark."""

    def __init__(self, name, X, y, n_train, n_test, seeds, note):
        self.name, self.X, self.y, self.note = name, X, y, note
        self.n_train, self.n_test = n_train, n_test
        self.splits = {}
        for seed in seeds:
            rng = np.random.default_rng(seed)
            self.splits[seed] = _split(
                rng, np.flatnonzero(y == 1), np.flatnonzero(y == -1), n_train, n_test
            )
        used = np.unique(np.concatenate([np.concatenate(s) for s in self.splits.values()]))
        self.used = used
        self.normal_used = np.array([i for i in used if y[i] == 1])

    def images(self, index):
        return [self.X[i] for i in index]


def load_pools(seeds, piped_seeds, resize=None, piped=True):
    """The benchmark's data sets, each a :class:`Pool`, by name.

    ``resize`` None keeps the images' own sizes (the network resizes them);
    an int resizes them on loading with bicubic interpolation, as
    ``bench_peers.py`` does.
    """
    from skanomaly.datasets import (
        load_cookies,
        load_elpv,
        load_magnetic_tile,
        load_piped,
        piped_types,
    )

    pools = {}
    free = load_magnetic_tile(classes="Free", resize=resize, max_per_class=100)
    defects = load_magnetic_tile(
        classes=["Blowhole", "Break", "Crack", "Fray", "Uneven"], resize=resize, max_per_class=5
    )
    pools["magnetic tile"] = Pool(
        "magnetic tile",
        list(free.X) + list(defects.X),
        np.concatenate([free.y, defects.y]),
        60,
        40,
        seeds,
        "first 100 Free and first 5 of each defect class by file name",
    )
    cookies = load_cookies(split="train", resize=resize)
    pools["cookies"] = Pool(
        "cookies",
        list(cookies.X),
        cookies.y,
        60,
        40,
        seeds,
        "training-images/: 31 normal, 32 cracked",
    )
    elpv = load_elpv(cell_type="mono", resize=resize)
    pools["ELPV mono"] = Pool(
        "ELPV mono", list(elpv.X), elpv.y, 60, 40, seeds, "defect probability 0 vs 1"
    )
    if piped:
        for paper in piped_types():
            data = load_piped(paper, resize=resize)
            if (data.y == -1).any():
                pools[f"PIPED {paper}"] = Pool(
                    f"PIPED {paper}",
                    list(data.X),
                    data.y,
                    28,
                    40,
                    piped_seeds,
                    "48 normal, 48 with impurities",
                )
    return pools


# ----------------------------------------------------------- augmentations
def _shift(image, dy, dx, keep=7 / 8):
    """A crop of ``keep`` of each side, moved by (dy, dx) in {-1, 0, 1}
    eighths of the margin: a small shift (and zoom) of the scene."""
    h, w = image.shape[:2]
    ch, cw = round(h * keep), round(w * keep)
    top = (h - ch) // 2 + dy * ((h - ch) // 2)
    left = (w - cw) // 2 + dx * ((w - cw) // 2)
    return np.ascontiguousarray(image[top : top + ch, left : left + cw])


AUGMENTATIONS = {
    "identity": lambda im: im,
    "hflip": lambda im: np.ascontiguousarray(im[:, ::-1]),
    "vflip": lambda im: np.ascontiguousarray(im[::-1]),
    "rot90": lambda im: np.ascontiguousarray(np.rot90(im, 1)),
    "rot180": lambda im: np.ascontiguousarray(np.rot90(im, 2)),
    "rot270": lambda im: np.ascontiguousarray(np.rot90(im, 3)),
    "transpose": lambda im: np.ascontiguousarray(np.swapaxes(im, 0, 1)),
    "antitranspose": lambda im: np.ascontiguousarray(np.rot90(np.swapaxes(im, 0, 1), 2)),
    "shift_tl": lambda im: _shift(im, -1, -1),
    "shift_tr": lambda im: _shift(im, -1, 1),
    "shift_bl": lambda im: _shift(im, 1, -1),
    "shift_br": lambda im: _shift(im, 1, 1),
}


def extract(images, backbone, input_size, keep_aspect, batch_size=16, patches=()):
    """Mean- and max-pooled features of every level, from one forward pass
    per image: ``{"mean": [level arrays], "max": [...]}``, float32; and for
    each entry of ``patches``, ``("patches", entry)``: each image's
    ``(locations, channels)`` patch features
    (:func:`skanomaly.features.patch_features`) over neighbourhood k, of the
    detector's patch levels for an entry k, of the named levels for an entry
    ``(k, level_names)``."""
    extractor = FeatureExtractor(
        backbone,
        device="cpu",
        precision="float32",
        batch_size=batch_size,
        input_size=input_size,
        keep_aspect=keep_aspect,
    )
    network = extractor.network
    levels = tuple(range(len(extractor.level_names)))
    specs = {}  # each entry as (k, level indices), resolved once
    for entry in patches:
        k, names = entry if isinstance(entry, tuple) else (entry, PATCH_LEVELS)
        specs[entry] = (k, resolve_levels(names, extractor.level_names, backbone))
    out = {"mean": [[] for _ in levels], "max": [[] for _ in levels]}
    rows_of = {entry: [] for entry in patches}
    order = []
    for start, batch in ImageSource(images).batches(batch_size):
        for positions, x in network.prepare(batch):
            with torch.inference_mode():
                maps = network(x, levels)
            for pooling, rows in out.items():
                for level, m in zip(rows, maps):
                    level.append(pool(m.float(), pooling).numpy())
            for entry, rows in rows_of.items():
                k, patch_levels = specs[entry]
                found = patch_features([maps[i].float() for i in patch_levels], k)
                rows.extend(f.reshape(-1, f.shape[-1]).numpy() for f in found)
            order.extend(start + p for p in positions)
    back = np.argsort(order)
    features = {
        k: [np.concatenate(level)[back].astype(np.float32) for level in v] for k, v in out.items()
    }
    features.update({("patches", e): [rows[i] for i in back] for e, rows in rows_of.items()})
    return features


def cached_features(cache, data, config, augmentation="identity", index=None, log=print):
    """``({"mean": levels, "max": levels}, {image index: row})`` of ``data``.

    ``config`` is ``(backbone, input_size, keep_aspect, loaded_at)``; the
    images extracted are ``index``, by default all those the splits use.
    """
    backbone, input_size, keep_aspect, loaded_at = config
    index = data.used if index is None else np.asarray(index)
    key = hashlib.sha1(repr((data.name, data.note, index.tolist())).encode()).hexdigest()[:10]
    name = f"{data.name}_{backbone}_{input_size}_{keep_aspect}_{loaded_at}_{augmentation}_{key}"
    path = Path(cache) / (name.replace(" ", "-") + ".v2.npz")
    if path.exists():
        with np.load(path) as saved:
            n = (len(saved.files) - 1) // 2
            levels = {p: [saved[f"{p}{i}"] for i in range(n)] for p in ("mean", "max")}
            order = saved["index"]
    else:
        start = time.perf_counter()
        transform = AUGMENTATIONS[augmentation]
        levels = extract([transform(data.X[i]) for i in index], backbone, input_size, keep_aspect)
        order = index
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            path,
            index=index,
            **{f"{p}{i}": f for p, lv in levels.items() for i, f in enumerate(lv)},
        )
        log(f"  extracted {path.name}: {len(index)} images, {time.perf_counter() - start:.0f} s")
    position = {int(i): p for p, i in enumerate(order)}
    return levels, position


def publish_pool_table(name, doc, title, description, table, seeds):
    """The ``main`` of a benchmark that runs ``table(pools, names)`` on the
    pools of ``seeds`` (:func:`load_pools`, PIPED included) and writes
    ``benchmarks/results/<name>.md`` (or ``--out``)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / f"{name}.md"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    started = time.perf_counter()
    pools = load_pools(seeds, seeds)
    # The small factorizations of the score rules run faster on one BLAS thread.
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        text = table(pools, list(pools))
    command = shlex.join(["python", f"benchmarks/bench_{name}.py", *sys.argv[1:]])
    publish(
        f"## {title}\n\n"
        f"`{command}`, {(time.perf_counter() - started) / 60:.1f} min. Protocol: the module "
        f"docstring of benchmarks/bench_{name}.py. {description}\n\n"
        f"{text}\n\n{environment()}\n",
        args.out,
    )
