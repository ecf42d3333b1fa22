"""The MVTec data sets: MVTec AD, and the RGB images of MVTec 3D-AD.

Both share one layout: normal training images in ``<category>/train/good``,
test images in ``<category>/test/<defect>`` and a mask folder per defect
type, which ``_test_samples`` walks for both.
"""

from operator import attrgetter
from pathlib import Path

from sklearn.utils import Bunch

from .._compat import validate_params
from .._files import check_folder
from ._common import (
    PATH,
    check_resize,
    filenames,
    images_in,
    load_samples,
    match_masks,
    outlier_labels,
    subfolders,
)

__all__ = ["load_mvtec_3d_rgb", "load_mvtec_ad"]


def _category_folder(root, category, marker="train"):
    """The folder of ``category`` in ``root`` (``root`` itself if None, which
    must then hold the ``marker`` folder of a category)."""
    folder = check_folder(Path(root) if category is None else Path(root) / category, "Data folder")
    if category is None and not (folder / marker).is_dir():
        raise FileNotFoundError(
            f"Folder {str(folder)!r} has no {marker}/ folder; if it holds one folder "
            "per category, pass category=."
        )
    return folder


def _test_samples(test_folder, image_folder, mask_folder, mask_stem):
    """``(image, mask or None)`` pairs and the defect type of each test image.

    ``image_folder(defect_folder)`` and ``mask_folder(defect)`` locate the
    images and masks of one defect type.
    """
    samples, defect_types = [], []
    for defect in subfolders(test_folder):
        images = images_in(image_folder(test_folder / defect))
        if defect == "good":
            masks = [None] * len(images)
        else:
            folder = mask_folder(defect)
            # A missing mask folder is reported as the first image it lacks.
            mask_files = images_in(folder, allow_empty=True) if folder.is_dir() else []
            masks = match_masks(images, mask_files, mask_stem, folder)
        samples += zip(images, masks, strict=True)
        defect_types += [defect] * len(images)
    return samples, defect_types


@validate_params(
    {"root": PATH, "category": [str, None], "return_X_y": ["boolean"], "train": ["boolean"]},
    prefer_skip_nested_validation=True,
)
def load_mvtec_ad(root, category=None, *, resize=None, return_X_y=False, train=True):
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
    train : bool, default=True
        Read the normal training images. With False, ``train/`` is neither
        read nor required, and ``X_train`` and ``filenames_train`` are None:
        evaluating a fitted model needs the test split alone.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With keys:

        X_train : ndarray of shape (n_train, H, W, 3) or list of ndarray
            The normal training images, uint8 RGB; None with ``train=False``.
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
            Path of each training image; None with ``train=False``.
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
    TypeError
        If ``root`` is not a str or path-like, or ``category`` neither None
        nor a str.

    Examples
    --------
    >>> from skanomaly.datasets import load_mvtec_ad
    >>> data = load_mvtec_ad("mvtec_ad", "bottle", resize=256)  # doctest: +SKIP
    >>> data.X_train.shape  # doctest: +SKIP
    (209, 256, 256, 3)
    """
    size = check_resize(resize)
    folder = _category_folder(root, category, "train" if train else "test")
    train_files = images_in(folder / "train" / "good") if train else None
    ground_truth = folder / "ground_truth"
    samples, defect_types = _test_samples(
        folder / "test",
        image_folder=lambda defect_folder: defect_folder,
        mask_folder=lambda defect: ground_truth / defect,
        mask_stem=lambda image: image.stem + "_mask",
    )
    if ground_truth.is_dir():
        for defect in sorted(
            set(subfolders(ground_truth, allow_empty=True)) - set(defect_types) - {"good"}
        ):
            stray = images_in(ground_truth / defect, allow_empty=True)
            if stray:
                raise ValueError(
                    f"Mask file {str(stray[0])!r} has no image: there is no test "
                    f"folder {str(folder / 'test' / defect)!r}."
                )
    X_train = None
    if train:
        X_train, _ = load_samples([(p, None) for p in train_files], size, with_masks=False)
    X_test, masks_test = load_samples(samples, size)
    y_test, defect_type = outlier_labels(defect_types)
    if return_X_y:
        return X_train, X_test, y_test
    return Bunch(
        X_train=X_train,
        X_test=X_test,
        y_test=y_test,
        masks_test=masks_test,
        defect_type=defect_type,
        filenames=filenames(p for p, _ in samples),
        filenames_train=filenames(train_files) if train else None,
        category=category if category is not None else folder.resolve().name,
    )


@validate_params({"root": PATH, "category": [str, None]}, prefer_skip_nested_validation=True)
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
    TypeError
        If ``root`` is not a str or path-like, or ``category`` neither None
        nor a str.
    """
    if split not in ("test", "validation"):
        raise ValueError(f'split must be "test" or "validation"; got {split!r}.')
    size = check_resize(resize)
    folder = _category_folder(root, category)
    train = images_in(folder / "train" / "good" / "rgb")
    validation_folder = folder / "validation" / "good" / "rgb"
    validation = (
        images_in(validation_folder) if split == "validation" or validation_folder.is_dir() else []
    )
    X_train, _ = load_samples([(p, None) for p in train], size, with_masks=False)
    X_validation, masks_validation = load_samples([(p, None) for p in validation], size)
    if split == "test":
        samples, defect_types = _test_samples(
            folder / "test",
            image_folder=lambda defect_folder: defect_folder / "rgb",
            mask_folder=lambda defect: folder / "test" / defect / "gt",
            mask_stem=attrgetter("stem"),
        )
        X_test, masks_test = load_samples(samples, size)
        test = [p for p, _ in samples]
    else:
        X_test, masks_test, test = X_validation, masks_validation, validation
        defect_types = ["good"] * len(validation)
    y_test, defect_type = outlier_labels(defect_types)
    return Bunch(
        X_train=X_train,
        X_validation=X_validation,
        X_test=X_test,
        y_test=y_test,
        masks_test=masks_test,
        defect_type=defect_type,
        filenames=filenames(test),
        filenames_train=filenames(train),
        filenames_validation=filenames(validation),
        category=category if category is not None else folder.resolve().name,
    )
