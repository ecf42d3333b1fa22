"""Pixel-level metrics: pooled pixel ROC AUC and AU-PRO, as in MVTec AD."""

import numbers

import numpy as np
from sklearn.metrics import roc_auc_score

from .._map_checks import check_masks_and_maps, label_regions, require_both_classes
from ..segmentation import masks_from_maps

__all__ = ["pixel_roc_auc", "pro_score", "region_hits"]


def pixel_roc_auc(masks, maps, num_thresholds=None):
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
    num_thresholds : int or None, default=None
        If None, exact. If an int (at least 2), the scores are binned
        between up to that many thresholds at evenly spaced quantiles of
        the scores (each bin holds about as many pixels), one image at a
        time, and pixels of one bin count as tied, which bounds memory for
        very large test sets at the price of a slight approximation (as
        :func:`pro_score`'s).

    Returns
    -------
    score : float
        Pixel-level ROC AUC in [0, 1].

    Raises
    ------
    ValueError
        If shapes differ, a map holds NaN or infinity, a mask is not
        boolean-like, the masks lack anomalous or normal pixels, or
        ``num_thresholds`` is out of range.

    Notes
    -----
    Exact, the pixels are raveled into one vector for
    :func:`sklearn.metrics.roc_auc_score`, which sorts them: memory is a few
    tens of bytes per pixel (by that count, about 3 GB for the 1,725 images
    of the MVTec AD test set at 256x256). Pass float32 maps to keep it at the
    low end, or ``num_thresholds``.

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
    _check_num_thresholds(num_thresholds)
    masks, maps = check_masks_and_maps(masks, maps)
    require_both_classes(masks, "pixel ROC AUC")
    if num_thresholds is not None:
        return _binned_roc_auc(masks, maps, num_thresholds)
    y_true = np.concatenate([mask.ravel() for mask in masks])
    y_score = np.concatenate([anomaly_map.ravel() for anomaly_map in maps])
    return float(roc_auc_score(y_true, y_score))


def _binned_roc_auc(masks, maps, num_thresholds):
    """:func:`pixel_roc_auc` on :func:`_threshold_grid`'s bins: a defect
    pixel outranks the normal pixels of lower bins and ties half of its own."""
    thresholds = _threshold_grid(maps, num_thresholds)
    n_bins = len(thresholds)
    defect, normal = np.zeros(n_bins), np.zeros(n_bins)
    for mask, anomaly_map in zip(masks, maps, strict=True):
        defect += np.bincount(_bins(thresholds, anomaly_map[mask]), minlength=n_bins)
        normal += np.bincount(_bins(thresholds, anomaly_map[~mask]), minlength=n_bins)
    below = np.cumsum(normal) - normal
    return float((defect * (below + normal / 2)).sum() / (defect.sum() * normal.sum()))


def _check_num_thresholds(num_thresholds):
    if num_thresholds is not None and (
        not isinstance(num_thresholds, numbers.Integral)
        or isinstance(num_thresholds, bool)
        or num_thresholds < 2
    ):
        raise ValueError(f"num_thresholds must be None or an integer >= 2; got {num_thresholds!r}.")


# Scores that set the grid's quantiles: every pixel up to this many, else an
# even stride of each image's (32 MiB as float64).
_GRID_SAMPLE = 1 << 22


def _threshold_grid(maps, num_thresholds):
    """Up to ``num_thresholds`` thresholds at evenly spaced quantiles of the
    scores of ``maps`` (of an even sample of ``_GRID_SAMPLE`` of them), the
    first the lowest score, so that every pixel falls in a bin; every
    distinct score of the sample where there are no more than that, which
    makes the binned metrics exact on such scores.

    Each bin holds about as many pixels: thresholds spaced evenly from the
    lowest score to the highest let one extreme score crowd all others
    into a few bins (one hot pixel at 1e3 among scores in [0.3, 0.9] took a
    pixel ROC AUC of 0.91 to 0.50 on 1,000 thresholds). Quantiles are
    scores themselves, so no arithmetic on them can overflow.
    """
    total = sum(anomaly_map.size for anomaly_map in maps)
    stride = -(-total // _GRID_SAMPLE)
    sample = np.concatenate([anomaly_map.ravel()[::stride] for anomaly_map in maps])
    thresholds = np.unique(sample)
    if len(thresholds) > num_thresholds:
        shares = np.linspace(0.0, 1.0, num_thresholds)
        thresholds = np.unique(np.quantile(sample, shares, method="inverted_cdf"))
    thresholds = thresholds.astype(np.float64)
    thresholds[0] = min(float(anomaly_map.min()) for anomaly_map in maps if anomaly_map.size)
    return thresholds


def _bins(thresholds, values):
    """The grid bin of each value: the last threshold at or below it."""
    return np.searchsorted(thresholds, values, side="right") - 1


def _region_weights(mask):
    """Weights ``1 / region area`` of the anomalous pixels of ``mask``.

    Returns the weights in raveled order of ``mask[mask]``, and the number of
    regions.
    """
    labels, n_regions = label_regions(mask)
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
        thresholds = _threshold_grid(maps, num_thresholds)
        false_positives = np.zeros(len(thresholds), dtype=np.int64)
        overlap = np.zeros(len(thresholds))
        for mask, anomaly_map in zip(masks, maps, strict=True):
            mask_weights, n_mask_regions = _region_weights(mask)
            n_regions += n_mask_regions
            bins = _bins(thresholds, anomaly_map[~mask])
            false_positives += np.bincount(bins, minlength=len(thresholds))
            bins = _bins(thresholds, anomaly_map[mask])
            overlap += np.bincount(bins, weights=mask_weights, minlength=len(thresholds))

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
        If an int (at least 2), the curve is evaluated at up to that many
        thresholds only, at evenly spaced quantiles of the scores (each bin
        holds about as many pixels), which processes one image at a time
        and so bounds memory for very large test sets, at the price of a
        slight approximation.

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
    if not isinstance(max_fpr, numbers.Real) or isinstance(max_fpr, bool) or not 0 < max_fpr <= 1:
        raise ValueError(f"max_fpr must be a number in (0, 1]; got {max_fpr!r}.")
    _check_num_thresholds(num_thresholds)
    masks, maps = check_masks_and_maps(masks, maps)
    require_both_classes(masks, "the PRO score")
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


def region_hits(masks, maps, threshold, min_area=1):
    """How many defects the regions of the maps above ``threshold`` find, and
    how many of those regions lie outside every defect, per image.

    The defects are the 8-connected regions of each mask, as for
    :func:`pro_score`; the found regions are those of
    :func:`skanomaly.segmentation.masks_from_maps` (pixels strictly above
    ``threshold``, 8-connected, at least ``min_area`` pixels), what
    :meth:`~skanomaly.EfficientNetGaussianDetector.segment` returns at
    ``pixel_threshold_``. A defect is found when one of its pixels lies in a
    found region. Unlike pixel ROC AUC and AU-PRO, which sweep every
    threshold, this measures the one an inspection runs at: how many
    defects an operator would be shown, and how many regions would send
    them to look at a normal part of the image.

    Parameters
    ----------
    masks : array-like of shape (n_images, H, W) or list of (H, W) arrays
        Ground truth, True (or 1) where a pixel is anomalous; all False for
        a normal image.
    maps : array-like of shape (n_images, H, W) or list of (H, W) arrays
        Anomaly maps, with the same shapes as ``masks``.
    threshold : float
        Map values strictly above it are flagged.
    min_area : int, default=1
        Smaller found regions are left out.

    Returns
    -------
    hits : dict of str to ndarray of shape (n_images,), int64
        ``"defects"``, the regions of each mask; ``"found"``, how many of
        them a found region overlaps; ``"false_regions"``, the found regions
        that overlap no defect pixel (in a normal image, every one).

    Raises
    ------
    ValueError
        If shapes differ, a map holds NaN or infinity, a mask is not
        boolean-like, ``threshold`` is not finite or ``min_area`` not a
        positive integer.

    Examples
    --------
    >>> import numpy as np
    >>> from skanomaly.metrics import region_hits
    >>> masks = np.zeros((2, 8, 8), dtype=bool)
    >>> masks[0, 1:3, 1:3] = masks[0, 5:7, 5:7] = True  # two defects
    >>> maps = np.zeros((2, 8, 8))
    >>> maps[0, 2, 2] = maps[1, 4, 4] = 1.0  # one on a defect, one on a normal image
    >>> {k: v.tolist() for k, v in region_hits(masks, maps, threshold=0.5).items()}
    {'defects': [2, 0], 'found': [1, 0], 'false_regions': [0, 1]}
    """
    masks, maps = check_masks_and_maps(masks, maps)
    found = masks_from_maps(maps, threshold, min_area)
    counts = np.array([_hits(*pair) for pair in zip(masks, found, strict=True)], np.int64)
    return dict(zip(("defects", "found", "false_regions"), counts.reshape(-1, 3).T))


def _hits(mask, found):
    """``(defects, defects found, found regions outside every defect)`` of
    one image."""
    defects, n_defects = label_regions(mask)
    regions, n_regions = label_regions(found)
    both = mask & found
    return n_defects, np.unique(defects[both]).size, n_regions - np.unique(regions[both]).size
