"""Input validation: every array either becomes images or is refused with a
ValueError or TypeError that says why, never an error from deep inside."""

import tracemalloc

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from skanomaly._images import ImageSource

DTYPES = st.sampled_from(
    [
        np.uint8,
        np.uint16,
        np.int32,
        np.int64,
        np.float16,
        np.float32,
        np.float64,
        np.bool_,
        np.complex64,
    ]
)


def _tensor_batches(source):
    return [images for _, images in source.batches(4)]


@settings(max_examples=150, deadline=None)
@given(
    X=hnp.arrays(
        dtype=DTYPES,
        shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=6),
    ),
    image_shape=st.sampled_from([None, (2, -1), (1, -1, 1)]),
)
def test_any_array_is_accepted_or_refused_clearly(X, image_shape):
    try:
        source = ImageSource(X, image_shape=image_shape)
    except (ValueError, TypeError) as error:
        message = str(error)
        assert message
        return
    # Accepted: it must hold finite pixels in [0, 1] as RGB batches.
    batches = _tensor_batches(source)
    assert sum(len(b) for b in batches) == len(source) == X.shape[0]
    for batch in batches:
        assert batch.shape[1] == 3
        assert float(batch.min()) >= 0 and float(batch.max()) <= 1
    assert X.dtype.kind in "uif"
    assert X.dtype.kind != "f" or np.all(np.isfinite(X))


@pytest.mark.parametrize(
    "X, error",
    [
        (np.zeros((2, 8, 8), bool), TypeError),
        (np.zeros((2, 8, 8), complex), ValueError),
        (np.array([["a"] * 64] * 2).reshape(2, 8, 8), TypeError),
        (np.full((2, 8, 8), np.nan), ValueError),
        (np.full((2, 8, 8), 2.0), ValueError),
        (np.full((2, 8, 8), -1, np.int64), ValueError),
        (np.full((2, 8, 8), 256, np.int64), ValueError),
    ],
)
def test_bad_values_are_refused(X, error):
    with pytest.raises(error):
        ImageSource(X)


def test_lists_mixing_paths_and_arrays_are_refused(tmp_path):
    with pytest.raises(TypeError, match="mixes image paths with arrays"):
        ImageSource([np.zeros((8, 8, 3), np.uint8), str(tmp_path / "a.png")])


def test_mixed_lists_become_rgb():
    gray = np.full((5, 7), 255, np.uint8)
    rgba = np.zeros((9, 4, 4), np.uint8)
    floats = np.full((6, 6, 3), 0.5)
    source = ImageSource([gray, rgba, floats])
    ((_, images),) = source.batches(3)
    assert [tuple(i.shape) for i in images] == [(3, 5, 7), (3, 9, 4), (3, 6, 6)]
    assert float(images[0].min()) == 1.0 and float(images[2].max()) == 0.5


def test_images_of_different_dtypes_keep_their_own_ranges():
    # Stacked, the uint8 image's 200 would be read against the float one's [0, 1].
    bright = np.full((6, 6, 3), 200, np.uint8)
    ((_, images),) = ImageSource([bright, bright / 255.0]).batches(2)
    np.testing.assert_allclose(images[0].numpy(), images[1].numpy(), rtol=1e-6)


def test_arrays_of_paths_and_of_images_read_as_lists(tmp_path):
    from PIL import Image

    paths = []
    for i, value in enumerate((10, 240)):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.full((5, 7, 3), value, np.uint8)).save(paths[-1])
    # The loaders' file names are such an array.
    source = ImageSource(np.array(paths))
    assert len(source) == 2 and source.image(1)[0].max() == 240
    ragged = np.empty(2, dtype=object)
    ragged[:] = [np.zeros((4, 4, 3), np.uint8), np.zeros((6, 5), np.uint8)]
    ((_, images),) = ImageSource(ragged).batches(2)
    assert [tuple(i.shape) for i in images] == [(3, 4, 4), (3, 6, 5)]


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_the_callers_pixels_are_never_written_to(dtype):
    # torch shares a float32 array's memory rather than copying it: scaling
    # to [0, 1] must leave the caller's array as it went in.
    X = np.arange(2 * 8 * 8 * 3).reshape(2, 8, 8, 3).astype(dtype) % 200
    original = X.copy()
    ((_, images),) = ImageSource(X, pixel_range=(0, 255)).batches(2)
    np.testing.assert_array_equal(X, original)
    np.testing.assert_allclose(images.movedim(1, -1).numpy(), original / 255, rtol=1e-6)


def test_big_endian_pixels_read_as_native_ones():
    # A uint16 comparison missed '>u2': it was read against 0..255, refused
    # or silently 257 times too bright.
    X = np.random.default_rng(0).integers(0, 65536, (2, 6, 5, 3), dtype=np.uint16)
    native = _tensor_batches(ImageSource(X))[0]
    for data in (X.astype(">u2"), (X / 65535.0).astype(">f8")):
        np.testing.assert_allclose(_tensor_batches(ImageSource(data))[0], native, rtol=1e-6)


def test_one_single_channel_image_is_not_read_as_many():
    with pytest.raises(ValueError, match=r"reads as 8 grayscale images.*X\[np.newaxis\]"):
        ImageSource(np.zeros((8, 9, 1), np.uint8))
    assert len(ImageSource(np.zeros((1, 8, 9, 1), np.uint8))) == 1


def test_pil_images_read_as_their_files_do(tmp_path):
    from PIL import Image

    rgb = np.random.default_rng(1).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    palette = Image.fromarray(rgb).quantize(8)
    sixteen = Image.fromarray(np.full((6, 7), 51400, np.uint16))
    palette.save(tmp_path / "p.png")
    sixteen.save(tmp_path / "i.png")
    in_memory = _tensor_batches(ImageSource([palette, sixteen]))[0]
    files = _tensor_batches(ImageSource([tmp_path / "p.png", tmp_path / "i.png"]))[0]
    np.testing.assert_array_equal(in_memory, files)
    # Not the palette's indices.
    assert float(in_memory[0].max()) > 8 / 255


def test_a_list_of_images_is_not_copied_whole():
    """A list of same-size images is stacked a batch at a time, not all at
    once (which would hold every image twice), and reads as the array does."""
    images = [np.full((256, 256, 3), i, np.uint8) for i in range(8)]
    tracemalloc.start()
    source = ImageSource(images)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < images[0].nbytes
    assert source.image_shape is None
    # A list that is not all images names the one at fault.
    for bad in (np.zeros(5), images[0][None], []):
        with pytest.raises(ValueError, match="image 1 of X has shape"):
            ImageSource([images[0], bad])
    for (_, listed), (_, stacked) in zip(
        source.batches(3), ImageSource(np.stack(images)).batches(3)
    ):
        assert torch.equal(listed, stacked)


def test_batches_of_large_images_hold_fewer(tmp_path, monkeypatch):
    """A batch stops short of batch_size where its pixels would pass
    BATCH_PIXELS (one image at least), for arrays, lists and paths alike,
    and the batches still cover every image in order."""
    monkeypatch.setattr("skanomaly._images.BATCH_PIXELS", 3 * 32 * 32)
    rng = np.random.default_rng(0)
    same = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    mixed = [same[0], rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), *same[1:3]]
    paths = []
    for i, image in enumerate(mixed):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image).save(paths[-1])
    cases = [(same, same, [3, 2]), (list(same), same, [3, 2])]
    cases += [(mixed, mixed, [1, 1, 2]), (paths, mixed, [1, 1, 2])]
    for X, images, sizes in cases:
        batches = list(ImageSource(X).batches(16))
        assert [len(batch) for _, batch in batches] == sizes
        assert [start for start, _ in batches] == list(np.cumsum([0, *sizes[:-1]]))
        flat = [image for _, batch in batches for image in batch]
        for got, want in zip(flat, images, strict=True):
            torch.testing.assert_close(got, torch.from_numpy(want).permute(2, 0, 1) / 255)
    assert [len(images) for _, images in ImageSource(same).batches(2)] == [2, 2, 1]
