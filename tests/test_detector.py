"""EfficientNetGaussianDetector on real weights and real solar-cell images."""

import copy
import io
import json
import os
import pickle
import platform
import subprocess
import sys
import warnings
from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.base import clone
from sklearn.covariance import LedoitWolf
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from skanomaly import EfficientNetGaussianDetector
from skanomaly.features import onednn_supports


def test_fit_scores_and_labels(fitted, cells):
    normal, defective = cells
    assert fitted.levels_ == tuple(range(9))
    assert fitted.level_names_[0] == "stem" and fitted.level_names_[-1] == "head"
    assert [loc.shape[0] for loc in fitted.location_] == [32, 16, 24, 40, 80, 112, 192, 320, 1280]
    assert fitted.n_samples_fit_ == 16
    scores = fitted.score_samples(np.concatenate([normal[16:], defective]))
    assert scores.shape == (16,) and np.all(np.isfinite(scores))
    # Held-out normal cells score as more normal than defective ones.
    assert np.median(scores[:8]) > np.median(scores[8:])
    decision = fitted.decision_function(defective)
    np.testing.assert_allclose(decision, fitted.score_samples(defective) - fitted.offset_)
    np.testing.assert_array_equal(fitted.predict(defective), np.where(decision < 0, -1, 1))


def test_ledoit_wolf_matches_sklearn_on_real_features(fitted, cells):
    normal, _ = cells
    features = fitted.pooled_features(normal[:16])
    for name, location, covariance, shrinkage in zip(
        fitted.level_names_, fitted.location_, fitted.covariance_, fitted.shrinkage_
    ):
        reference = LedoitWolf().fit(features[name])
        scale = np.abs(reference.covariance_).max()
        np.testing.assert_allclose(covariance, reference.covariance_, atol=1e-6 * scale)
        np.testing.assert_allclose(location, reference.location_, atol=1e-6)
        assert abs(shrinkage - reference.shrinkage_) < 1e-6


def test_score_is_minus_summed_mahalanobis(pooled_fitted, cells):
    _, defective = cells
    fitted = pooled_fitted
    distances = fitted.level_distances(defective)
    features = fitted.pooled_features(defective)
    for j, name in enumerate(fitted.level_names_):
        diff = features[name] - fitted.location_[j]
        expected = np.sqrt(np.einsum("ij,jk,ik->i", diff, fitted.precision_[j], diff))
        np.testing.assert_allclose(distances[:, j], expected, rtol=1e-6)
    np.testing.assert_allclose(fitted.score_samples(defective), -distances.sum(axis=1), rtol=1e-6)
    squared = clone(fitted).set_params(distance="squared").fit(cells[0][:16])
    np.testing.assert_allclose(
        squared.score_samples(defective), -(distances**2).sum(axis=1), rtol=1e-5
    )


def out_of_fold_offset(detector, features, sample_index, n_folds=5):
    """The threshold recomputed with scikit-learn: each image of the sample
    scored by LedoitWolf Gaussians fitted on all training images but its
    fold, then the contamination percentile."""
    n = len(next(iter(features.values())))
    scores = []
    for fold in range(min(n_folds, len(sample_index))):
        held = sample_index[fold :: min(n_folds, len(sample_index))]
        rest = np.setdiff1d(np.arange(n), held)
        total = 0.0
        for level in features.values():
            model = LedoitWolf().fit(level[rest])
            distance = np.sqrt(np.maximum(model.mahalanobis(level[held]), 0))
            total = total + (distance if detector.distance == "mahalanobis" else distance**2)
        scores.append(-total)
    return np.percentile(np.concatenate(scores), 100 * detector.contamination)


def test_threshold_is_a_percentile_of_out_of_fold_scores(cells):
    normal, _ = cells
    detector = EfficientNetGaussianDetector(
        levels=(0, 1, 2, 3), contamination=0.25, image_score="pooled"
    )
    labels = detector.fit_predict(normal)
    np.testing.assert_array_equal(labels, detector.predict(normal))
    features = detector.pooled_features(normal)
    expected = out_of_fold_offset(detector, features, np.arange(len(normal)))
    assert detector.offset_ == pytest.approx(expected, rel=1e-5)
    # In-sample scores sit well above the out-of-fold threshold.
    assert (labels == -1).mean() < 0.25


def test_default_threshold_flags_few_new_normal_images(elpv_mono):
    # The failure this threshold exists to avoid: 40 training cells against
    # 1280 head channels make in-sample distances tiny, and a percentile of
    # them flagged almost every new normal cell.
    normal = elpv_mono.X[elpv_mono.y == 1]
    normal = normal[np.random.default_rng(0).permutation(len(normal))]
    detector = EfficientNetGaussianDetector().fit(normal[:40])
    flagged = (detector.predict(normal[40:100]) == -1).mean()
    assert flagged < 0.2, flagged


def test_levels_by_name_and_index_agree(cells):
    normal, defective = cells
    by_index = EfficientNetGaussianDetector(levels=(3, 1)).fit(normal[:8])
    by_name = EfficientNetGaussianDetector(levels=["stage1", "stage3"]).fit(normal[:8])
    assert by_index.levels_ == by_name.levels_ == (1, 3)
    np.testing.assert_allclose(by_index.score_samples(defective), by_name.score_samples(defective))


@pytest.mark.parametrize(
    "levels, match",
    [
        (9, "out of range"),
        ((0, -1), "out of range"),
        ("neck", "Unknown level"),
        ((), "empty"),
        ((1, 1), "repeated"),
        ((0.5,), "names or indices"),
    ],
)
def test_invalid_levels(cells, levels, match):
    with pytest.raises(ValueError, match=match):
        EfficientNetGaussianDetector(levels=levels).fit(cells[0][:4])


def test_input_forms_give_the_same_scores(fitted, cells, tmp_path):
    _, defective = cells
    gray = defective[..., 0]  # ELPV cells are grayscale replicated to RGB
    reference = fitted.score_samples(defective)
    rgba = np.concatenate([defective, np.full((*defective.shape[:3], 1), 7, np.uint8)], -1)
    same = {
        "float": defective / 255.0,
        "float32": (defective / 255.0).astype(np.float32),
        "gray 3-D": gray,
        "gray 4-D": gray[..., None],
        "rgba": rgba,
        "list": list(defective),
        "16-bit": defective.astype(np.uint16) * 257,
    }
    for name, X in same.items():
        np.testing.assert_allclose(fitted.score_samples(X), reference, rtol=1e-4, err_msg=name)
    flat = clone(fitted).set_params(image_shape=(64, 64, 3))
    flat.__dict__.update({k: v for k, v in fitted.__dict__.items() if k.endswith("_")})
    np.testing.assert_allclose(
        flat.score_samples(defective.reshape(len(defective), -1)), reference, rtol=1e-4
    )
    paths = []
    for i, image in enumerate(defective):
        paths.append(tmp_path / f"cell{i}.png")
        Image.fromarray(image).save(paths[-1])
    np.testing.assert_allclose(fitted.score_samples(paths), reference, rtol=1e-4)


def test_a_fit_on_images_forgets_the_columns_of_a_fit_on_a_table(cells):
    normal, _ = cells
    detector = EfficientNetGaussianDetector(levels=(0,), image_shape=(64, 64, 3))
    detector.fit(normal[:4].reshape(4, -1))
    assert detector.n_features_in_ == 64 * 64 * 3
    # What a table with column names (a pandas DataFrame) would have set.
    detector.feature_names_in_ = np.array([f"pixel{i}" for i in range(64 * 64 * 3)], object)
    detector.fit(normal[:4])
    assert not hasattr(detector, "n_features_in_")
    assert not hasattr(detector, "feature_names_in_")


def test_images_of_different_sizes_in_a_list(fitted, cells):
    _, defective = cells
    big = np.asarray(Image.fromarray(defective[0]).resize((150, 120)))
    scores = fitted.score_samples([defective[1], big, defective[2]])
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    np.testing.assert_allclose(scores[[0, 2]], fitted.score_samples(defective[1:3]), rtol=1e-4)


def test_scores_do_not_depend_on_batch_size(fitted, cells):
    normal, defective = cells
    X = np.concatenate([normal[16:], defective])
    reference = fitted.score_samples(X)
    for batch_size in (1, 5):
        other = clone(fitted).set_params(batch_size=batch_size)
        other.__dict__.update({k: v for k, v in fitted.__dict__.items() if k.endswith("_")})
        np.testing.assert_allclose(other.score_samples(X), reference, rtol=1e-4)


def test_clone_and_pickle_without_the_network(fitted, cells):
    _, defective = cells
    assert clone(fitted).get_params() == fitted.get_params()
    assert not hasattr(clone(fitted), "offset_")

    class NoTorch(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, (torch.Tensor, torch.nn.Module)):
                raise AssertionError(f"pickle holds a {type(obj).__name__}")
            return NotImplemented

    fitted.gaussians_[0].tensors(torch.device("cpu"))  # a tensor cache must not leak in
    buffer = io.BytesIO()
    NoTorch(buffer).dump(fitted)
    restored = pickle.loads(buffer.getvalue())
    np.testing.assert_array_equal(
        restored.score_samples(defective), fitted.score_samples(defective)
    )


def test_unfitted_detector_raises():
    detector = EfficientNetGaussianDetector()
    X = np.zeros((2, 32, 32, 3), np.uint8)
    for method in ("score_samples", "decision_function", "predict", "pooled_features"):
        with pytest.raises(NotFittedError):
            getattr(detector, method)(X)


GOOD = np.full((3, 32, 32, 3), 128, np.uint8)


@pytest.mark.parametrize(
    "X, error, match",
    [
        (np.zeros((0, 32, 32, 3), np.uint8), ValueError, "empty"),
        (GOOD[:1], ValueError, "n_samples=1"),
        (GOOD.astype(bool), TypeError, "bool"),
        (GOOD.astype(complex), ValueError, "complex"),
        (GOOD.astype(str), TypeError, "numeric"),
        (np.where(GOOD > 0, np.nan, 0.0), ValueError, "NaN"),
        (np.full((3, 32, 32), np.inf), ValueError, "NaN or infinity"),
        (GOOD.astype(float), ValueError, "divide by 255"),
        (GOOD.astype(np.int32) - 200, ValueError, "outside the pixel range"),
        (np.zeros((3, 32, 32, 2)), ValueError, "channels"),
        (np.zeros((3, 3, 32, 32)), ValueError, "channels last"),
        (np.zeros((2, 3, 4, 5, 3)), ValueError, "dimension"),
        (np.zeros(10), ValueError, "Reshape your data"),
        (np.zeros((5, 12)), ValueError, "image_shape"),
        (np.zeros((224, 224, 3)), ValueError, "X\\[np.newaxis\\]"),
        # Small enough to pass for 8 grayscale images 3 pixels wide.
        (np.zeros((8, 8, 3), np.uint8), ValueError, "X\\[np.newaxis\\]"),
        (np.zeros((3, 0, 8)), ValueError, "no pixels"),
        ([GOOD[0], GOOD[0, :0]], ValueError, "image 1 of X has no pixels"),
        ("img.png", TypeError, "single path"),
        (None, TypeError, "NoneType"),
        (["missing1.png", "missing2.png"], FileNotFoundError, "missing1.png"),
        ([GOOD[0], GOOD[0, :, :, 0].astype(bool)], TypeError, "image 1 of X"),
    ],
)
def test_bad_input(X, error, match):
    with pytest.raises(error, match=match):
        EfficientNetGaussianDetector(levels=(0,)).fit(X)


def test_unreadable_file_is_named(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(GOOD[0]).save(good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(good.read_bytes()[:60])
    with pytest.raises(ValueError, match=r"broken\.png"):
        EfficientNetGaussianDetector(levels=(0,)).fit([good, broken, good])


@pytest.mark.parametrize(
    "params, match",
    [
        ({"contamination": 0.0}, "contamination"),
        ({"contamination": 0.7}, "contamination"),
        ({"batch_size": 0}, "batch_size"),
        ({"distance": "euclidean"}, "distance"),
        ({"lam": -1.0}, "lam"),
        ({"lam": float("nan")}, "lam"),
        ({"device": "tpu"}, "device"),
        ({"precision": "float64"}, "precision"),
        ({"precision": None}, "precision"),
        ({"backbone": "resnet50"}, "timm EfficientNet"),
        ({"image_shape": (0, 4)}, "image_shape"),
        ({"pixel_range": (1, 0)}, "pixel_range"),
        ({"input_size": 10**9}, "input_size"),
    ],
)
def test_invalid_parameters(params, match):
    X = np.zeros((3, 16, 16), np.uint8) if "image_shape" not in params else np.zeros((3, 16))
    with pytest.raises(ValueError, match=match):
        EfficientNetGaussianDetector(levels=(0,), **params).fit(X)


@pytest.mark.parametrize("copies", [np.zeros((4, 32, 32, 3), np.uint8), GOOD[:1].repeat(3, axis=0)])
def test_identical_training_images_are_refused(copies):
    """Their covariance is 0, and its pseudo-inverse would score every image 0."""
    with pytest.raises(ValueError, match=r"do not vary at stem, stage1.*identical"):
        EfficientNetGaussianDetector(levels=(0, 1)).fit(copies)


def test_negative_level_distances_and_empty_pixel_calibration_are_refused(pooled_fitted, cells):
    fitted = pooled_fitted
    distances = fitted.level_distances(cells[1][:2])
    with pytest.raises(ValueError, match="never negative"):
        fitted.scores_from_level_distances(-distances)
    for empty in (cells[0][:0], []):
        with pytest.raises(ValueError, match="empty X"):
            copy.deepcopy(fitted).calibrate_pixels(empty)
    # One image without its batch axis is described as the caller passed it,
    # not as the first chunk of 16 rows that calibration explains.
    with pytest.raises(ValueError, match=r"X has shape \(64, 64, 3\)"):
        copy.deepcopy(fitted).calibrate_pixels(cells[0][0])
    with pytest.raises(TypeError, match="return_scores"):
        fitted.level_distances(cells[1][:2], return_scores="no")


def test_failed_fit_keeps_the_previous_model(fitted, cells):
    _, defective = cells
    before = fitted.score_samples(defective)
    model = pickle.loads(pickle.dumps(fitted))
    with pytest.raises(ValueError):
        model.fit(np.full((3, 16, 16), np.nan))
    np.testing.assert_array_equal(model.score_samples(defective), before)


@pytest.mark.parametrize(
    "params",
    [
        {"pooling": "max"},
        {"input_size": 96},
        {"keep_aspect": True},
        {"distance": "squared"},
        {"image_score": "pooled"},
    ],
)
def test_changed_feature_parameter_after_fit_is_refused(fitted, cells, params):
    """The Gaussians and offset_ belong to the features they were fitted on:
    scoring with other ones would give confident, wrong scores."""
    _, defective = cells
    detector = copy.deepcopy(fitted).set_params(**params)
    (name,) = params
    for method in (detector.score_samples, detector.predict, detector.explain):
        with pytest.raises(ValueError, match=f"fitted with {name}=.*now has {name}="):
            method(defective[:2])
    # Setting it back restores the fitted model exactly.
    detector.set_params(**{name: fitted.get_params()[name]})
    np.testing.assert_array_equal(
        detector.score_samples(defective[:2]), fitted.score_samples(defective[:2])
    )
    # precision may change, as a model moves between machines, with a warning.
    with pytest.warns(UserWarning, match="fitted with its network in float32"):
        assert np.all(
            np.isfinite(detector.set_params(precision="bfloat16").score_samples(defective[:2]))
        )


def test_scoring_in_bfloat16_after_a_float32_fit_warns(fitted, cells):
    """bfloat16 features move the scores against an offset_ set on float32
    ones: scoring, explain and calibrate warn, naming both dtypes, until the
    precision is set back; float16's scores stay close and do not warn."""
    normal, defective = cells
    assert fitted.fit_precision_ == "float32"
    detector = copy.deepcopy(fitted).set_params(precision="bfloat16")
    calls = (detector.score_samples, detector.predict, detector.explain)
    for method in (*calls, partial(detector.calibrate, fpr=0.2)):
        with pytest.warns(UserWarning, match="in float32 and now runs it in bfloat16") as caught:
            method(normal[:4])
        assert any("set precision='float32'" in str(w.message) for w in caught)
    with pytest.warns(UserWarning, match="now runs it in bfloat16"):
        moved = detector.score_samples(defective[:4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = detector.set_params(precision="float32").score_samples(defective[:4])
    assert not np.array_equal(moved, same)
    np.testing.assert_array_equal(same, fitted.score_samples(defective[:4]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detector.set_params(precision="float16").score_samples(defective[:4])
    assert not [w for w in caught if "now runs it in" in str(w.message)]


@pytest.mark.parametrize("other", ["bfloat16", "float16"])
# CPUs without the dtype's oneDNN kernels also warn that it runs slowly.
@pytest.mark.filterwarnings("ignore:precision=.*this CPU lacks:UserWarning")
def test_partial_fit_in_another_precision_is_refused(cells, other):
    """The running moments would mix features of both dtypes: refused, and
    the moments stay as they were, so the stream goes on in the first."""
    normal, _ = cells
    stream = EfficientNetGaussianDetector(levels=(0, 1)).partial_fit(normal[:4])
    before = stream.score_samples(normal[8:10])
    with pytest.raises(
        ValueError, match=f"computed in float32, but the network now runs in {other}"
    ):
        stream.set_params(precision=other).partial_fit(normal[4:8])
    assert stream.fit_precision_ == "float32"
    np.testing.assert_array_equal(
        stream.set_params(precision="float32").score_samples(normal[8:10]), before
    )
    stream.partial_fit(normal[4:8])
    assert not np.array_equal(stream.score_samples(normal[8:10]), before)


@pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"),
    reason="ONEDNN_MAX_CPU_ISA caps x86 instruction sets",
)
def test_reduced_precision_warns_where_the_cpu_lacks_its_kernels():
    """With oneDNN capped at AVX2, as on CPUs without AVX-512, bfloat16 has
    no fast kernels (onednn_supports says so): a fit in bfloat16 warns that
    the network runs many times slower, and the same fit in float32 does not."""
    code = """if True:
        import json, warnings
        import numpy as np
        import torch
        from skanomaly import EfficientNetGaussianDetector
        from skanomaly.features import onednn_supports
        X = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
        found = {"kernels": onednn_supports(torch.bfloat16)}
        for precision in ("float32", "bfloat16"):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                EfficientNetGaussianDetector(precision=precision).fit(X)
            found[precision] = [str(w.message) for w in caught if "oneDNN" in str(w.message)]
        print(json.dumps(found))
    """
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout.splitlines()[-1])
    assert found["kernels"] is False
    assert found["float32"] == []
    # "always" shows it for each extractor fit builds; by default, once.
    assert found["bfloat16"]
    for message in found["bfloat16"]:
        assert "precision='bfloat16'" in message and "slower than in float32" in message


def test_onednn_supports_names_the_dtypes_it_checks():
    with pytest.raises(ValueError, match=r"torch\.bfloat16 or torch\.float16, not torch\.float32"):
        onednn_supports(torch.float32)


def test_pixel_range_for_12_bit_data(fitted, cells):
    _, defective = cells
    twelve_bit = defective.astype(np.float64) / 255 * 4095
    detector = clone(fitted).set_params(pixel_range=(0, 4095))
    detector.__dict__.update({k: v for k, v in fitted.__dict__.items() if k.endswith("_")})
    np.testing.assert_allclose(
        detector.score_samples(twelve_bit), fitted.score_samples(defective), rtol=1e-4
    )


def test_calibrate_sets_threshold_from_held_out_normals(fitted, cells):
    normal, defective = cells
    detector = pickle.loads(pickle.dumps(fitted))
    held_out = normal[16:]
    detector.calibrate(held_out, fpr=0.2)
    scores = np.sort(detector.score_samples(held_out))
    # 8 images: the conformal rank floor(0.2 * 9) = 1 is the lowest score.
    assert detector.offset_ == scores[0]
    assert (detector.predict(held_out) == -1).sum() == 0
    p = detector.p_values(np.concatenate([held_out, defective]))
    assert np.all((p > 0) & (p <= 1))
    assert np.median(p[:8]) > np.median(p[8:])
    with pytest.warns(UserWarning, match="Calibrate on more images"):
        detector.calibrate(held_out, fpr=0.01)
    with pytest.raises(ValueError, match="fpr"):
        detector.calibrate(held_out, fpr=1.5)
    with pytest.raises(NotFittedError):
        EfficientNetGaussianDetector().calibrate(held_out)
    with pytest.raises(NotFittedError):
        pickle.loads(pickle.dumps(fitted)).p_values(held_out)


def test_concurrent_scoring_matches_one_thread(fitted, cells):
    from concurrent.futures import ThreadPoolExecutor

    normal, defective = cells
    X = np.concatenate([normal[16:], defective])
    reference = fitted.score_samples(X)
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(fitted.score_samples, [X, X[::-1], X]))
    np.testing.assert_allclose(results[0], reference, rtol=1e-5)
    np.testing.assert_allclose(results[1][::-1], reference, rtol=1e-5)
    np.testing.assert_allclose(results[2], reference, rtol=1e-5)


@pytest.mark.parametrize("distance", ["squared", "mahalanobis"])
def test_chi2_threshold_is_the_gaussian_reference(cells, distance):
    from scipy import stats

    normal, _ = cells
    detector = EfficientNetGaussianDetector(
        levels=(0, 3),
        distance=distance,
        threshold="chi2",
        contamination=0.1,
        image_score="pooled",
    ).fit(normal[:8])
    dims = 32 + 40
    if distance == "squared":
        assert detector.offset_ == pytest.approx(-stats.chi2.ppf(0.9, dims))
    else:
        rng = np.random.default_rng(1)
        draws = np.sqrt(rng.chisquare(32, 400_000)) + np.sqrt(rng.chisquare(40, 400_000))
        assert detector.offset_ == pytest.approx(-np.quantile(draws, 0.9), rel=2e-3)
    with pytest.raises(ValueError, match="threshold"):
        EfficientNetGaussianDetector(threshold="median").fit(normal[:4])


def test_chi2_threshold_counts_the_directions_that_npca_keeps(cells):
    from scipy import stats

    normal, _ = cells
    detector = EfficientNetGaussianDetector(
        levels=(0, 3), distance="squared", threshold="chi2", npca=0.9, image_score="pooled"
    ).fit(normal[:8])
    kept = [int(np.linalg.matrix_rank(g.precision, hermitian=True)) for g in detector.gaussians_]
    # NPCA leaves the directions of most variance out of the distance.
    assert kept[0] < 32 and kept[1] < 40
    assert detector.offset_ == pytest.approx(-stats.chi2.ppf(0.95, sum(kept)))


def test_mixed_precision_changes_features_a_little(fitted, cells):
    """float16 autocast (the CUDA default, runnable on CPUs too) keeps the features close to
    float32 and the ranking of normal versus defective cells intact."""
    normal, defective = cells
    with warnings.catch_warnings():
        # Most CPUs lack oneDNN's float16 kernels: this test is about accuracy.
        warnings.filterwarnings("ignore", message="precision='float16'", category=UserWarning)
        half = clone(fitted).set_params(precision="float16").fit(normal[:16])
        approx = half.pooled_features(defective)["head"]
        scores = half.score_samples(np.concatenate([normal[16:], defective]))
    full = fitted.pooled_features(defective)["head"]
    relative = np.linalg.norm(approx - full) / np.linalg.norm(full)
    assert 0 < relative < 0.05
    y = np.r_[np.ones(8), -np.ones(len(defective))]
    assert roc_auc_score(y, scores) > 0.9


def test_overlapping_uses_of_the_one_blas_thread_limit_restore_the_original(monkeypatch):
    """The limit is process-wide: a second thread that entered while the
    first held it took 1 for the original and, leaving last, restored 1
    for good. The first to enter sets it, the last to leave restores it."""
    import skanomaly.features

    events = []

    class Limiter:
        def restore_original_limits(self):
            events.append("restore")

    class Controller:
        def limit(self, limits, user_api):
            events.append(("limit", limits, user_api))
            return Limiter()

    monkeypatch.setattr(skanomaly.features, "_blas_controller", Controller)
    one_thread = skanomaly.features._OneBlasThread()
    first, second = one_thread(), one_thread()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert events == [("limit", 1, "blas")]
    second.__exit__(None, None, None)
    assert events == [("limit", 1, "blas"), "restore"]
    with pytest.raises(KeyError), one_thread():
        raise KeyError("an error inside still restores")
    assert events[-2:] == [("limit", 1, "blas"), "restore"]


def test_one_blas_thread_while_the_network_runs_on_a_cpu(cells, monkeypatch):
    """numpy's spinning BLAS threads would compete with torch's for the cores."""
    from threadpoolctl import threadpool_info

    import skanomaly.features

    def blas_threads():
        return {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}

    seen = []
    original = skanomaly.features._summarize

    def recording(*args, **kwargs):
        seen.append(blas_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(skanomaly.features, "_summarize", recording)
    before = blas_threads()
    detector = EfficientNetGaussianDetector(levels=(0,), device="cpu", batch_size=4)
    detector.fit(cells[0][:8])
    assert seen == [{1}, {1}]
    assert blas_threads() == before
    # The last group of a call is scored after the network's last batch:
    # with more threads they would still spin when the next call's forward
    # pass starts, as with a line that scores one image per call.
    scoring = detector._scores
    monkeypatch.setattr(detector, "_scores", lambda *a: seen.append(blas_threads()) or scoring(*a))
    seen.clear()
    detector.score_samples(cells[1][:1])
    assert seen == [{1}, {1}]
    assert blas_threads() == before
