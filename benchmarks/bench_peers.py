"""skanomaly next to its peers, on the same data, features and weights.

For each data set (MVTec AD layout roots given on the command line, the
shared magnetic tile and cookie data, ELPV's mono cells or, with
``--elpv-cells poly``, its polycrystalline ones, which no other benchmark
uses) and each backbone, this script fits on a seeded subset of normal
images and tests on a seeded subset of normal and anomalous ones:

* skanomaly's ``EfficientNetGaussianDetector`` (image scores and ``explain``
  maps);
* scikit-learn's EllipticEnvelope, IsolationForest and
  LocalOutlierFactor(novelty=True), on the detector's own pooled features
  and on raw downsampled pixels;
* anomalib's PaDiM and PatchCore torch models, run in a separate
  environment (``--peers-python``, see ``requirements-peers.txt``) on the
  same EfficientNet-Lite weights and the same normalized input tensors.

Every method runs in a fresh child process, so its peak RSS is its own. The
protocol is in ``docs/benchmark_protocol.rst``; the table goes to
``benchmarks/results/peers.md``.

    python benchmarks/bench_peers.py [--mvtec ROOT[:cat1,cat2]] [--no-shared]
        [--no-elpv | --elpv-cells poly] [--backbones tf_efficientnet_lite0 ...] [--n-train 60]
        [--n-test 40] [--seed 0] [--peers-python ~/.venvs/skanomaly-peers/bin/python]
        [--variants LABEL ...] [--rows-json PATH]

``benchmarks/bench_peers_seeds.py`` runs it over several seeds and tabulates
the accuracy of each method across them (``--rows-json``).
"""

import argparse
import concurrent.futures
import copy
import json
import multiprocessing
import os
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
from _common import environment, markdown_table, peak_rss_mb, publish

HERE = Path(__file__).resolve().parent
DEFAULT_PEERS_PYTHON = Path.home() / ".venvs" / "skanomaly-peers" / "bin" / "python"
SKLEARN_PEERS = ("EllipticEnvelope", "IsolationForest", "LocalOutlierFactor")
# skanomaly with other settings than its defaults, a row each.
VARIANTS = {
    # The pooled distances alone, the default before the worst patch joined it.
    "skanomaly, image_score='pooled'": {"image_score": "pooled"},
    "skanomaly, pooling='max'": {"pooling": "max"},
    "skanomaly, patch_neighborhood=1": {"patch_neighborhood": 1},
    "skanomaly, patch_neighborhood=3": {"patch_neighborhood": 3},
    # The image scores compare the 3 x 3 patch features of the default
    # patch_neighborhood=(1, 3), so the next rows' maps are the default's.
    "skanomaly, image_score='pooled+patches', input_size=320": {
        "image_score": "pooled+patches",
        "input_size": 320,
    },
    "skanomaly, image_score='pooled+patches', pooling='max'": {
        "image_score": "pooled+patches",
        "pooling": "max",
    },
    # A tenth of the patch memory, which searches faster (the throughput
    # page); the maps search it too.
    "skanomaly, image_score='pooled+patches', pooling='max', patch_coreset=0.1": {
        "image_score": "pooled+patches",
        "pooling": "max",
        "patch_coreset": 0.1,
    },
}
ANOMALIB_PEERS = ("PaDiM", "PatchCore")
RAW_SIDE = 32  # raw-pixel baseline: grayscale, RAW_SIDE x RAW_SIDE, flattened
PCA_DIMS = 32  # EllipticEnvelope works on at most this many PCA components

# anomalib layer choices for EfficientNet-Lite: the stages whose strides (4,
# 8, 16) match the ResNet layers that PaDiM (layer1-3) and PatchCore
# (layer2-3) use by default.
PADIM_LAYERS = ["blocks.1", "blocks.2", "blocks.4"]
PATCHCORE_LAYERS = ["blocks.2", "blocks.4"]
PADIM_N_FEATURES = 100  # anomalib's value for resnet18
PATCHCORE_CORESET = 0.1  # anomalib's default coreset_sampling_ratio


def own_peak_rss_mb():
    """Peak RSS of this process's own address space, in MiB.

    ``_common.peak_rss_mb`` reads ``ru_maxrss``, which Linux carries over
    from the parent's address space across fork and exec: a child started by
    a parent holding the data sets and torch would report the parent's
    peak. ``VmHWM`` belongs to the process's own memory map, so it is used
    where it exists.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


# --------------------------------------------------------------------- data
def _split(rng, normal, anomalous, n_train, n_test, train_from_normal=True):
    """Seeded indices: train normals, then a test set half normal, half
    anomalous. With ``train_from_normal`` at most half the normal images
    (less two) are tested, so that as many are left to train on; without
    it (a separate training set) all of them may be."""
    normal = rng.permutation(normal)
    anomalous = rng.permutation(anomalous)
    spare = max(len(normal) - 2, 0) // 2 if train_from_normal else len(normal)
    n_test_normal = min(n_test // 2, spare)
    n_test_anomalous = min(n_test - n_test_normal, len(anomalous))
    test = np.concatenate([normal[:n_test_normal], anomalous[:n_test_anomalous]])
    train = normal[n_test_normal : n_test_normal + n_train]
    return np.sort(train), np.sort(test)


def _take(X, index):
    return X[index] if isinstance(X, np.ndarray) else np.stack([X[i] for i in index])


def _dataset(name, X, y, masks, rng, n_train, n_test, note, X_train=None):
    if X_train is None:
        train, test = _split(rng, np.flatnonzero(y == 1), np.flatnonzero(y == -1), n_train, n_test)
        X_train = _take(X, train)
    else:
        _, test = _split(
            rng, np.flatnonzero(y == 1), np.flatnonzero(y == -1), 0, n_test, train_from_normal=False
        )
        X_train = X_train[np.sort(rng.permutation(len(X_train))[:n_train])]
    return {
        "name": name,
        "note": note,
        "X_train": X_train,
        "X_test": _take(X, test),
        "y_test": y[test],
        "masks_test": None if masks is None else _take(masks, test).astype(bool),
    }


def load_datasets(args, resize):
    """Yield (name, dataset dict or error string), each loaded at ``resize``."""
    from skanomaly.datasets import (
        load_cookies,
        load_elpv,
        load_magnetic_tile,
        load_mvtec_ad,
        shared_data_dir,
    )

    for spec in args.mvtec:
        root, _, cats = spec.partition(":")
        root = Path(root)
        if cats:
            categories = cats.split(",")
        elif (root / "train").is_dir():
            categories = [None]
        else:
            categories = sorted(p.name for p in root.iterdir() if (p / "train").is_dir())
        for category in categories:
            name = f"MVTec AD {category or root.name}"
            try:
                rng = np.random.default_rng(args.seed)
                data = load_mvtec_ad(root, category, resize=resize)
                yield (
                    name,
                    _dataset(
                        name,
                        data.X_test,
                        data.y_test,
                        data.masks_test,
                        rng,
                        args.n_train,
                        args.n_test,
                        "fitted on train/good, tested on test/",
                        X_train=data.X_train,
                    ),
                )
            except Exception as exc:  # a bad root must not stop the other data sets
                yield name, f"could not load: {type(exc).__name__}: {exc}"

    if args.shared:
        if shared_data_dir() is None:
            yield "magnetic tile", "not run: no shared data folder (set SKANOMALY_DATA)"
            yield "cookies", "not run: no shared data folder (set SKANOMALY_DATA)"
        else:
            name = "magnetic tile"
            try:
                rng = np.random.default_rng(args.seed)
                free = load_magnetic_tile(
                    classes="Free", resize=resize, max_per_class=args.n_train + args.n_test
                )
                per_class = -(-args.n_test // 10) + 1
                defects = load_magnetic_tile(
                    classes=["Blowhole", "Break", "Crack", "Fray", "Uneven"],
                    resize=resize,
                    max_per_class=per_class,
                )
                yield (
                    name,
                    _dataset(
                        name,
                        np.concatenate([free.X, defects.X]),
                        np.concatenate([free.y, defects.y]),
                        np.concatenate([free.masks, defects.masks]),
                        rng,
                        args.n_train,
                        args.n_test,
                        f"first {args.n_train + args.n_test} Free and first {per_class} "
                        "of each defect class by file name, then a seeded split",
                    ),
                )
            except Exception as exc:
                yield name, f"could not load: {type(exc).__name__}: {exc}"
            name = "cookies"
            try:
                rng = np.random.default_rng(args.seed)
                data = load_cookies(split="train", resize=resize)
                yield (
                    name,
                    _dataset(
                        name,
                        data.X,
                        data.y,
                        data.masks,
                        rng,
                        args.n_train,
                        args.n_test,
                        "training-images/ only (the test split has no masks): "
                        "31 normal, 32 cracked",
                    ),
                )
            except Exception as exc:
                yield name, f"could not load: {type(exc).__name__}: {exc}"

    if args.elpv:
        name = f"ELPV {args.elpv_cells}"
        try:
            rng = np.random.default_rng(args.seed)
            data = load_elpv(cell_type=args.elpv_cells, resize=resize)
            # Uncertain cells (defect probability 1/3 or 2/3) are left out.
            yield (
                name,
                _dataset(
                    name,
                    data.X,
                    data.y,
                    None,
                    rng,
                    args.n_train,
                    args.n_test,
                    "defect probability 0 vs 1; 1/3 and 2/3 left out; no pixel masks",
                ),
            )
        except Exception as exc:
            yield name, f"could not load: {type(exc).__name__}: {exc}"


def raw_pixels(X):
    """Grayscale images area-resized to RAW_SIDE x RAW_SIDE, flattened, in [0, 1]."""
    from PIL import Image

    gray = X.astype(np.float32).mean(axis=3)
    small = [np.asarray(Image.fromarray(g).resize((RAW_SIDE, RAW_SIDE), Image.BOX)) for g in gray]
    return np.stack(small).reshape(len(X), -1) / 255.0


def _score_features(params=None):
    """What the image score of skanomaly with ``params`` reads."""
    from skanomaly import EfficientNetGaussianDetector

    image_score = EfficientNetGaussianDetector(**(params or {})).image_score
    return "pooled, all levels" + (" + worst patch" if image_score != "pooled" else "")


# ------------------------------------------------------------ child tasks
def _run_skanomaly(backbone, X_train, X_test, y_test, masks_test, seed, params=None):
    """Fit, score and explain with skanomaly (default parameters, or
    ``params``); also return pooled features."""
    import torch

    from skanomaly import EfficientNetGaussianDetector
    from skanomaly.metrics import image_roc_auc, pixel_roc_auc, pro_score

    torch.manual_seed(seed)
    detector = EfficientNetGaussianDetector(backbone, device="cpu", **(params or {}))
    # Loads the weights outside the timed fit; 3 images, the fewest every variant takes.
    detector.fit(X_train[:3])
    start = time.perf_counter()
    detector.fit(X_train)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    scores = detector.score_samples(X_test)
    score_s = time.perf_counter() - start
    result = {
        "image_auroc": image_roc_auc(y_test, scores),
        "fit_s": fit_s,
        "score_s": score_s,
        "n_test": len(X_test),
    }
    if masks_test is not None:
        detector.explain(X_test[:1])  # one-time setup outside the timing
        start = time.perf_counter()
        maps = detector.explain(X_test)
        result["explain_s_per_image"] = (time.perf_counter() - start) / len(X_test)
    # Before the metrics, which are the benchmark's cost, not the method's.
    result["peak_rss_mb"] = own_peak_rss_mb()
    if masks_test is not None:
        result["pixel_auroc"] = pixel_roc_auc(masks_test, maps)
        result["au_pro"] = pro_score(masks_test, maps)
    # The pooled features, for the scikit-learn peers; their extraction time
    # is the feature cost those peers pay.
    start = time.perf_counter()
    train_features = detector.pooled_features(X_train)
    train_extract_s = time.perf_counter() - start
    start = time.perf_counter()
    test_features = detector.pooled_features(X_test)
    test_extract_s = time.perf_counter() - start
    result["features"] = {
        "train": np.concatenate(list(train_features.values()), axis=1),
        "test": np.concatenate(list(test_features.values()), axis=1),
        "train_s": train_extract_s,
        "test_s": test_extract_s,
    }
    return result


def _sklearn_estimator(name, n_train, seed):
    from sklearn.covariance import EllipticEnvelope
    from sklearn.decomposition import PCA
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import LocalOutlierFactor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "EllipticEnvelope":
        # The minimum covariance determinant needs many more samples than
        # dimensions: reduce to PCA_DIMS (at most a third of n_train) first.
        dims = max(2, min(PCA_DIMS, n_train // 3))
        return make_pipeline(
            StandardScaler(),
            PCA(n_components=dims, random_state=seed),
            EllipticEnvelope(random_state=seed),
        )
    if name == "IsolationForest":
        return make_pipeline(StandardScaler(), IsolationForest(random_state=seed))
    return make_pipeline(
        StandardScaler(), LocalOutlierFactor(n_neighbors=min(20, n_train - 1), novelty=True)
    )


def _run_sklearn(name, F_train, F_test, y_test, seed, extract_train_s, extract_test_s):
    # Not skanomaly.metrics.image_roc_auc: importing skanomaly imports torch,
    # which would count in this process's peak RSS.
    from sklearn.metrics import roc_auc_score

    estimator = _sklearn_estimator(name, len(F_train), seed)
    start = time.perf_counter()
    estimator.fit(F_train)
    fit_s = time.perf_counter() - start + extract_train_s
    start = time.perf_counter()
    scores = estimator.score_samples(F_test)
    score_s = time.perf_counter() - start + extract_test_s
    return {
        "image_auroc": float(roc_auc_score(y_test, scores)),
        "fit_s": fit_s,
        "score_s": score_s,
        "n_test": len(F_test),
        "peak_rss_mb": own_peak_rss_mb(),
    }


def _call(function, kwargs):
    try:
        return function(**kwargs)
    except Exception as exc:
        return {
            "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:200],
            "traceback": traceback.format_exc(),
        }


def in_child(function, **kwargs):
    """Run ``function(**kwargs)`` in a fresh process (its own peak RSS)."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(_call, function, kwargs).result()


# ---------------------------------------------------------------- anomalib
def _memory_cap(gib):
    """A preexec_fn capping the child's address space at ``gib`` GiB."""

    def limit():
        import resource

        size = int(gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (size, size))

    return limit


def run_anomalib(python, backbone, data, seed, timeout, memory_gib):
    """Run PaDiM and PatchCore in the peers environment; one result per peer."""
    python = Path(python).expanduser()
    if not python.exists():
        reason = (
            f"not run: no peers environment at {python} "
            "(create it from benchmarks/requirements-peers.txt)"
        )
        return {peer: {"error": reason} for peer in ANOMALIB_PEERS}
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        arrays = Path(folder) / "data.npz"
        payload = {k: data[k] for k in ("X_train", "X_test", "y_test")}
        if data["masks_test"] is not None:
            payload["masks_test"] = data["masks_test"]
        np.savez(arrays, **payload)
        for peer in ANOMALIB_PEERS:
            out = Path(folder) / f"{peer}.json"
            command = [
                str(python),
                str(Path(__file__).resolve()),
                "--anomalib-worker",
                peer,
                "--backbones",
                backbone,
                "--seed",
                str(seed),
                "--worker-data",
                str(arrays),
                "--worker-out",
                str(out),
            ]
            try:
                # A fixed mmap threshold stops glibc from raising it on the fly:
                # otherwise the large temporaries of anomalib's k-center greedy
                # coreset loop come from the heap, fragment it and the process
                # grows by ~15 MB per iteration (to ~20 GiB on the cookies).
                env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="4194304")
                proc = subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    cwd=HERE,
                    env=env,
                    preexec_fn=_memory_cap(memory_gib),
                )
            except subprocess.TimeoutExpired:
                results[peer] = {"error": f"not run: timed out after {timeout} s"}
                continue
            if out.exists():
                results[peer] = json.loads(out.read_text())
                error = results[peer].get("error", "")
                if "memory" in error.lower() or "MemoryError" in error:
                    results[peer]["error"] = (
                        f"not run to the end: over the {memory_gib:g} GiB "
                        f"address-space cap (--peer-memory-gib); {error}"
                    )
            else:
                lines = (proc.stderr or proc.stdout).strip().splitlines() or ["no output"]
                results[peer] = {"error": f"failed (exit {proc.returncode}): {lines[-1][:200]}"}
    return results


def anomalib_worker(peer, backbone, seed, data_path, out_path):
    """Inside the peers environment: fit and test one anomalib torch model."""

    def write(result):
        Path(out_path).write_text(json.dumps(result))

    try:
        import anomalib
        import torch
        import torch.nn.functional as F
    except Exception as exc:
        write({"error": f"not run: anomalib does not import: {type(exc).__name__}: {exc}"})
        return
    try:
        from skanomaly.backbone import EfficientNetLevels, load_backbone
        from skanomaly.metrics import image_roc_auc, pixel_roc_auc, pro_score

        torch.manual_seed(seed)
        np.random.seed(seed)
        data = np.load(data_path)
        masks = data["masks_test"] if "masks_test" in data.files else None
        # The same weights and input normalization as skanomaly's detector.
        full = load_backbone(backbone)
        skfeatures = EfficientNetLevels(copy.deepcopy(full)).eval()  # it prunes its copy

        def tensors(X):
            x = torch.from_numpy(X).float().div(255).permute(0, 3, 1, 2)
            return skfeatures.preprocess(x)

        if peer == "PaDiM":
            from anomalib.models.image.padim.torch_model import PadimModel

            model = PadimModel(
                backbone=backbone,
                layers=PADIM_LAYERS,
                pre_trained=False,
                n_features=PADIM_N_FEATURES,
            )
        else:
            from anomalib.models.image.patchcore.torch_model import PatchcoreModel

            model = PatchcoreModel(
                backbone=backbone, layers=PATCHCORE_LAYERS, pre_trained=False, num_neighbors=9
            )
        extractor = model.feature_extractor.feature_extractor
        missing, _ = extractor.load_state_dict(full.state_dict(), strict=False)
        wanted = {k for k in extractor.state_dict() if not k.endswith("num_batches_tracked")}
        if wanted & set(missing):
            raise RuntimeError(f"weights not loaded for {sorted(wanted & set(missing))[:3]}")

        start = time.perf_counter()
        model.train()
        with torch.no_grad():
            x_train = tensors(data["X_train"])
            for batch in torch.split(x_train, 16):
                model(batch)
            if peer == "PaDiM":
                model.fit()
            else:
                model.subsample_embedding(PATCHCORE_CORESET)
        fit_s = time.perf_counter() - start
        model.eval()
        start = time.perf_counter()
        scores, maps = [], []
        with torch.no_grad():
            for batch in torch.split(tensors(data["X_test"]), 16):
                output = model(batch)
                scores.append(output.pred_score.reshape(-1))
                maps.append(output.anomaly_map.reshape(len(batch), *output.anomaly_map.shape[-2:]))
        score_s = time.perf_counter() - start
        scores = torch.cat(scores).numpy()
        peak = own_peak_rss_mb()  # before the metrics, as for skanomaly
        result = {
            "image_auroc": image_roc_auc(data["y_test"], -scores),
            "fit_s": fit_s,
            "score_s": score_s,
            "n_test": len(scores),
            "version": anomalib.__version__,
        }
        if masks is not None:
            maps = torch.cat(maps)[:, None]
            if tuple(maps.shape[-2:]) != masks.shape[-2:]:
                maps = F.interpolate(
                    maps, size=masks.shape[-2:], mode="bilinear", align_corners=False
                )
            maps = maps[:, 0].numpy().astype(np.float32)
            result["pixel_auroc"] = pixel_roc_auc(masks, maps)
            result["au_pro"] = pro_score(masks, maps)
            result["explain_note"] = "in score"
        result["peak_rss_mb"] = peak
        write(result)
    except Exception as exc:
        write(
            {
                "error": f"failed in anomalib {anomalib.__version__}: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                "traceback": traceback.format_exc(),
            }
        )


# ------------------------------------------------------------------ table
def _fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def dataset_table(name, note, backbone, n_train, n_test, rows, has_masks):
    header = [
        "method",
        "features",
        "image AUROC",
        "pixel AUROC",
        "AU-PRO",
        "fit s",
        "score img/s",
        "explain s/img",
        "peak RSS MiB",
        "image AUROC ratio (skanomaly/peer)",
        "time ratio (peer/skanomaly)",
        "note",
    ]
    ours = rows[0][2]
    ours_time = ours.get("fit_s", 0) + ours.get("score_s", 0) if "error" not in ours else None
    lines = []
    no_pixels = "n/a (no masks)" if not has_masks else "n/a (no localization)"
    for method, features, r, extra in rows:
        if "error" in r:
            lines.append([method, features] + ["—"] * 9 + [r["error"]])
            continue
        pixel = _fmt(r.get("pixel_auroc"), ".3f") if "pixel_auroc" in r else no_pixels
        pro = _fmt(r.get("au_pro"), ".3f") if "au_pro" in r else no_pixels
        if "explain_s_per_image" in r:
            explain = f"{r['explain_s_per_image']:.3f}"
        else:
            explain = r.get("explain_note", "n/a")
        if method == "skanomaly" or "error" in ours:
            auroc_ratio = time_ratio = "—"
        else:
            auroc_ratio = (
                f"{ours['image_auroc'] / r['image_auroc']:.2f}" if r["image_auroc"] else "inf"
            )
            time_ratio = f"{(r['fit_s'] + r['score_s']) / ours_time:.3g}"
        lines.append(
            [
                method,
                features,
                f"{r['image_auroc']:.3f}",
                pixel,
                pro,
                f"{r['fit_s']:.2f}",
                f"{r['n_test'] / r['score_s']:.1f}",
                explain,
                f"{r['peak_rss_mb']:.0f}",
                auroc_ratio,
                time_ratio,
                extra,
            ]
        )
    return (
        f"### {name}, {backbone}\n\n"
        f"{n_train} normal training images, {n_test} test images; {note}.\n\n"
        + markdown_table(header, lines)
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mvtec",
        action="append",
        default=[],
        metavar="ROOT[:CAT,...]",
        help="an MVTec AD layout root, optionally with categories; repeatable",
    )
    parser.add_argument(
        "--shared",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="magnetic tile and cookies from the shared data folder",
    )
    parser.add_argument("--elpv", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--elpv-cells",
        choices=["mono", "poly"],
        default="mono",
        help="which ELPV cells: poly ones are used by no other benchmark, so no choice saw them",
    )
    parser.add_argument("--backbones", nargs="+", default=["tf_efficientnet_lite0"])
    parser.add_argument("--n-train", type=int, default=60)
    parser.add_argument("--n-test", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--peers",
        nargs="*",
        default=list(SKLEARN_PEERS + ANOMALIB_PEERS),
        choices=SKLEARN_PEERS + ANOMALIB_PEERS,
    )
    parser.add_argument(
        "--peers-python",
        default=str(DEFAULT_PEERS_PYTHON),
        help="python of the environment made from requirements-peers.txt",
    )
    parser.add_argument(
        "--peer-timeout",
        type=int,
        default=600,
        help="seconds for each anomalib model on each data set",
    )
    parser.add_argument(
        "--peer-memory-gib",
        type=float,
        default=10.0,
        help="address-space cap of each anomalib process",
    )
    parser.add_argument(
        "--variants",
        nargs="*",
        default=list(VARIANTS),
        choices=list(VARIANTS),
        metavar="LABEL",
        help="the rows of skanomaly with other settings to run (their labels); none: --variants",
    )
    parser.add_argument(
        "--rows-json", help="also write each data set's results, method by method, as JSON"
    )
    parser.add_argument("--out", default=str(HERE / "results" / "peers.md"))
    parser.add_argument("--anomalib-worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-data", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.anomalib_worker:
        anomalib_worker(
            args.anomalib_worker, args.backbones[0], args.seed, args.worker_data, args.worker_out
        )
        return

    import timm

    started = time.perf_counter()
    sections, records = [], {}
    for backbone in args.backbones:
        resize = timm.create_model(backbone, pretrained=False).pretrained_cfg["input_size"][1:]
        for name, data in load_datasets(args, tuple(resize)):
            print(f"[{time.perf_counter() - started:6.0f} s] {name}, {backbone}", flush=True)
            if isinstance(data, str):
                sections.append(f"### {name}, {backbone}\n\n{data}")
                continue
            ours = in_child(
                _run_skanomaly,
                backbone=backbone,
                X_train=data["X_train"],
                X_test=data["X_test"],
                y_test=data["y_test"],
                masks_test=data["masks_test"],
                seed=args.seed,
            )
            features = ours.pop("features", None)
            rows = [("skanomaly", f"{backbone} {_score_features()}", ours, "defaults")]
            for label in args.variants:
                params = VARIANTS[label]
                variant = in_child(
                    _run_skanomaly,
                    backbone=backbone,
                    X_train=data["X_train"],
                    X_test=data["X_test"],
                    y_test=data["y_test"],
                    masks_test=data["masks_test"],
                    seed=args.seed,
                    params=params,
                )
                variant.pop("features", None)
                rows.append(
                    (
                        label,
                        f"{backbone} {_score_features(params)}",
                        variant,
                        "a parameter to select, not the default",
                    )
                )
            inputs = []
            if features is not None:
                inputs.append(
                    (
                        f"{backbone} pooled (same as skanomaly)",
                        features["train"],
                        features["test"],
                        features["train_s"],
                        features["test_s"],
                        "times include feature extraction",
                    )
                )
            else:
                reason = f"not run: skanomaly's feature extraction failed ({ours['error']})"
            inputs.append(
                (
                    f"raw {RAW_SIDE}x{RAW_SIDE} gray pixels",
                    raw_pixels(data["X_train"]),
                    raw_pixels(data["X_test"]),
                    0.0,
                    0.0,
                    "",
                )
            )
            for peer in [p for p in args.peers if p in SKLEARN_PEERS]:
                if features is None:
                    rows.append((peer, f"{backbone} pooled", {"error": reason}, ""))
                for label, F_train, F_test, t_train, t_test, extra in inputs:
                    result = in_child(
                        _run_sklearn,
                        name=peer,
                        F_train=F_train,
                        F_test=F_test,
                        y_test=data["y_test"],
                        seed=args.seed,
                        extract_train_s=t_train,
                        extract_test_s=t_test,
                    )
                    if peer == "EllipticEnvelope":
                        dims = max(2, min(PCA_DIMS, len(F_train) // 3))
                        extra = "; ".join(filter(None, [extra, f"PCA to {dims} dims first"]))
                    rows.append((peer, label, result, extra))
            wanted = [p for p in args.peers if p in ANOMALIB_PEERS]
            if wanted:
                peers = run_anomalib(
                    args.peers_python,
                    backbone,
                    data,
                    args.seed,
                    args.peer_timeout,
                    args.peer_memory_gib,
                )
                for peer in wanted:
                    result = peers[peer]
                    layers = PADIM_LAYERS if peer == "PaDiM" else PATCHCORE_LAYERS
                    version = result.get("version", "")
                    extra = f"anomalib {version}; layers {', '.join(layers)}".strip()
                    if peer == "PaDiM":
                        extra += f"; {PADIM_N_FEATURES} random channels"
                    else:
                        extra += f"; coreset {PATCHCORE_CORESET}"
                    rows.append(
                        (
                            f"anomalib {peer}",
                            f"{backbone} feature maps (same weights)",
                            result,
                            "" if "error" in result else extra,
                        )
                    )
            for method, _, result, _ in rows:
                if "traceback" in result:
                    print(f"{method}: {result.pop('traceback')}", file=sys.stderr)
            records[f"{name}, {backbone}"] = [
                {"method": method, "features": features, **result}
                for method, features, result, _ in rows
            ]
            sections.append(
                dataset_table(
                    name,
                    data["note"],
                    backbone,
                    len(data["X_train"]),
                    len(data["X_test"]),
                    rows,
                    data["masks_test"] is not None,
                )
            )
            print(sections[-1] + "\n", flush=True)

    total = time.perf_counter() - started
    # Quoted, so that the page's command runs as printed (variant labels
    # hold spaces and quotes).
    command = shlex.join(["python", "benchmarks/bench_peers.py", *sys.argv[1:]])
    text = (
        "## skanomaly and its peers\n\n"
        f"`{command}` (seed {args.seed}), {total / 60:.1f} min in all. "
        "Protocol: docs/benchmark_protocol.rst. Image AUROC ratio > 1: skanomaly "
        "is more accurate; time ratio > 1: skanomaly is faster (fit + score "
        "seconds). Each method runs in a fresh process; peak RSS is that "
        "process's, interpreter and libraries included.\n\n"
        + "\n\n".join(sections)
        + f"\n\n{environment()}\n"
    )
    publish(text, args.out)
    if args.rows_json:
        Path(args.rows_json).write_text(json.dumps(records, indent=1, default=float))


if __name__ == "__main__":
    main()
