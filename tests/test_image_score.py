"""image_score="pooled+patches" and "patches" (issue 13): the pooled
distance plus the worst patch's, or the worst patch's alone, on real
weights and solar cells."""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

import skanomaly.patches
from skanomaly import EfficientNetGaussianDetector
from skanomaly._patch_score import score_columns, score_neighborhood
from skanomaly.explain_report import _level_values
from skanomaly.features import patch_features
from skanomaly.inspection import ImageReader, score_files
from skanomaly.patches import (
    PatchIndex,
    PatchReservoir,
    k_centres,
    nearest_patches,
    worst_patch_distances,
)
from skanomaly.persistence import load, save

FUSED = {"image_score": "pooled+patches", "explain_method": "spatial"}
PATCHES = {"image_score": "patches", "explain_method": "spatial"}


@pytest.fixture(scope="module")
def fused(cells):
    return EfficientNetGaussianDetector(**FUSED).fit(cells[0][:16])


def _patch_rows(detector, images):
    """``(n, locations, c)``: each image's patch features of the size that
    the image scores compare."""
    extractor = detector._fitted_extractor()
    x = torch.from_numpy(images / 255.0).float().permute(0, 3, 1, 2)
    ((_, prepared),) = extractor.network.prepare(x)
    maps = extractor.maps(prepared, detector.patch_levels_)
    return patch_features(maps, score_neighborhood(detector.patch_neighborhood_)).flatten(1, 2)


def _brute_worst(rows, memory):
    return float(torch.cdist(rows, memory).min(dim=1).values.max())


def _worst_patch(detector, images):
    """Each image's largest distance from a patch to its nearest row of
    the first ``n_score_patches_`` of ``patches_`` (the columns the image
    scores compare), by brute force over the whole distance matrix."""
    rows = detector.patches_[: detector.n_score_patches_]
    memory = torch.from_numpy(score_columns(rows, detector.patch_neighborhood_))
    return np.array([_brute_worst(rows, memory) for rows in _patch_rows(detector, images)])


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    n_memory=st.integers(1, 3000),
    n_patches=st.lists(st.integers(1, 400), min_size=1, max_size=3),
    noise=st.floats(0.01, 3.0),
    cover_rows=st.one_of(st.none(), st.integers(1, 400)),
)
def test_worst_patch_search_is_exact(seed, n_memory, n_patches, noise, cover_rows):
    # Patches near memory rows that the search's bound leaves out have a
    # loose bound and a small distance; one block of them must not hide a
    # worse patch whose bound is tight. The answer must be brute force's.
    rng = np.random.default_rng(seed)
    memory = rng.normal(size=(n_memory, 6)).astype(np.float32)
    images = [
        np.concatenate(
            [
                memory[rng.integers(n_memory, size=n)] + 0.01 * rng.normal(size=(n, 6)),
                noise * rng.normal(size=(1, 6)),
            ]
        ).astype(np.float32)
        for n in n_patches
    ]
    expected = [
        torch.cdist(torch.from_numpy(x), torch.from_numpy(memory)).min(1).values.max()
        for x in images
    ]
    # Several images are searched together: each must get its own worst.
    found = worst_patch_distances(images, PatchIndex(memory, cover_rows))
    np.testing.assert_allclose(found, expected, rtol=1e-4, atol=1e-4)


def test_worst_patch_search_finds_a_tight_bound_behind_loose_ones():
    # Near-copies of rows outside the covers have loose bounds and tiny
    # distances, so they fill the first blocks; the worst patch lies near a
    # row of the coarse cover, with a tight bound below theirs. Searched
    # together with images that settle in the first block, each image must
    # still get its own worst.
    rng = np.random.default_rng(0)
    memory = rng.normal(size=(2000, 6)).astype(np.float32)
    index = PatchIndex(memory, cover_rows=10)
    assert len(index.covers) == 2
    near = memory[1 + np.arange(100) * 17 % 1999] + 1e-3
    hidden = np.concatenate([near, memory[:1] + 0.2]).astype(np.float32)
    outlier = np.concatenate([near[:5], np.full((1, 6), 4.0)]).astype(np.float32)
    images = [hidden, outlier, near[:3]]
    expected = [_brute_worst(torch.from_numpy(x), torch.from_numpy(memory)) for x in images]
    # The search's float32 distances (|a|^2 + |b|^2 - 2ab) are off by up to
    # about 2e-4 near zero, depending on the CPU's matrix kernels (an AMD
    # EPYC gave 0.00285 for the near-copies' 0.00267); any other image's
    # worst would be off by 0.3 or more.
    found = worst_patch_distances(images, index)
    np.testing.assert_allclose(found, expected, rtol=1e-5, atol=5e-4)


@pytest.mark.parametrize(
    ("images", "memory", "message"),
    [
        ([np.ones((4, 6))], np.ones((10, 6, 1)), "memory must be a non-empty 2-D"),
        ([np.ones((4, 6))], np.ones((0, 6)), "memory must be a non-empty 2-D"),
        ([np.ones((4, 5))], np.ones((10, 6)), r"images\[0\] has 5 channels but the memory has 6"),
        ([np.ones((4, 6)), np.ones((0, 6))], np.ones((10, 6)), r"images\[1\] must be"),
        ([np.ones((4, 6), np.int64)], np.ones((10, 6)), "float array"),
        ([np.full((4, 6), np.nan)], np.ones((10, 6)), r"images\[0\] contains NaN"),
        ([np.ones((4, 6))], np.full((10, 6), np.inf), "memory contains NaN"),
    ],
)
def test_worst_patch_search_refuses_bad_rows(images, memory, message):
    with pytest.raises(ValueError, match=message):
        worst_patch_distances(images, memory)


@pytest.mark.parametrize("cover_rows", [1, 4, 7, 50])
def test_patch_index_cover_sets_speed_not_distances(cover_rows):
    rng = np.random.default_rng(cover_rows)
    memory = rng.normal(size=(50, 6)).astype(np.float32)
    images = [rng.normal(size=(9, 6)).astype(np.float32) for _ in range(3)]
    index = PatchIndex(memory, cover_rows)
    step = 50 // cover_rows
    # The finer cover takes every fourth of those steps, where that is every
    # third row or sparser.
    steps = [step, step // 4] if step // 4 >= 3 else [step]
    assert [len(rows) for rows, _ in index.covers] == [len(memory[::k]) for k in steps]
    np.testing.assert_allclose(
        worst_patch_distances(images, index), worst_patch_distances(images, memory), rtol=1e-6
    )
    with pytest.raises(ValueError, match="cover_rows must be a positive integer"):
        PatchIndex(memory, 0)


@pytest.mark.parametrize("k", [1, 3])
def test_nearest_patches_are_those_of_the_full_distance_matrix(k):
    generator = torch.Generator().manual_seed(k)
    memory, queries = (
        torch.randn(50, 6, generator=generator),
        torch.randn(2, 7, 6, generator=generator),
    )
    distances, indices = nearest_patches(queries, memory, k=k, chunk=5)
    expected = torch.cdist(queries.reshape(-1, 6), memory).topk(k, largest=False)
    assert distances.shape == indices.shape == (2, 7, k)
    torch.testing.assert_close(distances.reshape(-1, k), expected.values, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(indices.reshape(-1, k), expected.indices)


@pytest.mark.parametrize(
    ("queries", "memory", "k", "message"),
    [
        (torch.ones(4, 6), torch.ones(10, 6, 1), 1, "memory must be 2-D with at least k=1 rows"),
        (torch.ones(4, 6), torch.ones(2, 6), 3, "memory must be 2-D with at least k=3 rows"),
        (torch.ones(4, 6), torch.ones(10, 6), 0, "at least k=0 rows"),
        (torch.ones(4, 5), torch.ones(10, 6), 1, "last axis must be the memory's 6 channels"),
    ],
)
def test_nearest_patches_refuse_mismatched_shapes(queries, memory, k, message):
    with pytest.raises(ValueError, match=message):
        nearest_patches(queries, memory, k=k)


def test_worst_patch_search_takes_rows_of_another_float_dtype():
    memory = np.eye(6, dtype=np.float32)
    found = worst_patch_distances([np.zeros((2, 6))], memory)
    np.testing.assert_allclose(found, [1.0])


def test_patch_score_adds_the_standardised_worst_patch(fused, cells):
    normal, defective = cells
    images = np.concatenate([normal[16:], defective])
    pooled = clone(fused).set_params(image_score="pooled").fit(normal[:16])
    parts = np.stack([-pooled.score_samples(images), _worst_patch(fused, images)], axis=1)
    expected = -((parts - fused.score_center_) / fused.score_scale_).sum(axis=1)
    np.testing.assert_allclose(fused.score_samples(images), expected, rtol=1e-4)
    # The normal statistics come from held-out training images: a normal
    # worst patch lies far above 0 (its own patches are not its neighbours).
    assert fused.score_center_.shape == fused.score_scale_.shape == (2,)
    assert (fused.score_scale_ > 0).all() and fused.score_center_[1] > fused.score_scale_[1]
    y = np.r_[np.ones(8), -np.ones(8)]
    assert roc_auc_score(y, fused.score_samples(images)) > 0.8
    assert pooled.score_center_ is None and pooled.score_scale_ is None


def test_report_bars_show_the_worst_patch_part(fused, cells):
    # The report's last bar is the score's worst-patch part, in standard
    # deviations of the training images' worst patches.
    _, defective = cells
    names, values, caption = _level_values(
        fused, fused.level_distances(defective), fused.score_samples(defective)
    )
    assert names == [*fused.level_names_, "worst patch"] and "worst patch" in caption
    expected = (_worst_patch(fused, defective) - fused.score_center_[1]) / fused.score_scale_[1]
    np.testing.assert_allclose(values[:, -1], expected, rtol=1e-4, atol=1e-4)
    mean, std = fused.level_reference_
    np.testing.assert_allclose(values[:, :-1], (fused.level_distances(defective) - mean) / std)


def test_report_reads_scores_and_level_distances_in_one_pass(fused, cells, tmp_path, monkeypatch):
    # The command line's report shows both; a fused score once took a
    # second pass over the images for them.
    images = cells[1][:4]
    files = []
    for i, image in enumerate(images):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(image).save(files[-1])
    passes = []
    original = type(fused)._map_pooled
    monkeypatch.setattr(
        type(fused),
        "_map_pooled",
        lambda self, *args, **kwargs: passes.append(1) or original(self, *args, **kwargs),
    )
    _, scores, distances = score_files(
        fused, files, ImageReader(strict=True), False, with_levels=True
    )
    assert len(passes) == 1
    monkeypatch.undo()
    np.testing.assert_allclose(scores, fused.score_samples(images), rtol=1e-5)
    np.testing.assert_allclose(distances, fused.level_distances(images), rtol=1e-5)


@pytest.mark.parametrize("image_score", ["pooled", "patches"])
def test_level_distances_return_the_scores_of_every_image_score(cells, image_score):
    normal, defective = cells
    detector = EfficientNetGaussianDetector(image_score=image_score, explain_method="spatial")
    detector.fit(normal[:16])
    distances, scores = detector.level_distances(defective, return_scores=True)
    np.testing.assert_allclose(distances, detector.level_distances(defective), rtol=1e-6)
    np.testing.assert_allclose(scores, detector.score_samples(defective), rtol=1e-6)


def test_patch_score_threshold_and_labels_follow_the_fused_score(fused, cells):
    normal, _ = cells
    scores = fused.score_samples(normal[16:])
    np.testing.assert_allclose(fused.decision_function(normal[16:]), scores - fused.offset_)
    # The offset is a percentile of held-out training images' fused scores:
    # inside the range of new normal images' scores, not at in-sample ones.
    assert scores.min() - 5 * fused.score_scale_.size < fused.offset_ < scores.max()
    labels = clone(fused).fit_predict(normal[:16])
    np.testing.assert_array_equal(labels, fused.predict(normal[:16]))


@pytest.mark.parametrize(
    ("parameters", "n_images", "message"),
    [
        ({"threshold": "chi2"}, 4, "threshold='chi2'"),
        ({"augment": "flips"}, 2, "at least 3 normal images"),
    ],
)
def test_patch_score_refuses_what_it_cannot_standardise(cells, parameters, n_images, message):
    detector = EfficientNetGaussianDetector(**FUSED, **parameters)
    with pytest.raises(ValueError, match=message):
        detector.fit(cells[0][:n_images])


def test_patch_score_is_part_of_the_fitted_model(fused, cells, tmp_path):
    _, defective = cells
    with pytest.raises(ValueError, match="call score_samples"):
        fused.scores_from_level_distances(fused.level_distances(defective))
    save(fused, tmp_path / "fused.skanomaly")
    loaded = load(tmp_path / "fused.skanomaly")
    np.testing.assert_array_equal(loaded.score_center_, fused.score_center_)
    np.testing.assert_array_equal(loaded.score_samples(defective), fused.score_samples(defective))


def test_patch_index_is_kept_per_memory_and_not_saved(fused, cells, tmp_path):
    # A line scoring one image per call reuses the memory's norms and cover;
    # a refit detector must search its new memory, not the kept index.
    normal, defective = cells
    detector = clone(fused).fit(normal[:16])
    one_by_one = [detector.score_samples(image[None])[0] for image in defective[:3]]
    memory, index = detector._patch_index_cache
    np.testing.assert_allclose(one_by_one, fused.score_samples(defective[:3]), rtol=1e-5)
    assert memory is detector.patches_ and detector._patch_index_cache[1] is index
    detector.fit(normal[8:])
    refit = clone(fused).fit(normal[8:])
    np.testing.assert_array_equal(detector.score_samples(defective), refit.score_samples(defective))
    assert detector._patch_index_cache[1] is not index
    save(detector, tmp_path / "fused.skanomaly")
    assert "_patch_index_cache" not in vars(load(tmp_path / "fused.skanomaly"))


def test_image_scores_compare_the_widest_neighborhood(fused, cells):
    # The default memory holds each patch at sizes 1 and 3 side by side for
    # the maps; the image scores compare the 3 x 3 features alone, so they
    # are those of a detector fitted with patch_neighborhood=3, whose memory
    # holds the same sampled patches.
    normal, defective = cells
    three = EfficientNetGaussianDetector(**FUSED, patch_neighborhood=3).fit(normal[:16])
    assert fused.patch_neighborhood_ == (1, 3)
    width = three.patches_.shape[1]
    np.testing.assert_array_equal(fused.patches_[:, width:], three.patches_)
    np.testing.assert_allclose(fused.score_center_, three.score_center_, rtol=1e-6)
    np.testing.assert_allclose(fused.score_scale_, three.score_scale_, rtol=1e-6)
    expected = three.score_samples(defective)
    np.testing.assert_allclose(fused.score_samples(defective), expected, rtol=1e-5)
    # The fitted neighbourhood counts, not the parameter changed since.
    three.set_params(patch_neighborhood=1)
    np.testing.assert_array_equal(three.score_samples(defective), expected)


def test_patch_score_from_the_feature_cache_equals_the_uncached_one(
    fused, cells, tmp_path, forward_passes
):
    # The cache's entries hold the patch features of every fitted size, so
    # fit's entry serves the worst-patch scores without a forward pass.
    normal, defective = cells
    cached = clone(fused).set_params(memory=str(tmp_path / "cache")).fit(normal[:16])
    forward_passes.clear()
    scores = cached.score_samples(normal[:16])
    assert forward_passes == []
    np.testing.assert_allclose(scores, fused.score_samples(normal[:16]), rtol=1e-5)
    np.testing.assert_allclose(
        cached.score_samples(defective), fused.score_samples(defective), rtol=1e-5
    )


def test_patch_score_of_a_stream_equals_that_of_one_fit(fused, cells):
    normal, defective = cells
    streamed = clone(fused).partial_fit(normal[:8]).partial_fit(normal[8:16])
    np.testing.assert_allclose(streamed.score_samples(defective), fused.score_samples(defective))
    assert streamed.offset_ == pytest.approx(fused.offset_)


def test_worst_patch_alone_scores_and_thresholds_a_few_images(cells):
    normal, defective = cells
    images = np.concatenate([normal[16:], defective])
    # Several images measure each other, but 4 flag about 1 in 5 new
    # normal images, which the default contamination (0.05) cannot reach.
    # The whole memory, so that brute force knows each row's image.
    with pytest.warns(UserWarning, match=r"flags about 1 in 5 .* contamination=0\.05"):
        detector = EfficientNetGaussianDetector(**PATCHES, score_coreset=1.0).fit(normal[:4])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        EfficientNetGaussianDetector(**PATCHES, contamination=0.2).fit(normal[:4])
    expected = -_worst_patch(detector, images)
    np.testing.assert_allclose(detector.score_samples(images), expected, rtol=1e-4)
    assert detector.score_center_ is None and detector.score_scale_ is None
    # Each training image against the other three's patches (all in the
    # memory); with 4 images the conformal threshold is the largest of them.
    rows = _patch_rows(detector, normal[:4])
    assert len(detector.patches_) == rows.shape[0] * rows.shape[1]
    held_out = [_brute_worst(rows[i], torch.cat([*rows[:i], *rows[i + 1 :]])) for i in range(4)]
    assert detector.offset_ == pytest.approx(-max(held_out), rel=1e-4)
    y = np.r_[np.ones(8), -np.ones(8)]
    assert roc_auc_score(y, detector.score_samples(images)) > 0.8
    with pytest.raises(ValueError, match="call score_samples"):
        detector.scores_from_level_distances(detector.level_distances(defective))
    names, values, caption = _level_values(detector, None, None)
    assert names is values is caption is None


def test_worst_patch_alone_fits_one_image_with_its_augmented_views(cells):
    normal, defective = cells
    with pytest.warns(UserWarning, match="calibrate"):
        one = EfficientNetGaussianDetector(**PATCHES, augment="flips").fit(normal[:1])
    # Measured against its flipped views' patches, not its own.
    image = normal[:1]
    views = np.concatenate([image[:, :, ::-1], image[:, ::-1]])
    expected = _brute_worst(_patch_rows(one, image)[0], _patch_rows(one, views).flatten(0, 1))
    assert one.offset_ == pytest.approx(-expected, rel=1e-3)
    assert (one.score_samples(defective) < one.score_samples(normal[:1])).all()
    with pytest.raises(ValueError, match="at least 2"):
        EfficientNetGaussianDetector(**PATCHES).fit(normal[:1])
    with pytest.raises(ValueError, match="threshold='chi2'"):
        EfficientNetGaussianDetector(**PATCHES, threshold="chi2").fit(normal[:4])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), m=st.integers(1, 300), fraction=st.floats(0.01, 1.0))
def test_k_centres_cover_the_rows_within_their_own_spacing(seed, m, fraction):
    # Each centre was the row farthest from those before it, so no row lies
    # farther from its nearest centre than any two centres lie apart: the
    # greedy rule's factor-2 guarantee.
    rows = torch.from_numpy(np.random.default_rng(seed).normal(size=(m, 5)))
    n = max(1, round(fraction * m))
    chosen = k_centres(rows, n)
    assert len(set(chosen.tolist())) == n and chosen[0] == 0
    radius = torch.cdist(rows, rows[chosen]).min(1).values.max()
    if n > 1:
        spacing = torch.cdist(rows[chosen], rows[chosen]).fill_diagonal_(np.inf)
        assert radius <= spacing.min() + 1e-9


def test_k_centres_keep_a_rare_row_that_a_uniform_subsample_drops():
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.normal(size=(999, 4)), np.full((1, 4), 50.0)]).astype(np.float32)
    assert 999 in k_centres(rows, 2)
    with pytest.raises(ValueError, match="Cannot choose 0"):
        k_centres(rows, 0)


def _greedy_centres(rows, n):
    """The greedy rule one row at a time: what k_centres must return."""
    chosen = [0]
    gaps = ((rows - rows[0]) ** 2).sum(1)
    while len(chosen) < n:
        gaps[chosen] = -np.inf
        chosen.append(int(gaps.argmax()))
        gaps = np.minimum(gaps, ((rows - rows[chosen[-1]]) ** 2).sum(1))
    return np.array(chosen)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    m=st.integers(2, 60),
    copies=st.integers(1, 8),
    per_round=st.integers(1, 9),
    update_rows=st.integers(1, 70),
)
def test_k_centres_in_rounds_choose_what_the_rule_chooses_one_at_a_time(
    seed, m, copies, per_round, update_rows
):
    # Rounds of a few centres among a few candidates each. Clusters of near
    # copies fill the candidates with rows that one centre brings close: a
    # round must stop before a row outside its candidates would come next.
    # Each round updates the gaps in blocks of update_rows rows.
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(m, 3)) * rng.uniform(1, 10, size=(m, 1))
    rows = np.repeat(points, copies, axis=0) + rng.normal(scale=1e-3, size=(m * copies, 3))
    n = max(2, len(rows) // 2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(skanomaly.patches, "_CENTRES_PER_ROUND", per_round)
        patch.setattr(skanomaly.patches, "_UPDATE_ROWS", update_rows)
        np.testing.assert_array_equal(k_centres(rows, n), _greedy_centres(rows, n))


def test_patch_reservoir_chooses_its_memory_from_a_larger_sample():
    rng = np.random.default_rng(0)
    images = [rng.normal(size=(10, 3)).astype(np.float32) for _ in range(3)]
    # One rare patch in 31, which a uniform memory of 8 rows would usually
    # leave out.
    images.append(np.full((1, 3), 20.0, np.float32))
    reservoir = PatchReservoir(size=8)
    reservoir.add(images)
    # The sample holds up to 4 times the memory's rows: here all 31.
    assert len(reservoir.rows) == 31
    memory, _, _ = reservoir.memory()
    np.testing.assert_array_equal(memory, reservoir.rows[k_centres(reservoir.rows, 8)])
    assert len(memory) == 8 and (memory == 20).all(axis=1).any()
    # A coreset is a share of the memory's size, not of the sample's.
    assert len(reservoir.memory(coreset=0.5)[0]) == 4
    more = PatchReservoir(size=8)
    more.add([rng.normal(size=(50, 3)).astype(np.float32)])
    assert len(more.rows) == 32 and len(more.memory()[0]) == 8


def test_patch_reservoir_leaves_out_only_from_a_chosen_memory():
    reservoir = PatchReservoir(size=8)
    reservoir.add([np.eye(4, dtype=np.float32), np.ones((3, 4), np.float32)])
    with pytest.raises(RuntimeError, match=r"memory\(\) must be called"):
        reservoir.without([0])
    # Greedy from e0: a row of ones (farthest), then e1 and e2; leaving
    # image 1 out leaves image 0's three.
    reservoir.memory(coreset=0.5)
    np.testing.assert_array_equal(reservoir.without([1]), np.eye(4)[:3])


def test_patch_reservoir_measures_each_patch_without_its_own_image():
    rng = np.random.default_rng(0)
    images = [rng.normal(scale, size=(40, 3)).astype(np.float32) for scale in (1, 1, 1, 3, 5)]
    reservoir = PatchReservoir()
    reservoir.add(images)
    _, threshold, excess = reservoir.memory()
    # Few enough rows that every one is measured: brute force agrees.
    nearest = []
    for i, own in enumerate(images):
        others = np.concatenate(images[:i] + images[i + 1 :])
        nearest.append(np.linalg.norm(own[:, None] - others[None], axis=2).min(axis=1))
    assert threshold == pytest.approx(np.quantile(np.concatenate(nearest), 0.9), rel=1e-5)
    per_image = [np.clip(d - threshold, 0, None).mean() for d in nearest]
    assert excess == pytest.approx(np.median(per_image), rel=1e-5)
    # The median image, not the far ones, sets it.
    assert excess < np.mean(per_image)
    lone = PatchReservoir()
    lone.add(images[:1])
    assert lone.memory()[1:] == (0.0, 0.0)


@pytest.mark.parametrize("image_score", ["patches", "pooled+patches"])
def test_image_scores_search_the_k_centre_prefix_and_maps_the_whole_memory(cells, image_score):
    """score_coreset: the image scores search the memory's first rows, its
    greedy k-centres; the maps, and the memory's rows, are those of
    score_coreset=1.0."""
    normal, defective = cells
    images = np.concatenate([normal[16:], defective])
    params = {"image_score": image_score, "explain_method": "patches"}
    part = EfficientNetGaussianDetector(**params).fit(normal[:4])
    whole = clone(part).set_params(score_coreset=1.0).fit(normal[:4])
    n = part.n_score_patches_
    # 4 images give fewer patches than the memory's 16,384 rows: all are
    # kept, and a tenth of 16,384 of them are searched: the greedy
    # k-centres in the columns the image scores compare.
    assert n == round(0.1 * skanomaly.patches.PATCH_MEMORY_SIZE) < len(part.patches_)
    assert whole.n_score_patches_ == len(whole.patches_)
    columns = score_columns(part.patches_, part.patch_neighborhood_)
    np.testing.assert_array_equal(k_centres(columns, n), np.arange(n))
    # The same rows, reordered: the k-centres first.
    np.testing.assert_array_equal(
        np.unique(part.patches_, axis=0), np.unique(whole.patches_, axis=0)
    )
    np.testing.assert_allclose(part.explain(defective[:2]), whole.explain(defective[:2]), rtol=1e-5)
    worst = _worst_patch(part, images)
    assert (worst >= _worst_patch(whole, images) - 1e-4).all()
    assert (worst > _worst_patch(whole, images) + 1e-3).any()
    scores = part.score_samples(images)
    if image_score == "patches":
        np.testing.assert_allclose(scores, -worst, rtol=1e-4)
    else:
        # (The sum itself: test_patch_score_adds_the_standardised_worst_patch.)
        # The training images' worst patches, which standardise it, are
        # measured against the same rows: farther than against all of them.
        assert part.score_center_[1] > whole.score_center_[1]
        np.testing.assert_array_equal(part.score_center_[0], whole.score_center_[0])
    assert roc_auc_score(np.r_[np.ones(8), -np.ones(8)], scores) > 0.8


def test_patch_coreset_is_the_memory_everywhere_it_is_searched(cells):
    normal, defective = cells
    images = np.concatenate([normal[16:], defective])
    full = EfficientNetGaussianDetector(**PATCHES).fit(normal[:4])
    core = clone(full).set_params(patch_coreset=0.1).fit(normal[:4])
    expected = k_centres(full.patches_, round(0.1 * len(full.patches_)))
    np.testing.assert_array_equal(core.patches_, full.patches_[expected])
    # New images: the worst patch against the coreset, never nearer than
    # against the whole sample.
    scores = core.score_samples(images)
    np.testing.assert_allclose(scores, -_worst_patch(core, images), rtol=1e-4)
    assert (scores <= full.score_samples(images) + 1e-4).all()
    assert roc_auc_score(np.r_[np.ones(8), -np.ones(8)], scores) > 0.8
    # Training images (the threshold) and the normal patch range are
    # measured against the coreset too: farther.
    assert core.offset_ < full.offset_ and core.patch_threshold_ > full.patch_threshold_
    maps = [d.set_params(explain_method="patches").explain(defective[:2]) for d in (full, core)]
    assert (maps[1] >= maps[0] - 1e-4).all() and (maps[1] > maps[0] + 1e-3).any()
    streamed = clone(core).partial_fit(normal[:2]).partial_fit(normal[2:4])
    np.testing.assert_array_equal(streamed.patches_, core.patches_)
