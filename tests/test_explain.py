"""Tests of EfficientNetGaussianDetector.explain (pixel anomaly maps)."""

import contextlib
import copy

import numpy as np
import pytest
import torch
from skimage import data
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import skanomaly
import skanomaly.localization as localization
from skanomaly import EfficientNetGaussianDetector
from skanomaly.datasets import load_magnetic_tile
from skanomaly.features import patch_features
from skanomaly.localization import EXPLAIN_METHODS


def _crops(n, size=96, seed=0):
    """Random crops of the brick texture, as (n, size, size) uint8."""
    brick = data.brick()
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, brick.shape[0] - size, n)
    cols = rng.integers(0, brick.shape[1] - size, n)
    return np.stack([brick[r : r + size, c : c + size] for r, c in zip(rows, cols)])


def _with_blotch(image):
    """The image with a dark disc pasted in; returns it and the disc's mask."""
    h, w = image.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    mask = (yy - h * 0.35) ** 2 + (xx - w * 0.6) ** 2 <= (0.13 * h) ** 2
    out = image.copy()
    out[mask] = 10
    return out, mask


@pytest.fixture(scope="module")
def fitted():
    return EfficientNetGaussianDetector(batch_size=8).fit(_crops(12))


@pytest.fixture(scope="module")
def blotched():
    image, mask = _with_blotch(_crops(1, seed=7)[0])
    return image, mask


def _contrast(maps, mask):
    return maps[0][mask].mean() / maps[0][~mask].mean()


def test_shape_dtype_finite(fitted):
    X = _crops(3, seed=1)
    maps = fitted.explain(X)
    assert isinstance(maps, np.ndarray)
    assert maps.shape == X.shape
    assert maps.dtype == np.float32
    assert np.all(np.isfinite(maps))
    # The same images as floats in [0, 1] differ in the 8th digit after
    # conversion; the spatial map is a smooth function of them, the descent
    # follows a ReLU network's gradients, which such a change can switch in
    # a few places (a percent of the map's range at most).
    same = fitted.explain(X.astype(np.float64) / 255)
    assert np.abs(same - maps).max() < 0.03 * maps.max()
    spatial = clone(fitted).set_params(explain_method="spatial")
    spatial.__dict__.update({k: v for k, v in fitted.__dict__.items() if k.endswith("_")})
    np.testing.assert_allclose(
        spatial.explain(X.astype(np.float64) / 255), spatial.explain(X), rtol=1e-4, atol=1e-4
    )


def test_explain_and_held_out_pixel_calibration_show_progress(fitted, capsys):
    # The maps are the slow part of explain, calibrate_pixels and segment:
    # with progress=True each shows one bar over all its images.
    detector = copy.deepcopy(fitted).set_params(progress=True, batch_size=2)
    X = _crops(3, seed=2)
    maps = detector.explain(X)
    assert "Explaining: 100%" in capsys.readouterr().err
    detector.calibrate_pixels(X)
    err = capsys.readouterr().err
    assert err.count("Explaining:   0%") == 1 and "3/3" in err
    # Only a sample of each map was kept, and it comes from the same maps.
    assert detector.pixel_threshold_ <= maps.max()
    assert detector.pixel_calibration_["n_images"] == 3


def test_fit_shows_progress_past_the_forward_passes(capsys):
    # The Gaussians, the patch memory and the threshold take seconds after
    # the bar of the forward passes has ended.
    EfficientNetGaussianDetector(levels=(0, 3), progress=True).fit(_crops(4, seed=5))
    err = capsys.readouterr().err
    assert "Fitting: 100%" in err and "Gaussians, memory, threshold: 100%" in err
    assert err.index("Fitting: 100%") < err.index("Gaussians, memory, threshold: 100%")


def test_list_of_sizes_returns_list(fitted):
    X = [_crops(1, size=80)[0], _crops(1, size=120, seed=3)[0]]
    maps = fitted.explain(X)
    assert isinstance(maps, list) and len(maps) == 2
    for image, m in zip(X, maps):
        assert m.shape == image.shape[:2]
        assert m.dtype == np.float32
        assert np.all(np.isfinite(m))


def test_rgb_and_paths(fitted, tmp_path):
    from PIL import Image

    image = np.repeat(_crops(1, seed=4)[0][..., None], 3, axis=-1)
    path = tmp_path / "crop.png"
    Image.fromarray(image).save(path)
    from_path = fitted.explain([str(path)])
    from_array = fitted.explain(image[None])
    assert from_path.shape == (1, 96, 96)
    np.testing.assert_allclose(from_path, from_array, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", ["spatial", "patches", "reference"])
def test_blotch_is_found(fitted, blotched, method):
    image, mask = blotched
    fitted.set_params(explain_method=method)
    try:
        maps = fitted.explain(image[None])
    finally:
        fitted.set_params(explain_method="descent")
    assert _contrast(maps, mask) > 1.2


def test_default_finds_blotch(fitted, blotched):
    image, mask = blotched
    assert fitted.explain_method == "descent"
    assert _contrast(fitted.explain(image[None]), mask) > 1.2


def _maps(detector, image, **params):
    """``detector.explain(image[None])[0]`` with ``params`` for this call only."""
    saved = {name: detector.get_params()[name] for name in params}
    detector.set_params(**params)
    try:
        return detector.explain(image[None])[0]
    finally:
        detector.set_params(**saved)


def test_descent_sharpens_the_mean_of_spatial_and_patch_maps_where_the_image_changed(fitted):
    # At the network's input size and without blur, the maps are exactly
    # the method's input-size maps.
    image, mask = _with_blotch(_crops(1, size=224, seed=7)[0])
    descent, lam1, spatial, patches = (
        _maps(fitted, image, smoothing=0.0, **params)
        for params in (
            {},
            {"lam": 1.0},
            {"explain_method": "spatial"},
            {"explain_method": "patches"},
        )
    )
    base = np.sqrt(spatial * patches)
    # From lam=1 on no pixel moves: the map is the geometric mean of the
    # "spatial" and "patches" maps; below, that mean times (1 + gain *
    # change): never below it, and raised most on the blotch, where the
    # image had to change.
    np.testing.assert_allclose(lam1, base, rtol=1e-5, atol=1e-6 * base.max())
    assert np.all(descent >= base * (1 - 1e-5))
    assert (descent / base)[mask].mean() > (descent / base)[~mask].mean()
    assert _contrast(descent[None], mask) > _contrast(spatial[None], mask)


def test_descent_holds_normal_images_back_and_not_defective_ones(fitted, blotched):
    X = np.concatenate([_crops(4, seed=3), blotched[0][None]])

    def gains():
        descent = fitted.explain(X)
        # lam=1 moves no pixel: the map the change raises.
        fitted.set_params(lam=1.0)
        try:
            base = fitted.explain(X)
        finally:
            fitted.set_params(lam=0.0)
        return (descent / base - 1).mean(axis=(1, 2))

    assert fitted.patch_excess_ > 0
    gated = gains()
    # A model saved before the gate has no patch_excess_: every change counts.
    excess = fitted.__dict__.pop("patch_excess_")
    try:
        ungated = gains()
    finally:
        fitted.patch_excess_ = excess
    # Normal crops lie about as far beyond normal as the training images:
    # their change counts about half. The blotch lies far beyond: fully.
    assert np.all(gated[:4] < 0.6 * ungated[:4])
    np.testing.assert_allclose(gated[4], ungated[4], rtol=1e-5)
    assert gated[4] > gated[:4].max()


def test_lam_moves_the_default_maps_from_dense_to_the_prior(fitted, blotched):
    image = blotched[0]
    maps = {lam: _maps(fitted, image, lam=lam) for lam in (0.0, 0.01, 0.1, 1.0, 100.0)}
    gains = {lam: (m / maps[1.0] - 1).mean() for lam, m in maps.items()}
    # A larger lam holds more pixels at their value: less change everywhere,
    # and none at all from lam=1 on, where the map is the prior.
    assert gains[0.0] > gains[0.01] > gains[0.1] > 0
    np.testing.assert_array_equal(maps[100.0], maps[1.0])
    assert not np.allclose(maps[0.0], maps[0.1])


def test_patches_map_is_the_distance_to_the_nearest_normal_patch(fitted, blotched):
    # The memory holds every patch of the 12 training crops (28 x 28 each at
    # 224 px), so a training crop's own patches are all found at distance 0.
    assert len(fitted.patches_) == 12 * 28 * 28
    fitted.set_params(explain_method="patches")
    try:
        train = fitted.explain(_crops(12)[:1])[0]
        maps = fitted.explain(blotched[0][None])
        # No descent: its parameters do not enter the map.
        fitted.set_params(lam=0.5, n_steps=1, step_size=1.0)
        unchanged = fitted.explain(blotched[0][None])
    finally:
        fitted.set_params(explain_method="descent", lam=0.0, n_steps=5, step_size=0.05)
    # Not exactly 0: float32 rounding of |q|^2 + |m|^2 - 2 q.m, under the root.
    assert train.max() < 0.01 * maps.max()
    np.testing.assert_array_equal(maps, unchanged)
    # It is the map whose normalized values weight the descent's steps: the
    # blotch lies far from every normal patch.
    assert _contrast(maps, blotched[1]) > 1.5


@pytest.mark.parametrize("method", EXPLAIN_METHODS)
def test_every_method_runs(fitted, method):
    fitted.set_params(explain_method=method, n_steps=3)
    try:
        maps = fitted.explain(_crops(2, seed=5))
    finally:
        fitted.set_params(explain_method="descent", n_steps=5)
    assert maps.shape == (2, 96, 96) and np.all(np.isfinite(maps))


@pytest.mark.parametrize("method", ["descent", "reference"])
def test_descents_run_in_strict_float32(fitted, monkeypatch, method):
    # On CUDA, convolutions outside this context run in TF32, which the
    # descent amplifies (tests/test_cuda.py); CI has no GPU, so the context
    # around each gradient step is checked here.
    strict, steps = [0], []
    real_autocast, real_grad = localization.autocast, torch.autograd.grad

    @contextlib.contextmanager
    def recording_autocast(device, dtype):
        strict[0] += dtype is None
        try:
            with real_autocast(device, dtype):
                yield
        finally:
            strict[0] -= dtype is None

    def recording_grad(*args, **kwargs):
        steps.append(strict[0] > 0)
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(localization, "autocast", recording_autocast)
    monkeypatch.setattr(torch.autograd, "grad", recording_grad)
    fitted.set_params(explain_method=method, n_steps=2)
    try:
        fitted.explain(_crops(1, seed=5))
    finally:
        fitted.set_params(explain_method="descent", n_steps=5)
    assert steps == [True, True]


def test_constant_image_is_finite(fitted):
    for method in EXPLAIN_METHODS:
        fitted.set_params(explain_method=method, n_steps=2)
        try:
            maps = fitted.explain(np.full((1, 64, 64), 128, np.uint8))
        finally:
            fitted.set_params(explain_method="descent", n_steps=5)
        assert np.all(np.isfinite(maps))


def test_lam_changes_reference_map(fitted, blotched):
    image = blotched[0][None, :64, :64]
    fitted.set_params(explain_method="reference", n_steps=3, smoothing=0.0)
    try:
        plain = fitted.explain(image)
        fitted.set_params(lam=1e4)
        penalized = fitted.explain(image)
    finally:
        fitted.set_params(explain_method="descent", n_steps=5, smoothing=4.0, lam=0.0)
    assert not np.allclose(plain, penalized)


def test_not_fitted():
    with pytest.raises(NotFittedError):
        EfficientNetGaussianDetector().explain(_crops(1))


@pytest.mark.parametrize(
    "params",
    [
        {"lam": -1.0},
        {"lam": np.inf},
        {"lam": np.nan},
        {"step_size": -0.1},
        {"step_size": np.inf},
        {"n_steps": -1},
        {"n_steps": 2.5},
        {"smoothing": -1.0},
        {"smoothing": np.nan},
        {"explain_method": "magic"},
    ],
)
def test_bad_params(fitted, params):
    detector = clone(fitted).set_params(**params)
    detector.__dict__.update({k: v for k, v in fitted.__dict__.items() if k.endswith("_")})
    with pytest.raises(ValueError):
        detector.explain(_crops(1))


@pytest.mark.parametrize(
    "X, error",
    [
        (np.full((1, 32, 32), np.nan), ValueError),
        (np.zeros((0, 32, 32)), ValueError),
        ("image.png", TypeError),
        (np.zeros((1, 32, 32), dtype=bool), TypeError),
        (np.full((1, 32, 32), 2.0), ValueError),
    ],
)
def test_bad_input_rejected_like_score_samples(fitted, X, error):
    with pytest.raises(error):
        fitted.score_samples(X)
    with pytest.raises(error):
        fitted.explain(X)


def test_magnetic_tile_defect_outscores_background(shared_data):
    root = shared_data / "magnetic_tile"
    free = load_magnetic_tile(root, classes=["Free"], max_per_class=12, resize=128)
    blowholes = load_magnetic_tile(root, classes=["Blowhole"], max_per_class=3, resize=128)
    detector = EfficientNetGaussianDetector(batch_size=12).fit(free.X)
    maps = detector.explain(blowholes.X)
    assert maps[blowholes.masks].mean() > maps[~blowholes.masks].mean()


def test_spatial_methods_need_a_fit_with_them(fitted):
    reference = clone(fitted).set_params(explain_method="reference").fit(_crops(4))
    assert reference.explain(_crops(1, seed=3)).shape == (1, 96, 96)
    with pytest.raises(ValueError, match="fit again with this method"):
        reference.set_params(explain_method="spatial").explain(_crops(1, seed=3))


def test_grid_search_over_lam_with_stratified_splits(tmp_path, forward_passes):
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from skanomaly.metrics import masks_to_labels, pixel_roc_auc_scorer, pro_scorer

    normal = _crops(8, seed=11)
    blotched = [_with_blotch(image) for image in _crops(4, seed=12)]
    X = np.concatenate([normal, np.stack([b[0] for b in blotched])])
    masks = np.concatenate([np.zeros(normal.shape, bool), np.stack([b[1] for b in blotched])])
    # StratifiedKFold needs 1-D labels, the scorers need the masks: explicit splits.
    splits = list(
        StratifiedKFold(n_splits=2, shuffle=True, random_state=0).split(X, masks_to_labels(masks))
    )
    detector = EfficientNetGaussianDetector(
        explain_method="reference", n_steps=2, batch_size=12, memory=str(tmp_path / "cache")
    )
    lams = [0.0, 1.0, 100.0]
    search = GridSearchCV(detector, {"lam": lams}, scoring=pro_scorer, cv=splits)
    search.fit(X, masks)
    assert search.best_params_["lam"] in lams
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    # The other localization scorer plugs in the same way.
    assert np.isfinite(pixel_roc_auc_scorer(search.best_estimator_, X, masks))
    # The training images pass the backbone once per fold and once for the
    # refit, not once per candidate: lam only changes explain.
    assert len(forward_passes) == len(splits) + 1


def test_patch_features_average_a_zero_padded_neighborhood():
    ones = torch.ones(1, 2, 5, 5)
    coarse = torch.ones(1, 3, 3, 3)
    plain = patch_features([ones, coarse])
    assert plain.shape == (1, 5, 5, 5)
    torch.testing.assert_close(plain, torch.ones(1, 5, 5, 5))
    averaged = patch_features([ones, coarse], neighborhood=3)[0, ..., 0]
    # The zero padding counts: corners see 4 of 9 locations, edges 6.
    assert averaged[0, 0] == pytest.approx(4 / 9)
    assert averaged[0, 2] == pytest.approx(6 / 9)
    assert averaged[2, 2] == pytest.approx(1.0)


def test_patch_features_of_several_neighborhoods_lie_side_by_side():
    maps = [torch.rand(2, 4, 6, 6), torch.rand(2, 3, 3, 3)]
    both = patch_features(maps, neighborhood=(1, 3))
    assert both.shape == (2, 6, 6, 14)
    torch.testing.assert_close(both[..., :7], patch_features(maps))
    torch.testing.assert_close(both[..., 7:], patch_features(maps, neighborhood=3))


def test_several_patch_neighborhoods_at_once(fitted, blotched, tmp_path):
    """One patch memory describes each location at both scales (the
    default): its rows are twice as wide as a single scale's, and the
    descent finds the blotch with it."""
    image, mask = blotched
    single = EfficientNetGaussianDetector(batch_size=8, patch_neighborhood=1).fit(_crops(12))
    assert fitted.patch_neighborhood_ == (1, 3)
    assert fitted.patches_.shape[1] == 2 * single.patches_.shape[1]
    assert fitted.patch_threshold_ > single.patch_threshold_
    maps = fitted.explain(image[None])
    assert _contrast(maps, mask) > 1.2
    assert _contrast(single.explain(image[None]), mask) > 1.2
    assert not np.allclose(maps, single.explain(image[None]), rtol=0.05)
    skanomaly.save(fitted, tmp_path / "both.skanomaly")
    loaded = skanomaly.load(tmp_path / "both.skanomaly")
    assert loaded.patch_neighborhood_ == (1, 3)
    np.testing.assert_allclose(loaded.explain(image[None]), maps, rtol=1e-5)


@pytest.mark.parametrize("neighborhood", [2, (3, 1), (1,), [1, 3], (1, 1)])
def test_unknown_patch_neighborhoods_are_refused(neighborhood):
    detector = EfficientNetGaussianDetector(patch_neighborhood=neighborhood)
    with pytest.raises(ValueError, match="patch_neighborhood"):
        detector.fit(_crops(3))


def test_patch_neighborhood_is_set_at_fit_and_kept(fitted, blotched, tmp_path):
    image, mask = blotched
    wide = EfficientNetGaussianDetector(batch_size=8, patch_neighborhood=3).fit(_crops(12))
    assert wide.patch_neighborhood_ == 3 and fitted.patch_neighborhood_ == (1, 3)
    maps = wide.explain(image[None])
    assert _contrast(maps, mask) > 1.2
    assert not np.allclose(maps, fitted.explain(image[None]), rtol=0.05)
    # The patch memory was made with the fitted neighbourhood, so that is
    # what explain uses, whatever the parameter says now.
    wide.set_params(patch_neighborhood=1)
    np.testing.assert_array_equal(wide.explain(image[None]), maps)
    skanomaly.save(wide, tmp_path / "wide.skanomaly")
    loaded = skanomaly.load(tmp_path / "wide.skanomaly")
    assert loaded.patch_neighborhood_ == 3
    np.testing.assert_allclose(loaded.explain(image[None]), maps, rtol=1e-5)


def test_partial_fit_refuses_another_patch_neighborhood():
    detector = EfficientNetGaussianDetector(batch_size=8, patch_neighborhood=3)
    detector.partial_fit(_crops(4))
    detector.set_params(patch_neighborhood=1)
    with pytest.raises(ValueError, match="patch_neighborhood"):
        detector.partial_fit(_crops(4, seed=1))
