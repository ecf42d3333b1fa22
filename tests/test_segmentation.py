"""Defect masks, regions and the pixel threshold (segment, regions,
calibrate_pixels): pure functions on synthetic maps, then real weights."""

import copy

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from test_explain import _crops, _with_blotch

import skanomaly
from skanomaly import EfficientNetGaussianDetector
from skanomaly._images import ImageSource
from skanomaly.features import spatial_moments
from skanomaly.segmentation import (
    REGION_FIELDS,
    draw_outlines,
    map_sample,
    masks_from_maps,
    outline,
    pixel_threshold,
    region_table,
)


# ------------------------------------------------------------ pure functions
def _synthetic_map():
    """A 12 x 10 map with three regions above 1: a 3 x 4 block (peak 5), an
    L of 3 pixels joined only diagonally to a fourth (peak 9) and a speck."""
    anomaly_map = np.zeros((12, 10))
    anomaly_map[1:4, 2:6] = 2.0
    anomaly_map[2, 3] = 5.0
    anomaly_map[7, 1] = anomaly_map[8, 1] = anomaly_map[8, 2] = 3.0
    anomaly_map[9, 3] = 9.0  # diagonal neighbour of (8, 2): the same region
    anomaly_map[11, 9] = 1.5
    return anomaly_map


def test_region_table_fields():
    table = region_table([_synthetic_map()], threshold=1.0)
    assert tuple(table) == REGION_FIELDS
    assert all(len(column) == 3 for column in table.values())
    assert table["area"].dtype == np.int64 and table["peak"].dtype == np.float64
    # Highest peak first: the diagonally joined L, the block, the speck.
    np.testing.assert_array_equal(table["image"], [0, 0, 0])
    np.testing.assert_array_equal(table["region"], [0, 1, 2])
    np.testing.assert_array_equal(table["area"], [4, 12, 1])
    boxes = np.stack([table[k] for k in ("top", "left", "bottom", "right")], axis=1)
    np.testing.assert_array_equal(boxes, [[7, 1, 10, 4], [1, 2, 4, 6], [11, 9, 12, 10]])
    np.testing.assert_allclose(table["peak"], [9.0, 5.0, 1.5])
    np.testing.assert_allclose(table["mean"], [(3 * 3 + 9) / 4, (11 * 2 + 5) / 12, 1.5])


def test_region_table_min_area_images_and_empty():
    maps = [_synthetic_map(), np.zeros((5, 7)), _synthetic_map()[:6]]
    table = region_table(maps, threshold=1.0, min_area=2)
    np.testing.assert_array_equal(table["image"], [0, 0, 2])
    np.testing.assert_array_equal(table["area"], [4, 12, 12])
    empty = region_table([np.zeros((4, 4))], threshold=0.0)
    assert all(len(column) == 0 for column in empty.values())
    assert empty["top"].dtype == np.int64 and empty["mean"].dtype == np.float64


def test_masks_from_maps():
    maps = np.stack([_synthetic_map(), -_synthetic_map()])
    masks = masks_from_maps(maps, 1.0)
    assert masks.dtype == bool and masks.shape == maps.shape
    assert masks[0].sum() == 17 and not masks[1].any()
    # Strictly above the threshold.
    assert masks_from_maps(maps, 2.0)[0].sum() == 4 + 1
    assert masks_from_maps(maps, 1.0, min_area=2)[0].sum() == 16
    ragged = masks_from_maps([_synthetic_map(), np.ones((3, 5))], 0.5)
    assert isinstance(ragged, list) and ragged[1].shape == (3, 5) and ragged[1].all()


def test_pixel_threshold_is_a_conformal_quantile():
    values = np.arange(1000.0)
    for fpr in (0.01, 0.05, 0.2):
        threshold = pixel_threshold([values[:400], values[400:]], fpr)
        assert np.mean(values > threshold) <= fpr
        assert np.mean(values >= threshold) > fpr - 0.002
    with pytest.warns(UserWarning, match="below 1 / \\(n \\+ 1\\)"):
        assert pixel_threshold([values], 1e-4) == 999.0


def test_map_sample_and_outline():
    assert map_sample(np.ones((10, 10))).shape == (100,)
    large = np.arange(1000 * 700, dtype=np.float64).reshape(1000, 700)
    sample = map_sample(large)
    assert sample.dtype == np.float32 and 60000 <= sample.size <= 65536
    assert sample.min() == 0 and sample.max() > 0.99 * large.max()
    # Its own memory: a view would keep the whole map alive in calibrate_pixels.
    assert map_sample(large.astype(np.float32)).base is None
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    ring = mask.copy()
    ring[3:5, 3:5] = False
    np.testing.assert_array_equal(outline(mask), ring)
    mask[0:2, 0:8] = True  # at the frame: closed there too
    assert outline(mask)[0].all()
    image = np.zeros((8, 8, 3), np.uint8)
    drawn = draw_outlines(image, mask, color=(255, 0, 0), width=1)
    np.testing.assert_array_equal(drawn[outline(mask)], [[255, 0, 0]] * outline(mask).sum())
    assert not drawn[~outline(mask)].any() and not image.any()
    # A mask read from a file is 0/255: its non-zero pixels are the regions.
    np.testing.assert_array_equal(outline(mask.astype(np.uint8) * 255), outline(mask))
    np.testing.assert_array_equal(outline(mask.astype(np.float32)), outline(mask))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: masks_from_maps(np.zeros((4, 4)), 0.5), r"\(n_images, H, W\) array or a list"),
        (lambda: masks_from_maps(np.zeros((1, 1, 4, 4)), 0.5), r"\(n_images, H, W\)"),
        (lambda: region_table([np.ones(4)], 0.5), r"maps\[0\] must be a 2-D \(H, W\)"),
        (lambda: outline(np.ones((2, 4, 4), bool)), r"mask must be a 2-D \(H, W\)"),
        (lambda: outline(np.full((4, 4), 0.7)), "values other than 0 and 1, like an anomaly map"),
        (lambda: outline(np.full((4, 4), np.nan)), "values other than 0 and 1"),
    ],
)
def test_bad_shapes(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("function", [masks_from_maps, region_table])
def test_a_min_area_larger_than_every_map_warns(function):
    # 20 pixels is the larger map's size: its all-anomalous region is kept,
    # without a warning.
    maps = [np.ones((4, 5)), np.ones((3, 3))]
    kept = function(maps, 0.5, min_area=20)
    if function is masks_from_maps:
        assert kept[0].all() and not kept[1].any()
    else:
        np.testing.assert_array_equal(kept["area"], [20])
    with pytest.warns(UserWarning, match=r"min_area=21 is larger than every map \(20 pixels") as w:
        function(maps, 0.5, min_area=21)
    assert w[0].filename == __file__


@pytest.mark.parametrize("function", [masks_from_maps, region_table])
def test_maps_and_threshold_must_be_finite_real(function):
    with pytest.raises(ValueError, match=r"maps\[0\] contains NaN or infinity"):
        function(np.full((1, 4, 4), np.nan), 0.5)
    with pytest.raises(TypeError, match="must be real numbers"):
        function(np.ones((1, 4, 4), complex), 0.5)
    with pytest.raises(ValueError, match="'maps' parameter"):
        function(None, 0.5)
    for threshold in (np.nan, np.inf, "a", None):
        with pytest.raises(ValueError, match="'threshold' parameter"):
            function(np.ones((1, 4, 4)), threshold)
    with pytest.raises(ValueError, match="'min_area' parameter"):
        function(np.ones((1, 4, 4)), 0.5, min_area=0)
    # What the detector passes stays valid: float32 maps of different
    # sizes and a numpy threshold.
    function([np.ones((4, 4), np.float32), np.ones((2, 3), np.float32)], np.float32(0.5))


@pytest.mark.parametrize(
    ("samples", "fpr", "error", "message"),
    [
        ([np.arange(10.0)], 1.5, ValueError, "'fpr' parameter"),
        ([np.arange(10.0)], -1, ValueError, "'fpr' parameter"),
        ([np.arange(10.0)], np.nan, ValueError, "'fpr' parameter"),
        ([np.arange(10.0), [np.nan]], 0.1, ValueError, "NaN or infinity"),
        ([], 0.1, ValueError, "no map values"),
        ([np.zeros(0)], 0.1, ValueError, "no map values"),
        ([np.ones(3, complex)], 0.1, TypeError, "real numbers"),
    ],
)
def test_pixel_threshold_bad_input(samples, fpr, error, message):
    with pytest.raises(error, match=message):
        pixel_threshold(samples, fpr)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: map_sample(np.ones((4, 4)), size=0), "size"),
        (lambda: map_sample(np.ones((4, 4)), size=-5), "size"),
        (lambda: outline(np.ones((4, 4), bool), width=0), "width"),
        (lambda: outline(np.ones((4, 4), bool), width=-1), "width"),
        (lambda: draw_outlines(np.zeros((4, 4, 3), np.uint8), np.ones((4, 4)), width=0), "width"),
    ],
)
def test_sizes_and_widths_are_positive(call, name):
    with pytest.raises(ValueError, match=f"'{name}' parameter"):
        call()


@pytest.mark.parametrize(
    ("image", "mask", "color", "error", "message"),
    [
        (np.full((4, 4, 3), 0.5), None, None, TypeError, "dtype float64.*uint8"),
        (np.full((4, 4, 3), 300.0), None, None, TypeError, "uint8"),
        (np.zeros((4, 4), np.uint8), None, None, ValueError, r"\(H, W, 3\) RGB"),
        (None, np.ones((3, 4), bool), None, ValueError, r"mask has shape \(3, 4\)"),
        (None, None, (256, 0, 0), ValueError, "color must be 3 integers"),
        (None, None, (255, 0), ValueError, "color must be 3 integers"),
    ],
)
def test_draw_outlines_bad_input(image, mask, color, error, message):
    image = np.zeros((4, 4, 3), np.uint8) if image is None else image
    mask = np.ones((4, 4), bool) if mask is None else mask
    with pytest.raises(error, match=message):
        draw_outlines(image, mask, color=(255, 255, 255) if color is None else color)


# -------------------------------------------------------------- real weights
@pytest.fixture(scope="module")
def training():
    return _crops(12)


@pytest.fixture(scope="module")
def fitted(training):
    return EfficientNetGaussianDetector(batch_size=8).fit(training)


@pytest.fixture(scope="module")
def blotched():
    return _with_blotch(_crops(1, seed=7)[0])


def test_segment_outlines_a_pasted_blotch(fitted, blotched):
    image, truth = blotched
    masks = fitted.segment(image[None])
    # segment set the threshold itself, from the training sample.
    assert fitted.pixel_calibration_["source"] == "training"
    assert masks.shape == (1, *image.shape) and masks.dtype == bool
    found = masks[0]
    iou = (found & truth).sum() / (found | truth).sum()
    # The maps are blurred at the network's input size: the mask is wider
    # than the disc (measured 0.39), but it is the disc.
    assert iou > 0.25, iou
    assert (found & truth).sum() / truth.sum() > 0.9


def test_regions_of_the_blotch(fitted, blotched):
    image, truth = blotched
    table = fitted.regions(np.stack([image, _crops(1, seed=9)[0]]))
    first = {k: v[0] for k, v in table.items()}
    assert first["image"] == 0 and first["region"] == 0
    rows, cols = np.nonzero(truth)
    assert first["top"] <= rows.mean() < first["bottom"]
    assert first["left"] <= cols.mean() < first["right"]
    assert first["area"] > truth.sum() / 2
    threshold = fitted.pixel_threshold_
    assert first["peak"] >= first["mean"] > threshold
    # Images of different sizes: regions by index into the list.
    ragged = fitted.regions([image, _crops(1, size=80, seed=9)[0]], min_area=20)
    assert set(ragged["image"]) <= {0, 1} and ragged["area"].min() >= 20


def test_masks_from_maps_already_explained(fitted, blotched):
    # explain() once, then masks at the threshold segment() would use.
    image = blotched[0][None]
    threshold = fitted.resolve_pixel_threshold()
    assert threshold == fitted.pixel_threshold_
    np.testing.assert_array_equal(
        masks_from_maps(fitted.explain(image), threshold), fitted.segment(image)
    )


def test_scores_from_level_distances(training, blotched):
    fitted = EfficientNetGaussianDetector(image_score="pooled", levels=(0, 4, 8)).fit(training)
    images = np.stack([blotched[0], _crops(1, seed=9)[0]])
    distances = fitted.level_distances(images)
    np.testing.assert_allclose(
        fitted.scores_from_level_distances(distances), fitted.score_samples(images), rtol=1e-6
    )
    with pytest.raises(ValueError, match="columns"):
        fitted.scores_from_level_distances(distances[:, :-1])
    with pytest.raises(ValueError, match="NaN"):
        fitted.scores_from_level_distances(np.where(distances > 0, np.nan, distances))
    with pytest.raises(ValueError, match="0 sample"):
        fitted.scores_from_level_distances(distances[:0])
    with pytest.raises(NotFittedError):
        EfficientNetGaussianDetector().scores_from_level_distances(distances)


def test_normal_images_flag_about_fpr(fitted):
    masks = fitted.segment(_crops(8, seed=3))
    assert fitted.pixel_calibration_["fpr"] == 0.01
    # Eight crops only, and overlapping crops of one texture: loose bounds
    # (measured 1.5% on six of them).
    assert 0.001 < masks.mean() < 0.04, masks.mean()


def test_training_threshold_is_out_of_fold(fitted, training):
    """Each kept training image is explained without its own patches and
    locations, so its maps are higher than in-sample ones (what a new image
    gets), for the descent and for the spatial Gaussians alone."""
    state = fitted._fit_state
    assert len(state.sample.inputs) == 12
    assert state.sample.owners == [(i,) for i in range(12)]
    try:
        for method, margin in (("descent", 1.1), ("spatial", 1.01)):
            fitted.set_params(explain_method=method)
            held_out = fitted.calibrate_pixels(fpr=0.01).pixel_threshold_
            in_sample = pixel_threshold([map_sample(m) for m in fitted.explain(training)], 0.01)
            assert held_out > margin * in_sample, method
    finally:
        fitted.set_params(explain_method="descent")
        fitted.calibrate_pixels(fpr=0.01)


def test_leave_out_is_a_fit_without_the_image(fitted, training):
    state = fitted._fit_state
    extractor = fitted._fitted_extractor()
    x0 = state.sample.inputs[3][None]
    own = spatial_moments(extractor.maps(x0, fitted.spatial_levels_))
    gaussians, memory = state.leave_out(3, own)
    without = EfficientNetGaussianDetector(batch_size=8, explain_method="spatial").fit(
        np.delete(training, 3, axis=0)
    )
    for left_out, refitted in zip(gaussians, without.spatial_gaussians_):
        np.testing.assert_allclose(left_out.location, refitted.location, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(left_out.covariance, refitted.covariance, rtol=1e-5, atol=1e-7)
    # In the memory's order: the image scores' rows first.
    kept = state.patches.kept
    np.testing.assert_array_equal(memory, state.patches.rows[kept[state.patches.owners[kept] != 3]])


def test_owner_ids_follow_augmented_views():
    """With augment, each kept image owns one id per view, and the patch rows
    of each id are that view's patches."""
    X = _crops(4, size=64, seed=2)
    detector = EfficientNetGaussianDetector(batch_size=4, augment="flips").fit(X)
    state = detector._fit_state
    extractor = detector._fitted_extractor()
    views = (lambda x: x, lambda x: x[:, ::-1], lambda x: x[::-1])  # as _augment's flips
    for k, owners in enumerate(state.sample.owners):
        assert len(owners) == 3
        for view, owner in zip(views, owners):
            source = ImageSource(np.ascontiguousarray(view(X[k]))[None])
            ((_, _, patches),) = list(
                extractor.summaries(source, (0,), (), "", detector.patch_levels_)
            )
            rows = state.patches.rows[state.patches.owners == owner]
            gaps = np.linalg.norm(rows[:, None] - patches[0][None], axis=-1).min(axis=1)
            assert len(rows) and gaps.max() < 1e-3 * np.linalg.norm(rows, axis=1).mean()
    assert len({o for owners in state.sample.owners for o in owners}) == 12
    threshold = detector.calibrate_pixels().pixel_threshold_
    assert np.isfinite(threshold) and threshold > 0


def test_partial_fit_drops_the_pixel_threshold(training):
    detector = EfficientNetGaussianDetector(batch_size=8, explain_method="spatial")
    detector.partial_fit(training[:6]).calibrate_pixels()
    assert "pixel_threshold_" in vars(detector)
    detector.partial_fit(training[6:])
    assert "pixel_threshold_" not in vars(detector) and "pixel_calibration_" not in vars(detector)
    assert detector.segment(training[:2]).shape == (2, 96, 96)
    assert detector.pixel_calibration_["n_images"] == 12


def test_model_files_keep_the_pixel_threshold(fitted, blotched, tmp_path):
    image, _ = blotched
    fitted.calibrate_pixels(fpr=0.01)
    path = tmp_path / "model.skanomaly"
    skanomaly.save(fitted, path)
    loaded = skanomaly.load(path)
    assert loaded.pixel_threshold_ == fitted.pixel_threshold_
    assert loaded.pixel_calibration_ == fitted.pixel_calibration_
    np.testing.assert_array_equal(loaded.segment(image[None]), fitted.segment(image[None]))
    # The threshold belongs to the maps it was set on.
    loaded.set_params(explain_method="spatial")
    with pytest.raises(NotFittedError, match=r"explain_method='descent'.*calibrate_pixels"):
        loaded.regions(image[None])
    loaded.calibrate_pixels(_crops(4, seed=5))
    assert loaded.pixel_calibration_["source"] == "held-out"
    assert loaded.segment(image[None]).any()


def test_a_pixel_threshold_as_given(fitted, blotched, tmp_path):
    image, _ = blotched
    fitted = copy.deepcopy(fitted)  # the module's detector keeps its settings
    anomaly_map = fitted.explain(image[None])
    value = float(np.median(anomaly_map))
    assert fitted.calibrate_pixels(threshold=value) is fitted
    assert fitted.pixel_threshold_ == value
    assert fitted.pixel_calibration_["source"] == "given"
    assert fitted.pixel_calibration_["fpr"] is None
    np.testing.assert_array_equal(fitted.segment(image[None]), anomaly_map > value)
    # Model files keep it; it belongs to the maps it was given for, and a
    # fitted detector does not replace it from its training sample.
    path = tmp_path / "model.skanomaly"
    skanomaly.save(fitted, path)
    assert skanomaly.load(path).pixel_calibration_ == fitted.pixel_calibration_
    fitted.set_params(smoothing=2.0)
    with pytest.raises(NotFittedError, match=r"smoothing=4\.0.*calibrate_pixels\(threshold="):
        fitted.segment(image[None])
    with pytest.raises(ValueError, match="both X and threshold"):
        fitted.calibrate_pixels(image[None], threshold=value)
    for bad in (np.nan, np.inf, "1"):
        with pytest.raises(ValueError, match="'threshold' parameter"):
            fitted.calibrate_pixels(threshold=bad)
    with pytest.raises(NotFittedError):
        EfficientNetGaussianDetector().calibrate_pixels(threshold=value)


def test_without_threshold_or_training_sample(fitted, blotched, tmp_path):
    image, _ = blotched
    del fitted.pixel_threshold_, fitted.pixel_calibration_
    path = tmp_path / "model.skanomaly"
    skanomaly.save(fitted, path)
    loaded = skanomaly.load(path)
    for method in (loaded.segment, loaded.regions):
        with pytest.raises(NotFittedError, match=r"calibrate_pixels\(X_normal\)"):
            method(image[None])
    with pytest.raises(NotFittedError, match=r"calibrate_pixels\(X_normal\)"):
        loaded.calibrate_pixels()
    # A fitted detector whose explain parameters change recalibrates on
    # its training sample at the same rate.
    fitted.calibrate_pixels(fpr=0.02)
    fitted.set_params(explain_method="spatial")
    try:
        fitted.segment(image[None])
        assert fitted.pixel_calibration_["explain_method"] == "spatial"
        assert fitted.pixel_calibration_["fpr"] == 0.02
    finally:
        fitted.set_params(explain_method="descent")


def test_bad_input(fitted, blotched):
    image, _ = blotched
    unfitted = EfficientNetGaussianDetector()
    for call in (
        lambda: unfitted.segment(image[None]),
        lambda: unfitted.regions(image[None]),
        lambda: unfitted.calibrate_pixels(),
        lambda: unfitted.calibrate_pixels(image[None]),
    ):
        with pytest.raises(NotFittedError):
            call()
    for fpr in (0, 1, -0.5, 1.5, float("nan")):
        with pytest.raises(ValueError, match="'fpr' parameter"):
            fitted.calibrate_pixels(fpr=fpr)
    with pytest.raises(ValueError, match="'min_area' parameter"):
        fitted.segment(image[None], min_area=0)


def test_float32_maps_are_compared_with_the_threshold_itself():
    # float32(0.1) lies above 0.1: the pixel is above the threshold, for the
    # masks as for the regions and the overlay's outline.
    maps = np.array([[[0.0, 0.1]]], dtype=np.float32)
    assert masks_from_maps(maps, 0.1).tolist() == [[[False, True]]]
    assert region_table(maps, 0.1)["area"].tolist() == [1]
