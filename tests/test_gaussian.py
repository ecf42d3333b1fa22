"""Streaming Ledoit-Wolf moments equal scikit-learn's LedoitWolf."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.covariance import LedoitWolf

from skanomaly.gaussian import LedoitWolfMoments
from skanomaly.threshold import squared_by_cholesky, squared_low_rank


@settings(max_examples=40, deadline=None)
@given(
    n_samples=st.integers(2, 60),
    n_features=st.integers(1, 40),
    n_chunks=st.integers(1, 5),
    scale=st.floats(1e-2, 1e2),
    offset=st.floats(-50, 50),
    seed=st.integers(0, 2**31 - 1),
)
def test_chunked_moments_match_sklearn(n_samples, n_features, n_chunks, scale, offset, seed):
    rng = np.random.default_rng(seed)
    X = offset + scale * rng.normal(size=(n_samples, n_features)) * rng.uniform(
        0.1, 3, size=n_features
    )
    reference = LedoitWolf().fit(X)
    moments = LedoitWolfMoments(n_features)
    for chunk in np.array_split(X, min(n_chunks, n_samples)):
        moments.update(chunk)
    location, covariance, shrinkage = moments.ledoit_wolf()
    tolerance = 1e-6 * np.abs(reference.covariance_).max()
    np.testing.assert_allclose(location, reference.location_, atol=1e-8 * (1 + abs(offset)))
    np.testing.assert_allclose(covariance, reference.covariance_, atol=tolerance)
    assert abs(shrinkage - reference.shrinkage_) < 1e-6


def test_merge_equals_one_pass():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 12)) + 5
    whole = LedoitWolfMoments(12).update(X)
    left = LedoitWolfMoments(12).update(X[:20])
    right = LedoitWolfMoments(12).update(X[20:] * 1.0)
    merged = left.merge(right)
    for a, b in zip(merged.ledoit_wolf(), whole.ledoit_wolf()):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert merged.n_samples == 50 and left.n_samples == 20


def test_subtract_equals_fit_without_the_part():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 9)) * 3 + 7
    whole = LedoitWolfMoments(9).update(X[:25]).merge(LedoitWolfMoments(9).update(X[25:]))
    part = LedoitWolfMoments(9).update(X[5:15])
    rest = whole.subtract(part)
    reference = LedoitWolf().fit(np.r_[X[:5], X[15:]])
    location, covariance, shrinkage = rest.ledoit_wolf()
    np.testing.assert_allclose(location, reference.location_, rtol=1e-9)
    np.testing.assert_allclose(covariance, reference.covariance_, rtol=1e-8, atol=1e-10)
    assert abs(shrinkage - reference.shrinkage_) < 1e-9


@settings(max_examples=30, deadline=None)
@given(
    n_samples=st.integers(2, 30),
    extra_features=st.integers(1, 60),
    scale=st.floats(1e-2, 1e2),
    seed=st.integers(0, 2**31 - 1),
)
def test_low_rank_mahalanobis_equals_the_full_one(n_samples, extra_features, scale, seed):
    """The Woodbury form the out-of-fold threshold uses with fewer samples
    than dimensions gives the distances of the full Cholesky route."""
    n_features = n_samples + extra_features
    rng = np.random.default_rng(seed)
    X = scale * rng.normal(size=(n_samples, n_features)) * rng.uniform(0.1, 3, size=n_features)
    held = scale * rng.normal(size=(5, n_features))
    location, covariance, shrinkage = LedoitWolfMoments(n_features).update(X).ledoit_wolf()
    mu = np.trace(covariance) / n_features
    found = squared_low_rank(held, location, X, shrinkage, mu) if shrinkage > 0 else None
    condition = np.linalg.cond(covariance)
    if condition > 1e12:
        # Numerically singular: the threshold falls back to the full route.
        assert found is None or np.all(np.isfinite(found))
        return
    # Both routes lose digits in proportion to the condition number.
    rtol = max(1e-8, 1e-13 * condition)
    np.testing.assert_allclose(found, squared_by_cholesky(held, location, covariance), rtol=rtol)
