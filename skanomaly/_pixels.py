"""The pixel values that images of each dtype span by default: shared by
the detector's reading of images and the pictures drawn over them, which
must agree, and light enough for the plotting module, which needs no torch.
"""


def default_range(dtype):
    """``(low, high)``, the values that map to black and white: 0..65535
    for uint16, [0, 1] for floats, 0..255 for other integers. By kind and
    size, so that big-endian pixels (``'>u2'``) read as native ones do."""
    if dtype.kind == "u" and dtype.itemsize == 2:
        return 0.0, 65535.0
    if dtype.kind == "f":
        return 0.0, 1.0
    return 0.0, 255.0
