"""Speed and memory of scoring with glibc's default allocator settings and
with settings that keep freed memory for reuse (Linux only).

A forward pass at batch 16 allocates feature maps of tens of MB. glibc
serves blocks that large with fresh ``mmap`` pages and gives them back to
the kernel when they are freed (or trims its heap), so the next batch pays
the kernel again for zeroed pages: memory bandwidth, which a small virtual
machine has little of. ``MALLOC_MMAP_THRESHOLD_`` keeps such blocks in
the heap and ``MALLOC_TRIM_THRESHOLD_`` keeps the heap
from shrinking, so later batches reuse the same memory. Both are read when
the process starts, so each setting runs in its own process, in turn, and
each process times the bare forward pass (channels-last), ``score_samples``,
``fit`` and the default ``explain`` (on one batch) on the same cells; the
table shows the medians over the processes and their peak resident memory.

    python benchmarks/bench_malloc.py [--repeats 3] [--n-images 64]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from functools import partial
from pathlib import Path

# The values the Scaling page recommends: no block is too large for the heap,
# and the heap never shrinks.
RETAIN = {"MALLOC_MMAP_THRESHOLD_": str(2**32), "MALLOC_TRIM_THRESHOLD_": str(2**33)}
SETTINGS = {"glibc defaults": {}, " ".join(f"{k}={v}" for k, v in RETAIN.items()): RETAIN}


def worker(n_images, batch_size):
    """Images/s of the bare forward pass, score_samples, fit and explain, and
    the peak RSS."""
    import torch
    from _common import bare_forward, bare_network, median_time, peak_rss_mb

    from skanomaly import EfficientNetGaussianDetector
    from skanomaly.datasets import load_elpv

    cells = load_elpv(cell_type="mono", resize=224, max_samples=n_images).X
    detector = EfficientNetGaussianDetector(batch_size=batch_size).fit(cells)
    # The detector's network on a CPU: channels-last, as bench_throughput times it.
    network = bare_network()
    ((_, x),) = network.prepare(torch.from_numpy(cells / 255.0).float().permute(0, 3, 1, 2))
    seconds = {
        "bare forward": median_time(partial(bare_forward, network, x, batch_size), 3),
        "score_samples": median_time(lambda: detector.score_samples(cells), 3),
        "fit": median_time(lambda: detector.fit(cells), 3),
    }
    result = {name: len(cells) / value for name, value in seconds.items()}
    # The descent takes seconds per batch: one batch is enough to time it.
    few = cells[:batch_size]
    result["explain"] = len(few) / median_time(lambda: detector.explain(few), 3)
    return {**result, "peak RSS MiB": peak_rss_mb()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="processes per setting")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "malloc.md"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.n_images, args.batch_size)))
        return

    from _common import environment, markdown_table, publish

    runs = {name: [] for name in SETTINGS}
    for _ in range(args.repeats):
        for name, settings in SETTINGS.items():
            env = {k: v for k, v in os.environ.items() if k not in RETAIN} | settings
            command = [sys.executable, __file__, "--worker", "--n-images", str(args.n_images)]
            command += ["--batch-size", str(args.batch_size)]
            out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    columns = ["bare forward", "score_samples", "fit", "explain", "peak RSS MiB"]
    rows = [
        [name, *(f"{statistics.median(r[c] for r in results):.1f}" for c in columns)]
        for name, results in runs.items()
    ]
    header = ["allocator settings", *(f"{c} img/s" for c in columns[:4]), columns[4]]
    text = (
        f"### glibc allocator settings, {args.n_images} ELPV cells at 224x224 px, "
        f"batch size {args.batch_size}\n\nMedian over {args.repeats} processes per "
        "setting, run in turn; each process times every row as the median of 3 "
        f"after a warm-up.\n\n{markdown_table(header, rows)}\n\n{environment()}\n"
    )
    publish(text, args.out)


if __name__ == "__main__":
    main()
