"""Pooling, NPCA and augmentation (issue 13), on real weights and cells."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone

from skanomaly import EfficientNetGaussianDetector
from skanomaly.gaussian import Gaussian, LedoitWolfMoments, ScoreRule
from skanomaly.localization import pooled_scores

# The pooled Gaussians alone: the levers here act on them.
SMALL = {"levels": (0, 2, 4), "explain_method": "reference", "image_score": "pooled"}


@pytest.fixture(scope="module")
def max_pooled(cells):
    return EfficientNetGaussianDetector(pooling="max", **SMALL).fit(cells[0][:12])


def test_max_pooling_models_each_channels_largest_response(max_pooled, cells):
    _, defective = cells
    extractor = max_pooled._fitted_extractor()
    x = extractor.network.prepare(torch.from_numpy(defective / 255.0).float().permute(0, 3, 1, 2))
    maps = extractor.maps(x[0][1], max_pooled.levels_)
    features = max_pooled.pooled_features(defective)
    for name, m in zip(max_pooled.level_names_, maps):
        np.testing.assert_allclose(features[name], m.amax(dim=(2, 3)).numpy(), rtol=1e-4, atol=1e-5)
    mean_pooled = clone(max_pooled).set_params(pooling="mean").fit(cells[0][:12])
    assert not np.allclose(mean_pooled.pooled_features(defective)["stem"], features["stem"])
    # The gradient-based explain methods score the maps with the same rule.
    scores = pooled_scores(maps, max_pooled.gaussians_, ScoreRule("mahalanobis", "max"))
    np.testing.assert_allclose(-scores.numpy(), max_pooled.score_samples(defective), rtol=1e-4)
    assert max_pooled.explain(defective[:1]).shape == (1, 64, 64)


def test_one_image_fits_with_augmented_views(cells):
    normal, defective = cells
    with pytest.raises(ValueError, match="augment"):
        EfficientNetGaussianDetector(**SMALL).fit(normal[:1])
    detector = EfficientNetGaussianDetector(augment="shifts", **SMALL).fit(normal[:1])
    assert detector.n_samples_fit_ == 1
    assert all(g.shrinkage > 0 for g in detector.gaussians_)
    scores = detector.score_samples(np.concatenate([normal[1:9], defective]))
    assert np.all(np.isfinite(scores)) and np.isfinite(detector.offset_)


def test_two_images_warn_that_their_threshold_flags_everything(cells):
    # Each image's held-out Gaussian is the other image alone, with no
    # spread: every held-out distance is 0, and so is the threshold.
    normal, defective = cells
    with pytest.warns(UserWarning, match="behind offset_ .* flags every image") as caught:
        two = EfficientNetGaussianDetector(**SMALL).fit(normal[:2])
    assert caught[0].filename == __file__
    assert (two.predict(np.concatenate([normal[2:10], defective])) == -1).all()
    # Held-out Gaussians of 2 images have a Ledoit-Wolf shrinkage of 0: their
    # distances are near 0 or enormous, for the threshold, the level
    # standardisation and the pooled part of the summed score alike.
    for params, named in [
        ({}, "offset_"),
        ({"standardize": True}, "level_center_ and level_scale_"),
        ({"image_score": "pooled+patches"}, "the pooled part of score_center_"),
    ]:
        with pytest.warns(UserWarning, match=f"{named}.* Gaussians of 2 row.*shrinkage"):
            EfficientNetGaussianDetector(**{**SMALL, **params}).fit(normal[:3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        EfficientNetGaussianDetector(**SMALL).fit(normal[:4])
        EfficientNetGaussianDetector(**SMALL, augment="flips").fit(normal[:2])
        EfficientNetGaussianDetector(**SMALL, threshold="chi2").fit(normal[:3])


def test_augmented_views_enter_the_gaussians_and_leave_folds_together(cells):
    normal, _ = cells
    X = normal[:6]
    augmented = EfficientNetGaussianDetector(augment="flips", **SMALL).fit(X)
    by_hand = EfficientNetGaussianDetector(**SMALL).fit(
        np.concatenate([X, X[:, :, ::-1], X[:, ::-1]])
    )
    for a, b in zip(augmented.gaussians_, by_hand.gaussians_):
        np.testing.assert_allclose(a.location, b.location, rtol=1e-4, atol=1e-5)
        scale = np.abs(b.covariance).max()
        np.testing.assert_allclose(a.covariance, b.covariance, atol=1e-4 * scale)
    assert augmented.n_samples_fit_ == 6 and by_hand.n_samples_fit_ == 18
    # The threshold's sample keeps each image with its two flipped views, so
    # that an image is never scored by Gaussians that saw its mirror image.
    assert augmented._fit_state.reservoir.sample()[0].shape == (6, 3, 32)
    assert augmented.offset_ < by_hand.offset_
    with pytest.raises(ValueError, match="augment"):
        augmented.set_params(augment="shifts").partial_fit(X)


def test_npca_leaves_the_directions_of_most_variance_out(cells):
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(40, 6)) * [10, 5, 1, 1, 1, 1]
    moments = LedoitWolfMoments(6).update(rows)
    full, npca = Gaussian.from_moments(moments), Gaussian.from_moments(moments, npca=0.5)
    top = np.linalg.eigh(full.covariance)[1][:, -1]
    assert abs(top @ npca.precision @ top) < 1e-10
    assert top @ full.precision @ top > 0
    np.testing.assert_allclose(npca.covariance, full.covariance)
    normal, defective = cells
    plain = EfficientNetGaussianDetector(**SMALL).fit(normal[:12])
    reduced = clone(plain).set_params(npca=0.5).fit(normal[:12])
    # Distances shrink, and the threshold follows the same rule.
    assert np.all(reduced.level_distances(defective) <= plain.level_distances(defective) + 1e-9)
    assert reduced.offset_ > plain.offset_


def test_standardize_makes_levels_comparable(cells):
    from skanomaly.threshold import out_of_fold_distances

    normal, defective = cells
    detector = EfficientNetGaussianDetector(
        standardize=True, levels=(0, 4, 8), image_score="pooled"
    ).fit(normal[:16])
    state = detector._fit_state
    held_out = out_of_fold_distances(state.moments, state.reservoir.sample())
    z = (held_out - detector.level_center_) / detector.level_scale_
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(z.std(axis=0, ddof=1), 1, rtol=1e-9)
    # Raw distances grow with the channel count (32, 80, 1280 here); the
    # standardised ones of new normal images are of one size at every level.
    raw = detector.level_distances(normal[16:])
    standardized = (raw - detector.level_center_) / detector.level_scale_
    assert raw.mean(axis=0)[2] > 3 * raw.mean(axis=0)[0]
    assert np.all(np.abs(standardized.mean(axis=0)) < 3)
    np.testing.assert_allclose(detector.score_samples(normal[16:]), -standardized.sum(axis=1))
    plain = clone(detector).set_params(standardize=False).fit(normal[:16])
    np.testing.assert_array_equal(plain.level_center_, 0)
    assert not np.allclose(plain.score_samples(defective), detector.score_samples(defective))
    # The torch path (gradient explain methods) applies the same rule.
    extractor = detector._fitted_extractor()
    x = extractor.network.prepare(torch.from_numpy(defective / 255.0).float().permute(0, 3, 1, 2))
    maps = extractor.maps(x[0][1], detector.levels_)
    scores = pooled_scores(maps, detector.gaussians_, ScoreRule.of(detector))
    np.testing.assert_allclose(-scores.numpy(), detector.score_samples(defective), rtol=1e-4)


def test_command_line_names_every_augmentation():
    from skanomaly._augment import AUGMENTATIONS
    from skanomaly._constants import AUGMENTS

    assert tuple(AUGMENTATIONS) == AUGMENTS
