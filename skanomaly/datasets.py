"""Loaders for anomaly detection image datasets.

Every loader returns a :class:`~sklearn.utils.Bunch` whose labels follow
scikit-learn's outlier convention: ``+1`` for normal images and ``-1`` for
anomalous ones, so that ``roc_auc_score(y, detector.score_samples(X))`` rates
a detector whose scores are higher for normal images.

Images come as an ``(n, H, W, 3)`` uint8 RGB array when they share one size
(always so with ``resize``), otherwise as a list of ``(H, W, 3)`` uint8
arrays; grayscale files are replicated to three channels. Pixel masks come as
boolean arrays (or lists) of the same sizes, ``True`` on defects. Files are
taken in order of their names. A file that cannot be read, an anomalous image
without a mask and a mask without an image each raise an error naming the
file rather than being skipped.
"""

import numbers
import os
import re
from functools import partial
from operator import attrgetter
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.utils import Bunch

from ._images import open_image

__all__ = [
    "load_cookies",
    "load_elpv",
    "load_folder",
    "load_magnetic_tile",
    "load_mvtec_3d_rgb",
    "load_mvtec_ad",
    "shared_data_dir",
]

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_MAGNETIC_TILE_CLASSES = ("Free", "Blowhole", "Break", "Crack", "Fray", "Uneven")
_COOKIE_NAME = re.compile(r"(?:test-)?(normal|anomaly)-")


def shared_data_dir():
    """The folder that holds the optional third-party data sets, if any.

    Returns
    -------
    path : pathlib.Path or None
        The ``SKANOMALY_DATA`` environment variable when it is set; else
        ``../shared/data`` relative to the repository root (the folder above
        the ``skanomaly`` package) when that folder exists; else None.
    """
    env = os.environ.get("SKANOMALY_DATA")
    if env:
        return Path(env)
    candidate = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def _data_root(root, name):
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
    if not root.is_dir():
        raise FileNotFoundError(f"Data folder {str(root)!r} does not exist.")
    return root


def _check_resize(resize):
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


def _check_max(value, name):
    if value is not None and (
        not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1
    ):
        raise ValueError(f"{name} must be None or a positive int; got {value!r}.")
    return value


def _list_images(folder, *, allow_empty=False):
    """The image files in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Folder {str(folder)!r} does not exist.")
    files = sorted(
        (
            path
            for path in folder.iterdir()
            # Hidden files include the "._name.png" metadata files that macOS
            # leaves on shared drives, which are not images.
            if path.suffix.lower() in _IMAGE_EXTENSIONS
            and not path.name.startswith(".")
            and path.is_file()
        ),
        key=attrgetter("name"),
    )
    if not files and not allow_empty:
        raise ValueError(
            f"Folder {str(folder)!r} holds no image files "
            f"({', '.join(_IMAGE_EXTENSIONS)})."
        )
    return files


def _subfolders(folder, *, allow_empty=False):
    """The names of the folders in ``folder``, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Folder {str(folder)!r} does not exist.")
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names and not allow_empty:
        raise ValueError(f"Folder {str(folder)!r} holds no subfolders.")
    return names


def _rgb(image, size):
    shape = (image.height, image.width)
    image = image.convert("RGB")
    if size is not None:
        image = image.resize(size[::-1], Image.Resampling.BICUBIC)
    return np.array(image), shape


def _mask(image, size, threshold):
    shape = (image.height, image.width)
    if image.mode == "P":
        # Converting a palette with transparency to RGB warns; the colours,
        # which are all that matter here, are the same in RGBA.
        image = image.convert("RGBA")
    elif image.mode == "1":
        image = image.convert("L")
    if size is not None:
        image = image.resize(size[::-1], Image.Resampling.NEAREST)
    values = np.asarray(image)
    if values.ndim == 3:
        # Colour masks (such as green on black) may mark a defect in any
        # colour channel; alpha, where present, only smooths the edges.
        colour = [i for i, band in enumerate(image.getbands()) if band != "A"]
        values = values[..., colour].max(axis=-1)
    return values > threshold, shape


def _collect(arrays, size, dtype, channels=()):
    """One array when all ``arrays`` share a shape, else the list itself."""
    if not arrays:
        return np.empty((0, *size, *channels), dtype=dtype) if size else []
    if len({a.shape for a in arrays}) == 1:
        return np.stack(arrays)
    return arrays


def _load(samples, size, *, with_masks=True, threshold=0):
    """Read ``(image_path, mask_path or None)`` pairs into images and masks.

    An image without a mask path gets an all-False mask. Mask values above
    ``threshold`` (in any colour channel) mark defects.
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
        mask, mask_shape = open_image(mask_path, partial(_mask, size=size, threshold=threshold))
        if mask_shape != shape:
            raise ValueError(
                f"Mask file {str(mask_path)!r} is {mask_shape[0]}x{mask_shape[1]} "
                f"(height x width) but its image {str(image_path)!r} is "
                f"{shape[0]}x{shape[1]}."
            )
        masks.append(mask)
    X = _collect(images, size, np.uint8, (3,))
    return X, (_collect(masks, size, bool) if with_masks else None)


def _match_masks(images, mask_files, mask_stem, mask_folder):
    """The mask file of each of ``images``; each of ``mask_files`` must be used.

    ``mask_stem(image)`` is the file name, without extension, of the mask
    of ``image``.
    """
    by_stem = {}
    for mask in mask_files:
        if mask.stem in by_stem:
            raise ValueError(
                f"Mask files {str(by_stem[mask.stem])!r} and {str(mask)!r} differ "
                "only in their extension; keep one."
            )
        by_stem[mask.stem] = mask
    matched = []
    for image in images:
        stem = mask_stem(image)
        if stem not in by_stem:
            raise ValueError(
                f"Anomalous image {str(image)!r} has no mask: expected "
                f"{str(Path(mask_folder) / stem)!r} with an image extension "
                "such as .png."
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


def _category_folder(root, category):
    folder = Path(root) if category is None else Path(root) / category
    if not folder.is_dir():
        raise FileNotFoundError(f"Data folder {str(folder)!r} does not exist.")
    if category is None and not (folder / "train").is_dir():
        raise FileNotFoundError(
            f"Folder {str(folder)!r} has no train/ folder; if it holds one folder "
            "per category, pass category=."
        )
    return folder


def _mvtec_test_samples(test_folder, image_folder, mask_folder, mask_stem):
    """``(image, mask or None)`` pairs and the defect type of each test image.

    ``image_folder(defect_folder)`` and ``mask_folder(defect)`` locate the
    images and masks of one defect type.
    """
    samples, defect_types = [], []
    for defect in _subfolders(test_folder):
        images = _list_images(image_folder(test_folder / defect))
        if defect == "good":
            masks = [None] * len(images)
        else:
            folder = mask_folder(defect)
            # A missing mask folder is reported as the first image it lacks.
            mask_files = _list_images(folder, allow_empty=True) if folder.is_dir() else []
            masks = _match_masks(images, mask_files, mask_stem, folder)
        samples += zip(images, masks)
        defect_types += [defect] * len(images)
    return samples, defect_types


def _labels(defect_types):
    defect_types = np.asarray(defect_types, dtype=str)
    return np.where(defect_types == "good", 1, -1), defect_types


def _filenames(paths):
    return np.array([str(p) for p in paths], dtype=str)


def load_mvtec_ad(root, category=None, *, resize=None, return_X_y=False):
    """Load one category of the MVTec AD data set.

    The layout is MVTec's: ``<category>/train/good/*.png`` holds the normal
    training images, ``<category>/test/<defect>/*.png`` the test images
    (defect ``good`` being normal) and
    ``<category>/ground_truth/<defect>/<name>_mask.png`` the defect mask of
    test image ``<name>.png`` (nonzero pixels are defects). Good test images
    get all-False masks; ``ground_truth/good``, if present, is not read.

    Parameters
    ----------
    root : str or path-like
        The folder that holds the category folders, or with
        ``category=None`` the category folder itself.
    category : str, default=None
        The category to load, such as ``"bottle"``.
    resize : int or (int, int), default=None
        Resize every image to this (height, width), or to a square of this
        side for an int, with bicubic interpolation (masks with nearest
        neighbour). By default images keep their size.
    return_X_y : bool, default=False
        Return ``(X_train, X_test, y_test)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With keys:

        X_train : ndarray of shape (n_train, H, W, 3) or list of ndarray
            The normal training images, uint8 RGB.
        X_test : ndarray of shape (n_test, H, W, 3) or list of ndarray
            The test images, sorted by defect type and then file name.
        y_test : ndarray of shape (n_test,)
            +1 for good test images, -1 for defective ones.
        masks_test : ndarray of shape (n_test, H, W) or list of ndarray
            Boolean defect masks of the test images.
        defect_type : ndarray of shape (n_test,)
            The defect folder of each test image (``"good"`` if normal).
        filenames : ndarray of shape (n_test,)
            Path of each test image.
        filenames_train : ndarray of shape (n_train,)
            Path of each training image.
        category : str
            The category name.

    (X_train, X_test, y_test) : tuple
        If ``return_X_y`` is True.

    Raises
    ------
    FileNotFoundError
        If a required folder is missing.
    ValueError
        If a folder holds no images, a file cannot be read, a defective test
        image has no mask, a mask has no image, or a mask's size differs
        from its image's.

    Examples
    --------
    >>> from skanomaly.datasets import load_mvtec_ad
    >>> data = load_mvtec_ad("mvtec_ad", "bottle", resize=256)  # doctest: +SKIP
    >>> data.X_train.shape  # doctest: +SKIP
    (209, 256, 256, 3)
    """
    size = _check_resize(resize)
    folder = _category_folder(root, category)
    train = _list_images(folder / "train" / "good")
    ground_truth = folder / "ground_truth"
    samples, defect_types = _mvtec_test_samples(
        folder / "test",
        image_folder=lambda defect_folder: defect_folder,
        mask_folder=lambda defect: ground_truth / defect,
        mask_stem=lambda image: image.stem + "_mask",
    )
    if ground_truth.is_dir():
        for defect in sorted(
            set(_subfolders(ground_truth, allow_empty=True)) - set(defect_types) - {"good"}
        ):
            stray = _list_images(ground_truth / defect, allow_empty=True)
            if stray:
                raise ValueError(
                    f"Mask file {str(stray[0])!r} has no image: there is no test "
                    f"folder {str(folder / 'test' / defect)!r}."
                )
    X_train, _ = _load([(p, None) for p in train], size, with_masks=False)
    X_test, masks_test = _load(samples, size)
    y_test, defect_type = _labels(defect_types)
    if return_X_y:
        return X_train, X_test, y_test
    return Bunch(
        X_train=X_train,
        X_test=X_test,
        y_test=y_test,
        masks_test=masks_test,
        defect_type=defect_type,
        filenames=_filenames(p for p, _ in samples),
        filenames_train=_filenames(train),
        category=category if category is not None else folder.resolve().name,
    )


def load_mvtec_3d_rgb(root, category=None, *, split="test", resize=None):
    """Load the RGB images of one category of the MVTec 3D-AD data set.

    The layout is MVTec's: ``<category>/train/good/rgb/*.png``,
    ``<category>/validation/good/rgb/*.png`` (normal images held out for
    tuning) and ``<category>/test/<defect>/rgb/*.png``, with the mask of a
    test image at ``<category>/test/<defect>/gt/<same name>.png``. The point
    clouds (``xyz/``) are not read. Good test images get all-False masks;
    their ``gt/`` folder is not read.

    Parameters
    ----------
    root : str or path-like
        The folder that holds the category folders, or with
        ``category=None`` the category folder itself.
    category : str, default=None
        The category to load, such as ``"bagel"``.
    split : {"test", "validation"}, default="test"
        The images to evaluate on, returned as ``X_test`` and its companions:
        the test set, or the (all normal) validation set, in which case the
        test folder is not read at all, so that tuning never sees test data.
    resize : int or (int, int), default=None
        Resize every image to this (height, width), or to a square of this
        side for an int, with bicubic interpolation (masks with nearest
        neighbour). By default images keep their size.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        The keys of :func:`load_mvtec_ad`, ``X_train``, ``X_test``,
        ``y_test``, ``masks_test``, ``defect_type``, ``filenames``,
        ``filenames_train`` and ``category``, and:

        X_validation : ndarray of shape (n_validation, H, W, 3) or list
            The validation images; empty when the validation folder is
            absent (a (0, H, W, 3) array with ``resize``, else an empty list).
        filenames_validation : ndarray of shape (n_validation,)
            Path of each validation image.

    Raises
    ------
    FileNotFoundError
        If a required folder is missing.
    ValueError
        If a folder holds no images, a file cannot be read, a defective test
        image has no mask, a mask has no image, or a mask's size differs
        from its image's.
    """
    if split not in ("test", "validation"):
        raise ValueError(f'split must be "test" or "validation"; got {split!r}.')
    size = _check_resize(resize)
    folder = _category_folder(root, category)
    train = _list_images(folder / "train" / "good" / "rgb")
    validation_folder = folder / "validation" / "good" / "rgb"
    validation = (
        _list_images(validation_folder)
        if split == "validation" or validation_folder.is_dir()
        else []
    )
    X_train, _ = _load([(p, None) for p in train], size, with_masks=False)
    X_validation, masks_validation = _load([(p, None) for p in validation], size)
    if split == "test":
        samples, defect_types = _mvtec_test_samples(
            folder / "test",
            image_folder=lambda defect_folder: defect_folder / "rgb",
            mask_folder=lambda defect: folder / "test" / defect / "gt",
            mask_stem=attrgetter("stem"),
        )
        X_test, masks_test = _load(samples, size)
        test = [p for p, _ in samples]
    else:
        X_test, masks_test, test = X_validation, masks_validation, validation
        defect_types = ["good"] * len(validation)
    y_test, defect_type = _labels(defect_types)
    return Bunch(
        X_train=X_train,
        X_validation=X_validation,
        X_test=X_test,
        y_test=y_test,
        masks_test=masks_test,
        defect_type=defect_type,
        filenames=_filenames(test),
        filenames_train=_filenames(train),
        filenames_validation=_filenames(validation),
        category=category if category is not None else folder.resolve().name,
    )


def load_folder(normal_dir, anomalous_dir=None, mask_dir=None, *, resize=None, mask_suffix=""):
    """Load your own normal and, optionally, anomalous images from folders.

    Parameters
    ----------
    normal_dir : str or path-like
        Folder of normal images (png, jpg, jpeg, bmp, tif or tiff, any case).
    anomalous_dir : str or path-like, default=None
        Folder of anomalous images, if any.
    mask_dir : str or path-like, default=None
        Folder of defect masks for the anomalous images: the mask of
        ``name.ext`` is ``name{mask_suffix}`` with any image extension, and
        its nonzero pixels (in any colour channel) are defects. Every
        anomalous image needs a mask and every mask an anomalous image.
    resize : int or (int, int), default=None
        Resize every image to this (height, width), or to a square of this
        side for an int, with bicubic interpolation (masks with nearest
        neighbour). By default images keep their size.
    mask_suffix : str, default=""
        What mask names add to their image's name, such as ``"_mask"``.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With keys:

        X : ndarray of shape (n, H, W, 3) or list of ndarray
            The normal images, then the anomalous ones, uint8 RGB.
        y : ndarray of shape (n,)
            +1 for normal images, -1 for anomalous ones.
        masks : ndarray of shape (n, H, W), list of ndarray or None
            Boolean defect masks (all False for normal images), or None
            without ``mask_dir``.
        filenames : ndarray of shape (n,)
            Path of each image.

    Raises
    ------
    FileNotFoundError
        If a given folder does not exist.
    ValueError
        If an image folder holds no images, a file cannot be read, an
        anomalous image has no mask, a mask has no image, or a mask's size
        differs from its image's.

    Examples
    --------
    >>> from skanomaly.datasets import load_folder
    >>> data = load_folder("ok", "defects", resize=224)  # doctest: +SKIP
    >>> data.X.shape, set(data.y)  # doctest: +SKIP
    ((120, 224, 224, 3), {-1, 1})
    """
    size = _check_resize(resize)
    normal = _list_images(normal_dir)
    anomalous = _list_images(anomalous_dir) if anomalous_dir is not None else []
    if mask_dir is None:
        masks = [None] * len(anomalous)
    else:
        masks = _match_masks(
            anomalous,
            _list_images(mask_dir, allow_empty=True),
            lambda image: image.stem + mask_suffix,
            mask_dir,
        )
    samples = [(p, None) for p in normal] + list(zip(anomalous, masks))
    X, masks = _load(samples, size, with_masks=mask_dir is not None)
    return Bunch(
        X=X,
        y=np.repeat([1, -1], [len(normal), len(anomalous)]),
        masks=masks,
        filenames=_filenames(normal + anomalous),
    )


def load_elpv(*, cell_type="mono", resize=None, max_samples=None):
    """Load the ELPV solar cell electroluminescence images.

    These are 2,624 grayscale 300x300 images of mono- and polycrystalline
    solar cells, each rated by experts with a defect probability of 0, 1/3,
    2/3 or 1. They come from the ``elpv-dataset`` package
    (``pip install elpv-dataset``).

    Parameters
    ----------
    cell_type : {"mono", "poly", "all"}, default="mono"
        Which cells to load (1,074 mono, 1,550 poly).
    resize : int or (int, int), default=None
        Resize every image to this (height, width), or to a square of this
        side for an int, with bicubic interpolation.
    max_samples : int, default=None
        Load only the first this many cells of ``cell_type`` in the data
        set's order (which is not shuffled: the first cells are mostly
        defective).

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With keys:

        X : ndarray of shape (n, 300, 300, 3)
            The cells, uint8, gray replicated to RGB.
        y : ndarray of shape (n,)
            +1 for cells with defect probability 0, -1 for probability 1,
            and 0 for the uncertain ones (1/3 and 2/3), which scikit-learn
            metrics cannot use as they are: keep ``y != 0``, or threshold
            ``proba`` yourself.
        proba : ndarray of shape (n,)
            The defect probability of each cell.
        cell_type : ndarray of shape (n,)
            ``"mono"`` or ``"poly"``.
        filenames : ndarray of shape (n,)
            Path of each image.

    Raises
    ------
    ImportError
        If ``elpv-dataset`` is not installed.

    Examples
    --------
    >>> from skanomaly.datasets import load_elpv
    >>> data = load_elpv(max_samples=10)
    >>> data.X.shape
    (10, 300, 300, 3)
    """
    if cell_type not in ("mono", "poly", "all"):
        raise ValueError(f'cell_type must be "mono", "poly" or "all"; got {cell_type!r}.')
    size = _check_resize(resize)
    _check_max(max_samples, "max_samples")
    try:
        import elpv_dataset.utils
    except ImportError as exc:
        raise ImportError(
            "load_elpv needs the elpv-dataset package: pip install elpv-dataset"
        ) from exc
    # elpv_dataset.utils.load_dataset() decodes all 2,624 cells whatever is
    # asked for; reading its label file (its default argument) lets us decode
    # only the cells we return.
    labels = Path(elpv_dataset.utils.__file__).parent / "data" / "labels.csv"
    table = np.loadtxt(labels, dtype=str, ndmin=2)
    proba = table[:, 1].astype(float)
    types = table[:, 2]
    selected = np.arange(len(types)) if cell_type == "all" else np.flatnonzero(types == cell_type)
    selected = selected[:max_samples]
    paths = [labels.parent / name for name in table[selected, 0]]
    X, _ = _load([(p, None) for p in paths], size, with_masks=False)
    proba = proba[selected]
    return Bunch(
        X=X,
        y=np.select([proba == 0, proba == 1], [1, -1], 0),
        proba=proba,
        cell_type=types[selected],
        filenames=_filenames(paths),
    )


def _check_classes(classes):
    if classes is None:
        return _MAGNETIC_TILE_CLASSES
    if isinstance(classes, str):
        classes = [classes]
    canonical = {name.lower(): name for name in _MAGNETIC_TILE_CLASSES}
    unknown = [c for c in classes if str(c).lower() not in canonical]
    if unknown or not classes:
        raise ValueError(
            f"classes must name some of {', '.join(_MAGNETIC_TILE_CLASSES)}; "
            f"got {classes!r}."
        )
    wanted = {str(c).lower() for c in classes}
    return tuple(name for name in _MAGNETIC_TILE_CLASSES if name.lower() in wanted)


def load_magnetic_tile(root=None, *, resize=None, classes=None, max_per_class=None):
    """Load the magnetic tile surface defect data set (Huang et al., 2018).

    The layout is the authors': ``<root>/MT_<Class>/Imgs/<name>.jpg`` with
    its pixel mask ``<name>.png`` (0..255, defect at 128 and above) in the
    same folder. Class ``Free`` (952 images) is defect-free; ``Blowhole``
    (115), ``Break`` (85), ``Crack`` (57), ``Fray`` (32) and ``Uneven`` (103)
    are defective (4 Uneven masks are empty). The images are grayscale and
    of varying sizes (about 100 to 630 pixels a side), so without ``resize``
    they come as lists.

    Parameters
    ----------
    root : str or path-like, default=None
        The folder that holds the ``MT_*`` folders; by default
        ``magnetic_tile`` in :func:`shared_data_dir`.
    resize : int or (int, int), default=None
        Resize every image to this (height, width), or to a square of this
        side for an int, with bicubic interpolation (masks with nearest
        neighbour).
    classes : str or list of str, default=None
        The classes to load (any case), by default all six. They are
        returned in the order Free, Blowhole, Break, Crack, Fray, Uneven.
    max_per_class : int, default=None
        Load only the first this many images (by file name) of each class.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With keys:

        X : list of ndarray or ndarray of shape (n, H, W, 3)
            The images, uint8, gray replicated to RGB.
        y : ndarray of shape (n,)
            +1 for ``Free`` images, -1 for the others.
        masks : list of ndarray or ndarray of shape (n, H, W)
            Boolean defect masks.
        defect_type : ndarray of shape (n,)
            The class, lower case, with ``"good"`` for ``Free``.
        filenames : ndarray of shape (n,)
            Path of each image.

    Raises
    ------
    FileNotFoundError
        If ``root`` is None and there is no shared data folder, or a class
        folder is missing.
    ValueError
        If a file cannot be read, an image has no mask, a mask has no image,
        or a mask's size differs from its image's.

    Examples
    --------
    >>> from skanomaly.datasets import load_magnetic_tile
    >>> data = load_magnetic_tile(max_per_class=5, resize=224)  # doctest: +SKIP
    >>> data.X.shape  # doctest: +SKIP
    (30, 224, 224, 3)
    """
    size = _check_resize(resize)
    classes = _check_classes(classes)
    _check_max(max_per_class, "max_per_class")
    root = _data_root(root, "magnetic_tile")
    samples, defect_types = [], []
    for name in classes:
        folder = root / f"MT_{name}" / "Imgs"
        files = _list_images(folder)
        images = [p for p in files if p.suffix.lower() != ".png"]
        masks = [p for p in files if p.suffix.lower() == ".png"]
        pairs = list(zip(images, _match_masks(images, masks, attrgetter("stem"), folder)))
        pairs = pairs[:max_per_class]
        samples += pairs
        defect_types += ["good" if name == "Free" else name.lower()] * len(pairs)
    X, masks = _load(samples, size, threshold=127)
    y, defect_type = _labels(defect_types)
    return Bunch(
        X=X,
        y=y,
        masks=masks,
        defect_type=defect_type,
        filenames=_filenames(p for p, _ in samples),
    )


def load_cookies(root=None, *, resize=None, split="train"):
    """Load the cookie crack images (an Amazon Lookout for Vision sample).

    RGB photographs, 768 pixels high and 576 wide, of cookies with and
    without cracks. ``training-images/`` holds 31 ``normal-*.jpg`` and 32
    ``anomaly-*.jpg`` images, with crack masks ``mask-images/anomaly-*.png``
    (green on black: any non-black pixel is a defect); ``test-images/``
    holds 14 ``test-normal-*.jpg`` and 8 ``test-anomaly-*.jpg`` images
    without masks.

    Parameters
    ----------
    root : str or path-like, default=None
        The folder that holds ``training-images/``; by default ``cookies``
        in :func:`shared_data_dir`.
    resize : int or (int, int), default=None
        Resize every image to this (height, width), or to a square of this
        side for an int, with bicubic interpolation (masks with nearest
        neighbour).
    split : {"train", "test"}, default="train"
        ``"train"`` loads ``training-images/`` with masks, ``"test"`` loads
        ``test-images/``, which have none.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With keys:

        X : ndarray of shape (n, 768, 576, 3)
            The images, uint8 RGB, in order of file name.
        y : ndarray of shape (n,)
            +1 for ``normal`` images, -1 for ``anomaly`` ones.
        masks : ndarray of shape (n, 768, 576) or None
            Boolean crack masks (all False for normal images); None for
            the test split.
        defect_type : ndarray of shape (n,)
            ``"good"`` or ``"crack"``.
        filenames : ndarray of shape (n,)
            Path of each image.

    Raises
    ------
    FileNotFoundError
        If ``root`` is None and there is no shared data folder, or a folder
        is missing.
    ValueError
        If an image name starts with neither ``normal-`` nor ``anomaly-``
        (after ``test-``), a file cannot be read, an anomalous training image
        has no mask, or a mask has no image.
    """
    if split not in ("train", "test"):
        raise ValueError(f'split must be "train" or "test"; got {split!r}.')
    size = _check_resize(resize)
    root = _data_root(root, "cookies")
    images = _list_images(root / ("training-images" if split == "train" else "test-images"))
    labels = []
    for image in images:
        match = _COOKIE_NAME.match(image.name)
        if match is None:
            raise ValueError(
                f"Cannot tell whether {str(image)!r} is normal or anomalous: cookie "
                'image names start with "normal-" or "anomaly-" (after "test-").'
            )
        labels.append(match.group(1))
    anomalous = [p for p, label in zip(images, labels) if label == "anomaly"]
    if split == "train":
        mask_folder = root / "mask-images"
        masks = _match_masks(anomalous, _list_images(mask_folder), attrgetter("stem"), mask_folder)
        mask_of = dict(zip(anomalous, masks))
        samples = [(p, mask_of.get(p)) for p in images]
    else:
        samples = [(p, None) for p in images]
    X, masks = _load(samples, size, with_masks=split == "train")
    y = np.where(np.array(labels) == "normal", 1, -1)
    return Bunch(
        X=X,
        y=y,
        masks=masks,
        defect_type=np.where(y == 1, "good", "crack"),
        filenames=_filenames(images),
    )
