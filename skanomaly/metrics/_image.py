"""Image-level metrics: one score or label per image."""

import numbers

import numpy as np
from sklearn.metrics import roc_auc_score

from .._map_checks import check_maps, check_masks

__all__ = ["image_roc_auc", "image_scores_from_maps", "masks_to_labels"]


def masks_to_labels(masks):
    """Image labels from ground-truth masks: -1 if any pixel is anomalous.

    Parameters
    ----------
    masks : array-like of shape (n_images, H, W) or list of (H, W) arrays
        Ground truth, True (or 1) where a pixel is anomalous.

    Returns
    -------
    y : ndarray of shape (n_images,)
        ``+1`` for images without any anomalous pixel (normal), ``-1`` for
        the others, following the scikit-learn outlier convention.

    Examples
    --------
    >>> import numpy as np
    >>> from skanomaly.metrics import masks_to_labels
    >>> masks = np.zeros((2, 3, 3), dtype=bool)
    >>> masks[1, 1, 1] = True
    >>> masks_to_labels(masks)
    array([ 1, -1])
    """
    masks = check_masks(masks)
    return np.array([-1 if mask.any() else 1 for mask in masks])


def image_scores_from_maps(maps, reduction="max"):
    """One anomaly score per image, reduced from its anomaly map.

    Parameters
    ----------
    maps : array-like of shape (n_images, H, W) or list of (H, W) arrays
        Anomaly maps, higher = more anomalous.
    reduction : {"max", "mean"} or float, default="max"
        How a map becomes one number: its maximum, its mean, or, for a
        float ``q`` in [0, 1], its ``q``-quantile (``0.99`` is a maximum
        that ignores the hottest 1% of pixels, hence isolated noise).

    Returns
    -------
    scores : ndarray of shape (n_images,)
        Anomaly score per image, higher = more anomalous (the opposite sign
        convention to ``score_samples``).

    Examples
    --------
    >>> import numpy as np
    >>> from skanomaly.metrics import image_scores_from_maps
    >>> maps = np.array([[[0.0, 1.0], [2.0, 3.0]]])
    >>> image_scores_from_maps(maps)
    array([3.])
    >>> image_scores_from_maps(maps, reduction="mean")
    array([1.5])
    >>> image_scores_from_maps(maps, reduction=0.5)
    array([1.5])
    """
    if isinstance(reduction, str):
        reducers = {"max": np.max, "mean": np.mean}
        if reduction not in reducers:
            raise ValueError(
                f"reduction must be 'max', 'mean' or a quantile in [0, 1]; got {reduction!r}."
            )
        reduce = reducers[reduction]
    elif (
        isinstance(reduction, numbers.Real)
        and not isinstance(reduction, bool)
        and 0 <= reduction <= 1
    ):

        def reduce(anomaly_map):
            return np.quantile(anomaly_map, reduction)
    else:
        raise ValueError(
            f"reduction must be 'max', 'mean' or a quantile in [0, 1]; got {reduction!r}."
        )
    maps = check_maps(maps)
    for index, anomaly_map in enumerate(maps):
        if anomaly_map.size == 0:
            raise ValueError(f"maps[{index}] has no pixels.")
    return np.array([float(reduce(anomaly_map)) for anomaly_map in maps])


def image_roc_auc(y, scores):
    """Image-level ROC AUC for outlier labels and ``score_samples`` scores.

    Parameters
    ----------
    y : array-like of shape (n_images,)
        ``+1`` for normal images, ``-1`` for anomalous ones.
    scores : array-like of shape (n_images,)
        Normality scores as returned by ``score_samples``: higher = more
        normal. For anomaly scores (higher = more anomalous, e.g. from
        :func:`image_scores_from_maps`) pass ``-scores``.

    Returns
    -------
    score : float
        ROC AUC in [0, 1]; 1 when every normal image scores above every
        anomalous one.

    Examples
    --------
    >>> from skanomaly.metrics import image_roc_auc
    >>> image_roc_auc([1, 1, -1], [0.9, 0.8, 0.1])
    1.0
    """
    y = np.asarray(y)
    scores = np.asarray(scores)
    if y.ndim != 1 or scores.ndim != 1:
        raise ValueError(f"y and scores must be 1-D; got shapes {y.shape} and {scores.shape}.")
    if y.size == 0:
        raise ValueError("y is empty.")
    if y.shape != scores.shape:
        raise ValueError(f"y has {y.size} labels but scores has {scores.size} values.")
    if y.dtype.kind not in "iuf" or not np.isin(y, (-1, 1)).all():
        raise ValueError(
            "y must hold +1 (normal) and -1 (anomalous) labels; got values "
            f"{np.unique(y)[:6].tolist()}."
        )
    if np.unique(y).size < 2:
        raise ValueError(
            "y holds only one class; image ROC AUC needs both normal (+1) and "
            "anomalous (-1) images."
        )
    if scores.dtype.kind not in "iuf":
        raise TypeError(f"scores has dtype {scores.dtype}; scores must be real numbers.")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contains NaN or infinity.")
    return float(roc_auc_score(y, scores))
