import itertools
import pickle
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from skimage.measure import label as skimage_label
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skanomaly._resize import resize_bilinear
from skanomaly.metrics import (
    image_roc_auc,
    image_scores_from_maps,
    make_localization_scorer,
    masks_image_roc_auc_scorer,
    masks_to_labels,
    pixel_roc_auc,
    pixel_roc_auc_scorer,
    pro_score,
    pro_scorer,
    region_hits,
)


def reference_pro(masks, maps, max_fpr):
    """Straightforward AU-PRO: one thresholding of every map per distinct score."""
    regions = []
    for index, mask in enumerate(masks):
        labels = skimage_label(np.asarray(mask, dtype=bool), connectivity=2)
        regions += [(index, labels == k) for k in range(1, labels.max() + 1)]
    n_normal = sum(np.sum(~np.asarray(mask, dtype=bool)) for mask in masks)
    scores = sorted({float(v) for m in maps for v in np.ravel(m)}, reverse=True)
    points = [(0.0, 0.0)]
    for t in scores:
        fp = sum(np.sum((m >= t) & ~np.asarray(k, dtype=bool)) for m, k in zip(maps, masks))
        overlaps = [np.mean(maps[i][region] >= t) for i, region in regions]
        points.append((fp / n_normal, float(np.mean(overlaps))))
    area = 0.0
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x0 >= max_fpr:
            break
        if x1 > max_fpr:
            y1 = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)
            x1 = max_fpr
        area += (x1 - x0) * (y0 + y1) / 2
    return area / max_fpr


def masks_and_maps(max_side=5):
    """Random small (masks, maps) stacks with both pixel classes and many ties."""

    @st.composite
    def build(draw):
        shape = (
            draw(st.integers(1, 3)),
            draw(st.integers(1, max_side)),
            draw(st.integers(1, max_side)),
        )
        masks = draw(hnp.arrays(bool, shape))
        values = st.one_of(
            st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0]),
            st.floats(-3, 3, allow_nan=False, width=32),
        )
        maps = draw(hnp.arrays(np.float64, shape, elements=values))
        assume(masks.any() and not masks.all())
        return masks, maps

    return build()


# --- pro_score -------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(data=masks_and_maps(), max_fpr=st.floats(0.01, 1.0))
def test_pro_matches_reference(data, max_fpr):
    masks, maps = data
    expected = reference_pro(masks, maps, max_fpr)
    assert pro_score(masks, maps, max_fpr=max_fpr) == pytest.approx(expected, abs=1e-6)


@settings(max_examples=30, deadline=None)
@given(data=masks_and_maps())
def test_pro_invariant_to_increasing_transform(data):
    masks, maps = data
    # A strictly increasing remap of the distinct values (exp() could merge
    # values that differ by less than its rounding).
    _, ranks = np.unique(maps, return_inverse=True)
    remapped = ranks.reshape(maps.shape).astype(float) ** 3 - 7.0
    assert pro_score(masks, remapped) == pytest.approx(pro_score(masks, maps), abs=1e-9)


def test_pro_perfect_constant_inverted():
    masks = np.zeros((2, 6, 6), dtype=bool)
    masks[0, 1:3, 1:4] = True
    masks[1, 4:, 4:] = True
    assert pro_score(masks, masks.astype(float)) == 1.0
    # Constant map: the curve is the diagonal (0, 0) -> (1, 1), whose area up
    # to max_fpr is max_fpr**2 / 2, i.e. max_fpr / 2 once normalized.
    assert pro_score(masks, np.ones((2, 6, 6))) == pytest.approx(0.15)
    assert pro_score(masks, np.ones((2, 6, 6)), max_fpr=1.0) == pytest.approx(0.5)
    assert pro_score(masks, (~masks).astype(float)) == 0.0


def test_pro_hand_computed():
    # One region of two pixels (scores 0.9 and 0.5) and 8 normal pixels, one
    # of which scores 0.7. The curve is (0, 0), (0, .5), (.125, .5),
    # (.125, 1), (1, 1): area up to 0.3 is .125 * .5 + .175 * 1 = 0.2375.
    masks = np.zeros((1, 1, 10), dtype=bool)
    masks[0, 0, :2] = True
    maps = np.zeros((1, 1, 10))
    maps[0, 0, :3] = [0.9, 0.5, 0.7]
    assert pro_score(masks, maps) == pytest.approx(0.2375 / 0.3)
    # max_fpr inside the flat segment at PRO 0.5: the normalized area is 0.5.
    assert pro_score(masks, maps, max_fpr=0.0625) == pytest.approx(0.5)


def test_pro_interpolates_at_max_fpr():
    # Constant map -> diagonal; for any max_fpr the interpolated PRO at
    # max_fpr equals max_fpr, so the normalized area is max_fpr / 2.
    masks = np.zeros((1, 4, 5), dtype=bool)
    masks[0, 0, 0] = True
    for max_fpr in (0.05, 0.3, 0.77, 1.0):
        score = pro_score(masks, np.zeros((1, 4, 5)), max_fpr=max_fpr)
        assert score == pytest.approx(max_fpr / 2)


def test_pro_uses_8_connectivity():
    # (0, 0) touches (1, 1) at a corner: one region {(0,0), (1,1), (1,2)} of
    # area 3 with 8-connectivity (two regions with 4-connectivity). The map
    # flags (0, 0) alone first: PRO 1/3 at FPR 0, then (1, 1).
    masks = np.zeros((1, 4, 4), dtype=bool)
    masks[0, 0, 0] = masks[0, 1, 1] = masks[0, 1, 2] = True
    maps = np.zeros((1, 4, 4))
    maps[0, 0, 0] = 1.0
    assert pro_score(masks, maps, max_fpr=1.0) == pytest.approx(1 / 3 + 1 / 3)


def test_pro_regions_weigh_equally():
    # A 1-pixel and a 9-pixel region: finding only the small one gives PRO
    # 0.5 at FPR 0, whatever the sizes.
    masks = np.zeros((1, 8, 8), dtype=bool)
    masks[0, 0, 0] = True
    masks[0, 4:7, 4:7] = True
    maps = np.zeros((1, 8, 8))
    maps[0, 0, 0] = 1.0
    # Curve: (0, 0), (0, .5), (1, 1); PRO at 0.3 is .5 + .5 * .3 = .65.
    assert pro_score(masks, maps) == pytest.approx((0.5 + 0.65) / 2)


def test_pro_regions_do_not_cross_images():
    # The same pixel in consecutive images is two regions, not one.
    masks = np.zeros((2, 3, 3), dtype=bool)
    masks[:, 1, 1] = True
    maps = np.zeros((2, 3, 3))
    maps[0, 1, 1] = 1.0
    # PRO 1/2 at FPR 0 (one of two regions), then (1, 1).
    assert pro_score(masks, maps, max_fpr=1.0) == pytest.approx(0.5 + 0.25)


def test_pro_list_of_different_sizes():
    rng = np.random.default_rng(0)
    masks = [rng.random((5, 7)) > 0.7, rng.random((4, 4)) > 0.7, np.zeros((3, 6), bool)]
    maps = [rng.random(m.shape) for m in masks]
    expected = reference_pro(masks, maps, 0.3)
    assert pro_score(masks, maps) == pytest.approx(expected, abs=1e-9)
    assert pro_score([m.astype(np.uint8) for m in masks], maps) == pytest.approx(expected)


def test_pro_list_equals_stack():
    rng = np.random.default_rng(1)
    masks = rng.random((3, 6, 6)) > 0.8
    maps = rng.random((3, 6, 6)).astype(np.float32)
    assert pro_score(list(masks), list(maps)) == pro_score(masks, maps)


def test_pro_grid_is_exact_on_grid_values():
    rng = np.random.default_rng(2)
    masks = rng.random((3, 8, 8)) > 0.7
    maps = rng.integers(0, 5, size=(3, 8, 8)).astype(float)
    maps[0, 0, :2] = [0, 4]  # the grid linspace(0, 4, 5) hits every value
    exact = pro_score(masks, maps)
    assert pro_score(masks, maps, num_thresholds=5) == pytest.approx(exact, abs=1e-12)


def test_pro_grid_approximates_exact():
    rng = np.random.default_rng(3)
    masks = np.zeros((4, 32, 32), dtype=bool)
    masks[:2, 8:20, 10:16] = True
    maps = rng.random((4, 32, 32)) + 0.5 * masks
    exact = pro_score(masks, maps)
    assert pro_score(masks, maps, num_thresholds=2000) == pytest.approx(exact, abs=2e-3)
    constant = np.full((4, 32, 32), 7.0)
    assert pro_score(masks, constant, num_thresholds=10) == pytest.approx(0.15)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_fpr": 0}, "max_fpr"),
        ({"max_fpr": 1.5}, "max_fpr"),
        ({"max_fpr": "0.3"}, "max_fpr"),
        ({"num_thresholds": 1}, "num_thresholds"),
        ({"num_thresholds": 10.0}, "num_thresholds"),
    ],
)
def test_pro_bad_parameters(kwargs, match):
    masks = np.zeros((1, 2, 2), dtype=bool)
    masks[0, 0, 0] = True
    with pytest.raises(ValueError, match=match):
        pro_score(masks, np.zeros((1, 2, 2)), **kwargs)


# --- shared validation ------------------------------------------------------


@pytest.mark.parametrize("metric", [pixel_roc_auc, pro_score])
def test_validation(metric):
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[0, 1, 1] = True
    maps = np.zeros((2, 4, 4))
    with pytest.raises(ValueError, match=r"masks\[0\] has shape \(4, 4\) but maps\[0\]"):
        metric(masks, np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match="2 masks but 3 anomaly maps"):
        metric(masks, np.zeros((3, 4, 4)))
    bad = maps.copy()
    bad[1, 2, 2] = np.nan
    with pytest.raises(ValueError, match=r"maps\[1\] contains NaN"):
        metric(masks, bad)
    with pytest.raises(ValueError, match="divide by 255"):
        metric(masks.astype(np.uint8) * 255, maps)
    with pytest.raises(ValueError, match="boolean-like"):
        metric(masks * 0.5, maps)
    with pytest.raises(TypeError, match="boolean-like"):
        metric(masks.astype(str), maps)
    with pytest.raises(TypeError, match="real numbers"):
        metric(masks, maps.astype(complex))
    with pytest.raises(ValueError, match="no anomalous"):
        metric(np.zeros_like(masks), maps)
    with pytest.raises(ValueError, match="no normal"):
        metric(np.ones_like(masks), maps)
    with pytest.raises(ValueError, match="empty"):
        metric([], [])
    with pytest.raises(ValueError, match=r"\(n_images, H, W\)"):
        metric(masks[0], maps[0])
    with pytest.raises(ValueError, match=r"masks\[1\] must be a 2-D"):
        metric([masks[0], masks], [maps[0], maps[1]])


# --- pixel_roc_auc ----------------------------------------------------------


def test_pixel_roc_auc_matches_sklearn():
    rng = np.random.default_rng(4)
    masks = rng.random((3, 10, 12)) > 0.8
    maps = (rng.random((3, 10, 12)) + masks).astype(np.float32)
    expected = roc_auc_score(masks.ravel(), maps.ravel())
    assert pixel_roc_auc(masks, maps) == pytest.approx(expected)
    assert pixel_roc_auc(masks.astype(int), maps) == pytest.approx(expected)
    assert isinstance(pixel_roc_auc(masks, maps), float)


@settings(max_examples=100, deadline=None)
@given(data=masks_and_maps(max_side=6), levels=st.integers(2, 6))
def test_pixel_roc_auc_grid_is_exact_on_grid_values(data, levels):
    masks, maps = data
    # Scores on the grid linspace(0, levels - 1, levels), both ends present.
    maps = np.floor(np.abs(maps)) % levels
    maps.flat[:2] = [0, levels - 1]
    exact = pixel_roc_auc(masks, maps)
    assert pixel_roc_auc(masks, maps, num_thresholds=levels) == pytest.approx(exact, abs=1e-12)


def test_pixel_roc_auc_grid_approximates_exact_image_by_image():
    rng = np.random.default_rng(6)
    masks = [rng.random((40, 50)) > 0.8, rng.random((30, 20)) > 0.9]
    maps = [(rng.random(m.shape) + 0.6 * m).astype(np.float32) for m in masks]
    exact = pixel_roc_auc(masks, maps)
    assert pixel_roc_auc(masks, maps, num_thresholds=10_000) == pytest.approx(exact, abs=1e-5)
    assert pixel_roc_auc(masks, [np.full(m.shape, 3.0) for m in masks], num_thresholds=10) == 0.5
    for bad in (1, 10.0, True):
        with pytest.raises(ValueError, match="num_thresholds"):
            pixel_roc_auc(masks, maps, num_thresholds=bad)


def test_binned_metrics_keep_their_accuracy_beside_an_extreme_score():
    # Thresholds spaced evenly from the lowest score to the highest put all
    # but one pixel into a few bins here: 0.50 for an exact 0.91.
    rng = np.random.default_rng(3)
    masks = np.zeros((8, 48, 48), bool)
    for i in range(4):
        row, col = rng.integers(5, 40, 2)
        masks[i, row : row + rng.integers(2, 8), col : col + rng.integers(2, 8)] = True
    maps = np.stack([rng.random((48, 48)) + 0.3 * masks[i] for i in range(8)])
    maps[5, 0, 0] = 1e3
    for metric in (pixel_roc_auc, pro_score):
        exact = metric(masks, maps)
        assert metric(masks, maps, num_thresholds=1000) == pytest.approx(exact, abs=2e-3)
    # A lowest score that halving would round (a subnormal) still has its bin.
    maps = np.ones((1, 3, 3))
    maps[0, 0, 0] = -5e-324
    tiny = masks[:1, :3, :3].copy()
    tiny[0, 1, 1] = True
    for metric in (pixel_roc_auc, pro_score):
        assert metric(tiny, maps, num_thresholds=10) == pytest.approx(metric(tiny, maps))


def test_pixel_roc_auc_list_of_different_sizes():
    rng = np.random.default_rng(5)
    masks = [rng.random((4, 6)) > 0.5, rng.random((7, 3)) > 0.5]
    maps = [rng.random(m.shape) for m in masks]
    expected = roc_auc_score(
        np.concatenate([m.ravel() for m in masks]), np.concatenate([m.ravel() for m in maps])
    )
    assert pixel_roc_auc(masks, maps) == pytest.approx(expected)
    assert pixel_roc_auc(masks, [1 - m for m in maps]) == pytest.approx(1 - expected)


# --- region_hits --------------------------------------------------------------


def reference_hits(mask, anomaly_map, threshold, min_area):
    """Defects, defects found and false regions of one image, region by region."""
    defects = skimage_label(mask, connectivity=2)
    found = skimage_label(anomaly_map > threshold, connectivity=2)
    kept = [found == k for k in range(1, found.max() + 1) if (found == k).sum() >= min_area]
    flagged = np.any(kept, axis=0) if kept else np.zeros_like(mask)
    hits = sum(bool((flagged & (defects == k)).any()) for k in range(1, defects.max() + 1))
    return defects.max(), hits, sum(not (region & mask).any() for region in kept)


@settings(max_examples=100, deadline=None)
@given(data=masks_and_maps(max_side=7), threshold=st.floats(-1, 1.5), min_area=st.integers(1, 4))
def test_region_hits_match_a_region_by_region_count(data, threshold, min_area):
    masks, maps = data
    hits = region_hits(masks, maps, threshold, min_area)
    expected = [reference_hits(*pair, threshold, min_area) for pair in zip(masks, maps)]
    assert [tuple(int(hits[k][i]) for k in hits) for i in range(len(masks))] == expected
    assert all(v.dtype == np.int64 for v in hits.values())


def test_region_hits_of_images_of_different_sizes_and_normal_ones():
    masks = [np.zeros((6, 5), bool), np.zeros((3, 9), bool)]
    masks[1][0, 0] = masks[1][2, 8] = True
    maps = [np.zeros((6, 5)), np.zeros((3, 9))]
    maps[0][2:4, 2] = 1.0  # one region on a normal image
    maps[1][1, 1] = maps[1][0, 5] = 1.0  # touches the first defect diagonally; a false one
    hits = region_hits(masks, maps, 0.5)
    assert {k: v.tolist() for k, v in hits.items()} == {
        "defects": [0, 2],
        "found": [0, 0],
        "false_regions": [1, 2],
    }
    maps[1][0, 0] = 1.0  # now on the first defect, one region with the diagonal pixel
    hits = region_hits(masks, maps, 0.5)
    assert hits["found"].tolist() == [0, 1] and hits["false_regions"].tolist() == [1, 1]
    # min_area leaves out the single-pixel false region, not the two-pixel ones.
    assert region_hits(masks, maps, 0.5, min_area=2)["false_regions"].tolist() == [1, 0]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"threshold": np.nan}, ValueError, "threshold"),
        ({"threshold": 0.5, "min_area": 0}, ValueError, "min_area"),
        ({"threshold": "0.5"}, ValueError, "threshold"),
    ],
)
def test_region_hits_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        region_hits(np.zeros((1, 2, 2), bool), np.zeros((1, 2, 2)), **kwargs)
    with pytest.raises(ValueError, match="2 masks but 1 anomaly maps"):
        region_hits(np.zeros((2, 2, 2), bool), np.zeros((1, 2, 2)), 0.5)


# --- image level -------------------------------------------------------------


def test_masks_to_labels():
    masks = np.zeros((3, 4, 4), dtype=np.uint8)
    masks[1, 3, 3] = 1
    np.testing.assert_array_equal(masks_to_labels(masks), [1, -1, 1])
    np.testing.assert_array_equal(masks_to_labels([np.zeros((2, 2)), np.ones((5, 1))]), [1, -1])
    with pytest.raises(ValueError, match="boolean-like"):
        masks_to_labels(masks * 3)


def test_image_scores_from_maps():
    maps = np.arange(2 * 10, dtype=float).reshape(2, 2, 5)
    np.testing.assert_allclose(image_scores_from_maps(maps), [9, 19])
    np.testing.assert_allclose(image_scores_from_maps(maps, "mean"), [4.5, 14.5])
    np.testing.assert_allclose(image_scores_from_maps(maps, 0.0), [0, 10])
    np.testing.assert_allclose(
        image_scores_from_maps(maps, 0.99), np.quantile(maps.reshape(2, -1), 0.99, axis=1)
    )
    np.testing.assert_allclose(
        image_scores_from_maps([np.ones((2, 2)), np.full((3, 7), 2.0)]), [1, 2]
    )
    for reduction in ("median", 1.5, -0.1, True, None):
        with pytest.raises(ValueError, match="reduction"):
            image_scores_from_maps(maps, reduction)
    maps[1, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"maps\[1\] contains NaN or infinity"):
        image_scores_from_maps(maps)


def test_image_roc_auc():
    y = np.array([1, 1, -1, -1, 1])
    scores = np.array([0.9, 0.3, 0.2, 0.5, 0.8])
    assert image_roc_auc(y, scores) == pytest.approx(roc_auc_score(y == 1, scores))
    assert image_roc_auc(y, scores) == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match=r"\+1 \(normal\) and -1"):
        image_roc_auc([0, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="only one class"):
        image_roc_auc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="3 labels but scores has 2"):
        image_roc_auc([1, -1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        image_roc_auc([1, -1], [0.1, np.nan])
    with pytest.raises(ValueError, match="empty"):
        image_roc_auc([], [])


# --- resizing -------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape_in, shape_out",
    [((4, 5), (16, 20)), ((7, 3), (10, 11)), ((16, 16), (5, 7)), ((3, 3), (3, 3))],
)
def test_resize_matches_torch_bilinear(shape_in, shape_out):
    torch = pytest.importorskip("torch")
    array = np.random.default_rng(6).random(shape_in)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(array)[None, None], size=shape_out, mode="bilinear", align_corners=False
    )[0, 0].numpy()
    np.testing.assert_allclose(resize_bilinear(array, shape_out), expected, atol=1e-12)


# --- scorers -------------------------------------------------------------------


class ThresholdDetector(OutlierMixin, BaseEstimator):
    """A fake detector: the map is the (downsampled) brightness minus ``lam``
    times noise, so a larger ``lam`` localizes worse."""

    def __init__(self, lam=0.0, downsample=1):
        self.lam = lam
        self.downsample = downsample

    def fit(self, X, y=None):
        self.is_fitted_ = True
        return self

    def explain(self, X):
        X = np.asarray(X, dtype=np.float32)
        noise = np.random.default_rng(0).random(X.shape, dtype=np.float32)
        maps = X + self.lam * noise
        return maps[:, :: self.downsample, :: self.downsample]

    def score_samples(self, X):
        return -np.asarray(X, dtype=float).max(axis=(1, 2))


def make_data(n=12, size=8, seed=0):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(0, n, 2):
        r, c = rng.integers(0, size - 3, 2)
        masks[i, r : r + 3, c : c + 3] = True
    X = 0.2 * rng.random((n, size, size)) + 0.7 * masks
    return X.astype(np.float32), masks


def test_scorers_compute_the_metrics():
    X, masks = make_data()
    est = ThresholdDetector(lam=0.5).fit(X)
    maps = est.explain(X)
    assert pixel_roc_auc_scorer(est, X, masks) == pytest.approx(pixel_roc_auc(masks, maps))
    assert pro_scorer(est, X, masks) == pytest.approx(pro_score(masks, maps))
    scorer = make_localization_scorer("pro", max_fpr=0.05)
    assert scorer(est, X, masks) == pytest.approx(pro_score(masks, maps, max_fpr=0.05))
    expected = image_roc_auc(masks_to_labels(masks), est.score_samples(X))
    assert masks_image_roc_auc_scorer(est, X, masks) == pytest.approx(expected)
    assert masks_image_roc_auc_scorer(ThresholdDetector().fit(X), X, masks) == 1.0


def test_scorers_reach_the_last_step_of_a_pipeline():
    # The maps are the last step's, of X as the steps before it transform X.
    X, masks = make_data()
    est = ThresholdDetector(lam=0.5).fit(2 * X)
    pipeline = make_pipeline(FunctionTransformer(lambda Z: 2 * Z), est)
    for scorer in (pro_scorer, pixel_roc_auc_scorer, masks_image_roc_auc_scorer):
        assert scorer(pipeline, X, masks) == pytest.approx(scorer(est, 2 * X, masks))
    search = GridSearchCV(
        pipeline, {"thresholddetector__lam": [0.0, 5.0]}, scoring=pro_scorer, cv=KFold(2)
    ).fit(X, masks)
    assert search.best_params_ == {"thresholddetector__lam": 0.0}


def test_scorer_resizes_maps_to_masks():
    X, masks = make_data(size=16)
    est = ThresholdDetector(downsample=2).fit(X)
    assert est.explain(X).shape == (12, 8, 8)
    assert pro_scorer(est, X, masks) > 0.8
    assert pixel_roc_auc_scorer(est, X, masks) > 0.9


def test_scorer_custom_metric_and_repr():
    X, masks = make_data()
    seen = {}

    def mean_gap(masks, maps, offset=0.0):
        seen["shapes"] = (masks.shape, maps.shape)
        return float(maps[masks].mean() - maps[~masks].mean()) + offset

    scorer = make_localization_scorer(mean_gap, offset=1.0)
    est = ThresholdDetector().fit(X)
    assert scorer(est, X, masks) > 1.5
    assert seen["shapes"] == (masks.shape, masks.shape)
    assert repr(scorer) == "make_localization_scorer(mean_gap, offset=1.0)"
    assert repr(pro_scorer) == "make_localization_scorer(pro_score)"
    with pytest.raises(ValueError, match="metric must be one of"):
        make_localization_scorer("iou")
    with pytest.raises(TypeError, match="callable"):
        make_localization_scorer(3)


def test_scorer_undefined_split_returns_nan():
    X, masks = make_data()
    est = ThresholdDetector().fit(X)
    normal = ~masks.any(axis=(1, 2))
    for scorer in (pixel_roc_auc_scorer, pro_scorer, masks_image_roc_auc_scorer):
        with pytest.warns(UndefinedMetricWarning, match="returning nan"):
            assert np.isnan(scorer(est, X[normal], masks[normal]))


def test_scorer_errors():
    X, masks = make_data()
    est = ThresholdDetector().fit(X)
    with pytest.raises(ValueError, match="masks as y"):
        pro_scorer(est, X)
    with pytest.raises(ValueError, match=r"returned 12 maps for 11 masks"):
        pro_scorer(est, X, masks[:11])
    with pytest.raises(TypeError, match="no explain method"):
        pro_scorer(BaseEstimator(), X, masks)


def test_scorers_pickle():
    for scorer in (pixel_roc_auc_scorer, pro_scorer, masks_image_roc_auc_scorer):
        assert pickle.loads(pickle.dumps(scorer)) is not None


def test_grid_search_with_masks_as_y():
    X, masks = make_data(n=16)
    scoring = {
        "pro": pro_scorer,
        "pixel_roc_auc": pixel_roc_auc_scorer,
        "image_roc_auc": masks_image_roc_auc_scorer,
    }
    search = GridSearchCV(
        ThresholdDetector(),
        {"lam": [0.0, 1.0, 5.0]},
        scoring=scoring,
        refit="pro",
        cv=KFold(2),
        error_score="raise",
    )
    search.fit(X, masks)
    assert search.best_params_ == {"lam": 0.0}
    pro_means = search.cv_results_["mean_test_pro"]
    assert pro_means[0] > pro_means[1] > pro_means[2]
    assert np.all(np.isfinite(search.cv_results_["mean_test_pixel_roc_auc"]))


def test_cross_validate_split_without_defects_gives_nan():
    X, masks = make_data(n=8)
    order = np.argsort(masks.any(axis=(1, 2)))  # normal images first
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        result = cross_validate(
            ThresholdDetector(), X[order], masks[order], scoring={"pro": pro_scorer}, cv=KFold(2)
        )
    assert np.isnan(result["test_pro"][0]) and np.isfinite(result["test_pro"][1])
