import io
import re
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skanomaly import datasets
from skanomaly.datasets import (
    load_cookies,
    load_elpv,
    load_folder,
    load_magnetic_tile,
    load_mvtec_3d_rgb,
    load_mvtec_ad,
    load_piped,
    piped_types,
    shared_data_dir,
)

H, W = 16, 20
SQUARE = (slice(2, 6), slice(3, 8))


def save(path, array, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def colour(red, shape=(H, W)):
    """A constant image whose red channel tells which file it came from."""
    image = np.zeros((*shape, 3), dtype=np.uint8)
    image[..., 0] = red
    image[..., 1] = 50
    return image


def square_mask(region=SQUARE, shape=(H, W), value=255):
    mask = np.zeros(shape, dtype=np.uint8)
    mask[region] = value
    return mask


def expected_mask(region=SQUARE, shape=(H, W)):
    return square_mask(region, shape) > 0


def truncated(path, fmt):
    """Write the first half of a real, incompressible image file."""
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format=fmt)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def raises_naming(error, path):
    return pytest.raises(error, match=re.escape(str(path)))


def names(filenames, root):
    return [Path(f).relative_to(root).as_posix() for f in filenames]


# MVTec AD ------------------------------------------------------------------


@pytest.fixture
def mvtec_ad(tmp_path):
    """A category with 3 training images, 1 good and 3 defective test images."""
    folder = tmp_path / "widget"
    save(folder / "train" / "good" / "000.png", colour(1))
    # Grayscale, to be replicated to RGB.
    save(folder / "train" / "good" / "001.png", np.full((H, W), 2, dtype=np.uint8))
    # Extensions match in any case.
    save(folder / "train" / "good" / "002.PNG", colour(3))
    (folder / "train" / "good" / "notes.txt").write_text("not an image")
    (folder / "train" / "good" / "._000.png").write_bytes(b"macOS metadata")
    save(folder / "test" / "good" / "000.png", colour(10))
    save(folder / "test" / "crack" / "000.png", colour(20))
    save(folder / "test" / "crack" / "001.png", colour(21))
    save(folder / "test" / "scratch" / "000.png", colour(30))
    save(folder / "ground_truth" / "crack" / "000_mask.png", square_mask())
    save(folder / "ground_truth" / "crack" / "001_mask.png", square_mask((slice(10, 12), 0)))
    save(folder / "ground_truth" / "scratch" / "000_mask.png", square_mask((0, 0)))
    return tmp_path


def test_mvtec_ad_contents(mvtec_ad):
    data = load_mvtec_ad(mvtec_ad, "widget")
    assert data.X_train.shape == (3, H, W, 3)
    assert data.X_train.dtype == np.uint8
    np.testing.assert_array_equal(data.X_train[:, 0, 0, 0], [1, 2, 3])
    np.testing.assert_array_equal(data.X_train[1], 2)
    np.testing.assert_array_equal(data.X_train[2], colour(3))
    assert names(data.filenames_train, mvtec_ad) == [
        "widget/train/good/000.png",
        "widget/train/good/001.png",
        "widget/train/good/002.PNG",
    ]

    assert data.X_test.shape == (4, H, W, 3)
    np.testing.assert_array_equal(data.X_test[:, 0, 0, 0], [20, 21, 10, 30])
    np.testing.assert_array_equal(data.y_test, [-1, -1, 1, -1])
    assert data.defect_type.tolist() == ["crack", "crack", "good", "scratch"]
    assert names(data.filenames, mvtec_ad) == [
        "widget/test/crack/000.png",
        "widget/test/crack/001.png",
        "widget/test/good/000.png",
        "widget/test/scratch/000.png",
    ]
    assert data.masks_test.shape == (4, H, W)
    assert data.masks_test.dtype == bool
    np.testing.assert_array_equal(data.masks_test[0], expected_mask())
    np.testing.assert_array_equal(data.masks_test[1], expected_mask((slice(10, 12), 0)))
    assert not data.masks_test[2].any()
    np.testing.assert_array_equal(data.masks_test[3], expected_mask((0, 0)))
    assert data.category == "widget"


def test_mvtec_ad_category_folder_as_root(mvtec_ad):
    data = load_mvtec_ad(mvtec_ad / "widget")
    assert data.category == "widget"
    assert len(data.y_test) == 4


def test_mvtec_ad_return_X_y(mvtec_ad):
    X_train, X_test, y_test = load_mvtec_ad(mvtec_ad, "widget", return_X_y=True)
    assert X_train.shape == (3, H, W, 3)
    assert X_test.shape == (4, H, W, 3)
    np.testing.assert_array_equal(y_test, [-1, -1, 1, -1])
    # A string is truthy, but it is no answer to a yes-or-no parameter.
    with pytest.raises(TypeError, match="'return_X_y' parameter of load_mvtec_ad"):
        load_mvtec_ad(mvtec_ad, "widget", return_X_y="no")


def test_mvtec_ad_test_split_alone(mvtec_ad):
    # The training images are not read: an unreadable one goes unnoticed,
    # and a category without train/ loads.
    (mvtec_ad / "widget" / "train" / "good" / "003.png").write_bytes(b"not a png")
    data = load_mvtec_ad(mvtec_ad, "widget", train=False)
    assert data.X_train is None and data.filenames_train is None
    shutil.rmtree(mvtec_ad / "widget" / "train")
    X_train, X_test, y_test = load_mvtec_ad(mvtec_ad / "widget", train=False, return_X_y=True)
    assert X_train is None
    np.testing.assert_array_equal(X_test, data.X_test)
    np.testing.assert_array_equal(y_test, [-1, -1, 1, -1])
    np.testing.assert_array_equal(data.masks_test[0], expected_mask())
    with pytest.raises(FileNotFoundError, match="train"):
        load_mvtec_ad(mvtec_ad / "widget")
    with pytest.raises(ValueError, match="train"):
        load_mvtec_ad(mvtec_ad / "widget", train="no")


@pytest.mark.parametrize("resize, size", [(8, (8, 8)), ((8, 10), (8, 10))])
def test_mvtec_ad_resize(mvtec_ad, resize, size):
    data = load_mvtec_ad(mvtec_ad, "widget", resize=resize)
    assert data.X_train.shape == (3, *size, 3)
    assert data.X_test.shape == (4, *size, 3)
    assert data.masks_test.shape == (4, *size)
    # Constant images stay constant under bicubic resampling.
    np.testing.assert_array_equal(data.X_train[0], colour(1, size))
    # Nearest neighbour keeps masks binary and in place.
    expected = np.asarray(Image.fromarray(square_mask()).resize(size[::-1], Image.NEAREST)) > 0
    np.testing.assert_array_equal(data.masks_test[0], expected)
    assert data.masks_test[0].any()
    assert not data.masks_test[2].any()


def test_mvtec_ad_mixed_sizes_give_lists(mvtec_ad):
    folder = mvtec_ad / "widget"
    save(folder / "train" / "good" / "003.png", colour(4, (12, 9)))
    save(folder / "test" / "scratch" / "001.png", colour(31, (12, 9)))
    save(folder / "ground_truth" / "scratch" / "001_mask.png", square_mask((0, 0), (12, 9)))
    data = load_mvtec_ad(folder)
    assert isinstance(data.X_train, list)
    assert [x.shape for x in data.X_train] == [(H, W, 3)] * 3 + [(12, 9, 3)]
    assert all(x.dtype == np.uint8 for x in data.X_train)
    assert isinstance(data.X_test, list)
    assert isinstance(data.masks_test, list)
    assert [m.shape for m in data.masks_test] == [(H, W)] * 4 + [(12, 9)]
    assert all(m.dtype == bool for m in data.masks_test)

    resized = load_mvtec_ad(folder, resize=(6, 7))
    assert resized.X_train.shape == (4, 6, 7, 3)
    assert resized.masks_test.shape == (5, 6, 7)


def test_mvtec_ad_missing_folders(mvtec_ad):
    with raises_naming(FileNotFoundError, mvtec_ad / "gadget"):
        load_mvtec_ad(mvtec_ad, "gadget")
    with pytest.raises(FileNotFoundError, match="category="):
        load_mvtec_ad(mvtec_ad)
    shutil.rmtree(mvtec_ad / "widget" / "test")
    with raises_naming(FileNotFoundError, mvtec_ad / "widget" / "test"):
        load_mvtec_ad(mvtec_ad, "widget")


def test_mvtec_ad_empty_folder(mvtec_ad):
    train = mvtec_ad / "widget" / "train" / "good"
    shutil.rmtree(train)
    train.mkdir()
    with raises_naming(ValueError, train):
        load_mvtec_ad(mvtec_ad, "widget")


def test_mvtec_ad_missing_mask(mvtec_ad):
    folder = mvtec_ad / "widget"
    (folder / "ground_truth" / "crack" / "001_mask.png").unlink()
    with raises_naming(ValueError, folder / "test" / "crack" / "001.png"):
        load_mvtec_ad(folder)
    shutil.rmtree(folder / "ground_truth")
    with raises_naming(ValueError, folder / "test" / "crack" / "000.png"):
        load_mvtec_ad(folder)


def test_mvtec_ad_orphan_masks(mvtec_ad):
    folder = mvtec_ad / "widget"
    orphan = save(folder / "ground_truth" / "crack" / "002_mask.png", square_mask())
    with raises_naming(ValueError, orphan):
        load_mvtec_ad(folder)
    orphan.unlink()
    orphan = save(folder / "ground_truth" / "dent" / "000_mask.png", square_mask())
    with raises_naming(ValueError, orphan):
        load_mvtec_ad(folder)


def test_mvtec_ad_mask_size_mismatch(mvtec_ad):
    mask = save(
        mvtec_ad / "widget" / "ground_truth" / "crack" / "000_mask.png",
        square_mask(shape=(H, W + 1)),
    )
    with raises_naming(ValueError, mask):
        load_mvtec_ad(mvtec_ad, "widget")


@pytest.mark.parametrize(
    "relative, write",
    [
        ("train/good/001.png", lambda p: p.write_bytes(b"\x00garbage, not a PNG" * 10)),
        ("train/good/001.png", lambda p: p.write_bytes(b"")),
        ("test/crack/001.png", lambda p: truncated(p, "PNG")),
        ("ground_truth/crack/000_mask.png", lambda p: truncated(p, "PNG")),
    ],
)
def test_mvtec_ad_unreadable_file(mvtec_ad, relative, write):
    path = mvtec_ad / "widget" / relative
    write(path)
    with raises_naming(ValueError, path):
        load_mvtec_ad(mvtec_ad, "widget")


def test_truncated_jpeg(mvtec_ad):
    path = truncated(mvtec_ad / "widget" / "train" / "good" / "004.jpg", "JPEG")
    with raises_naming(ValueError, path):
        load_mvtec_ad(mvtec_ad, "widget")


@pytest.mark.parametrize("resize", [0, -3, (8,), (8, 0), (8, 8, 3), 2.5, True, "8"])
def test_invalid_resize(mvtec_ad, resize):
    with pytest.raises(ValueError, match="resize"):
        load_mvtec_ad(mvtec_ad, "widget", resize=resize)


# MVTec 3D-AD ----------------------------------------------------------------


@pytest.fixture
def mvtec_3d(tmp_path):
    folder = tmp_path / "bagel"
    save(folder / "train" / "good" / "rgb" / "000.png", colour(1))
    save(folder / "train" / "good" / "rgb" / "001.png", colour(2))
    save(folder / "train" / "good" / "xyz" / "000.tiff", np.zeros((H, W), np.float32))
    save(folder / "validation" / "good" / "rgb" / "000.png", colour(5))
    save(folder / "test" / "good" / "rgb" / "000.png", colour(10))
    save(folder / "test" / "good" / "gt" / "000.png", square_mask(value=0))
    save(folder / "test" / "hole" / "rgb" / "000.png", colour(20))
    save(folder / "test" / "hole" / "rgb" / "001.png", colour(21))
    save(folder / "test" / "hole" / "gt" / "000.png", square_mask())
    save(folder / "test" / "hole" / "gt" / "001.png", square_mask((0, 0)))
    # Point clouds are not read, so even garbage there is harmless.
    (folder / "test" / "hole" / "xyz").mkdir()
    (folder / "test" / "hole" / "xyz" / "000.tiff").write_bytes(b"garbage")
    return tmp_path


def test_mvtec_3d_contents(mvtec_3d):
    data = load_mvtec_3d_rgb(mvtec_3d, "bagel")
    assert data.X_train.shape == (2, H, W, 3)
    np.testing.assert_array_equal(data.X_train[:, 0, 0, 0], [1, 2])
    assert data.X_validation.shape == (1, H, W, 3)
    assert data.X_validation[0, 0, 0, 0] == 5
    np.testing.assert_array_equal(data.X_test[:, 0, 0, 0], [10, 20, 21])
    np.testing.assert_array_equal(data.y_test, [1, -1, -1])
    assert data.defect_type.tolist() == ["good", "hole", "hole"]
    assert not data.masks_test[0].any()
    np.testing.assert_array_equal(data.masks_test[1], expected_mask())
    np.testing.assert_array_equal(data.masks_test[2], expected_mask((0, 0)))
    assert names(data.filenames, mvtec_3d) == [
        "bagel/test/good/rgb/000.png",
        "bagel/test/hole/rgb/000.png",
        "bagel/test/hole/rgb/001.png",
    ]
    assert names(data.filenames_train, mvtec_3d) == [
        "bagel/train/good/rgb/000.png",
        "bagel/train/good/rgb/001.png",
    ]
    assert names(data.filenames_validation, mvtec_3d) == ["bagel/validation/good/rgb/000.png"]
    assert data.category == "bagel"


def test_mvtec_3d_validation_split(mvtec_3d):
    shutil.rmtree(mvtec_3d / "bagel" / "test")
    data = load_mvtec_3d_rgb(mvtec_3d / "bagel", split="validation", resize=8)
    assert data.X_test.shape == (1, 8, 8, 3)
    np.testing.assert_array_equal(data.X_test, data.X_validation)
    np.testing.assert_array_equal(data.y_test, [1])
    assert data.defect_type.tolist() == ["good"]
    assert data.masks_test.shape == (1, 8, 8)
    assert not data.masks_test.any()


def test_mvtec_3d_without_validation(mvtec_3d):
    shutil.rmtree(mvtec_3d / "bagel" / "validation")
    assert load_mvtec_3d_rgb(mvtec_3d, "bagel").X_validation == []
    data = load_mvtec_3d_rgb(mvtec_3d, "bagel", resize=(8, 6))
    assert data.X_validation.shape == (0, 8, 6, 3)
    assert data.X_validation.dtype == np.uint8
    assert data.filenames_validation.shape == (0,)
    assert data.X_test.shape == (3, 8, 6, 3)
    with raises_naming(FileNotFoundError, mvtec_3d / "bagel" / "validation"):
        load_mvtec_3d_rgb(mvtec_3d, "bagel", split="validation")


def test_mvtec_3d_mask_errors(mvtec_3d):
    hole = mvtec_3d / "bagel" / "test" / "hole"
    (hole / "gt" / "001.png").unlink()
    with raises_naming(ValueError, hole / "rgb" / "001.png"):
        load_mvtec_3d_rgb(mvtec_3d, "bagel")
    save(hole / "gt" / "001.png", square_mask())
    orphan = save(hole / "gt" / "002.png", square_mask())
    with raises_naming(ValueError, orphan):
        load_mvtec_3d_rgb(mvtec_3d, "bagel")


def test_mvtec_3d_bad_split(mvtec_3d):
    with pytest.raises(ValueError, match="split"):
        load_mvtec_3d_rgb(mvtec_3d, "bagel", split="train")


# load_folder ----------------------------------------------------------------


@pytest.fixture
def folders(tmp_path):
    for i in range(3):
        save(tmp_path / "normal" / f"n{i}.png", colour(i + 1))
    save(tmp_path / "anomalous" / "a.png", colour(100))
    save(tmp_path / "anomalous" / "b.jpg", colour(200), quality=100)
    save(tmp_path / "masks" / "a_mask.png", square_mask())
    save(tmp_path / "masks" / "b_mask.bmp", square_mask((0, 0)))
    return tmp_path


def test_load_folder_normal_only(folders):
    data = load_folder(folders / "normal")
    assert data.X.shape == (3, H, W, 3)
    np.testing.assert_array_equal(data.X[:, 0, 0, 0], [1, 2, 3])
    np.testing.assert_array_equal(data.y, [1, 1, 1])
    assert data.masks is None
    assert names(data.filenames, folders) == ["normal/n0.png", "normal/n1.png", "normal/n2.png"]


def test_load_folder_with_masks(folders):
    data = load_folder(
        folders / "normal", folders / "anomalous", folders / "masks", mask_suffix="_mask"
    )
    assert data.X.shape == (5, H, W, 3)
    np.testing.assert_array_equal(data.X[:4, 0, 0, 0], [1, 2, 3, 100])
    # JPEG is lossy, even for a flat image.
    assert abs(int(data.X[4, 0, 0, 0]) - 200) <= 3
    np.testing.assert_array_equal(data.y, [1, 1, 1, -1, -1])
    assert names(data.filenames, folders)[3:] == ["anomalous/a.png", "anomalous/b.jpg"]
    assert data.masks.shape == (5, H, W)
    assert not data.masks[:3].any()
    np.testing.assert_array_equal(data.masks[3], expected_mask())
    np.testing.assert_array_equal(data.masks[4], expected_mask((0, 0)))


def test_masks_drawn_the_other_way_round_are_named(folders):
    # Black defects on white: non-zero marks the background as defect.
    for name in ("a_mask.png", "b_mask.bmp"):
        inverted = 255 - np.asarray(Image.open(folders / "masks" / name))
        save(folders / "masks" / name, inverted)
    with pytest.warns(
        UserWarning, match=r"mark \d+% of their pixels as defect .* invert them"
    ) as caught:
        load_folder(
            folders / "normal", folders / "anomalous", folders / "masks", mask_suffix="_mask"
        )
    # Attributed to the caller's line, not to a wrapper of the loader.
    assert caught[0].filename == __file__


@pytest.mark.parametrize("mode", ["CMYK", "YCbCr", "1", "RGBA"])
def test_masks_of_any_mode_mark_their_defect_only(folders, mode):
    # CMYK's and YCbCr's black is not zero in every channel.
    for name, region in (("a_mask.png", SQUARE), ("b_mask.bmp", (0, 0))):
        (folders / "masks" / name).unlink()
        Image.fromarray(square_mask(region)).convert(mode).save(folders / "masks" / f"{name}.tif")
        (folders / "masks" / f"{name}.tif").rename(folders / "masks" / f"{Path(name).stem}.tif")
    data = load_folder(
        folders / "normal", folders / "anomalous", folders / "masks", mask_suffix="_mask"
    )
    np.testing.assert_array_equal(data.masks[3], expected_mask())
    np.testing.assert_array_equal(data.masks[4], expected_mask((0, 0)))


@pytest.mark.parametrize("quality", [75, 95])
def test_jpeg_masks_keep_their_defect_size(folders, quality):
    # JPEG rings around the square's edges: above 0, its faint values
    # would mark pixels around it as defect.
    (folders / "masks" / "a_mask.png").unlink()
    save(folders / "masks" / "a_mask.jpg", square_mask(), quality=quality)
    data = load_folder(
        folders / "normal", folders / "anomalous", folders / "masks", mask_suffix="_mask"
    )
    np.testing.assert_array_equal(data.masks[3], expected_mask())


def test_load_folder_says_a_file_is_no_folder(folders):
    with pytest.raises(FileNotFoundError, match=r"n0\.png' is a file, not a folder"):
        load_folder(folders / "normal" / "n0.png")
    with pytest.raises(FileNotFoundError, match="missing' does not exist"):
        load_folder(folders / "missing")


def test_load_folder_without_masks(folders):
    data = load_folder(folders / "normal", folders / "anomalous", resize=(4, 5))
    assert data.X.shape == (5, 4, 5, 3)
    np.testing.assert_array_equal(data.y, [1, 1, 1, -1, -1])
    assert data.masks is None


def test_load_folder_mixed_sizes(folders):
    save(folders / "anomalous" / "c.png", colour(7, (5, 6)))
    save(folders / "masks" / "c.png", square_mask((0, 0), (5, 6)))
    (folders / "masks" / "a_mask.png").rename(folders / "masks" / "a.png")
    (folders / "masks" / "b_mask.bmp").rename(folders / "masks" / "b.bmp")
    data = load_folder(folders / "normal", folders / "anomalous", folders / "masks")
    assert isinstance(data.X, list)
    assert [x.shape for x in data.X] == [(H, W, 3)] * 5 + [(5, 6, 3)]
    assert isinstance(data.masks, list)
    assert [m.shape for m in data.masks] == [(H, W)] * 5 + [(5, 6)]
    assert data.masks[5][0, 0] and data.masks[5].sum() == 1


def test_load_folder_errors(folders):
    with raises_naming(FileNotFoundError, folders / "missing"):
        load_folder(folders / "missing")
    (folders / "empty").mkdir()
    with raises_naming(ValueError, folders / "empty"):
        load_folder(folders / "empty")
    with raises_naming(FileNotFoundError, folders / "missing"):
        load_folder(folders / "normal", folders / "anomalous", folders / "missing")
    # Without the suffix no mask matches.
    with raises_naming(ValueError, folders / "anomalous" / "a.png"):
        load_folder(folders / "normal", folders / "anomalous", folders / "masks")
    # With the extension in it neither, and the message says so.
    with pytest.raises(ValueError, match=r"holds the extension '\.png': leave it out"):
        load_folder(
            folders / "normal", folders / "anomalous", folders / "masks", mask_suffix="_mask.png"
        )
    orphan = save(folders / "masks" / "z_mask.png", square_mask())
    with raises_naming(ValueError, orphan):
        load_folder(
            folders / "normal", folders / "anomalous", folders / "masks", mask_suffix="_mask"
        )
    orphan.unlink()
    twin = save(folders / "masks" / "a_mask.tif", square_mask())
    with raises_naming(ValueError, twin):
        load_folder(
            folders / "normal", folders / "anomalous", folders / "masks", mask_suffix="_mask"
        )
    twin.unlink()
    # Two images whose names differ only in their extension would share a mask.
    twin = save(folders / "anomalous" / "a.bmp", colour(50))
    with raises_naming(ValueError, twin):
        load_folder(
            folders / "normal", folders / "anomalous", folders / "masks", mask_suffix="_mask"
        )


def test_a_link_to_a_missing_image_is_named_not_skipped(folders):
    link = folders / "normal" / "n3.png"
    link.symlink_to(folders / "moved_away.png")
    with raises_naming(FileNotFoundError, link):
        load_folder(folders / "normal")


@pytest.mark.parametrize(
    "load, argument, got",
    [
        (lambda root: load_mvtec_ad(None, "zzz"), "root", "None"),
        (lambda root: load_mvtec_ad(5, "cat"), "root", "5"),
        (lambda root: load_mvtec_ad(root, 5), "category", "5"),
        (lambda root: load_mvtec_3d_rgb(root, b"widget"), "category", "b'widget'"),
        (lambda root: load_folder(None), "normal_dir", "None"),
        (lambda root: load_folder(root, anomalous_dir=1), "anomalous_dir", "1"),
        (lambda root: load_folder(root, root, root, mask_suffix=None), "mask_suffix", "None"),
        (lambda root: load_cookies(5), "root", "5"),
        (lambda root: load_magnetic_tile(5), "root", "5"),
        (lambda root: load_piped("PA_BDP01_TL", 5), "root", "5"),
        (lambda root: load_piped(3, root), "paper_type", "3"),
        (lambda root: piped_types(5), "root", "5"),
    ],
)
def test_arguments_of_the_wrong_type_are_named(mvtec_ad, load, argument, got):
    """Not pathlib's TypeError, which names neither the argument nor the loader."""
    expected = rf"'{argument}' parameter of \w+ must be an instance of 'str'.*Got {got} instead"
    with pytest.raises(TypeError, match=expected):
        load(mvtec_ad)


# Magnetic tile ----------------------------------------------------------------


@pytest.fixture
def magnetic_tile(tmp_path):
    """One or two images per class, of varying sizes, with masks beside them."""
    root = tmp_path / "magnetic_tile"
    for i, name in enumerate(["Free", "Blowhole", "Break", "Crack", "Fray", "Uneven"]):
        imgs = root / f"MT_{name}" / "Imgs"
        shape = (H + i, W - i)
        save(imgs / f"exp0_num_{i}.jpg", np.full(shape, 10 * i, np.uint8))
        value = 0 if name == "Free" else 255
        save(imgs / f"exp0_num_{i}.png", square_mask(shape=shape, value=value))
    # Mask values are thresholded at 128: 200 marks a defect, 100 does not.
    mask = square_mask((slice(0, 2), slice(0, 2)), (H + 3, W - 3), value=200)
    mask[10:12] = 100
    save(root / "MT_Crack" / "Imgs" / "exp1_num_0.jpg", np.full((H + 3, W - 3), 99, np.uint8))
    save(root / "MT_Crack" / "Imgs" / "exp1_num_0.png", mask)
    return root


def test_magnetic_tile_contents(magnetic_tile):
    data = load_magnetic_tile(magnetic_tile)
    assert data.defect_type.tolist() == [
        "good",
        "blowhole",
        "break",
        "crack",
        "crack",
        "fray",
        "uneven",
    ]
    np.testing.assert_array_equal(data.y, [1, -1, -1, -1, -1, -1, -1])
    assert names(data.filenames, magnetic_tile) == [
        "MT_Free/Imgs/exp0_num_0.jpg",
        "MT_Blowhole/Imgs/exp0_num_1.jpg",
        "MT_Break/Imgs/exp0_num_2.jpg",
        "MT_Crack/Imgs/exp0_num_3.jpg",
        "MT_Crack/Imgs/exp1_num_0.jpg",
        "MT_Fray/Imgs/exp0_num_4.jpg",
        "MT_Uneven/Imgs/exp0_num_5.jpg",
    ]
    assert isinstance(data.X, list) and isinstance(data.masks, list)
    assert data.X[1].shape == (H + 1, W - 1, 3)
    assert data.X[1].dtype == np.uint8
    # Grayscale replicated to RGB.
    assert abs(int(data.X[4][0, 0, 0]) - 99) <= 2
    assert (data.X[4][..., 0] == data.X[4][..., 2]).all()
    assert data.masks[1].shape == (H + 1, W - 1)
    assert not data.masks[0].any()
    np.testing.assert_array_equal(data.masks[1], expected_mask(shape=(H + 1, W - 1)))
    np.testing.assert_array_equal(
        data.masks[4], expected_mask((slice(0, 2), slice(0, 2)), (H + 3, W - 3))
    )


def test_magnetic_tile_classes_and_max(magnetic_tile):
    data = load_magnetic_tile(magnetic_tile, classes=["crack", "FREE"], max_per_class=1)
    assert data.defect_type.tolist() == ["good", "crack"]
    assert names(data.filenames, magnetic_tile)[1] == "MT_Crack/Imgs/exp0_num_3.jpg"
    resized = load_magnetic_tile(magnetic_tile, classes="Crack", resize=8)
    assert resized.X.shape == (2, 8, 8, 3)
    assert resized.masks.shape == (2, 8, 8)
    with pytest.raises(ValueError, match="classes"):
        load_magnetic_tile(magnetic_tile, classes=["Scratch"])
    from_array = load_magnetic_tile(magnetic_tile, classes=np.array(["crack", "FREE"]))
    assert set(from_array.defect_type) == {"good", "crack"}
    with pytest.raises(ValueError, match=r"classes must name some of Free, .*; got 5"):
        load_magnetic_tile(magnetic_tile, classes=5)
    with pytest.raises(ValueError, match="max_per_class"):
        load_magnetic_tile(magnetic_tile, max_per_class=0)


def test_magnetic_tile_errors(magnetic_tile):
    crack = magnetic_tile / "MT_Crack" / "Imgs"
    (crack / "exp1_num_0.png").unlink()
    with raises_naming(ValueError, crack / "exp1_num_0.jpg"):
        load_magnetic_tile(magnetic_tile)
    orphan = save(crack / "exp1_num_0_copy.png", square_mask())
    (crack / "exp1_num_0.jpg").unlink()
    with raises_naming(ValueError, orphan):
        load_magnetic_tile(magnetic_tile)
    shutil.rmtree(magnetic_tile / "MT_Fray")
    with raises_naming(FileNotFoundError, magnetic_tile / "MT_Fray" / "Imgs"):
        load_magnetic_tile(magnetic_tile, classes="fray")


def test_default_root_from_environment(magnetic_tile, monkeypatch):
    monkeypatch.setenv("SKANOMALY_DATA", str(magnetic_tile.parent))
    assert shared_data_dir() == magnetic_tile.parent
    assert len(load_magnetic_tile(max_per_class=1).y) == 6
    with raises_naming(FileNotFoundError, magnetic_tile.parent / "cookies"):
        load_cookies()


def test_no_shared_data_dir(monkeypatch):
    # The loaders look the folder up where it is defined.
    monkeypatch.setattr(datasets._common, "shared_data_dir", lambda: None)
    with pytest.raises(FileNotFoundError, match="SKANOMALY_DATA"):
        load_magnetic_tile()
    with pytest.raises(FileNotFoundError, match="SKANOMALY_DATA"):
        load_cookies()


def test_shared_data_dir_without_environment(monkeypatch):
    monkeypatch.delenv("SKANOMALY_DATA", raising=False)
    found = shared_data_dir()
    assert found is None or (found.is_dir() and found.parts[-2:] == ("shared", "data"))


# Cookies --------------------------------------------------------------------


def palette_mask(region):
    """A green-on-black palette mask with transparency, as the real data has."""
    mask = Image.fromarray(square_mask(region) // 255, mode="L").convert("P")
    mask.putpalette([0, 0, 0, 35, 164, 54])
    mask.info["transparency"] = bytes([0, 255])
    return mask


@pytest.fixture
def cookies(tmp_path):
    root = tmp_path / "cookies"
    save(root / "training-images" / "anomaly-1.jpg", colour(200))
    save(root / "training-images" / "normal-1.jpg", colour(10))
    save(root / "training-images" / "normal-2.jpg", colour(20))
    (root / "mask-images").mkdir()
    palette_mask(SQUARE).save(root / "mask-images" / "anomaly-1.png", transparency=bytes([0, 255]))
    save(root / "test-images" / "test-anomaly-1.jpg", colour(200))
    save(root / "test-images" / "test-normal-1.jpg", colour(10))
    return root


def test_cookies_train(cookies):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_cookies(cookies)
    assert data.X.shape == (3, H, W, 3)
    np.testing.assert_array_equal(data.y, [-1, 1, 1])
    assert data.defect_type.tolist() == ["crack", "good", "good"]
    assert names(data.filenames, cookies) == [
        "training-images/anomaly-1.jpg",
        "training-images/normal-1.jpg",
        "training-images/normal-2.jpg",
    ]
    np.testing.assert_array_equal(data.masks[0], expected_mask())
    assert not data.masks[1:].any()


def test_cookies_test(cookies):
    data = load_cookies(cookies, split="test", resize=8)
    assert data.X.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(data.y, [-1, 1])
    assert data.masks is None
    assert names(data.filenames, cookies) == [
        "test-images/test-anomaly-1.jpg",
        "test-images/test-normal-1.jpg",
    ]


def test_cookies_errors(cookies):
    (cookies / "mask-images" / "anomaly-1.png").rename(cookies / "mask-images" / "anomaly-2.png")
    with raises_naming(ValueError, cookies / "training-images" / "anomaly-1.jpg"):
        load_cookies(cookies)
    stray = save(cookies / "test-images" / "cookie-3.jpg", colour(1))
    with raises_naming(ValueError, stray):
        load_cookies(cookies, split="test")
    with pytest.raises(ValueError, match="split"):
        load_cookies(cookies, split="validation")


# ELPV -----------------------------------------------------------------------


def test_elpv():
    pytest.importorskip("elpv_dataset")
    data = load_elpv(max_samples=40)
    assert data.X.shape == (40, 300, 300, 3)
    assert data.X.dtype == np.uint8
    assert (data.X[..., 0] == data.X[..., 1]).all()
    assert set(data.cell_type) == {"mono"}
    assert set(np.unique(data.y)) <= {-1, 0, 1}
    np.testing.assert_array_equal(data.y == 1, data.proba == 0)
    np.testing.assert_array_equal(data.y == -1, data.proba == 1)
    assert set(np.round(data.proba * 3)) <= {0, 1, 2, 3}
    assert len(data.filenames) == 40 and Path(data.filenames[0]).is_file()

    poly = load_elpv(cell_type="poly", resize=32, max_samples=5)
    assert poly.X.shape == (5, 32, 32, 3)
    assert set(poly.cell_type) == {"poly"}
    assert set(load_elpv(cell_type="all", max_samples=3).cell_type) <= {"mono", "poly"}


def test_elpv_bad_arguments():
    with pytest.raises(ValueError, match="cell_type"):
        load_elpv(cell_type="amorphous")
    with pytest.raises(ValueError, match="max_samples"):
        load_elpv(max_samples=0)


def test_elpv_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "elpv_dataset", None)
    monkeypatch.setitem(sys.modules, "elpv_dataset.utils", None)
    with pytest.raises(ImportError, match="pip install elpv-dataset"):
        load_elpv()


# The real data in the shared folder -------------------------------------------


def real_data(name):
    base = shared_data_dir()
    if base is None or not (base / name).is_dir():
        pytest.skip(
            f"no shared {name}/ data: set SKANOMALY_DATA or put the data in "
            f"shared/data/{name} beside the repository"
        )
    return base / name


def test_real_magnetic_tile():
    real_data("magnetic_tile")
    data = load_magnetic_tile(max_per_class=2)
    assert len(data.X) == len(data.masks) == 12
    np.testing.assert_array_equal(data.y, [1] * 2 + [-1] * 10)
    assert isinstance(data.X, list)
    for image, mask in zip(data.X, data.masks):
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert mask.dtype == bool and mask.shape == image.shape[:2]
        assert min(mask.shape) >= 100 and max(mask.shape) <= 640
    assert not any(m.any() for m in data.masks[:2])
    assert all(m.any() for m in data.masks[2:10])

    # As the data's README says, 4 of the 103 Uneven masks are empty.
    uneven = load_magnetic_tile(classes="uneven")
    assert len(uneven.X) == 103
    assert sum(not m.any() for m in uneven.masks) == 4
    assert load_magnetic_tile(classes="fray", resize=64).X.shape == (32, 64, 64, 3)


def test_real_cookies():
    real_data("cookies")
    train = load_cookies()
    assert train.X.shape == (63, 768, 576, 3)
    assert (train.y == -1).sum() == 32
    np.testing.assert_array_equal(train.masks.any(axis=(1, 2)), train.y == -1)
    test = load_cookies(split="test")
    assert test.X.shape == (22, 768, 576, 3)
    assert (test.y == 1).sum() == 14 and test.masks is None


def _piped_type(root, name, masks_folder="GroundThruth"):
    """A PIPED-like paper type: 2 normal and 2 defective patches whose
    masks are black impurities on white, as the data set ships them."""
    folder = root / name
    (folder / "NoDefects").mkdir(parents=True)
    (folder / "Defects" / masks_folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for b in (1, 2):
        patch = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(patch).save(folder / "NoDefects" / f"{name}_S_ND_01_{b}.bmp")
        Image.fromarray(patch).save(folder / "Defects" / f"{name}_S_D_01_{b}.bmp")
        mask = np.full((16, 16), 255, np.uint8)
        mask[2 : 4 + b, 5:9] = 0
        Image.fromarray(mask).convert("1").save(
            folder / "Defects" / masks_folder / f"{name}_S_GT_01_{b}.bmp"
        )


def test_piped_masks_are_the_dark_pixels(tmp_path):
    _piped_type(tmp_path, "PA_AAA01_TL")
    _piped_type(tmp_path, "PA_BBB01_RL", masks_folder="GroundTruth")
    assert piped_types(tmp_path) == ["PA_AAA01_TL", "PA_BBB01_RL"]
    data = load_piped("PA_AAA01_TL", tmp_path)
    assert data.X.shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(data.y, [1, 1, -1, -1])
    assert not data.masks[:2].any()
    assert data.masks[2].sum() == 3 * 4 and data.masks[3].sum() == 4 * 4
    assert data.masks[3, 2:6, 5:9].all()
    assert load_piped("PA_BBB01_RL", tmp_path, resize=8).masks.shape == (4, 8, 8)
    # The data set's own folder, or a path, is no paper type either.
    for name in ("PA_CCC01_TL", "", ".", "..", "PA_AAA01_TL/NoDefects"):
        with pytest.raises(
            FileNotFoundError, match=f"no paper type {name!r}.*PA_AAA01_TL, PA_BBB01_RL"
        ):
            load_piped(name, tmp_path)


def test_piped_real_data(shared_data):
    data = load_piped("PA_BDP01_TL", shared_data / "piped")
    assert data.X.shape == (96, 128, 128, 3)
    # Impurities are small: about 1.6% of a defective patch.
    assert 0.005 < data.masks[data.y == -1].mean() < 0.05
