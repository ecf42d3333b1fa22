"""Thread settings under dask and joblib: speed and torch threads per process.

On the same ELPV monocrystalline cells (shuffled with a fixed seed), this
script times

(a) scoring a dask array with ``map_blocks`` on dask's synchronous scheduler,
    on its threaded scheduler as it comes, and on the threaded scheduler with
    ``torch.set_num_threads(1)`` called before its pool's threads start and
    after they already ran torch, recording inside each block the torch
    thread count and how many blocks ran at once;
(b) ``GridSearchCV`` over ``levels`` (cv=2, image AUROC) with ``n_jobs=1``
    and with ``n_jobs=2`` on joblib's loky backend;
(c) the same search on a ``dask.distributed`` LocalCluster (2 worker
    processes, 1 thread each) through joblib's dask backend (skip it with
    ``--no-cluster``).

In (b) and (c) the scorer returns, beside the AUROC, ``torch.get_num_threads()``
and the process id of the worker it ran in, so the thread counts in the table
were read inside the workers that did the fitting. skanomaly never calls
``torch.set_num_threads``: what the table shows is what joblib and dask set.

    python benchmarks/bench_threads.py [--n-images 96] [--repeats 3] [--no-cluster]
"""

import argparse
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from _common import environment, markdown_table, median_time, publish
from sklearn.metrics import get_scorer
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from skanomaly import EfficientNetGaussianDetector
from skanomaly.datasets import load_elpv

_AUROC = get_scorer("roc_auc")


def auroc_and_threads(estimator, X, y):
    """Image AUROC, plus the torch threads and process id where it ran."""
    return {
        "roc_auc": _AUROC(estimator, X, y),
        "torch_threads": torch.get_num_threads(),
        "pid": os.getpid(),
    }


def search_threads(search):
    """(worker processes used, torch threads in them) from ``cv_results_``."""
    results = search.cv_results_
    splits = [k for k in results if k.startswith("split") and k.endswith("_test_pid")]
    pids = {int(p) for k in splits for p in results[k]}
    threads = {
        int(t)
        for k in results
        if k.startswith("split") and k.endswith("_test_torch_threads")
        for t in results[k]
    }
    return pids, threads


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=96)
    parser.add_argument("--resize", type=int, default=224)
    parser.add_argument("--chunk", type=int, default=16, help="images per dask block")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-cluster", action="store_true", help="skip the LocalCluster search")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "threads.md"))
    args = parser.parse_args()

    import dask
    import dask.array as da
    import joblib
    from joblib import parallel_backend

    cores = os.cpu_count()
    main_threads = torch.get_num_threads()
    omp_at_start = os.environ.get("OMP_NUM_THREADS", "unset")
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    cells = load_elpv(cell_type="mono", resize=args.resize)
    # ELPV's file order groups panels: draw normal and defective cells at
    # random (fixed seed), fit (a) on the first half of the normal ones.
    rng = np.random.default_rng(0)
    n_normal = 2 * args.n_images // 3
    normal = rng.choice(np.flatnonzero(cells.y == 1), n_normal, replace=False)
    defective = rng.choice(np.flatnonzero(cells.y == -1), args.n_images - n_normal, replace=False)
    train = normal[: n_normal // 2]
    test = np.r_[normal[n_normal // 2 :], defective]
    X, y = cells.X[np.r_[normal, defective]], cells.y[np.r_[normal, defective]]

    # (a) map_blocks scoring on dask's local schedulers.
    levels = (0, 1, 2, 3, 4, 5)
    detector = EfficientNetGaussianDetector(levels=levels).fit(cells.X[train])
    X_test = cells.X[test]
    images = da.from_array(X_test, chunks=(args.chunk, *X_test.shape[1:]))
    reference = detector.score_samples(X_test)

    record = {"threads": set(), "active": 0, "most": 0}
    lock = threading.Lock()

    def score_block(block):
        with lock:
            record["active"] += 1
            record["most"] = max(record["most"], record["active"])
        record["threads"].add(torch.get_num_threads())
        try:
            return detector.score_samples(block)
        finally:
            with lock:
                record["active"] -= 1

    def score(scheduler, pool):
        def run():
            blocks = images.map_blocks(
                score_block, drop_axis=[1, 2, 3], meta=np.array((), np.float64)
            )
            scores = blocks.compute(scheduler=scheduler, pool=pool)
            np.testing.assert_allclose(scores, reference, rtol=1e-5)

        return run

    # torch keeps an OpenMP thread count per thread, fixed the first time the
    # thread runs a parallel op: torch.set_num_threads(1) in the main thread
    # reaches only threads that have not run torch yet. Each row but the last
    # gets a fresh pool of os.cpu_count() threads, dask's default size; the
    # last reuses the pool of the plain "threads" row to show the pitfall.
    dask_rows = []
    pools = {}
    for label, scheduler, torch_threads, pool_name in [
        ("synchronous", "synchronous", None, None),
        ("threads", "threads", None, "default"),
        ("threads, torch.set_num_threads(1) before the pool starts", "threads", 1, "fresh"),
        ("threads, torch.set_num_threads(1) after the pool ran torch", "threads", 1, "default"),
    ]:
        record.update(threads=set(), most=0)
        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        try:
            if pool_name is not None and pool_name not in pools:
                pools[pool_name] = ThreadPoolExecutor(cores)
            seconds = median_time(score(scheduler, pools.get(pool_name)), args.repeats)
        finally:
            torch.set_num_threads(main_threads)
        threads = "/".join(str(t) for t in sorted(record["threads"]))
        total = max(record["threads"]) * record["most"]
        dask_rows.append(
            [
                label,
                f"{len(X_test) / seconds:.1f}",
                f"{seconds:.2f}",
                threads,
                record["most"],
                f"{total} / {cores}",
            ]
        )
    for pool in pools.values():
        pool.shutdown()

    # (b), (c) GridSearchCV over levels.
    grid = {"levels": [(0, 1), (0, 1, 2), (0, 1, 2, 3)]}
    cv = StratifiedKFold(n_splits=2, shuffle=True, random_state=0)

    def search(n_jobs):
        return GridSearchCV(
            EfficientNetGaussianDetector(),
            grid,
            scoring=auroc_and_threads,
            refit="roc_auc",
            cv=cv,
            n_jobs=n_jobs,
        )

    def timed_search(n_jobs, backend=None):
        fitted = {}

        def run():
            estimator = search(n_jobs)
            if backend is None:
                estimator.fit(X, y)
            else:
                with parallel_backend(backend):
                    estimator.fit(X, y)
            fitted["search"] = estimator

        return median_time(run, args.repeats), fitted["search"]

    search_rows = []

    def add_row(label, n_workers, seconds, fitted):
        pids, threads = search_threads(fitted)
        (threads,) = threads
        in_process = pids == {os.getpid()}
        search_rows.append(
            [
                label,
                f"{seconds:.1f}",
                "main process" if in_process else len(pids),
                threads,
                f"{n_workers * threads} / {cores}",
                f"{fitted.best_score_:.3f}",
                fitted.best_params_["levels"],
            ]
        )

    seconds, fitted = timed_search(1)
    add_row("n_jobs=1", 1, seconds, fitted)
    seconds, fitted = timed_search(2)
    add_row("n_jobs=2, loky", 2, seconds, fitted)
    if not args.no_cluster:
        import distributed

        with (
            distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            distributed.Client(cluster),
        ):
            seconds, fitted = timed_search(-1, backend="dask")
        add_row("LocalCluster(2 workers x 1 thread), dask backend", 2, seconds, fitted)

    omp_now = os.environ.get("OMP_NUM_THREADS", "unset")
    omp = omp_at_start
    if omp_now != omp_at_start:
        # LocalCluster's nannies write distributed.nanny.pre-spawn-environ
        # into this process's os.environ before spawning, and leave it there.
        omp += f", {omp_now} after the LocalCluster started (its nannies leave it in os.environ)"
    text = (
        f"### Thread settings under dask and joblib, {len(X)} ELPV cells at "
        f"{args.resize} px\n\n"
        f"Median of {args.repeats} repeats after a warm-up (worker processes are "
        f"started and load the network in the warm-up). OMP_NUM_THREADS in the "
        f"parent: {omp}; torch threads in the parent: {main_threads}; 1-minute load "
        f"average before the run: {load}.\n\n"
        f"**map_blocks scoring** of {len(X_test)} cells ({args.chunk} per block, "
        f"levels {levels}), detector fitted on {len(train)} normal cells. Torch "
        "threads and concurrent blocks were read inside the blocks.\n\n"
        + markdown_table(
            [
                "dask scheduler",
                "images/s",
                "seconds",
                "torch threads per block",
                "blocks at once",
                "threads / cores",
            ],
            dask_rows,
        )
        + f"\n\n**GridSearchCV** over levels {grid['levels']}, cv=2, image "
        f"AUROC, {len(X)} cells ({n_normal} normal, {len(X) - n_normal} defective): 6 fits "
        "+ refit. Torch threads were read inside the processes that fitted (scorer).\n\n"
        + markdown_table(
            [
                "search",
                "seconds",
                "worker processes",
                "torch threads per worker",
                "threads / cores",
                "best AUROC",
                "best levels",
            ],
            search_rows,
        )
        + f"\n\njoblib {joblib.__version__}, dask {dask.__version__}. {environment()}\n"
    )
    publish(text, args.out)


if __name__ == "__main__":
    main()
