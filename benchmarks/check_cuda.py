"""A short prepared check of the CUDA path, for a machine with a GPU.

Runs tests/test_cuda.py, then times fit, score_samples and explain on the
CPU and on CUDA at each precision, on the same real ELPV cells, and prints a
Markdown table with the image AUROC of each configuration. A few minutes.

A GPU machine may lack elpv-dataset (90 MB); prepare the cells where it is
installed, carry the file, and point the check at it::

    python benchmarks/check_cuda.py --save cells.npz    # here
    python benchmarks/check_cuda.py --cells cells.npz   # on the GPU machine
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from _common import environment, markdown_table, median_time, publish
from sklearn.metrics import roc_auc_score

from skanomaly import EfficientNetGaussianDetector
from skanomaly.datasets import load_elpv

N_FIT = 128


def save_cells(path):
    """The 64 px test cells of tests/conftest.py and 224 px timing cells."""
    small = load_elpv(cell_type="mono", resize=64)
    large = load_elpv(cell_type="mono", resize=224)
    rng = np.random.default_rng(0)
    # Panels come in file order; shuffle so the fit and test cells mix them.
    normal = rng.permutation(np.flatnonzero(large.y == 1))[: N_FIT + 64]
    defective = rng.permutation(np.flatnonzero(large.y == -1))[:64]
    order = np.concatenate([normal, defective])
    np.savez_compressed(
        path,
        normal=small.X[small.y == 1][:24],
        defective=small.X[small.y == -1][:8],
        X=large.X[order],
        y=large.y[order],
    )


def time_configuration(X, y, device, precision, batch_size, repeats):
    detector = EfficientNetGaussianDetector(
        device=device, precision=precision, batch_size=batch_size
    )
    fit = median_time(lambda: detector.fit(X[:N_FIT]), repeats)
    test, labels = X[N_FIT:], y[N_FIT:]

    def score():
        scores = detector.score_samples(test)
        if device == "cuda":
            torch.cuda.synchronize()
        return scores

    seconds = median_time(score, repeats)
    auroc = roc_auc_score(labels, score())
    explain = median_time(lambda: detector.explain(test[:32]), repeats) / 32
    return [
        device,
        precision,
        batch_size,
        f"{N_FIT / fit:.0f}",
        f"{len(test) / seconds:.0f}",
        f"{1000 * explain:.1f}",
        f"{auroc:.3f}",
    ]


def bare_forward(X, precision, batch_size, repeats):
    """Images/s of the network alone on preprocessed CUDA tensors."""
    from skanomaly.features import autocast, get_network

    network = get_network("tf_efficientnet_lite0", device="cuda")
    ((_, x),) = network.prepare(torch.from_numpy(X / 255.0).float().permute(0, 3, 1, 2))
    dtype = None if precision == "float32" else getattr(torch, precision)
    levels = list(range(len(network.level_names)))

    def run():
        with torch.inference_mode(), autocast(x.device, dtype):
            for start in range(0, len(x), batch_size):
                network(x[start : start + batch_size], levels)
        torch.cuda.synchronize()

    return len(x) / median_time(run, repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", help=".npz written by --save (default: load ELPV)")
    parser.add_argument("--save", help="write the cells to this .npz and stop")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()
    if args.save:
        save_cells(args.save)
        return
    if not torch.cuda.is_available():
        sys.exit("CUDA is not available here.")
    if args.cells is None:
        args.cells = str(Path(os.environ.get("TMPDIR", "/tmp")) / "skanomaly-cells.npz")
        save_cells(args.cells)
    env = dict(os.environ, SKANOMALY_TEST_CELLS=str(Path(args.cells).resolve()))
    root = Path(__file__).resolve().parent.parent
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py"],
        env=env,
        cwd=root,
    )
    with np.load(args.cells) as data:
        X, y = data["X"], data["y"]
    rows = [time_configuration(X, y, "cpu", "float32", 16, args.repeats)]
    bare = []
    for precision in ("float32", "float16", "bfloat16"):
        row = time_configuration(X, y, "cuda", precision, 64, args.repeats)
        limit = bare_forward(X[N_FIT:], precision, 64, args.repeats)
        bare.append([precision, f"{limit:.0f}", f"{float(row[4]) / limit:.2f}"])
        rows.append(row)
    text = (
        f"### CUDA check, tf_efficientnet_lite0, {len(X)} ELPV cells at 224 px\n\n"
        f"Fit on {N_FIT} normal cells, score {len(X) - N_FIT} (half defective), "
        f"explain (default, `descent`) 32; median of {args.repeats} repeats after a warm-up.\n\n"
        + markdown_table(
            ["device", "precision", "batch", "fit img/s", "score img/s", "explain ms/img", "AUROC"],
            rows,
        )
        + "\n\nBare network forward on CUDA tensors, batch 64, and score_samples "
        + "(from uint8 arrays in host memory) as a fraction of it:\n\n"
        + markdown_table(["precision", "bare forward img/s", "score_samples / bare"], bare)
        + f"\n\nPeak CUDA memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB. "
        + f"tests/test_cuda.py exit status: {tests.returncode}.\n\n{environment()}\n"
    )
    publish(text, args.out)
    sys.exit(tests.returncode)


if __name__ == "__main__":
    main()
