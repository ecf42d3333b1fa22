"""Resizing of anomaly maps and images held as arrays.

Anomaly maps are resized to their images (or masks) by
:func:`resize_bilinear`, the interpolation that ``explain`` uses to bring
the levels' maps to one size, so that a map is resized the same way
wherever that happens: in the metrics' scorers, in plotting and in the
command line's report.
"""

import numpy as np

__all__ = ["resize_bilinear", "shrink_image"]


def _linear_taps(n_in, n_out):
    """Source indices and weights of 1-D linear resampling from n_in to n_out."""
    source = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    low = np.minimum(source.astype(np.intp), n_in - 1)
    # Past the last pixel centre ``high == low``: the edge value is repeated.
    high = np.minimum(low + 1, n_in - 1)
    return low, high, source - low


def resize_bilinear(array, shape):
    """Resize a 2-D array to ``shape`` by bilinear interpolation.

    Same result as ``torch.nn.functional.interpolate(..., mode="bilinear",
    align_corners=False)``: pixel centres are aligned and there is no
    anti-aliasing, so a downsized map keeps its peaks as sharp as the
    sampling allows.

    Parameters
    ----------
    array : array-like of shape (h, w)
        The map.
    shape : tuple of 2 int
        The (height, width) to resize it to.

    Returns
    -------
    resized : ndarray of shape ``shape``, dtype float64
    """
    array = np.asarray(array, dtype=np.float64)
    low, high, weight = _linear_taps(array.shape[0], shape[0])
    array = array[low] * (1 - weight)[:, np.newaxis] + array[high] * weight[:, np.newaxis]
    low, high, weight = _linear_taps(array.shape[1], shape[1])
    return array[:, low] * (1 - weight) + array[:, high] * weight


def shrink_image(image, side):
    """Downsize a uint8 image so that its longer side is at most ``side``.

    Parameters
    ----------
    image : ndarray of shape (H, W) or (H, W, C), dtype uint8
        The image.
    side : int
        The largest height or width to return.

    Returns
    -------
    image : ndarray
        ``image`` itself if it is small enough, else a bilinear downsizing
        (Pillow's, which anti-aliases) with the aspect ratio kept.
    """
    # Pillow is imported here so that `skanomaly --help` does not pay for it.
    from PIL import Image

    height, width = image.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
