"""skanomaly next to its peers over several seeded splits.

One split of 40 test images moves an AUROC by a few hundredths when one
image changes rank, which is the size of most gaps in the peers table. This
script runs ``bench_peers.py`` once per seed (each seed draws its own
training and test images from the same pool, see
docs/benchmark_protocol.rst), with the arguments given after ``--``, and
tabulates each method's image AUROC, pixel AUROC and AU-PRO on every seed,
their mean, and on how many seeds skanomaly's defaults reach each peer's.
Times are left to the single-seed pages.

    python benchmarks/bench_peers_seeds.py --seeds 0 1 2 3 4 \\
        [--out benchmarks/results/peers_seeds.md] -- [bench_peers arguments]
"""

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import environment, markdown_table, per_seed, publish

HERE = Path(__file__).resolve().parent
METRICS = (("image_auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC"), ("au_pro", "AU-PRO"))


def run_seed(seed, passed, folder):
    """bench_peers' results for ``seed``: {data set: [result dict, ...]}."""
    rows = Path(folder) / f"rows-{seed}.json"
    command = [sys.executable, str(HERE / "bench_peers.py"), "--seed", str(seed)]
    command += ["--rows-json", str(rows), "--out", str(Path(folder) / f"peers-{seed}.md")]
    subprocess.run(command + passed, check=True, stdout=subprocess.DEVNULL)
    return json.loads(rows.read_text())


def reaches(ours, theirs):
    """Seeds on which skanomaly's value is at least the peer's, of those
    where both have one."""
    pairs = [(a, b) for a, b in zip(ours, theirs) if a is not None and b is not None]
    return f"{sum(a >= b for a, b in pairs)}/{len(pairs)}" if pairs else "n/a"


def _label(result, kinds):
    """The method's name, with its features where it ran on several."""
    method = result["method"]
    return method if len(kinds[method]) == 1 else f"{method}, {result['features']}"


def dataset_table(name, runs):
    """One data set's table: a row per method, over ``runs`` (one per seed)."""
    # A peer run on two kinds of features (the scikit-learn ones) gets a row each.
    kinds = {}
    for run in runs:
        for r in run:
            kinds.setdefault(r["method"], {})[r["features"]] = None
    methods = list(dict.fromkeys(_label(r, kinds) for run in runs for r in run))
    by_method = [{_label(r, kinds): r for r in run} for run in runs]
    values = {
        (method, key): [run.get(method, {}).get(key) for run in by_method]
        for method in methods
        for key, _ in METRICS
    }
    present = [
        (k, label)
        for k, label in METRICS
        if any(v is not None for m in methods for v in values[m, k])
    ]
    header = ["method", *(f"{label} (seeds, mean)" for _, label in present)]
    header += [f"skanomaly's {label} at least this row's" for _, label in present]
    lines = []
    for method in methods:
        line = [method, *(per_seed(values[method, k]) for k, _ in present)]
        if method == "skanomaly":
            line += ["—"] * len(present)
        else:
            line += [reaches(values["skanomaly", k], values[method, k]) for k, _ in present]
        lines.append(line)
    return f"### {name}\n\n" + markdown_table(header, lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", default=str(HERE / "results" / "peers_seeds.md"))
    parser.add_argument("passed", nargs="*", help="bench_peers arguments, after --")
    args = parser.parse_args()

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        runs = []
        for seed in args.seeds:
            print(f"[{time.perf_counter() - started:6.0f} s] seed {seed}", flush=True)
            runs.append(run_seed(seed, args.passed, folder))
    names = list(dict.fromkeys(name for run in runs for name in run))
    sections = [dataset_table(name, [run.get(name, []) for run in runs]) for name in names]
    command = shlex.join(["python", "benchmarks/bench_peers_seeds.py", *sys.argv[1:]])
    text = (
        "## skanomaly and its peers over seeds\n\n"
        f"`{command}`, {(time.perf_counter() - started) / 60:.1f} min in all. "
        f"Seeds {', '.join(map(str, args.seeds))}: each draws its own training and "
        "test images (docs/benchmark_protocol.rst); each cell lists the seeds' "
        "values in that order, then their mean. The last columns count the seeds "
        "on which skanomaly's defaults score at least as high as that row.\n\n"
        + "\n\n".join(sections)
        + f"\n\n{environment()}\n"
    )
    publish(text, args.out)


if __name__ == "__main__":
    main()
