"""Defect masks and regions from anomaly maps and a pixel threshold.

:meth:`~skanomaly.EfficientNetGaussianDetector.segment` and
:meth:`~skanomaly.EfficientNetGaussianDetector.regions` threshold the maps of
:meth:`~skanomaly.EfficientNetGaussianDetector.explain` at
``pixel_threshold_``, which :func:`pixel_threshold` sets from the maps of
normal images at a target pixel false-positive rate. Everything here works on
plain arrays: maps, a threshold, masks; nothing sees the estimator.

A region is an 8-connected component of a mask (diagonal neighbours belong
together), as in the region metrics of :mod:`skanomaly.metrics`.
"""

import math
import warnings

import numpy as np
from scipy import ndimage

__all__ = [
    "REGION_FIELDS",
    "draw_outlines",
    "map_sample",
    "masks_from_maps",
    "outline",
    "pixel_threshold",
    "region_table",
]

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
# Pixels of one map that calibration keeps. The maps are smooth (computed at
# the network's input size, 224 x 224 for Lite0, blurred and resized), so
# evenly spaced pixels describe a large map as well as all of them do, and
# memory stays bounded for large images.
MAP_SAMPLE_SIZE = 65536

#: The columns of :func:`region_table`, in order.
REGION_FIELDS = ("image", "region", "area", "top", "left", "bottom", "right", "peak", "mean")
_INTEGER_FIELDS = REGION_FIELDS[:7]


def map_sample(anomaly_map, size=MAP_SAMPLE_SIZE):
    """At most about ``size`` evenly spaced values of ``anomaly_map``
    (all of them for a map of up to ``size`` pixels), float32."""
    flat = np.asarray(anomaly_map, dtype=np.float32).ravel()
    return flat[:: max(1, -(-flat.size // size))]


def pixel_threshold(samples, fpr):
    """The map value that a pixel of a new normal image exceeds with
    probability about ``fpr``: the conformal upper quantile of the values of
    normal maps.

    With ``n`` values, the ``ceil((1 - fpr) * (n + 1))``-th smallest, so that
    at most a fraction ``fpr`` of them lies above it, as :meth:`calibrate`
    does for images. Pixels of one image are not independent, so the rate a
    new image realizes varies more around ``fpr`` than that of independent
    pixels would; on average over images it is about ``fpr``.

    Parameters
    ----------
    samples : list of array-like
        Map values of normal images (e.g. :func:`map_sample` of each map).
    fpr : float in (0, 1)
        The target share of normal pixels above the threshold.

    Returns
    -------
    threshold : float
    """
    values = np.concatenate([np.ravel(s) for s in samples])
    n = values.size
    rank = math.ceil((1 - fpr) * (n + 1))
    if rank > n:
        warnings.warn(
            f"fpr={fpr} is below 1 / (n + 1) = {1 / (n + 1):.3g} for {n} calibration "
            "pixels: the threshold is their largest value and the realized rate "
            "will be higher. Calibrate on more images.",
            UserWarning,
            stacklevel=3,
        )
        rank = n
    return float(np.partition(values, rank - 1)[rank - 1])


def _regions(anomaly_map, threshold, min_area):
    """The labels of the regions of ``anomaly_map > threshold`` of at least
    ``min_area`` pixels, and the label numbers kept."""
    labels, n = ndimage.label(anomaly_map > threshold, structure=_EIGHT_CONNECTED)
    area = np.bincount(labels.ravel(), minlength=n + 1)
    small = area < min_area
    small[0] = True
    if small[1:].any():
        labels[small[labels]] = 0
    return labels, np.flatnonzero(~small), area


def masks_from_maps(maps, threshold, min_area=1):
    """Boolean masks of the pixels above ``threshold``, without the regions
    of fewer than ``min_area`` pixels.

    Parameters
    ----------
    maps : ndarray of shape (n, H, W) or list of ndarray of shape (H_i, W_i)
        Anomaly maps, as :meth:`~skanomaly.EfficientNetGaussianDetector.explain`
        returns them.
    threshold : float
        Pixels strictly above it are anomalous.
    min_area : int, default=1
        Smaller 8-connected regions are dropped.

    Returns
    -------
    masks : ndarray of shape (n, H, W) or list of ndarray, bool
        Of the form of ``maps``.
    """
    masks = [_regions(np.asarray(m), threshold, min_area)[0] > 0 for m in maps]
    return np.stack(masks) if isinstance(maps, np.ndarray) else masks


def region_table(maps, threshold, min_area=1):
    """The anomalous regions of each map: one row per 8-connected region of
    the pixels above ``threshold`` of at least ``min_area`` pixels.

    Parameters
    ----------
    maps : ndarray of shape (n, H, W) or list of ndarray of shape (H_i, W_i)
        Anomaly maps.
    threshold : float
        Pixels strictly above it are anomalous.
    min_area : int, default=1
        Smaller regions are left out.

    Returns
    -------
    table : dict of str to ndarray of shape (n_regions,)
        The columns of :data:`REGION_FIELDS`: ``image`` (the map's index),
        ``region`` (0, 1, ... within each image, highest ``peak`` first),
        ``area`` (pixels), the bounding box ``top``, ``left``, ``bottom``,
        ``right`` (rows and columns, ``bottom`` and ``right`` exclusive: the
        region lies in ``mask[top:bottom, left:right]``), all int64, and the
        ``peak`` and ``mean`` map value over the region (float64). Rows are
        ordered by image, then region. ``pandas.DataFrame(table)`` makes a
        data frame of it.
    """
    rows = []
    for index, anomaly_map in enumerate(maps):
        anomaly_map = np.asarray(anomaly_map, dtype=np.float64)
        labels, kept, area = _regions(anomaly_map, threshold, min_area)
        if not len(kept):
            continue
        boxes = ndimage.find_objects(labels)
        peaks = ndimage.maximum(anomaly_map, labels, kept)
        means = ndimage.mean(anomaly_map, labels, kept)
        for number, (label, peak, mean) in enumerate(
            sorted(zip(kept, peaks, means), key=lambda row: -row[1])
        ):
            box = boxes[label - 1]
            rows.append(
                (
                    index,
                    number,
                    area[label],
                    box[0].start,
                    box[1].start,
                    box[0].stop,
                    box[1].stop,
                    peak,
                    mean,
                )
            )
    columns = list(zip(*rows)) if rows else [()] * len(REGION_FIELDS)
    return {
        name: np.asarray(values, dtype=np.int64 if name in _INTEGER_FIELDS else np.float64)
        for name, values in zip(REGION_FIELDS, columns)
    }


def outline(mask, width=1, frame=True):
    """The pixels of ``mask``'s regions within ``width`` pixels of their
    edge. With ``frame=True`` the image frame counts as an edge, so regions
    at the border are closed; with ``frame=False`` only the edge towards
    unmasked pixels is drawn."""
    mask = np.asarray(mask, dtype=bool)
    inner = ndimage.binary_erosion(
        mask, structure=_EIGHT_CONNECTED, iterations=width, border_value=int(not frame)
    )
    return mask & ~inner


def draw_outlines(image, mask, color=(255, 255, 255), width=2):
    """A copy of the RGB ``image`` (uint8, ``(H, W, 3)``) with the outlines
    of ``mask``'s regions (:func:`outline`) drawn in ``color``."""
    drawn = np.array(image, dtype=np.uint8, copy=True)
    drawn[outline(mask, width)] = color
    return drawn
