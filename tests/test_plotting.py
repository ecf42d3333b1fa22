import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

from skanomaly.plotting import jet, overlay_heatmap, save_heatmaps


@pytest.fixture
def gray_image():
    return np.full((32, 40), 128, dtype=np.uint8)


@pytest.fixture
def hot_square():
    anomaly_map = np.zeros((32, 40))
    anomaly_map[8:16, 10:20] = 1.0
    return anomaly_map


def test_hot_square_is_red_with_jet(gray_image, hot_square):
    overlay = overlay_heatmap(gray_image, hot_square).astype(int)
    inside = overlay[9:15, 11:19].reshape(-1, 3)
    outside = overlay[20:, :].reshape(-1, 3)
    assert inside[:, 0].min() > outside[:, 0].max()  # redder
    assert inside[:, 2].max() < outside[:, 2].min()  # less blue
    # Exact blend of gray 128/255 with the colormap ends.
    jet = matplotlib.colormaps["jet"]
    for pixel, value in ((overlay[10, 12], 1.0), (overlay[25, 5], 0.0)):
        expected = np.round((0.5 * 128 / 255 + 0.5 * np.array(jet(value)[:3])) * 255)
        np.testing.assert_array_equal(pixel, expected)


def test_output_type(gray_image, hot_square):
    overlay = overlay_heatmap(gray_image, hot_square)
    assert overlay.shape == (32, 40, 3)
    assert overlay.dtype == np.uint8


def test_alpha_ends(hot_square):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    np.testing.assert_array_equal(overlay_heatmap(image, hot_square, alpha=0.0), image)
    only_map = overlay_heatmap(image, hot_square, alpha=1.0, cmap="gray")
    np.testing.assert_array_equal(only_map[..., 0], (hot_square * 255).astype(np.uint8))


def test_contour_pixels(gray_image, hot_square):
    color = (0, 255, 0)
    overlay = overlay_heatmap(gray_image, hot_square, threshold=0.5, contour_color=color)
    is_color = np.all(overlay == color, axis=-1)
    expected = np.zeros((32, 40), dtype=bool)
    expected[8:16, 10:20] = True
    expected[9:15, 11:19] = False  # a one-pixel ring inside the square
    np.testing.assert_array_equal(is_color, expected)


def test_contour_outlines_what_segment_outlines(gray_image, hot_square):
    # segment keeps map > threshold: a region at exactly the threshold is not one.
    from skanomaly.segmentation import masks_from_maps

    color = (0, 255, 0)
    overlay = overlay_heatmap(gray_image, hot_square, threshold=1.0, contour_color=color)
    assert not np.all(overlay == color, axis=-1).any()
    assert not masks_from_maps([hot_square], 1.0)[0].any()


def test_contour_not_drawn_along_image_border(gray_image):
    anomaly_map = np.zeros((32, 40))
    anomaly_map[:10, :] = 1.0
    overlay = overlay_heatmap(gray_image, anomaly_map, threshold=0.5)
    is_white = np.all(overlay == 255, axis=-1)
    assert is_white[9].all()  # the edge towards sub-threshold pixels
    assert not is_white[:9].any()


def test_constant_map_is_finite_and_low_end(gray_image):
    overlay = overlay_heatmap(gray_image, np.full((32, 40), 3.5))
    jet_low = np.array(matplotlib.colormaps["jet"](0.0)[:3])
    expected = np.round((0.5 * 128 / 255 + 0.5 * jet_low) * 255)
    assert np.all(overlay == expected)


def test_vmin_vmax_clip(gray_image, hot_square):
    # With vmax far above the map, the hot square is no longer at the top of
    # the colormap; with vmin=vmax every pixel maps to the low end.
    default = overlay_heatmap(gray_image, hot_square)
    faint = overlay_heatmap(gray_image, hot_square, vmin=0, vmax=10)
    assert faint[10, 12, 0] < default[10, 12, 0]
    flat = overlay_heatmap(gray_image, hot_square, vmin=2, vmax=2)
    assert np.all(flat == flat[0, 0])
    with pytest.raises(ValueError, match="vmin"):
        overlay_heatmap(gray_image, hot_square, vmin=2, vmax=1)


def test_map_is_resized_to_image(gray_image):
    small = np.zeros((8, 10))
    small[2:4, 2:5] = 1.0  # covers rows 8..16, columns 8..20 once upsampled
    overlay = overlay_heatmap(gray_image, small, threshold=0.5).astype(int)
    assert overlay.shape == (32, 40, 3)
    assert overlay[12, 14, 0] > overlay[28, 35, 0]


@pytest.mark.parametrize(
    "image",
    [
        np.full((16, 16, 3), 0.5),
        np.full((16, 16, 4), 200, dtype=np.uint8),
        np.full((16, 16, 1), 7, dtype=np.int64),
        np.full((16, 16), 0.25, dtype=np.float32),
    ],
)
def test_image_formats(image):
    overlay = overlay_heatmap(image, np.random.default_rng(0).random((4, 4)))
    assert overlay.shape == (16, 16, 3) and overlay.dtype == np.uint8


def test_png_round_trip(tmp_path, gray_image, hot_square):
    path = tmp_path / "overlay.png"
    overlay = overlay_heatmap(gray_image, hot_square, path=path, threshold=0.5)
    with Image.open(path) as written:
        assert written.format == "PNG"
        np.testing.assert_array_equal(np.asarray(written), overlay)


def test_a_title_beyond_ascii_is_drawn_in_the_default_font(gray_image, hot_square):
    # The default font draws only printable ASCII, anything else as a box.
    folded = overlay_heatmap(gray_image, hot_square, title="Defaut ? 7\nline")
    titled = overlay_heatmap(gray_image, hot_square, title="Défaut 缺 7\nline")
    np.testing.assert_array_equal(titled, folded)
    assert not np.array_equal(titled, overlay_heatmap(gray_image, hot_square, title="Defaut"))


def test_title_drawn_at_top(gray_image, hot_square):
    plain = overlay_heatmap(gray_image, hot_square)
    titled = overlay_heatmap(gray_image, hot_square, title="bottle 012")
    assert not np.array_equal(plain[:8, :20], titled[:8, :20])
    np.testing.assert_array_equal(plain[20:], titled[20:])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"alpha": 1.5}, ValueError, "alpha"),
        ({"alpha": None}, TypeError, "alpha must be a number; got NoneType"),
        ({"vmin": np.nan}, ValueError, "vmin"),
        ({"threshold": "high"}, TypeError, "threshold must be a number; got str"),
        ({"vmax": np.inf}, ValueError, "vmax must be finite"),
        ({"contour_color": (0, 300, 0)}, ValueError, "contour_color"),
        ({"contour_color": (0, 0)}, ValueError, "contour_color"),
        ({"cmap": "no-such-map"}, ValueError, "no-such-map"),
        ({"cmap": 3}, TypeError, "cmap"),
        ({"title": 12}, TypeError, "title"),
    ],
)
def test_bad_arguments(gray_image, hot_square, kwargs, error, match):
    with pytest.raises(error, match=match):
        overlay_heatmap(gray_image, hot_square, **kwargs)


def test_bad_inputs(gray_image, hot_square):
    bad = hot_square.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="anomaly_map contains NaN"):
        overlay_heatmap(gray_image, bad)
    with pytest.raises(ValueError, match="2-D"):
        overlay_heatmap(gray_image, hot_square[None])
    with pytest.raises(ValueError, match="2-D"):
        overlay_heatmap(gray_image, np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        overlay_heatmap(gray_image * 2.0, hot_square)
    with pytest.raises(ValueError, match=r"0\.\.255"):
        overlay_heatmap(gray_image.astype(int) * 3, hot_square)
    with pytest.raises(TypeError, match="dtype bool"):
        overlay_heatmap(gray_image > 0, hot_square)
    with pytest.raises(ValueError, match="image must be"):
        overlay_heatmap(np.zeros((4, 4, 2)), hot_square)


def test_unwritable_path_names_it(tmp_path, gray_image, hot_square):
    path = tmp_path / "missing" / "overlay.png"
    with pytest.raises(OSError, match="missing"):
        overlay_heatmap(gray_image, hot_square, path=path)


def test_save_heatmaps(tmp_path, hot_square):
    images = [np.zeros((32, 40, 3), dtype=np.uint8), np.ones((20, 20))]
    maps = [hot_square, np.zeros((5, 5))]
    out_dir = tmp_path / "report" / "heatmaps"
    paths = save_heatmaps(images, maps, out_dir, vmin=0, vmax=1)
    assert [p.name for p in paths] == ["0000.png", "0001.png"]
    for path, image, anomaly_map in zip(paths, images, maps):
        with Image.open(path) as written:
            expected = overlay_heatmap(image, anomaly_map, vmin=0, vmax=1)
            np.testing.assert_array_equal(np.asarray(written), expected)
    named = save_heatmaps(images, maps, out_dir, names=["a", "b.png"], threshold=0.5)
    assert [p.name for p in named] == ["a.png", "b.png"]
    assert all(p.parent == out_dir for p in named)


def test_save_heatmaps_errors(tmp_path, hot_square):
    images = np.zeros((2, 32, 40), dtype=np.uint8)
    maps = np.stack([hot_square, hot_square])
    with pytest.raises(ValueError, match="2 images but 1 anomaly maps"):
        save_heatmaps(images, maps[:1], tmp_path)
    with pytest.raises(ValueError, match="empty"):
        save_heatmaps([], [], tmp_path)
    with pytest.raises(ValueError, match="without folders"):
        save_heatmaps(images, maps, tmp_path, names=["a", "../b"])
    with pytest.raises(ValueError, match="unique"):
        save_heatmaps(images, maps, tmp_path, names=["a", "a.png"])
    with pytest.raises(ValueError, match="1 names for 2 images"):
        save_heatmaps(images, maps, tmp_path, names=["a"])
    with pytest.raises(TypeError, match="path"):
        save_heatmaps(images, maps, tmp_path, path="x.png")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match="file"):
        save_heatmaps(images, maps, blocker / "sub")
    bad = maps.copy()
    bad[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN") as info:
        save_heatmaps(images, bad, tmp_path)
    assert "image 1 (0001.png)" in "".join(info.value.__notes__)


def test_import_does_not_need_matplotlib():
    code = (
        "import sys; import skanomaly.plotting; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'"
    )
    env = {**os.environ, "MPLBACKEND": "Agg"}
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=root)


def test_jet_is_matplotlibs_jet():
    # Every entry of the 256-colour table, both sides of each boundary, the
    # ends and values beyond them.
    edges = np.arange(257) / 256
    values = np.concatenate([np.linspace(0, 1, 10_001), edges, np.nextafter(edges, 0), [-0.5, 1.5]])
    expected = matplotlib.colormaps["jet"](np.clip(values, 0, 1))[:, :3]
    np.testing.assert_allclose(jet(values), expected, rtol=0, atol=1e-12)
    assert jet(np.zeros((2, 3))).shape == (2, 3, 3)
    # Infinities take the end colours too; NaN has none.
    np.testing.assert_array_equal(jet([np.inf, -np.inf]), jet([1.0, 0.0]))
    with pytest.raises(ValueError, match="NaN"):
        jet([0.5, np.nan])


def test_default_overlays_need_no_matplotlib(monkeypatch, gray_image, hot_square):
    expected = overlay_heatmap(gray_image, hot_square)
    # None in sys.modules makes `import matplotlib` raise ImportError, as on
    # an install without the plot extra.
    for name in [m for m in sys.modules if m.split(".")[0] == "matplotlib"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    np.testing.assert_array_equal(overlay_heatmap(gray_image, hot_square), expected)
    with pytest.raises(ImportError, match=r"cmap='viridis' needs matplotlib.*skanomaly\[plot\]"):
        overlay_heatmap(gray_image, hot_square, cmap="viridis")
    with pytest.raises(TypeError, match="cmap must be a colormap name"):
        overlay_heatmap(gray_image, hot_square, cmap=3)


def test_one_end_given_never_contradicts_the_map(gray_image, hot_square):
    # A map wholly below vmin (a normal image, with vmin at the pixel
    # threshold) is drawn at the low end; wholly above vmax, at the high end.
    jet_ends = np.round((0.5 * 128 / 255 + 0.5 * jet([0.0, 1.0])) * 255)
    below = overlay_heatmap(gray_image, hot_square, vmin=5.0)
    above = overlay_heatmap(gray_image, hot_square + 10, vmax=5.0)
    np.testing.assert_array_equal(np.unique(below.reshape(-1, 3), axis=0), jet_ends[:1])
    np.testing.assert_array_equal(np.unique(above.reshape(-1, 3), axis=0), jet_ends[1:])


def test_sixteen_bit_images_are_read_as_the_detector_reads_them(hot_square):
    image = np.arange(32 * 40).reshape(32, 40) % 256
    eight = overlay_heatmap(image.astype(np.uint8), hot_square)
    for dtype in (np.uint16, ">u2"):
        np.testing.assert_array_equal(
            overlay_heatmap((image * 257).astype(dtype), hot_square), eight
        )
    with pytest.raises(ValueError, match=r"int32 images must have values in 0\.\.255"):
        overlay_heatmap(np.full((4, 4), 300, np.int32), hot_square)
