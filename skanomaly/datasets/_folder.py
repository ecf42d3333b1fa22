"""Your own images: normal and anomalous folders, with optional masks."""

import numpy as np
from sklearn.utils import Bunch

from .._compat import validate_params
from ._common import (
    OPTIONAL_PATH,
    PATH,
    check_resize,
    filenames,
    images_in,
    load_samples,
    match_masks,
)

__all__ = ["load_folder"]


@validate_params(
    {
        "normal_dir": PATH,
        "anomalous_dir": OPTIONAL_PATH,
        "mask_dir": OPTIONAL_PATH,
        "mask_suffix": [str],
    },
    prefer_skip_nested_validation=True,
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
        its nonzero pixels (in any colour channel; above mid-grey in a JPEG
        file, whose compression leaves faint values around the defect) are
        defects. Every anomalous image needs a mask and every mask an
        anomalous image.
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
    TypeError
        If a folder is not a str or path-like (or None where that is the
        default), or ``mask_suffix`` is not a str.

    Examples
    --------
    >>> from skanomaly.datasets import load_folder
    >>> data = load_folder("ok", "defects", resize=224)  # doctest: +SKIP
    >>> data.X.shape, set(data.y)  # doctest: +SKIP
    ((120, 224, 224, 3), {-1, 1})
    """
    size = check_resize(resize)
    normal = images_in(normal_dir)
    anomalous = images_in(anomalous_dir) if anomalous_dir is not None else []
    if mask_dir is None:
        masks = [None] * len(anomalous)
    else:
        masks = match_masks(
            anomalous,
            images_in(mask_dir, allow_empty=True),
            lambda image: image.stem + mask_suffix,
            mask_dir,
        )
    samples = [(p, None) for p in normal] + list(zip(anomalous, masks, strict=True))
    X, masks = load_samples(samples, size, with_masks=mask_dir is not None)
    return Bunch(
        X=X,
        y=np.repeat([1, -1], [len(normal), len(anomalous)]),
        masks=masks,
        filenames=filenames(normal + anomalous),
    )
