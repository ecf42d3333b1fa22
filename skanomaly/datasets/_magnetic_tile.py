"""The magnetic tile surface defects (Huang et al., 2018)."""

from collections.abc import Iterable
from operator import attrgetter

from sklearn.utils import Bunch

from .._compat import validate_params
from ._common import (
    OPTIONAL_PATH,
    check_max,
    check_resize,
    data_root,
    filenames,
    images_in,
    load_samples,
    match_masks,
    outlier_labels,
)

__all__ = ["load_magnetic_tile"]

_CLASSES = ("Free", "Blowhole", "Break", "Crack", "Fray", "Uneven")


def _check_classes(classes):
    """The classes named in ``classes`` (any case), in the data set's order."""
    if classes is None:
        return _CLASSES
    if isinstance(classes, str):
        classes = [classes]
    if not isinstance(classes, Iterable):
        raise ValueError(f"classes must name some of {', '.join(_CLASSES)}; got {classes!r}.")
    # A list, tuple or array of names alike.
    classes = list(classes)
    canonical = {name.lower(): name for name in _CLASSES}
    unknown = [c for c in classes if str(c).lower() not in canonical]
    if unknown or not classes:
        raise ValueError(f"classes must name some of {', '.join(_CLASSES)}; got {classes!r}.")
    wanted = {str(c).lower() for c in classes}
    return tuple(name for name in _CLASSES if name.lower() in wanted)


@validate_params({"root": OPTIONAL_PATH}, prefer_skip_nested_validation=True)
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
    TypeError
        If ``root`` is not None, a str or path-like.

    Examples
    --------
    >>> from skanomaly.datasets import load_magnetic_tile
    >>> data = load_magnetic_tile(max_per_class=5, resize=224)  # doctest: +SKIP
    >>> data.X.shape  # doctest: +SKIP
    (30, 224, 224, 3)
    """
    size = check_resize(resize)
    classes = _check_classes(classes)
    check_max(max_per_class, "max_per_class")
    root = data_root(root, "magnetic_tile")
    samples, defect_types = [], []
    for name in classes:
        folder = root / f"MT_{name}" / "Imgs"
        files = images_in(folder)
        images = [p for p in files if p.suffix.lower() != ".png"]
        masks = [p for p in files if p.suffix.lower() == ".png"]
        masks = match_masks(images, masks, attrgetter("stem"), folder)
        pairs = list(zip(images, masks, strict=True))[:max_per_class]
        samples += pairs
        defect_types += ["good" if name == "Free" else name.lower()] * len(pairs)
    X, masks = load_samples(samples, size, threshold=127)
    y, defect_type = outlier_labels(defect_types)
    return Bunch(
        X=X,
        y=y,
        masks=masks,
        defect_type=defect_type,
        filenames=filenames(p for p, _ in samples),
    )
