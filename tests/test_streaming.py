"""partial_fit with exact streaming moments, and the feature cache."""

import pickle

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, KFold
from test_detector import out_of_fold_offset

import skanomaly.gaussian
import skanomaly.patches
import skanomaly.threshold
from skanomaly import EfficientNetGaussianDetector
from skanomaly._reservoir import reservoir_add, reservoir_slots
from skanomaly._stream import InputSample


def _fitted_attributes(detector):
    return {
        "location": detector.location_,
        "covariance": detector.covariance_,
        "shrinkage": detector.shrinkage_,
        "spatial_location": [g.location for g in detector.spatial_gaussians_],
        "spatial_precision": [g.precision for g in detector.spatial_gaussians_],
    }


def test_partial_fit_in_chunks_equals_fit(cells):
    normal, defective = cells
    whole = EfficientNetGaussianDetector(levels=(0, 3, 8)).fit(normal)
    chunked = EfficientNetGaussianDetector(levels=(0, 3, 8))
    for chunk in np.array_split(normal, 4):
        chunked.partial_fit(chunk)
    assert chunked.n_samples_fit_ == whole.n_samples_fit_ == len(normal)
    for name, expected in _fitted_attributes(whole).items():
        actual = _fitted_attributes(chunked)[name]
        for a, b in zip(
            np.atleast_1d(actual) if name == "shrinkage" else actual,
            np.atleast_1d(expected) if name == "shrinkage" else expected,
        ):
            scale = np.abs(b).max()
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * scale, err_msg=name)
    # Every training row is in the threshold sample while n <= 2048.
    assert chunked.offset_ == pytest.approx(whole.offset_, rel=1e-6)
    np.testing.assert_allclose(
        chunked.score_samples(defective), whole.score_samples(defective), rtol=1e-6
    )


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda X: X[:, :32], "shape"),
        (lambda X: X[..., 0], "shape"),
        (lambda X: np.where(X > 0, np.nan, 0.0), "NaN"),
    ],
)
def test_rejected_chunk_leaves_the_model_as_it_was(cells, bad, match):
    normal, defective = cells
    detector = EfficientNetGaussianDetector(levels=(0, 3)).partial_fit(normal[:8])
    before = pickle.loads(pickle.dumps(detector))
    with pytest.raises(ValueError, match=match):
        detector.partial_fit(bad(normal[8:12]))
    assert detector.n_samples_fit_ == 8
    for a, b in zip(detector.covariance_, before.covariance_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        detector.score_samples(defective), before.score_samples(defective)
    )
    detector.partial_fit(normal[8:12])
    assert detector.n_samples_fit_ == 12


def test_using_the_detector_mid_stream_leaves_the_stream_as_it_was(cells):
    # The first use makes the patch memory and its threshold; the draws it
    # makes must not be taken from the stream's later ones.
    normal, defective = cells
    chunks = [normal[i : i + 4] for i in range(0, 16, 4)]
    plain, used = EfficientNetGaussianDetector(), EfficientNetGaussianDetector()
    for k, chunk in enumerate(chunks):
        plain.partial_fit(chunk)
        used.partial_fit(chunk)
        if k == 1:
            used.score_samples(defective[:1])
    assert used.patch_threshold_ == plain.patch_threshold_
    assert used.patch_excess_ == plain.patch_excess_ and used.offset_ == plain.offset_
    np.testing.assert_array_equal(used.score_samples(defective), plain.score_samples(defective))


def test_partial_fit_takes_lists_after_arrays_and_arrays_after_lists(cells):
    # Lists may mix sizes, as fit's may; only array chunks are held to the
    # first array chunk's shape.
    normal, _ = cells
    chunks = [list(normal[:3]), normal[3:6], [normal[6], normal[7, :40]], normal[8:10]]
    detector = EfficientNetGaussianDetector(levels=(0, 3), image_score="pooled")
    for chunk in chunks:
        detector.partial_fit(chunk)
    assert detector.n_samples_fit_ == 10 and np.isfinite(detector.offset_)
    with pytest.raises(ValueError, match="shape"):
        detector.partial_fit(normal[10:12, :40])


@pytest.mark.parametrize("params", [{"pooling": "max"}, {"input_size": 96}, {"keep_aspect": True}])
def test_partial_fit_refuses_chunks_of_other_features(cells, params):
    normal, _ = cells
    detector = EfficientNetGaussianDetector(levels=(0, 3)).partial_fit(normal[:4])
    detector.set_params(**params)
    with pytest.raises(ValueError, match=r"fit again \(partial_fit: fit to start over\)"):
        detector.partial_fit(normal[4:8])
    assert detector.n_samples_fit_ == 4


def test_partial_fit_cannot_continue_a_loaded_model(fitted, cells):
    loaded = pickle.loads(pickle.dumps(fitted))
    with pytest.raises(ValueError, match="fit it again"):
        loaded.partial_fit(cells[0][:4])


def test_threshold_sample_is_bounded(cells, monkeypatch):
    monkeypatch.setattr(skanomaly.threshold, "RESERVOIR_SIZE", 10)
    normal, _ = cells
    detector = EfficientNetGaussianDetector(
        levels=(0, 1), contamination=0.2, image_score="pooled"
    ).fit(normal)
    sample = detector._fit_state.reservoir.sample()
    assert sample[0].shape[0] == 10 and detector._fit_state.reservoir.seen == len(normal)
    features = detector.pooled_features(normal)
    # Which training images the sample kept, found by their features.
    first = features[detector.level_names_[0]]
    kept = np.array([np.argmin(np.abs(first - row).sum(axis=1)) for row in sample[0]])
    assert len(set(kept)) == 10
    expected = out_of_fold_offset(detector, features, kept)
    assert detector.offset_ == pytest.approx(expected, rel=1e-4)


def test_feature_cache_runs_the_network_once_per_batch(cells, tmp_path, forward_passes):
    normal, defective = cells
    X = np.concatenate([normal[:12], defective[:4]])
    grid = {"contamination": [0.05, 0.1, 0.2], "levels": [(0, 1), (2, 3)]}
    cv = KFold(n_splits=2)

    def search(memory):
        estimator = EfficientNetGaussianDetector(batch_size=8, memory=memory)
        return GridSearchCV(estimator, grid, scoring=_mean_score, cv=cv, refit=False).fit(X)

    calls = forward_passes
    uncached = search(None)
    n_uncached = len(calls)
    calls.clear()
    cached = search(str(tmp_path / "cache"))
    # Uncached: 6 candidates x 2 folds x (one train + one test batch). The
    # folds swap the two halves of X, so the cache computes 2 batches in all.
    assert n_uncached == 6 * 2 * 2 and len(calls) == 2
    np.testing.assert_allclose(
        cached.cv_results_["mean_test_score"], uncached.cv_results_["mean_test_score"], rtol=1e-6
    )
    calls.clear()
    search(str(tmp_path / "cache"))
    assert calls == []
    # Other autocast precision, other features: the cache must not serve them.
    EfficientNetGaussianDetector(
        batch_size=8, memory=str(tmp_path / "cache"), precision="bfloat16"
    ).fit(X[:8])
    assert calls == [8]
    # Nor other patch features: the patch neighbourhood is part of the key.
    calls.clear()
    wide = {"batch_size": 8, "patch_neighborhood": 3}
    cached = EfficientNetGaussianDetector(memory=str(tmp_path / "cache"), **wide).fit(X[:8])
    assert calls == [8]
    uncached = EfficientNetGaussianDetector(**wide).fit(X[:8])
    np.testing.assert_allclose(cached.patches_, uncached.patches_, rtol=1e-6)


def test_feature_cache_chooses_the_patch_memory_once(cells, tmp_path, monkeypatch):
    # Choosing the patch memory is most of a fit once the features come
    # from the cache: the other candidates of a search on the same images
    # take it from there too.
    normal = cells[0][:12]
    uncached = EfficientNetGaussianDetector(batch_size=8).fit(normal)
    chosen, real = [], skanomaly.patches.k_centres
    monkeypatch.setattr(
        skanomaly.patches, "k_centres", lambda rows, n: chosen.append(n) or real(rows, n)
    )
    cached = EfficientNetGaussianDetector(batch_size=8, memory=str(tmp_path / "cache"))
    cached.fit(normal)
    n_first = len(chosen)
    cached.set_params(levels=(0, 1), contamination=0.1).fit(normal)
    assert n_first > 0 and len(chosen) == n_first
    np.testing.assert_array_equal(cached.patches_, uncached.patches_)
    assert cached.n_score_patches_ == uncached.n_score_patches_
    assert (cached.patch_threshold_, cached.patch_excess_) == (
        uncached.patch_threshold_,
        uncached.patch_excess_,
    )
    # Other images, or another share of the memory, choose again.
    cached.fit(normal[:10])
    assert len(chosen) > n_first
    n_second = len(chosen)
    cached.set_params(score_coreset=0.05).fit(normal[:10])
    assert len(chosen) > n_second


def _mean_score(estimator, X, y=None):
    return float(np.mean(estimator.score_samples(X)))


def test_unwritable_cache_warns_and_runs_uncached(cells, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    detector = EfficientNetGaussianDetector(levels=(0,), memory=str(blocker / "cache"))
    with pytest.warns(UserWarning, match="running without a cache"):
        detector.fit(cells[0][:4])
    with pytest.warns(UserWarning, match="running without a cache"):
        scores = detector.score_samples(cells[1][:2])
    assert np.all(np.isfinite(scores))


PEAK_RSS_CHILD = """
import sys
import numpy as np
from skanomaly import EfficientNetGaussianDetector

n = int(sys.argv[1])
rng = np.random.default_rng(0)
detector = EfficientNetGaussianDetector(levels=(0, 1, 2, 3))
for first in range(0, n, 40):
    detector.partial_fit(rng.integers(0, 256, size=(40, 48, 48, 3), dtype=np.uint8))
assert detector.n_samples_fit_ == n and np.isfinite(detector.offset_)
print([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])
"""


def test_peak_memory_is_flat_in_the_number_of_images():
    import subprocess
    import sys

    def peak_kib(n):
        out = subprocess.run(
            [sys.executable, "-c", PEAK_RSS_CHILD, str(n)],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        return int(out.stdout.split()[-1])

    # 120 images fill every bounded sample (the 65,536 patches the memory is
    # chosen from at 784 per image, the 64 images of the image score), so
    # that what grows past them would grow with every image.
    small, large = peak_kib(120), peak_kib(400)
    assert abs(large - small) < 0.1 * small, (small, large)


def test_partial_fit_defers_the_inverses_to_first_use(cells, monkeypatch):
    normal, defective = cells
    calls = []
    original = skanomaly.gaussian.precision_from_covariance

    def counting(covariance):
        calls.append(covariance.shape[0])
        return original(covariance)

    monkeypatch.setattr(skanomaly.gaussian, "precision_from_covariance", counting)
    detector = EfficientNetGaussianDetector(levels=(0, 3)).partial_fit(normal[:8])
    # The first chunk waits too; its first use computes the pooled levels'
    # inverses, then the spatial levels' (stages 3-6).
    assert calls == []
    once = [32, 40, 40, 80, 112, 192]
    with pytest.warns(UserWarning, match="Calibrate on more images"):
        detector.calibrate(normal[20:])
    assert calls == once
    for chunk in np.array_split(normal[8:20], 3):
        detector.partial_fit(chunk)
    assert calls == once and "offset_" not in vars(detector)
    assert not hasattr(detector, "calibration_scores_")
    # A reloaded copy and the detector itself finalize the same Gaussians once.
    copy = pickle.loads(pickle.dumps(detector))
    assert calls == once * 2
    scores = detector.decision_function(defective)
    assert calls == once * 2
    np.testing.assert_array_equal(copy.decision_function(defective), scores)
    whole = EfficientNetGaussianDetector(levels=(0, 3)).fit(normal[:20])
    np.testing.assert_allclose(scores, whole.decision_function(defective), rtol=1e-6)


def test_reservoir_sample_is_uniform_whatever_the_batches():
    # 60 items in batches of 1-9 into a sample of 12: every item is kept with
    # probability 12 / 60, and offering them in batches or one by one keeps
    # the same items.
    counts = np.zeros(60)
    for seed in range(1500):
        batches = np.random.default_rng(seed + 10_000)
        rng, rng_one = np.random.default_rng(seed), np.random.default_rng(seed)
        kept, one_by_one, seen = [np.empty(0, np.int64)], [np.empty(0, np.int64)], 0
        while seen < 60:
            n = min(int(batches.integers(1, 10)), 60 - seen)
            items = np.arange(seen, seen + n)
            kept = reservoir_add(kept, [items], reservoir_slots(rng, seen, n, 12))
            for item in items:
                slots = reservoir_slots(rng_one, int(item), 1, 12)
                one_by_one = reservoir_add(
                    one_by_one, [items[item - seen : item - seen + 1]], slots
                )
            seen += n
        assert np.array_equal(kept[0], one_by_one[0])
        assert len(set(kept[0])) == 12
        counts[kept[0]] += 1
    share = counts / 1500
    assert np.all(np.abs(share - 0.2) < 0.05), share


def test_image_sample_nests_a_uniform_sample_of_inputs():
    # 60 images into a sample of 12 with the inputs of 4: every image is
    # kept with probability 12 / 60 and has its input kept with 4 / 60, the
    # first images no more than the last (Algorithm R's first 4 slots, as
    # the inputs, would hold images 0-3 with probability 12 / 60 each and a
    # later image with 1 / 60).
    kept, with_input = np.zeros(60), np.zeros(60)
    made, made_inputs = [], []

    def image(number):
        def make(with_input):
            made.append(number)
            if with_input:
                made_inputs.append(number)
            return (f"x{number}" if with_input else None), number

        return make

    for seed in range(1500):
        sample = InputSample(12, 4, seed=seed)
        for number in range(60):
            sample.offer(image(number), (number,))
        assert sample.features == sorted(sample.features)  # in the order they came
        assert [owners[0] for owners in sample.owners] == sample.features
        inputs = sample.pixel_inputs()
        assert len(inputs) == 4
        assert all(x == f"x{sample.features[i]}" for i, x in inputs)
        kept[sample.features] += 1
        with_input[[sample.features[i] for i, _ in inputs]] += 1
    assert np.all(np.abs(kept / 1500 - 0.2) < 0.05), kept / 1500
    assert np.all(np.abs(with_input / 1500 - 4 / 60) < 0.03), with_input / 1500
    # Only the images kept when they come are asked for (12 + 12 / t for the
    # t-th after, about 31 of the 60), and inputs only for those that enter
    # the inputs' sample (about 14).
    assert len(made) / 1500 == pytest.approx(12 + sum(12 / t for t in range(13, 61)), rel=0.05)
    assert len(made_inputs) / 1500 == pytest.approx(4 + sum(4 / t for t in range(5, 61)), rel=0.05)


@pytest.mark.parametrize(("image_score", "needed"), [("pooled", 2), ("pooled+patches", 3)])
def test_partial_fit_takes_one_image_at_a_time(cells, image_score, needed):
    # A camera's stream: chunks of one image, from the first. The count that
    # fit needs is checked at the first use, and a refused use leaves the
    # stream open.
    normal, defective = cells
    params = {"levels": (0, 3), "image_score": image_score, "explain_method": "spatial"}
    detector = EfficientNetGaussianDetector(**params)
    for image in normal[: needed - 1]:
        detector.partial_fit(image[None])
    with pytest.raises(ValueError, match=f"at least {needed}"):
        detector.score_samples(defective)
    # Introspection (tab completion, hasattr) neither fails on the stream
    # that cannot be finished yet nor finishes one that can.
    assert "offset_" in dir(detector) and not hasattr(detector, "offset_")
    assert getattr(detector, "gaussians_", None) is None
    detector.partial_fit(normal[needed - 1][None])
    assert "location_" in dir(detector) and "gaussians_" not in vars(detector)
    for image in normal[needed:6]:
        detector.partial_fit(image[None])
    whole = EfficientNetGaussianDetector(**params).fit(normal[:6])
    assert detector.n_samples_fit_ == 6
    np.testing.assert_allclose(
        detector.score_samples(defective), whole.score_samples(defective), rtol=1e-5
    )
    assert detector.offset_ == pytest.approx(whole.offset_, rel=1e-5)
