"""Image files as cameras, phones and export scripts write them: EXIF
orientation, 16-bit, palette, CMYK, alpha and multi-frame files, and
decompression bombs."""

import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from skanomaly._images import read_image
from skanomaly.datasets import load_folder

ORIENTATION = 0x0112
# Orientation 6: the stored pixels are to be turned 90 degrees clockwise.
ROTATE_90_CW = 6


def _rgb(shape=(24, 32), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def _save_rotated(upright, path, **kwargs):
    """Store ``upright`` turned counter-clockwise and tagged to be turned back."""
    exif = Image.Exif()
    exif[ORIENTATION] = ROTATE_90_CW
    Image.fromarray(np.rot90(upright)).save(path, exif=exif, **kwargs)
    return path


# ---------------------------------------------------------------- orientation
def test_a_rotated_phone_photo_scores_like_the_upright_one(fitted, cells, tmp_path):
    # A cell cropped to landscape, so that sideways is another shape.
    upright = np.ascontiguousarray(cells[1][0][8:56])
    Image.fromarray(upright).save(tmp_path / "upright.png")
    _save_rotated(upright, tmp_path / "rotated.png")
    paths = [tmp_path / "upright.png", tmp_path / "rotated.png"]
    np.testing.assert_array_equal(read_image(paths[1]), upright)
    scores = fitted.score_samples(paths)
    assert scores[1] == pytest.approx(scores[0], rel=1e-5)
    # Without the tag, the sideways pixels score differently.
    sideways = fitted.score_samples([np.rot90(upright)])[0]
    assert abs(sideways - scores[0]) > 1e-3 * abs(scores[0])
    maps = fitted.explain(paths)
    assert maps.shape == (2, 48, 64)
    np.testing.assert_allclose(maps[1], maps[0], rtol=1e-4, atol=1e-4 * maps[0].max())


def test_a_rotated_jpeg_is_read_upright(tmp_path):
    upright = np.zeros((24, 32, 3), np.uint8)
    upright[:8] = 255  # a white band at the top
    image = read_image(_save_rotated(upright, tmp_path / "photo.jpg", quality=95))
    assert image.shape == (24, 32, 3)
    assert image[:6].mean() > 240 and image[10:].mean() < 15


def test_loaders_turn_images_and_masks_upright(tmp_path):
    upright = _rgb((12, 20))
    mask = np.zeros((12, 20), np.uint8)
    mask[:3, :5] = 255
    for folder in ("normal", "bad", "masks"):
        (tmp_path / folder).mkdir()
    Image.fromarray(upright).save(tmp_path / "normal" / "n.png")
    _save_rotated(upright, tmp_path / "bad" / "a.png")
    # Masks are drawn on the image as viewers show it; a tagged mask is
    # turned upright too.
    _save_rotated(mask, tmp_path / "masks" / "a.png")
    data = load_folder(tmp_path / "normal", tmp_path / "bad", tmp_path / "masks")
    np.testing.assert_array_equal(data.X[1], upright)
    np.testing.assert_array_equal(data.masks[1], mask > 0)


# ---------------------------------------------------------------------- modes
def _pixels(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return read_image(path)


def test_16_bit_gray_is_scaled_to_8_bits(tmp_path):
    gray = np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) % 256
    for suffix in ("png", "tif"):
        path = tmp_path / f"gray16.{suffix}"
        Image.fromarray(gray * 257).save(path)
        with Image.open(path) as image:
            assert image.mode.startswith("I")
        np.testing.assert_array_equal(_pixels(path), np.repeat(gray[..., None], 3, -1))


def test_float_gray_is_read_from_0_1_and_wider_values_are_refused(tmp_path):
    gray = np.arange(24 * 32).reshape(24, 32) % 256
    Image.fromarray((gray / 255).astype(np.float32), mode="F").save(tmp_path / "f.tif")
    np.testing.assert_array_equal(_pixels(tmp_path / "f.tif"), np.repeat(gray[..., None], 3, -1))
    Image.fromarray((gray * 1000).astype(np.int32), mode="I").save(tmp_path / "i32.tif")
    with pytest.raises(ValueError, match=r"i32.tif.*outside the pixel range \[0, 65535\]"):
        _pixels(tmp_path / "i32.tif")
    for name, values in (("counts.tif", gray * 100.0), ("nan.tif", np.full((4, 4), np.nan))):
        Image.fromarray(values.astype(np.float32), mode="F").save(tmp_path / name)
        with pytest.raises(ValueError, match=rf"{name}.*(outside the pixel range \[0, 1\]|NaN)"):
            _pixels(tmp_path / name)


def test_palette_images_become_rgb(tmp_path):
    palette = Image.fromarray(_rgb()).convert("P")
    palette.save(tmp_path / "p.png")
    palette.save(tmp_path / "p_transparent.png", transparency=bytes(range(256)))
    expected = np.asarray(palette.convert("RGB"))
    for name in ("p.png", "p_transparent.png"):
        np.testing.assert_array_equal(_pixels(tmp_path / name), expected)


def test_cmyk_becomes_rgb(tmp_path):
    rgb = _rgb()
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.tif")
    np.testing.assert_array_equal(_pixels(tmp_path / "cmyk.tif"), rgb)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    assert np.abs(_pixels(tmp_path / "cmyk.jpg").astype(int) - rgb).mean() < 12


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_dropped(tmp_path, mode):
    """The stored colours count, also where the pixels are transparent."""
    image = Image.fromarray(_rgb()).convert(mode)
    alpha = np.zeros((24, 32), np.uint8)
    alpha[:, 16:] = 255
    image.putalpha(Image.fromarray(alpha))
    image.save(tmp_path / "alpha.png")
    expected = np.asarray(image.convert(mode[:-1]).convert("RGB"))
    np.testing.assert_array_equal(_pixels(tmp_path / "alpha.png"), expected)


@pytest.mark.parametrize("suffix", ["tif", "gif"])
def test_multi_frame_files_give_their_first_frame(tmp_path, suffix):
    first, second = (Image.fromarray(_rgb(seed=s)) for s in (1, 2))
    if suffix == "gif":
        first, second = (im.quantize() for im in (first, second))
    path = tmp_path / f"frames.{suffix}"
    first.save(path, save_all=True, append_images=[second])
    with pytest.warns(UserWarning, match=r"frames\.\w+.*several frames.*first"):
        image = read_image(path)
    np.testing.assert_array_equal(image, np.asarray(first.convert("RGB")))


def test_a_camera_mpo_jpeg_is_one_photo(tmp_path):
    """The frames after the first of an MPO are previews: no warning."""
    first, preview = (Image.fromarray(_rgb(seed=s)) for s in (1, 2))
    first.save(tmp_path / "camera.jpg", format="MPO", save_all=True, append_images=[preview])
    with Image.open(tmp_path / "camera.jpg") as image:
        assert image.format == "MPO" and image.is_animated
    assert _pixels(tmp_path / "camera.jpg").shape == (24, 32, 3)


# ---------------------------------------------------------- decompression bombs
def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb_png(path, side):
    """A PNG of a few bytes whose header claims ``side`` x ``side`` pixels."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b""))
        + _chunk(b"IEND", b"")
    )
    return path


def test_a_decompression_bomb_is_refused_before_decoding(fitted, tmp_path):
    path = _bomb_png(tmp_path / "bomb.png", 100_000)
    limit = f"{Image.MAX_IMAGE_PIXELS:,}"
    with pytest.raises(ValueError, match="bomb") as error:
        read_image(path)
    assert str(path) in str(error.value) and limit in str(error.value)
    with pytest.raises(ValueError, match="MAX_IMAGE_PIXELS"):
        fitted.score_samples([path])


def test_between_once_and_twice_the_limit_is_refused_too(tmp_path, monkeypatch):
    """Pillow only warns there, and then decodes."""
    Image.fromarray(_rgb((80, 80))).save(tmp_path / "large.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64)
    with pytest.raises(ValueError, match=r"large\.png.*4,096") as error:
        read_image(tmp_path / "large.png")
    assert "PIL.Image.MAX_IMAGE_PIXELS" in str(error.value)
    # Raising the limit, as the message says, reads the file.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 80 * 80)
    assert read_image(tmp_path / "large.png").shape == (80, 80, 3)
