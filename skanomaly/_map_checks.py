"""Checks of the masks and anomaly maps that every metric, and the segmentation
functions, receive, and the regions both count (outside
:mod:`skanomaly.metrics`, whose import loads scipy.stats, so that segmenting
does not pay for it)."""

import numpy as np
from scipy import ndimage

__all__ = [
    "REGION_STRUCTURE",
    "check_maps",
    "check_masks",
    "check_masks_and_maps",
    "label_regions",
    "missing_class",
    "require_both_classes",
]

# A region is an 8-connected component, as in the official MVTec AD
# evaluation code (``label(gt, np.ones((3, 3)))``): pixels touching only at a
# corner belong to the same defect, and to the same found region.
REGION_STRUCTURE = np.ones((3, 3), dtype=bool)


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


def check_masks(masks, name="masks"):
    """``masks`` as a list of bool arrays; errors name them ``name[i]``."""
    masks = _as_image_list(masks, name)
    return [_check_mask(mask, f"{name}[{index}]") for index, mask in enumerate(masks)]


def check_maps(maps, name="maps"):
    """``maps`` as a list of finite float arrays; errors name them ``name[i]``."""
    maps = _as_image_list(maps, name)
    return [_check_map(anomaly_map, f"{name}[{index}]") for index, anomaly_map in enumerate(maps)]


def check_masks_and_maps(masks, maps):
    """Checked ``masks`` and ``maps``, one map per mask and of its shape."""
    masks = check_masks(masks)
    maps = check_maps(maps)
    if len(masks) != len(maps):
        raise ValueError(f"Got {len(masks)} masks but {len(maps)} anomaly maps.")
    for index, (mask, anomaly_map) in enumerate(zip(masks, maps, strict=True)):
        if mask.shape != anomaly_map.shape:
            raise ValueError(
                f"masks[{index}] has shape {mask.shape} but maps[{index}] has "
                f"shape {anomaly_map.shape}; they must match pixel for pixel."
            )
    return masks, maps


def missing_class(masks):
    """Describe which pixel class ``masks`` lack, or return None."""
    n_anomalous = sum(int(np.count_nonzero(mask)) for mask in masks)
    n_pixels = sum(mask.size for mask in masks)
    if n_anomalous == 0:
        return "no anomalous (True) pixel"
    if n_anomalous == n_pixels:
        return "no normal (False) pixel"
    return None


def require_both_classes(masks, metric):
    """Refuse ``masks`` without anomalous or without normal pixels."""
    missing = missing_class(masks)
    if missing is not None:
        raise ValueError(
            f"The masks contain {missing}; {metric} needs both anomalous and normal pixels."
        )


def label_regions(mask):
    """``(labels, n)`` of the regions of a boolean ``(H, W)`` mask."""
    return ndimage.label(mask, structure=REGION_STRUCTURE)
