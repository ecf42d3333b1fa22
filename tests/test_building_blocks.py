"""The public functions below the detector refuse what they cannot compute
with a ValueError or TypeError that names it, never an error from inside
numpy or torch, and never a silent NaN or a silently different rule."""

import numpy as np
import pytest
import torch

from skanomaly.features import patch_features, pool
from skanomaly.gaussian import LedoitWolfMoments, ScoreRule, combine_levels
from skanomaly.metrics import pixel_roc_auc, pro_score
from skanomaly.patches import k_centres, nearest_patches, worst_patch_distances
from skanomaly.segmentation import map_sample, outline
from skanomaly.threshold import (
    chi2_offset,
    conformal_offset,
    conformal_p_values,
    percentile_offset,
)

ROWS = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
MAPS = [torch.zeros(1, 3, 4, 4)]


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: percentile_offset([], 0.05), ValueError, "non-empty"),
        (lambda: percentile_offset([1.0, np.nan, 2.0], 0.05), ValueError, "NaN"),
        (lambda: percentile_offset([1.0, 2.0], 5), ValueError, "contamination"),
        (lambda: conformal_offset([], 0.1), ValueError, "non-empty"),
        (lambda: conformal_offset(np.arange(10.0), 2), ValueError, "fpr"),
        (lambda: conformal_p_values([], [1.0]), ValueError, "non-empty"),
        (lambda: chi2_offset([3], "foo", 0.05), ValueError, "'mahalanobis' or 'squared'"),
        (lambda: combine_levels(np.ones((2, 3)), "foo"), ValueError, "got 'foo'"),
        (lambda: combine_levels(np.ones((2, 3)), ScoreRule("l1")), ValueError, "got 'l1'"),
        (lambda: LedoitWolfMoments(3).ledoit_wolf(), ValueError, "no samples"),
        (lambda: LedoitWolfMoments(3).update(np.ones(3)), ValueError, r"\(n, 3\)"),
        (lambda: LedoitWolfMoments(3).update(np.full((2, 3), np.nan)), ValueError, "NaN"),
        (lambda: worst_patch_distances([], ROWS), ValueError, "images is empty"),
        (lambda: k_centres(np.where(ROWS > 1, np.nan, ROWS), 3), ValueError, "NaN"),
        (lambda: k_centres(ROWS.astype(np.int64), 3), ValueError, "float"),
        (lambda: k_centres(ROWS, 2.5), ValueError, "Cannot choose 2.5"),
        (lambda: nearest_patches(torch.ones(2, 4), torch.ones(3, 4), chunk=0), ValueError, "chunk"),
        (lambda: pool(MAPS[0], "median"), ValueError, "pooling"),
        (lambda: patch_features(MAPS, 2), ValueError, "odd positive"),
        (lambda: patch_features(MAPS, (1, 4)), ValueError, "odd positive"),
        (lambda: map_sample([np.nan, 1.0]), ValueError, "NaN"),
        (lambda: outline(np.array([["a", "b"]])), TypeError, "dtype <U1"),
    ],
)
def test_building_blocks_refuse_what_they_cannot_compute(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_moments_refuse_a_bad_batch_and_stay_usable():
    moments = LedoitWolfMoments(4).update(ROWS[:10])
    before = moments.copy()
    with pytest.raises(ValueError, match="NaN"):
        moments.update(np.where(ROWS[10:] > 1, np.inf, ROWS[10:]))
    for name in ("sum", "sum_outer", "sum_sqnorm_x", "shift"):
        np.testing.assert_array_equal(getattr(moments, name), getattr(before, name))
    assert moments.n_samples == 10


def test_binned_map_metrics_take_maps_spanning_the_whole_float_range():
    # The span of the lowest and highest value overflowed the grid to NaN.
    masks = np.zeros((2, 8, 8), bool)
    masks[0, 2:4, 2:4] = True
    maps = np.random.default_rng(0).normal(size=(2, 8, 8))
    maps[0, 2:4, 2:4] += 3
    maps[1, 0, 0], maps[0, 7, 7] = -1.7e308, 1.7e308
    for metric in (pixel_roc_auc, pro_score):
        assert 0 <= metric(masks, maps, num_thresholds=10) <= 1
