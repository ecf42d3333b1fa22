"""Scorers that plug the metrics into scikit-learn's model selection."""

import warnings

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.pipeline import Pipeline

from .._map_checks import check_maps, check_masks, missing_class
from .._resize import resize_bilinear
from ._image import image_roc_auc, masks_to_labels
from ._pixel import pixel_roc_auc, pro_score

__all__ = [
    "make_localization_scorer",
    "masks_image_roc_auc_scorer",
    "pixel_roc_auc_scorer",
    "pro_scorer",
]


def _explain(estimator, X, n_masks):
    if isinstance(estimator, Pipeline):
        # The maps come from the last step, of X as the steps before it
        # transform X (such as a crop), as its scores do.
        X = estimator[:-1].transform(X) if len(estimator) > 1 else X
        estimator = estimator[-1]
    if not hasattr(estimator, "explain"):
        raise TypeError(
            f"{type(estimator).__name__} has no explain method; localization "
            "scorers need an estimator that returns anomaly maps."
        )
    maps = estimator.explain(X)
    maps = check_maps(maps, name="estimator.explain(X)")
    if len(maps) != n_masks:
        raise ValueError(f"estimator.explain(X) returned {len(maps)} maps for {n_masks} masks.")
    return maps


def _stack_if_uniform(arrays):
    """Pass same-size images on as one array, mixed sizes as a list."""
    if all(array.shape == arrays[0].shape for array in arrays):
        return np.stack(arrays)
    return arrays


class _LocalizationScorer:
    """Callable ``scorer(estimator, X, y)`` for a metric of masks and maps."""

    def __init__(self, metric, kwargs):
        self._metric = metric
        self._kwargs = kwargs
        self._name = getattr(metric, "__name__", repr(metric))

    def __call__(self, estimator, X, y=None):
        if y is None:
            raise ValueError(
                "Localization scorers need the ground-truth masks as y, e.g. "
                "GridSearchCV(...).fit(X, masks)."
            )
        masks = check_masks(y, name="y")
        maps = _explain(estimator, X, len(masks))
        maps = [
            anomaly_map
            if anomaly_map.shape == mask.shape
            else resize_bilinear(anomaly_map, mask.shape)
            for mask, anomaly_map in zip(masks, maps, strict=True)
        ]
        missing = missing_class(masks)
        if missing is not None:
            warnings.warn(
                f"The masks of this split contain {missing}, so "
                f"{self._name} is undefined; returning nan.",
                UndefinedMetricWarning,
                stacklevel=2,
            )
            return np.nan
        return float(
            self._metric(_stack_if_uniform(masks), _stack_if_uniform(maps), **self._kwargs)
        )

    def __repr__(self):
        arguments = "".join(f", {key}={value!r}" for key, value in self._kwargs.items())
        return f"make_localization_scorer({self._name}{arguments})"


def make_localization_scorer(metric, **kwargs):
    """Make a scorer that compares ``estimator.explain(X)`` with masks ``y``.

    Parameters
    ----------
    metric : {"pixel_roc_auc", "pro"} or callable
        The metric, greater is better: :func:`pixel_roc_auc`,
        :func:`pro_score`, or any ``metric(masks, maps, **kwargs) -> float``
        taking masks and maps as ``(n, H, W)`` arrays (as lists of ``(H, W)``
        arrays if the images differ in size).
    **kwargs
        Passed on to ``metric``, e.g. ``max_fpr`` for ``"pro"``.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y) -> float`` for the ``scoring`` argument of
        :class:`~sklearn.model_selection.GridSearchCV` and
        :func:`~sklearn.model_selection.cross_validate`, where ``y`` holds
        the ground-truth masks ``(n, H, W)`` (True or 1 = anomalous) of the
        images ``X``. It calls ``estimator.explain(X)`` (for a
        :class:`~sklearn.pipeline.Pipeline`, its last step's ``explain`` of
        ``X`` transformed by the steps before it); maps whose size
        differs from their mask's are resized to it by bilinear
        interpolation (pixel centres aligned, no anti-aliasing). If the
        masks of a split hold no anomalous pixel, or no normal one, the
        metric is undefined: the scorer warns with
        :class:`~sklearn.exceptions.UndefinedMetricWarning` and returns nan,
        which the search ranks last.

    Examples
    --------
    >>> from skanomaly.metrics import make_localization_scorer
    >>> make_localization_scorer("pro", max_fpr=0.05)
    make_localization_scorer(pro_score, max_fpr=0.05)
    """
    metrics = {"pixel_roc_auc": pixel_roc_auc, "pro": pro_score}
    if isinstance(metric, str):
        if metric not in metrics:
            raise ValueError(
                f"metric must be one of {sorted(metrics)} or a callable; got {metric!r}."
            )
        metric = metrics[metric]
    elif not callable(metric):
        raise TypeError(f"metric must be a string or a callable; got {metric!r}.")
    return _LocalizationScorer(metric, kwargs)


pixel_roc_auc_scorer = make_localization_scorer(pixel_roc_auc)
pro_scorer = make_localization_scorer(pro_score)


def masks_image_roc_auc_scorer(estimator, X, y):
    """Image ROC AUC of ``estimator.score_samples(X)``, labels from masks ``y``.

    A scorer for searches where ``y`` holds ground-truth masks, to rank the
    detection of anomalous images next to :data:`pro_scorer` and
    :data:`pixel_roc_auc_scorer`: an image is anomalous (-1) if its mask has
    any True pixel, normal (+1) otherwise (see :func:`masks_to_labels`).

    Parameters
    ----------
    estimator : estimator
        Fitted detector with ``score_samples`` (higher = more normal).
    X : array-like
        Images accepted by the estimator.
    y : array-like of shape (n_images, H, W) or list of (H, W) arrays
        Ground-truth masks of the images.

    Returns
    -------
    score : float
        Image-level ROC AUC, or nan with an
        :class:`~sklearn.exceptions.UndefinedMetricWarning` if the split
        holds only normal or only anomalous images.

    Examples
    --------
    Use it with the localization scorers in one search, e.g.
    ``GridSearchCV(detector, grid, scoring=scoring, refit="pro").fit(X, masks)``:

    >>> from skanomaly.metrics import masks_image_roc_auc_scorer, pro_scorer
    >>> scoring = {"pro": pro_scorer, "image_roc_auc": masks_image_roc_auc_scorer}
    """
    if y is None:
        raise ValueError("masks_image_roc_auc_scorer needs the ground-truth masks as y.")
    labels = masks_to_labels(y)
    if np.unique(labels).size < 2:
        kind = "normal" if labels[0] == 1 else "anomalous"
        warnings.warn(
            f"All images of this split are {kind}, so image ROC AUC is undefined; returning nan.",
            UndefinedMetricWarning,
            stacklevel=2,
        )
        return np.nan
    return image_roc_auc(labels, estimator.score_samples(X))
