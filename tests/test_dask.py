"""Scale-out recipes on dask: map_blocks scoring and GridSearchCV on a cluster."""

import os

import numpy as np
import pytest
from joblib import Parallel, delayed
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from skanomaly import EfficientNetGaussianDetector

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")


def score_blocks(detector, images):
    """The recipe: one score per image of a dask array chunked along images."""
    return images.map_blocks(
        detector.score_samples, drop_axis=list(range(1, images.ndim)), dtype=np.float64
    )


def test_map_blocks_scores_equal_in_memory_scores(fitted, cells):
    normal, defective = cells
    X = np.concatenate([normal[16:], defective])
    images = da.from_array(X, chunks=(5, *X.shape[1:]))
    scores = score_blocks(fitted, images).compute(scheduler="threads")
    np.testing.assert_allclose(scores, fitted.score_samples(X), rtol=1e-5)


def test_grid_search_on_a_local_cluster(cells):
    from joblib import parallel_backend

    normal, defective = cells
    X = np.concatenate([normal[:12], defective[:6]])
    y = np.r_[np.ones(12, int), -np.ones(6, int)]
    search = GridSearchCV(
        EfficientNetGaussianDetector(),
        {"levels": [(0, 1), (2, 3)]},
        scoring="roc_auc",
        cv=StratifiedKFold(n_splits=2, shuffle=True, random_state=0),
    )
    # Worker processes rebuild the network from the bundled weights: the
    # pickled estimators carry no weights and need no internet.
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
        parallel_backend("dask"),
    ):
        search.fit(X, y)
    local = GridSearchCV(search.estimator, search.param_grid, scoring="roc_auc", cv=search.cv)
    local.fit(X, y)
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"], rtol=1e-6
    )


def _fit_and_score_in_worker(levels, train, test):
    """Fit a detector where joblib runs this; report the torch threads there."""
    import torch

    scores = EfficientNetGaussianDetector(levels=levels).fit(train).score_samples(test)
    return os.getpid(), torch.get_num_threads(), scores


def test_loky_workers_do_not_oversubscribe(cells, monkeypatch):
    """n_jobs loky workers x torch threads in each fit within the cores.

    joblib's loky backend starts its workers with OMP_NUM_THREADS set to
    cores // n_jobs unless the parent already sets it; skanomaly sets no
    thread count itself. The variables are cleared here so that loky's own
    default is what is tested (a LocalCluster started earlier in the session
    leaves OMP_NUM_THREADS=1 in this process's environment).
    """
    from joblib._parallel_backends import LokyBackend

    n_jobs = 2
    if os.cpu_count() < n_jobs:
        pytest.skip(f"needs {n_jobs} cores")
    for var in LokyBackend.MAX_NUM_THREADS_VARS:
        monkeypatch.delenv(var, raising=False)
    normal, defective = cells
    train, test = normal[:16], np.concatenate([normal[16:], defective])
    tasks = [(0, 1), (2, 3)]
    results = Parallel(n_jobs=n_jobs, backend="loky")(
        delayed(_fit_and_score_in_worker)(levels, train, test) for levels in tasks
    )
    pids = [pid for pid, _, _ in results]
    threads = [t for _, t, _ in results]
    assert os.getpid() not in pids  # the fits ran in worker processes
    assert n_jobs * max(threads) <= os.cpu_count(), (
        f"{n_jobs} workers x {max(threads)} torch threads on {os.cpu_count()} cores"
    )
    for levels, (_, _, scores) in zip(tasks, results):
        local = EfficientNetGaussianDetector(levels=levels).fit(train).score_samples(test)
        # Another thread count sums in another order; the default scores are
        # standardised and cross zero, so the error is held to their scale.
        np.testing.assert_allclose(scores, local, rtol=0, atol=1e-6 * np.abs(local).max())
