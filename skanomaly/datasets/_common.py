"""What every loader shares: finding the data, reading images and masks.

The loaders find their folders with :func:`data_root`, list them with
:func:`images_in` and :func:`subfolders`, pair images with masks with
:func:`match_masks`, and read the pairs with :func:`load_samples`.
"""

import numbers
import os
import warnings
from functools import partial
from operator import attrgetter
from pathlib import Path

import numpy as np
from PIL import Image

from .._files import IMAGE_EXTENSIONS, check_folder, list_images
from .._images import open_image, rgb_image
from .._stacklevel import user_stacklevel

__all__ = [
    "OPTIONAL_PATH",
    "PATH",
    "check_max",
    "check_resize",
    "data_root",
    "filenames",
    "images_in",
    "load_samples",
    "match_masks",
    "outlier_labels",
    "shared_data_dir",
    "subfolders",
]

# The loaders' validate_params constraints of folder arguments (scikit-learn
# has no "path-like" one): without them a None or an int reaches pathlib,
# whose TypeError does not say which argument it was.
PATH = [str, os.PathLike]
OPTIONAL_PATH = [*PATH, None]


def shared_data_dir():
    """The folder that holds the optional third-party data sets, if any.

    Returns
    -------
    path : pathlib.Path or None
        The ``SKANOMALY_DATA`` environment variable when it is set; else,
        where the package runs from a source checkout, ``../shared/data``
        relative to the checkout's root when that folder exists; else None.
    """
    env = os.environ.get("SKANOMALY_DATA")
    if env:
        return Path(env)
    # In a checkout this file is <repository>/skanomaly/datasets/_common.py;
    # installed, the folder above the package is site-packages.
    repository = Path(__file__).resolve().parents[2]
    candidate = repository.parent / "shared" / "data"
    is_checkout = (repository / "pyproject.toml").is_file()
    return candidate if is_checkout and candidate.is_dir() else None


def data_root(root, name):
    """``root``, or else the folder ``name`` of :func:`shared_data_dir`."""
    if root is not None:
        root = Path(root)
    else:
        base = shared_data_dir()
        if base is None:
            raise FileNotFoundError(
                f"No root was given and there is no shared data folder to find "
                f"{name}/ in: pass root=, or set the SKANOMALY_DATA environment "
                f"variable to a folder that holds {name}/, or put it in "
                f"shared/data/{name} beside the repository folder."
            )
        root = base / name
    return check_folder(root, "Data folder")


def check_resize(resize):
    """``resize`` as a (height, width) pair, or None."""
    if resize is None:
        return None
    if isinstance(resize, numbers.Integral):
        size = (resize, resize)
    else:
        try:
            size = tuple(resize)
        except TypeError:
            size = ()
    if len(size) != 2 or not all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in size
    ):
        raise ValueError(
            f"resize must be a positive int or a (height, width) pair of positive "
            f"ints; got {resize!r}."
        )
    return int(size[0]), int(size[1])


def check_max(value, name):
    """``value``, which must be None or a positive int."""
    if value is not None and (
        not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1
    ):
        raise ValueError(f"{name} must be None or a positive int; got {value!r}.")
    return value


def images_in(folder, *, allow_empty=False):
    """The image files in ``folder``, sorted by name (see ``list_images``)."""
    folder = Path(folder)
    images, _ = list_images(folder)
    if not images and not allow_empty:
        raise ValueError(
            f"Folder {str(folder)!r} holds no image files ({', '.join(IMAGE_EXTENSIONS)})."
        )
    return images


def subfolders(folder, *, allow_empty=False):
    """The names of the folders in ``folder``, sorted."""
    folder = check_folder(folder)
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names and not allow_empty:
        raise ValueError(f"Folder {str(folder)!r} holds no subfolders.")
    return names


def _rgb(image, size):
    shape = (image.height, image.width)
    image = rgb_image(image)
    if size is not None:
        image = image.resize(size[::-1], Image.Resampling.BICUBIC)
    return np.array(image), shape


# Formats of lossy image files (Pillow's names), whose masks _mask cuts at
# mid-grey: label masks of 0 and 1 cannot survive them.
_LOSSY_FORMATS = ("JPEG", "MPO")


def _mask(image, size, threshold, dark=False):
    shape = (image.height, image.width)
    if image.format in _LOSSY_FORMATS:
        # JPEG rings around a mask's edges and speckles its black with faint
        # values: above 0, a 10 x 20 square saved at quality 75 marked 275
        # pixels, not 200. Such masks are cut at mid-grey.
        threshold = max(threshold, 127)
    if image.mode == "P":
        # Converting a palette with transparency to RGB warns; the colours,
        # which are all that matter here, are the same in RGBA.
        image = image.convert("RGBA")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        # Their black is not zero in every channel (CMYK's key, YCbCr's
        # chroma), which would mark the background.
        image = image.convert("RGB")
    if size is not None:
        image = image.resize(size[::-1], Image.Resampling.NEAREST)
    values = np.asarray(image)
    if values.ndim == 3:
        # Colour masks (such as green on black) may mark a defect in any
        # colour channel; alpha, where present, only smooths the edges.
        colour = [i for i, band in enumerate(image.getbands()) if band != "A"]
        values = values[..., colour].max(axis=-1)
    marked = values > threshold
    return (~marked if dark else marked), shape


def _collect(arrays, size, dtype, channels=()):
    """One array when all ``arrays`` share a shape, else the list itself."""
    if not arrays:
        return np.empty((0, *size, *channels), dtype=dtype) if size else []
    if len({a.shape for a in arrays}) == 1:
        return np.stack(arrays)
    return arrays


def load_samples(samples, size, *, with_masks=True, threshold=0, dark=False):
    """Read ``(image_path, mask_path or None)`` pairs into images and masks.

    Both are read upright: each file's EXIF orientation tag is applied, so
    a mask drawn on the image as viewers show it lines up with it. An image
    without a mask path gets an all-False mask. Mask values above
    ``threshold`` (in any colour channel) mark defects, or, with ``dark``,
    the values at or below it (black defects on white); in JPEG files,
    whose compression leaves faint values around a mask, the threshold is
    at least mid-grey (127). Returns ``(X, masks)``, with ``masks`` None
    unless ``with_masks``.
    """
    images, masks = [], []
    for image_path, mask_path in samples:
        image, shape = open_image(image_path, partial(_rgb, size=size))
        images.append(image)
        if not with_masks:
            continue
        if mask_path is None:
            masks.append(np.zeros(image.shape[:2], dtype=bool))
            continue
        read_mask = partial(_mask, size=size, threshold=threshold, dark=dark)
        mask, mask_shape = open_image(mask_path, read_mask)
        if mask_shape != shape:
            raise ValueError(
                f"Mask file {str(mask_path)!r} is {mask_shape[0]}x{mask_shape[1]} "
                f"(height x width) but its image {str(image_path)!r} is "
                f"{shape[0]}x{shape[1]}."
            )
        masks.append(mask)
    _warn_if_inverted([m for (_, path), m in zip(samples, masks) if path is not None])
    X = _collect(images, size, np.uint8, (3,))
    return X, (_collect(masks, size, bool) if with_masks else None)


def _warn_if_inverted(masks):
    """Warn where the mask files mark most of their pixels as defect:
    masks drawn the other way round (defect black on white) would make every
    map metric measure the background."""
    share = np.mean([m.mean() for m in masks]) if masks else 0.0
    if share > 0.5:
        warnings.warn(
            f"The mask files mark {share:.0%} of their pixels as defect on average: if "
            "their defects are the dark pixels, invert them (non-zero marks a defect).",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


def match_masks(images, mask_files, mask_stem, mask_folder):
    """The mask file of each of ``images``; each of ``mask_files`` must be used.

    ``mask_stem(image)`` is the file name, without extension, of the mask
    of ``image``.
    """
    by_stem = _by_stem(
        mask_files,
        attrgetter("stem"),
        lambda first, second: (
            f"Mask files {str(first)!r} and {str(second)!r} differ "
            "only in their extension; keep one."
        ),
    )
    images_by_stem = _by_stem(
        images,
        mask_stem,
        lambda first, second: (
            f"Anomalous images {str(first)!r} and {str(second)!r} differ "
            "only in their extension, so one mask file would serve both; keep one."
        ),
    )
    matched = []
    for stem, image in images_by_stem.items():
        if stem not in by_stem:
            hint = ""
            if Path(stem).suffix.lower() in IMAGE_EXTENSIONS:
                hint = f" The mask suffix holds the extension {Path(stem).suffix!r}: leave it out."
            raise ValueError(
                f"Anomalous image {str(image)!r} has no mask: expected "
                f"{str(Path(mask_folder) / stem)!r} with an image extension "
                f"such as .png.{hint}"
            )
        matched.append(by_stem[stem])
    unused = sorted(set(by_stem.values()) - set(matched))
    if unused:
        raise ValueError(
            f"Mask file {str(unused[0])!r} matches no anomalous image"
            + (f" (nor do {len(unused) - 1} more)" if len(unused) > 1 else "")
            + "."
        )
    return matched


def _by_stem(files, stem, duplicate):
    """``{stem(file): file}`` in the order of ``files``, refused where two
    share a stem: ``duplicate(first, second)`` says so."""
    found = {}
    for file in files:
        key = stem(file)
        if key in found:
            raise ValueError(duplicate(found[key], file))
        found[key] = file
    return found


def outlier_labels(defect_types):
    """+1/-1 labels (``"good"`` is normal) and the defect types as an array."""
    defect_types = np.asarray(defect_types, dtype=str)
    return np.where(defect_types == "good", 1, -1), defect_types


def filenames(paths):
    """``paths`` as an array of strings, for a Bunch's ``filenames``."""
    return np.array([str(p) for p in paths], dtype=str)
