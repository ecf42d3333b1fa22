"""Pixel metrics exact and binned: peak memory, time, and how far apart.

``skanomaly evaluate`` computes the pixel AUROC and the AU-PRO exactly up to
20 million pixels and binned on a grid of 10,000 thresholds past that
(``num_thresholds``). This page measures why and at what price.

Memory and time: each run is a fresh process that makes N one-megapixel
float32 maps and their masks (a rectangle on every other image, its maps
raised by 0.5; the inputs alone take 5 bytes per pixel) and computes one
metric, exact or binned; the table gives the median seconds and the largest
peak resident memory (VmHWM) of ``--repeats`` runs.

How far apart: the binned values minus the exact ones, on the default
detector's maps of the data sets of ``bench_explain.py`` (needs the shared
data; skipped without it).

    python benchmarks/bench_pixel_metrics.py [--sizes 5 20 40] [--grid 10000]
"""

import argparse
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
from _common import environment, markdown_table, publish

from skanomaly.datasets import shared_data_dir
from skanomaly.metrics import pixel_roc_auc, pro_score

CHILD = """
import sys, time
import numpy as np
from skanomaly.metrics import pixel_roc_auc, pro_score

n, metric = int(sys.argv[1]), sys.argv[2]
grid = None if sys.argv[3] == "exact" else int(sys.argv[3])
masks = np.zeros((n, 1024, 1024), bool)
masks[::2, 300:420, 200:520] = True
maps = np.random.default_rng(0).random((n, 1024, 1024), dtype=np.float32)
maps[masks] += 0.5
start = time.perf_counter()
if metric == "pixel AUROC":
    pixel_roc_auc(masks, maps, grid)
else:
    pro_score(masks, maps, 0.3, grid)
seconds = time.perf_counter() - start
peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(seconds, int(peak) / 1024)
"""

METRICS = ("pixel AUROC", "AU-PRO")


def cost_rows(sizes, grid, repeats):
    """One row per size, metric and mode: seconds and peak RSS."""
    rows = []
    for n in sizes:
        for metric in METRICS:
            for mode in ("exact", str(grid)):
                runs = [
                    subprocess.run(
                        [sys.executable, "-c", CHILD, str(n), metric, mode],
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout.split()
                    for _ in range(repeats)
                ]
                seconds = statistics.median(float(r[0]) for r in runs)
                peak = max(float(r[1]) for r in runs)
                name = "exact" if mode == "exact" else f"binned, {grid:,} thresholds"
                rows.append([n, metric, name, f"{n * 5}", f"{peak:.0f}", f"{seconds:.1f}"])
                print(rows[-1], flush=True)
    return rows


def difference_rows(args, grid):
    """The binned metrics minus the exact ones, on real maps."""
    import torch
    from bench_explain import check_data, data_sets

    from skanomaly import EfficientNetGaussianDetector

    torch.set_num_threads(2)
    check_data(args)
    rows = []
    for name, (fit, X, masks) in data_sets(args):
        maps = EfficientNetGaussianDetector(progress=False).fit(fit).explain(X)
        masks = [np.asarray(m, bool) for m in masks]
        auroc, pro = pixel_roc_auc(masks, maps), pro_score(masks, maps, 0.3)
        binned = pixel_roc_auc(masks, maps, grid), pro_score(masks, maps, 0.3, grid)
        rows.append(
            [
                name,
                f"{auroc:.5f}",
                f"{binned[0] - auroc:+.1e}",
                f"{pro:.5f}",
                f"{binned[1] - pro:+.1e}",
            ]
        )
        print(rows[-1], flush=True)
    return rows


def main(argv=None):
    from bench_explain import data_arguments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 20, 40])
    parser.add_argument("--grid", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "pixel_metrics.md")
    )
    data_arguments(parser)
    args = parser.parse_args(argv)
    command = shlex.join(["python", "benchmarks/bench_pixel_metrics.py", *(argv or sys.argv[1:])])
    costs = markdown_table(
        ["one-megapixel maps", "metric", "computed", "inputs MiB", "peak RSS MiB", "seconds"],
        cost_rows(args.sizes, args.grid, args.repeats),
    )
    text = (
        f"## Pixel metrics, exact and binned\n\n`{command}`. Protocol: the module docstring "
        f"of benchmarks/bench_pixel_metrics.py.\n\n### Memory and time\n\n{costs}\n"
    )
    if shared_data_dir() is not None:
        differences = markdown_table(
            ["data set", "pixel AUROC", "binned - exact", "AU-PRO", "binned - exact"],
            difference_rows(args, args.grid),
        )
        text += (
            f"\n### Binned on {args.grid:,} thresholds minus exact, on the default "
            f"detector's maps\n\n{differences}\n"
        )
    publish(f"{text}\n{environment()}\n", args.out)


if __name__ == "__main__":
    main()
