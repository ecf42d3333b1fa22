"""The cookie crack images, an Amazon Lookout for Vision sample."""

import re
from operator import attrgetter

import numpy as np
from sklearn.utils import Bunch

from .._compat import validate_params
from ._common import (
    OPTIONAL_PATH,
    check_resize,
    data_root,
    filenames,
    images_in,
    load_samples,
    match_masks,
)

__all__ = ["load_cookies"]

# "normal-3.jpg", "test-anomaly-12.jpg": the label is in the name.
_NAME = re.compile(r"(?:test-)?(normal|anomaly)-")


@validate_params({"root": OPTIONAL_PATH}, prefer_skip_nested_validation=True)
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
    TypeError
        If ``root`` is not None, a str or path-like.
    """
    if split not in ("train", "test"):
        raise ValueError(f'split must be "train" or "test"; got {split!r}.')
    size = check_resize(resize)
    root = data_root(root, "cookies")
    images = images_in(root / ("training-images" if split == "train" else "test-images"))
    labels = []
    for image in images:
        match = _NAME.match(image.name)
        if match is None:
            raise ValueError(
                f"Cannot tell whether {str(image)!r} is normal or anomalous: cookie "
                'image names start with "normal-" or "anomaly-" (after "test-").'
            )
        labels.append(match.group(1))
    anomalous = [p for p, label in zip(images, labels, strict=True) if label == "anomaly"]
    if split == "train":
        mask_folder = root / "mask-images"
        masks = match_masks(anomalous, images_in(mask_folder), attrgetter("stem"), mask_folder)
        mask_of = dict(zip(anomalous, masks, strict=True))
        samples = [(p, mask_of.get(p)) for p in images]
    else:
        samples = [(p, None) for p in images]
    X, masks = load_samples(samples, size, with_masks=split == "train")
    y = np.where(np.array(labels) == "normal", 1, -1)
    return Bunch(
        X=X,
        y=y,
        masks=masks,
        defect_type=np.where(y == 1, "good", "crack"),
        filenames=filenames(images),
    )
