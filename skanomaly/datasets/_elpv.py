"""The ELPV solar cells, read from the ``elpv-dataset`` package."""

from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from ._common import check_max, check_resize, filenames, load_samples

__all__ = ["load_elpv"]


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
    size = check_resize(resize)
    check_max(max_samples, "max_samples")
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
    X, _ = load_samples([(p, None) for p in paths], size, with_masks=False)
    proba = proba[selected]
    return Bunch(
        X=X,
        y=np.select([proba == 0, proba == 1], [1, -1], 0),
        proba=proba,
        cell_type=types[selected],
        filenames=filenames(paths),
    )
