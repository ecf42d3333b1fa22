"""Metrics and scorers for anomaly detection and localization.

Two families of metrics live here:

* image level: ROC AUC of one score per image against image labels, with
  the scikit-learn outlier convention (``+1`` normal, ``-1`` anomalous, and
  ``score_samples`` higher for more normal images);
* pixel level: ROC AUC over all pixels pooled, and the area under the
  per-region overlap curve (AU-PRO), both as in the MVTec AD benchmark, for
  anomaly maps where higher means more anomalous.

The scorers (:data:`pixel_roc_auc_scorer`, :data:`pro_scorer`,
:func:`masks_image_roc_auc_scorer`) plug those metrics into
:class:`~sklearn.model_selection.GridSearchCV`, with the ground-truth masks
passed as ``y``.
"""

import numbers
import warnings

import numpy as np
from scipy import ndimage
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import roc_auc_score

__all__ = [
    "image_roc_auc",
    "image_scores_from_maps",
    "make_localization_scorer",
    "masks_image_roc_auc_scorer",
    "masks_to_labels",
    "pixel_roc_auc",
    "pixel_roc_auc_scorer",
    "pro_score",
    "pro_scorer",
]

# Connected components of a ground-truth mask use 8-connectivity, as the
# official MVTec AD evaluation code does (``label(gt, np.ones((3, 3)))``):
# pixels touching only at a corner belong to the same defect region.
_REGION_STRUCTURE = np.ones((3, 3), dtype=bool)


def _as_image_list(images, name):
    """Read a stack ``(n, H, W)`` or a list of ``(H, W)`` arrays as a list."""
    if images is None:
        raise ValueError(f"{name} is None.")
    if isinstance(images, (list, tuple)):
        arrays = [np.asarray(image) for image in images]
        for index, array in enumerate(arrays):
            if array.ndim != 2:
                raise ValueError(
                    f"{name}[{index}] must be a 2-D (H, W) array; got shape {array.shape}."
                )
    else:
        stack = np.asarray(images)
        if stack.ndim != 3:
            raise ValueError(
                f"{name} must be an (n_images, H, W) array or a list of (H, W) "
                f"arrays; got shape {stack.shape}."
            )
        arrays = list(stack)
    if not arrays:
        raise ValueError(f"{name} is empty.")
    if not any(array.size for array in arrays):
        raise ValueError(f"{name} has no pixels.")
    return arrays


def _check_mask(mask, where):
    """Return ``mask`` as a bool array, accepting bool or 0/1 numbers."""
    if mask.dtype == bool:
        return mask
    if mask.dtype.kind not in "uif":
        raise TypeError(
            f"{where} has dtype {mask.dtype}; masks must be boolean-like "
            "(bool, or numbers that are 0 or 1)."
        )
    is_one = mask == 1
    if not np.all(is_one | (mask == 0)):
        values = np.unique(mask)
        hint = ""
        if np.isin(values, (0, 255)).all():
            hint = " (8-bit masks: pass mask > 0 or divide by 255)"
        shown = ", ".join(f"{value:g}" for value in values[:6])
        raise ValueError(
            f"{where} must be boolean-like with values 0 and 1; found values "
            f"{{{shown}{', ...' if values.size > 6 else ''}}}{hint}."
        )
    return is_one


def _check_map(anomaly_map, where):
    """Return ``anomaly_map`` as a finite float array."""
    if anomaly_map.dtype.kind not in "biuf":
        raise TypeError(
            f"{where} has dtype {anomaly_map.dtype}; anomaly maps must be real numbers."
        )
    if anomaly_map.dtype.kind != "f":
        anomaly_map = anomaly_map.astype(np.float64)
    if not np.all(np.isfinite(anomaly_map)):
        raise ValueError(f"{where} contains NaN or infinity.")
    return anomaly_map


def _check_masks(masks, name="masks"):
    masks = _as_image_list(masks, name)
    return [_check_mask(mask, f"{name}[{index}]") for index, mask in enumerate(masks)]


def _check_maps(maps, name="maps"):
    maps = _as_image_list(maps, name)
    return [_check_map(anomaly_map, f"{name}[{index}]") for index, anomaly_map in enumerate(maps)]


def _check_masks_and_maps(masks, maps):
    masks = _check_masks(masks)
    maps = _check_maps(maps)
    if len(masks) != len(maps):
        raise ValueError(f"Got {len(masks)} masks but {len(maps)} anomaly maps.")
    for index, (mask, anomaly_map) in enumerate(zip(masks, maps)):
        if mask.shape != anomaly_map.shape:
            raise ValueError(
                f"masks[{index}] has shape {mask.shape} but maps[{index}] has "
                f"shape {anomaly_map.shape}; they must match pixel for pixel."
            )
    return masks, maps


def _missing_class(masks):
    """Describe which pixel class ``masks`` lack, or return None."""
    n_anomalous = sum(int(np.count_nonzero(mask)) for mask in masks)
    n_pixels = sum(mask.size for mask in masks)
    if n_anomalous == 0:
        return "no anomalous (True) pixel"
    if n_anomalous == n_pixels:
        return "no normal (False) pixel"
    return None


def _require_both_classes(masks, metric):
    missing = _missing_class(masks)
    if missing is not None:
        raise ValueError(
            f"The masks contain {missing}; {metric} needs both anomalous and normal pixels."
        )


def _linear_taps(n_in, n_out):
    """Source indices and weights of 1-D linear resampling from n_in to n_out."""
    source = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    low = np.minimum(source.astype(np.intp), n_in - 1)
    # Past the last pixel centre ``high == low``: the edge value is repeated.
    high = np.minimum(low + 1, n_in - 1)
    return low, high, source - low


def _resize_bilinear(array, shape):
    """Resize a 2-D array to ``shape`` by bilinear interpolation.

    Same result as ``torch.nn.functional.interpolate(..., mode="bilinear",
    align_corners=False)``: pixel centres are aligned and there is no
    anti-aliasing, so a downsized map keeps its peaks as sharp as the
    sampling allows.
    """
    array = np.asarray(array, dtype=np.float64)
    low, high, weight = _linear_taps(array.shape[0], shape[0])
    array = array[low] * (1 - weight)[:, np.newaxis] + array[high] * weight[:, np.newaxis]
    low, high, weight = _linear_taps(array.shape[1], shape[1])
    return array[:, low] * (1 - weight) + array[:, high] * weight


def pixel_roc_auc(masks, maps):
    """ROC AUC of anomaly maps against ground-truth masks, all pixels pooled.

    Every pixel of every image is one sample, as in the MVTec AD benchmark,
    so large defects and large images weigh more than small ones.

    Parameters
    ----------
    masks : array-like of shape (n_images, H, W) or list of (H, W) arrays
        Ground truth, True (or 1) where a pixel is anomalous. Images in a
        list may have different sizes.
    maps : array-like of shape (n_images, H, W) or list of (H, W) arrays
        Anomaly maps, higher = more anomalous, with the same shapes as
        ``masks``.

    Returns
    -------
    score : float
        Pixel-level ROC AUC in [0, 1].

    Raises
    ------
    ValueError
        If shapes differ, a map holds NaN or infinity, a mask is not
        boolean-like, or the masks lack anomalous or normal pixels.

    Notes
    -----
    The pixels are raveled into one vector for
    :func:`sklearn.metrics.roc_auc_score`, which sorts them: memory is a few
    tens of bytes per pixel (about 3 GB for the whole MVTec AD test set at
    256x256). Pass float32 maps to keep it at the low end.

    Examples
    --------
    >>> import numpy as np
    >>> from skanomaly.metrics import pixel_roc_auc
    >>> masks = np.zeros((1, 2, 2), dtype=bool)
    >>> masks[0, 0, 0] = True
    >>> maps = np.array([[[0.9, 0.2], [0.1, 0.4]]])
    >>> pixel_roc_auc(masks, maps)
    1.0
    """
    masks, maps = _check_masks_and_maps(masks, maps)
    _require_both_classes(masks, "pixel ROC AUC")
    y_true = np.concatenate([mask.ravel() for mask in masks])
    y_score = np.concatenate([anomaly_map.ravel() for anomaly_map in maps])
    return float(roc_auc_score(y_true, y_score))


def _region_weights(mask):
    """Weights ``1 / region area`` of the anomalous pixels of ``mask``.

    Returns the weights in raveled order of ``mask[mask]``, and the number of
    regions.
    """
    labels, n_regions = ndimage.label(mask, structure=_REGION_STRUCTURE)
    areas = np.bincount(labels.ravel(), minlength=n_regions + 1)
    # Label 0 (normal pixels) never indexes in; its slot only keeps the
    # lookup aligned with the labels.
    inverse_area = np.zeros(n_regions + 1)
    inverse_area[1:] = 1.0 / areas[1:]
    return inverse_area[labels[mask]], n_regions


def _pro_curve(masks, maps, num_thresholds):
    """The (FPR, PRO) curve from its strictest threshold down, from (0, 0).

    Each pixel falls into a threshold bin; the FPR and PRO at a threshold are
    then reverse cumulative sums of the per-bin counts of normal pixels and
    per-bin sums of region weights, which is the sort-based algorithm of the
    MVTec AD evaluation with the sort done by :func:`numpy.unique`.
    """
    n_normal = sum(mask.size - int(np.count_nonzero(mask)) for mask in masks)
    n_regions = 0
    if num_thresholds is None:
        # Exact: one bin per distinct score, all images together.
        weights = []
        for mask in masks:
            mask_weights, n_mask_regions = _region_weights(mask)
            weights.append(mask_weights)
            n_regions += n_mask_regions
        thresholds, bins = np.unique(
            np.concatenate([anomaly_map.ravel() for anomaly_map in maps]),
            return_inverse=True,
        )
        anomalous = np.concatenate([mask.ravel() for mask in masks])
        false_positives = np.bincount(bins[~anomalous], minlength=thresholds.size)
        overlap = np.bincount(
            bins[anomalous], weights=np.concatenate(weights), minlength=thresholds.size
        )
    else:
        # Grid: a pixel counts at every grid threshold <= its score. Images
        # are binned one at a time, so memory does not grow with the data.
        thresholds = np.linspace(
            min(float(anomaly_map.min()) for anomaly_map in maps if anomaly_map.size),
            max(float(anomaly_map.max()) for anomaly_map in maps if anomaly_map.size),
            num_thresholds,
        )
        false_positives = np.zeros(num_thresholds, dtype=np.int64)
        overlap = np.zeros(num_thresholds)
        for mask, anomaly_map in zip(masks, maps):
            mask_weights, n_mask_regions = _region_weights(mask)
            n_regions += n_mask_regions
            bins = np.searchsorted(thresholds, anomaly_map[~mask], side="right") - 1
            false_positives += np.bincount(bins, minlength=num_thresholds)
            bins = np.searchsorted(thresholds, anomaly_map[mask], side="right") - 1
            overlap += np.bincount(bins, weights=mask_weights, minlength=num_thresholds)

    fpr = np.concatenate(([0.0], np.cumsum(false_positives[::-1]) / n_normal))
    # Rounding in the running sum can overshoot 1 by an ulp or so.
    pro = np.concatenate(([0.0], np.minimum(np.cumsum(overlap[::-1]) / n_regions, 1.0)))
    return fpr, pro


def pro_score(masks, maps, max_fpr=0.3, num_thresholds=None):
    """Normalized area under the per-region overlap (PRO) curve.

    The ground truth is split into defect regions: the 8-connected
    components of each image's mask. At a threshold ``t`` on the anomaly
    maps, the per-region overlap is the mean over all regions (of all
    images) of the fraction of the region's pixels with score ``>= t``, and
    the false positive rate is the fraction of all normal pixels (of all
    images, defect-free ones included) with score ``>= t``. The PRO curve
    plots PRO against FPR as ``t`` sweeps the scores; its area from FPR 0 to
    ``max_fpr``, divided by ``max_fpr``, is returned.

    Unlike pixel ROC AUC, every defect region weighs the same regardless of
    its size, so small defects count as much as large ones.

    Parameters
    ----------
    masks : array-like of shape (n_images, H, W) or list of (H, W) arrays
        Ground truth, True (or 1) where a pixel is anomalous. Images in a
        list may have different sizes.
    maps : array-like of shape (n_images, H, W) or list of (H, W) arrays
        Anomaly maps, higher = more anomalous, with the same shapes as
        ``masks``.
    max_fpr : float, default=0.3
        Upper limit of the integration, in (0, 1]. The MVTec AD benchmark
        uses 0.3.
    num_thresholds : int or None, default=None
        If None, the curve is exact: it has one point per distinct score.
        If an int (at least 2), the curve is evaluated at that many evenly
        spaced thresholds between the lowest and the highest score only,
        which processes one image at a time and so bounds memory for very
        large test sets, at the price of a slight approximation.

    Returns
    -------
    score : float
        AU-PRO up to ``max_fpr``, normalized to [0, 1]: 1 for a map that
        flags every defect pixel above every normal one, about
        ``max_fpr / 2`` for a constant or random map, 0 when all normal
        pixels score above all defect pixels.

    Raises
    ------
    ValueError
        If shapes differ, a map holds NaN or infinity, a mask is not
        boolean-like, the masks lack anomalous or normal pixels, or an
        argument is out of range.

    Notes
    -----
    The computation follows the official MVTec AD evaluation script
    (``generic_util.trapezoid`` and ``pro_curve_util.compute_pro``):

    * the curve starts at (0, 0) and ends at (1, 1), the point where every
      pixel is flagged;
    * pixels with equal scores enter the curve together (one point per
      distinct score, never between tied pixels);
    * the area is computed with the trapezoidal rule; if ``max_fpr`` falls
      between two points of the curve, the PRO at ``max_fpr`` is linearly
      interpolated between them;
    * regions are 8-connected (pixels touching at a corner are one region).

    The exact curve needs one sort of all pixels, about 30 bytes of memory
    per pixel.

    References
    ----------
    .. [1] P. Bergmann, K. Batzner, M. Fauser, D. Sattlegger and C. Steger,
       "The MVTec Anomaly Detection Dataset: A Comprehensive Real-World
       Dataset for Unsupervised Anomaly Detection", International Journal of
       Computer Vision, 129(4), pp. 1038-1059, 2021.
    .. [2] P. Bergmann, M. Fauser, D. Sattlegger and C. Steger, "Uninformed
       Students: Student-Teacher Anomaly Detection with Discriminative
       Latent Embeddings", CVPR 2020.

    Examples
    --------
    >>> import numpy as np
    >>> from skanomaly.metrics import pro_score
    >>> masks = np.zeros((1, 4, 4), dtype=bool)
    >>> masks[0, :2, :2] = True
    >>> pro_score(masks, masks.astype(float))
    1.0
    >>> round(pro_score(masks, np.zeros((1, 4, 4))), 6)
    0.15
    """
    if (
        not isinstance(max_fpr, numbers.Real)
        or isinstance(max_fpr, bool)
        or not 0 < max_fpr <= 1
    ):
        raise ValueError(f"max_fpr must be a number in (0, 1]; got {max_fpr!r}.")
    if num_thresholds is not None and (
        not isinstance(num_thresholds, numbers.Integral)
        or isinstance(num_thresholds, bool)
        or num_thresholds < 2
    ):
        raise ValueError(
            f"num_thresholds must be None or an integer >= 2; got {num_thresholds!r}."
        )
    masks, maps = _check_masks_and_maps(masks, maps)
    _require_both_classes(masks, "the PRO score")
    fpr, pro = _pro_curve(masks, maps, num_thresholds)

    # fpr is non-decreasing and starts at 0, so ``stop >= 1``; the next point,
    # if any, lies strictly beyond max_fpr and bounds the interpolation.
    stop = int(np.searchsorted(fpr, max_fpr, side="right"))
    x, y = fpr[:stop], pro[:stop]
    if stop < fpr.size:
        x0, y0, x1, y1 = fpr[stop - 1], pro[stop - 1], fpr[stop], pro[stop]
        x = np.append(x, max_fpr)
        y = np.append(y, y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0))
    return float(np.trapezoid(y, x) / max_fpr)


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
    masks = _check_masks(masks)
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
    maps = _check_maps(maps)
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
        raise ValueError(
            f"y and scores must be 1-D; got shapes {y.shape} and {scores.shape}."
        )
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


def _explain(estimator, X, n_masks):
    if not hasattr(estimator, "explain"):
        raise TypeError(
            f"{type(estimator).__name__} has no explain method; localization "
            "scorers need an estimator that returns anomaly maps."
        )
    maps = estimator.explain(X)
    maps = _check_maps(maps, name="estimator.explain(X)")
    if len(maps) != n_masks:
        raise ValueError(
            f"estimator.explain(X) returned {len(maps)} maps for {n_masks} masks."
        )
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
        masks = _check_masks(y, name="y")
        maps = _explain(estimator, X, len(masks))
        maps = [
            anomaly_map if anomaly_map.shape == mask.shape
            else _resize_bilinear(anomaly_map, mask.shape)
            for mask, anomaly_map in zip(masks, maps)
        ]
        missing = _missing_class(masks)
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
        images ``X``. It calls ``estimator.explain(X)``; maps whose size
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
            f"All images of this split are {kind}, so image ROC AUC is "
            "undefined; returning nan.",
            UndefinedMetricWarning,
            stacklevel=2,
        )
        return np.nan
    return image_roc_auc(labels, estimator.score_samples(X))
