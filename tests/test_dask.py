"""Scale-out recipes on dask: map_blocks scoring and GridSearchCV on a cluster."""

import numpy as np
import pytest
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
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, distributed.Client(cluster):
        with parallel_backend("dask"):
            search.fit(X, y)
    local = GridSearchCV(search.estimator, search.param_grid, scoring="roc_auc", cv=search.cv)
    local.fit(X, y)
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"], rtol=1e-6
    )
