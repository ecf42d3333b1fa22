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
from numbers import Integral, Real

import numpy as np
from scipy import ndimage

from ._compat import Interval, validate_params
from ._map_checks import REGION_STRUCTURE, check_maps, label_regions
from ._stacklevel import user_stacklevel

__all__ = [
    "REGION_FIELDS",
    "draw_outlines",
    "map_sample",
    "masks_from_maps",
    "outline",
    "pixel_threshold",
    "region_table",
]

# Pixels of one map that calibration keeps. The maps are smooth (computed at
# the network's input size, 224 x 224 for Lite0, blurred and resized), so
# evenly spaced pixels describe a large map as well as all of them do, and
# memory stays bounded for large images.
MAP_SAMPLE_SIZE = 65536

#: The columns of :func:`region_table`, in order.
REGION_FIELDS = ("image", "region", "area", "top", "left", "bottom", "right", "peak", "mean")
_INTEGER_FIELDS = REGION_FIELDS[:7]

_POSITIVE = Interval(Integral, 1, None, closed="left")
# Interval rejects NaN and, open at both ends, the infinities.
_FINITE = Interval(Real, None, None, closed="neither")
_MAPS_AND_THRESHOLD = {"maps": ["array-like"], "threshold": [_FINITE], "min_area": [_POSITIVE]}


@validate_params(
    {"anomaly_map": ["array-like"], "size": [_POSITIVE]}, prefer_skip_nested_validation=True
)
def map_sample(anomaly_map, size=MAP_SAMPLE_SIZE):
    """At most about ``size`` evenly spaced values of ``anomaly_map``
    (all of them for a map of up to ``size`` pixels), float32.

    Parameters
    ----------
    anomaly_map : array-like
        A map, of any shape; it is flattened.
    size : int, default=65536
        The most values kept (:data:`MAP_SAMPLE_SIZE`), at least 1.

    Returns
    -------
    sample : ndarray of shape (n_values,), float32

    Raises
    ------
    ValueError
        If ``anomaly_map`` holds NaN or infinity, or ``size`` is not a
        positive integer (``InvalidParameterError``).
    """
    flat = np.asarray(anomaly_map, dtype=np.float32).ravel()
    if not np.isfinite(flat).all():
        raise ValueError("anomaly_map contains NaN or infinity.")
    # A copy: a strided view would keep the whole map alive.
    return flat[:: max(1, -(-flat.size // size))].copy()


@validate_params(
    {"samples": ["array-like"], "fpr": [Interval(Real, 0, 1, closed="neither")]},
    prefer_skip_nested_validation=True,
)
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

    Raises
    ------
    ValueError
        If ``fpr`` is not in (0, 1) (``InvalidParameterError``), or
        ``samples`` hold no values or NaN or infinity.
    TypeError
        If the values are not real numbers.
    """
    pieces = [np.ravel(s) for s in samples]
    values = np.concatenate(pieces) if pieces else np.empty(0)
    if values.dtype.kind not in "biuf":
        raise TypeError(f"samples have dtype {values.dtype}; map values must be real numbers.")
    if not values.size:
        raise ValueError("samples hold no map values; pass the map samples of normal images.")
    # A NaN would sort last and shift the quantile without a trace.
    if not np.isfinite(values).all():
        raise ValueError("samples contain NaN or infinity; map values must be finite.")
    n = values.size
    rank = math.ceil((1 - fpr) * (n + 1))
    if rank > n:
        warnings.warn(
            f"fpr={fpr} is below 1 / (n + 1) = {1 / (n + 1):.3g} for {n} calibration "
            "pixels: the threshold is their largest value and the realized rate "
            "will be higher. Calibrate on more images.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
        rank = n
    return float(np.partition(values, rank - 1)[rank - 1])


def _regions(anomaly_map, threshold, min_area):
    """The labels of the regions of ``anomaly_map > threshold`` of at least
    ``min_area`` pixels, and the label numbers kept."""
    # A float64 threshold: a Python float next to a float32 map would be
    # rounded to float32 first (numpy 2), which can round it up to a pixel's
    # value and leave out a pixel that lies above it.
    labels, n = label_regions(anomaly_map > np.float64(threshold))
    area = np.bincount(labels.ravel(), minlength=n + 1)
    small = area < min_area
    small[0] = True
    if small[1:].any():
        labels[small[labels]] = 0
    return labels, np.flatnonzero(~small), area


def _checked_maps(maps, min_area):
    """:func:`check_maps`, with a warning where ``min_area`` exceeds every
    map's pixels: then every mask comes back empty, whatever the maps."""
    checked = check_maps(maps)
    largest = max(m.size for m in checked)
    if min_area > largest:
        warnings.warn(
            f"min_area={min_area} is larger than every map ({largest} pixels at most), "
            "so no region is kept and every mask is empty; min_area counts pixels of "
            "the maps, which have their images' sizes.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    return checked


@validate_params(_MAPS_AND_THRESHOLD, prefer_skip_nested_validation=True)
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

    Raises
    ------
    ValueError
        If ``maps`` is not an ``(n, H, W)`` array or a non-empty list of
        ``(H, W)`` arrays, holds NaN or infinity, or ``threshold`` is not a
        finite number or ``min_area`` not a positive integer.
    TypeError
        If a map is not of real numbers.

    Warns
    -----
    UserWarning
        If ``min_area`` exceeds the pixels of every map: nothing can be kept.
    """
    masks = [_regions(m, threshold, min_area)[0] > 0 for m in _checked_maps(maps, min_area)]
    return np.stack(masks) if isinstance(maps, np.ndarray) else masks


@validate_params(_MAPS_AND_THRESHOLD, prefer_skip_nested_validation=True)
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

    Raises
    ------
    ValueError
        If ``maps`` is not an ``(n, H, W)`` array or a non-empty list of
        ``(H, W)`` arrays, holds NaN or infinity, or ``threshold`` is not a
        finite number or ``min_area`` not a positive integer.
    TypeError
        If a map is not of real numbers.

    Warns
    -----
    UserWarning
        If ``min_area`` exceeds the pixels of every map: nothing can be kept.
    """
    rows = []
    for index, anomaly_map in enumerate(_checked_maps(maps, min_area)):
        anomaly_map = anomaly_map.astype(np.float64, copy=False)
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


@validate_params(
    {"mask": ["array-like"], "width": [_POSITIVE], "frame": ["boolean"]},
    prefer_skip_nested_validation=True,
)
def outline(mask, width=1, frame=True):
    """The pixels of ``mask``'s regions within ``width`` pixels of their
    edge.

    Parameters
    ----------
    mask : array-like of shape (H, W), bool or int
        The regions: the non-zero pixels (a 0/255 mask read from a file
        works as it is). Floats must be 0 or 1: an anomaly map is refused,
        threshold it first.
    width : int, default=1
        The outline's width in pixels, at least 1.
    frame : bool, default=True
        Whether the image frame counts as an edge, so that regions at the
        border are closed; with ``False`` only the edge towards unmasked
        pixels is drawn.

    Returns
    -------
    outline : ndarray of shape (H, W), bool

    Raises
    ------
    TypeError
        If ``mask`` is not of a bool, integer or float dtype.
    ValueError
        If ``mask`` is not 2-D, holds floats other than 0 and 1, or
        ``width`` is not a positive integer (``InvalidParameterError``).
    """
    mask = np.asarray(mask)
    if mask.dtype.kind not in "buif":
        raise TypeError(f"mask has dtype {mask.dtype}; it must be bool, integer or 0/1 float.")
    # Cast as it is, a map of scores would outline every non-zero pixel.
    if mask.dtype.kind == "f" and not np.isin(mask, (0, 1)).all():
        raise ValueError(
            "mask holds values other than 0 and 1, like an anomaly map; "
            "outline its regions with a boolean mask such as anomaly_map > threshold."
        )
    mask = mask.astype(bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D (H, W) array; got shape {mask.shape}.")
    # width is at least 1: for iterations < 1 scipy erodes until nothing
    # changes, which would outline the whole region.
    inner = ndimage.binary_erosion(
        mask, structure=REGION_STRUCTURE, iterations=width, border_value=int(not frame)
    )
    return mask & ~inner


@validate_params(
    {
        "image": ["array-like"],
        "mask": ["array-like"],
        "color": ["array-like"],
        "width": [_POSITIVE],
    },
    prefer_skip_nested_validation=True,
)
def draw_outlines(image, mask, color=(255, 255, 255), width=2):
    """A copy of the RGB ``image`` with the outlines of ``mask``'s regions
    (:func:`outline`) drawn in ``color``.

    Parameters
    ----------
    image : array-like of shape (H, W, 3), uint8
        The RGB image; it is not modified.
    mask : array-like of shape (H, W), bool or int
        The regions, as in :func:`outline`.
    color : tuple of 3 int in 0..255, default=(255, 255, 255)
        RGB color of the outlines.
    width : int, default=2
        The outlines' width in pixels, at least 1.

    Returns
    -------
    drawn : ndarray of shape (H, W, 3), uint8

    Raises
    ------
    TypeError
        If ``image`` is not uint8.
    ValueError
        If ``image`` is not ``(H, W, 3)``, ``mask`` not ``(H, W)``, ``color``
        not 3 integers in 0..255 or ``width`` not a positive integer.
    """
    drawn = np.array(image, copy=True)
    if drawn.ndim != 3 or drawn.shape[2] != 3:
        raise ValueError(f"image must be an (H, W, 3) RGB array; got shape {drawn.shape}.")
    # A cast would turn floats in [0, 1] black and wrap values above 255.
    if drawn.dtype != np.uint8:
        raise TypeError(
            f"image has dtype {drawn.dtype}; draw_outlines draws on uint8 images "
            "(for floats in [0, 1]: np.round(image * 255).astype(np.uint8))."
        )
    if np.shape(mask) != drawn.shape[:2]:
        raise ValueError(
            f"mask has shape {np.shape(mask)} but image is {drawn.shape[:2]}; "
            "they must match pixel for pixel."
        )
    rgb = np.asarray(color)
    if rgb.shape != (3,) or rgb.dtype.kind not in "ui" or rgb.min() < 0 or rgb.max() > 255:
        raise ValueError(f"color must be 3 integers in 0..255; got {color!r}.")
    drawn[outline(mask, width)] = rgb
    return drawn
