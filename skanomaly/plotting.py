"""Anomaly maps drawn over their images, as arrays or PNG files.

Rendering uses numpy and Pillow only, the default colormap ("jet") included,
so overlays and the command line's reports need no matplotlib; it is
imported lazily for any other colormap, and nothing here needs a display.
"""

import unicodedata
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ._files import write_png
from ._pixels import default_range
from ._resize import resize_bilinear
from .report import check_finite_number
from .segmentation import outline

__all__ = ["jet", "overlay_heatmap", "save_heatmaps"]


def _image_to_rgb(image):
    """``image`` as float RGB in [0, 1], shape (H, W, 3)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] in (1, 3, 4):
        # Transparency is dropped: the overlay is opaque.
        image = image[..., :3] if image.shape[2] != 1 else image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., np.newaxis], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise ValueError(
            f"image must be (H, W), (H, W, 3) or (H, W, 4) with H, W > 0; got shape "
            f"{np.shape(image)}."
        )
    kind = image.dtype.kind
    if kind == "f":
        if not np.all(np.isfinite(image)):
            raise ValueError("image contains NaN or infinity.")
        low, high = float(image.min()), float(image.max())
        if low < 0 or high > 1:
            raise ValueError(
                f"Float images must have values in [0, 1]; image has values in [{low:g}, {high:g}]."
            )
        return image.astype(np.float64)
    if kind in "ui":
        # As the detector reads them: uint16 spans 0..65535, other integers 0..255.
        top = int(default_range(image.dtype)[1])
        low, high = int(image.min()), int(image.max())
        if low < 0 or high > top:
            raise ValueError(
                f"{image.dtype} images must have values in 0..{top}; image has values in "
                f"[{low}, {high}]."
            )
        return image / float(top)
    raise TypeError(
        f"image has dtype {image.dtype}; images must be uint8, uint16 or float in [0, 1]."
    )


# matplotlib's "jet" as (position, value) anchors per channel: the default
# colormap, drawn without matplotlib (an optional dependency, the ``plot``
# extra), so that a plain install's command line draws its heat maps.
_JET = (
    ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),
    ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),
    ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)),
)
# Colours in a colormap's table, as matplotlib's colormaps have by default.
_COLORMAP_ENTRIES = 256


def jet(values):
    """RGB colours of ``values`` in [0, 1] by matplotlib's ``"jet"``
    colormap, without matplotlib: the default colormap of
    :func:`overlay_heatmap`, for drawing a colour bar or legend beside its
    overlays.

    The same 256-entry table as matplotlib's, looked up the same way, so the
    colours equal matplotlib's to rounding; values outside [0, 1], infinities
    included, take the end colours.

    Parameters
    ----------
    values : array-like of float

    Returns
    -------
    colors : ndarray
        RGB in [0, 1], of the shape of ``values`` with an axis of 3 added.

    Raises
    ------
    ValueError
        If ``values`` hold NaN or are not numbers.

    Examples
    --------
    >>> from skanomaly.plotting import jet
    >>> jet([0.0, 0.5, 1.0]).round(2)
    array([[0.  , 0.  , 0.5 ],
           [0.49, 1.  , 0.48],
           [0.5 , 0.  , 0.  ]])
    """
    values = np.asarray(values, dtype=np.float64)
    if np.isnan(values).any():
        raise ValueError("values contain NaN, which has no colour.")
    positions = np.linspace(0.0, 1.0, _COLORMAP_ENTRIES)
    table = np.stack([np.interp(positions, *zip(*anchors)) for anchors in _JET], axis=-1)
    # Clipped before the cast: an infinity cast to an integer is undefined.
    index = (np.clip(values, 0.0, 1.0) * _COLORMAP_ENTRIES).astype(np.int64)
    return table[np.minimum(index, _COLORMAP_ENTRIES - 1)]


def _colormap(cmap):
    """A function from values in [0, 1] to colours whose first 3 channels
    are RGB: :func:`jet` for ``"jet"``, else matplotlib's colormap."""
    if isinstance(cmap, str) and cmap == "jet":
        return jet
    try:
        import matplotlib
        from matplotlib.colors import Colormap
    except ImportError:
        if isinstance(cmap, str):
            raise ImportError(
                f"cmap={cmap!r} needs matplotlib: pip install 'skanomaly[plot]' (the "
                "default, 'jet', does not)."
            ) from None
        # Without matplotlib nothing is a Colormap: the TypeError below.
        Colormap = ()
    if isinstance(cmap, str):
        try:
            return matplotlib.colormaps[cmap]
        except KeyError:
            raise ValueError(f"Unknown colormap {cmap!r}.") from None
    if isinstance(cmap, Colormap):
        return cmap
    raise TypeError(f"cmap must be a colormap name or a matplotlib Colormap; got {cmap!r}.")


def _draw_title(overlay, title):
    """Write ``title`` in white on a black box in the top-left corner."""
    title = _default_font_text(title)
    canvas = Image.fromarray(overlay)
    draw = ImageDraw.Draw(canvas)
    _, _, right, bottom = draw.textbbox((2, 2), title)
    draw.rectangle((0, 0, right + 2, bottom + 2), fill=(0, 0, 0))
    draw.text((2, 2), title, fill=(255, 255, 255))
    return np.asarray(canvas).copy()


def _default_font_text(text):
    """``text`` in the characters of Pillow's default font, printable ASCII
    and line breaks: accents are dropped (``"é"`` reads ``"e"``) and other
    characters read ``"?"``, which the font would draw as empty boxes."""
    folded = unicodedata.normalize("NFKD", text)
    return "".join(
        c if " " <= c <= "~" or c == "\n" else "" if unicodedata.combining(c) else "?"
        for c in folded
    )


def overlay_heatmap(
    image,
    anomaly_map,
    *,
    path=None,
    cmap="jet",
    alpha=0.5,
    vmin=None,
    vmax=None,
    threshold=None,
    contour_color=(255, 255, 255),
    title=None,
):
    """Blend a colored anomaly map over its image.

    Parameters
    ----------
    image : array-like of shape (H, W), (H, W, 3) or (H, W, 4)
        The image, uint8 in 0..255, uint16 in 0..65535 or float in [0, 1],
        as :meth:`~skanomaly.EfficientNetGaussianDetector.explain` reads
        them. An alpha channel is ignored.
    anomaly_map : array-like of shape (h, w)
        Anomaly scores, higher = more anomalous. If ``(h, w) != (H, W)``
        the map is resized to the image by bilinear interpolation.
    path : str or path-like, default=None
        If given, the overlay is also written there as a PNG file (whatever
        the extension).
    cmap : str or matplotlib Colormap, default="jet"
        Colormap of the normalized map. The default needs no matplotlib
        (:func:`jet`); any other needs it (``pip install 'skanomaly[plot]'``).
    alpha : float, default=0.5
        Opacity of the colored map, from 0 (image only) to 1 (map only).
    vmin, vmax : float, default=None
        Map values shown as the low and high ends of the colormap; values
        outside are clipped. Default to the minimum and maximum of the map
        (an end left out never passes the one given: with ``vmin`` alone, a
        map wholly below it shows as the low end), so pass fixed values to
        compare several overlays. A constant map (or ``vmin == vmax``)
        shows as the low end, and any value above ``vmin == vmax`` as the
        high end.
    threshold : float, default=None
        If given, the boundary of the region where the (resized) map is
        ``> threshold`` (as :meth:`~skanomaly.EfficientNetGaussianDetector.segment`
        outlines it), in map units, is drawn one pixel wide in
        ``contour_color``. Where the region reaches the image border, the
        border is not outlined.
    contour_color : tuple of 3 int, default=(255, 255, 255)
        RGB color of the contour.
    title : str, default=None
        If given, written in white on black in the top-left corner with
        Pillow's default font, which draws printable ASCII only: accents
        are dropped (``"é"`` is written ``"e"``) and other characters are
        written ``"?"``.

    Returns
    -------
    overlay : ndarray of shape (H, W, 3), dtype uint8
        The blended RGB image.

    Raises
    ------
    TypeError
        If ``alpha``, ``vmin``, ``vmax`` or ``threshold`` is not a number.
    ValueError
        If the map or image holds NaN, is empty or out of range, or an
        argument is invalid.
    OSError
        If ``path`` cannot be written; the message names the path.

    Examples
    --------
    >>> import numpy as np
    >>> from skanomaly.plotting import overlay_heatmap
    >>> image = np.full((32, 32), 128, dtype=np.uint8)
    >>> anomaly_map = np.zeros((8, 8))
    >>> anomaly_map[2:5, 2:5] = 1.0
    >>> overlay = overlay_heatmap(image, anomaly_map, threshold=0.5)
    >>> overlay.shape, overlay.dtype
    ((32, 32, 3), dtype('uint8'))
    """
    rgb = _image_to_rgb(image)
    anomaly_map = np.asarray(anomaly_map)
    if anomaly_map.ndim != 2 or anomaly_map.size == 0:
        raise ValueError(
            f"anomaly_map must be a non-empty 2-D array; got shape {anomaly_map.shape}."
        )
    if anomaly_map.dtype.kind not in "biuf":
        raise TypeError(
            f"anomaly_map has dtype {anomaly_map.dtype}; anomaly maps must be real numbers."
        )
    anomaly_map = anomaly_map.astype(np.float64)
    if not np.all(np.isfinite(anomaly_map)):
        raise ValueError("anomaly_map contains NaN or infinity.")
    for name, value in (("vmin", vmin), ("vmax", vmax), ("threshold", threshold)):
        if value is not None:
            check_finite_number(name, value)
    check_finite_number("alpha", alpha)
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha!r}.")
    color = np.asarray(contour_color)
    if color.shape != (3,) or color.dtype.kind not in "ui" or color.min() < 0 or color.max() > 255:
        raise ValueError(f"contour_color must be 3 integers in 0..255; got {contour_color!r}.")
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a string; got {type(title).__name__}.")
    colormap = _colormap(cmap)

    height, width = rgb.shape[:2]
    if anomaly_map.shape != (height, width):
        anomaly_map = resize_bilinear(anomaly_map, (height, width))
    # An end left out follows the map, but never past the end given: a map
    # wholly below vmin is drawn at the low end, not refused.
    low = float(vmin) if vmin is not None else float(anomaly_map.min())
    high = float(vmax) if vmax is not None else float(anomaly_map.max())
    if vmin is None:
        low = min(low, high)
    elif vmax is None:
        high = max(high, low)
    if low > high:
        raise ValueError(f"vmin ({low:g}) must not exceed vmax ({high:g}).")
    if high > low:
        normalized = np.clip((anomaly_map - low) / (high - low), 0.0, 1.0)
    else:
        # A scale of one value: the map above it at the top, the rest at the bottom.
        normalized = (anomaly_map > high).astype(np.float64)

    blended = (1 - alpha) * rgb + alpha * colormap(normalized)[..., :3]
    overlay = np.round(blended * 255).astype(np.uint8)
    if threshold is not None:
        overlay[outline(anomaly_map > threshold, frame=False)] = color
    if title is not None:
        overlay = _draw_title(overlay, title)
    if path is not None:
        write_png(overlay, path)
    return overlay


def save_heatmaps(images, maps, out_dir, names=None, **kwargs):
    """Write one heatmap overlay PNG per image into a folder.

    Parameters
    ----------
    images : sequence of images
        ``(n, H, W[, C])`` array or list of images as accepted by
        :func:`overlay_heatmap`; sizes may differ in a list.
    maps : sequence of anomaly maps
        ``(n, h, w)`` array or list of 2-D maps, one per image.
    out_dir : str or path-like
        Folder for the PNG files, created (with its parents) if missing.
    names : list of str, default=None
        File name of each PNG, without folders; ``.png`` is appended when
        missing. Defaults to ``0000.png``, ``0001.png``, ...
    **kwargs
        Passed to :func:`overlay_heatmap` (``cmap``, ``alpha``, ``vmin``,
        ``vmax``, ``threshold``, ...). Without ``vmin`` and ``vmax`` each
        map is scaled to its own range, so colors are comparable across
        files only when both are given.

    Returns
    -------
    paths : list of pathlib.Path
        The written files, in the order of ``images``.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from skanomaly.plotting import save_heatmaps
    >>> images = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    >>> maps = np.random.default_rng(0).random((2, 4, 4))
    >>> with tempfile.TemporaryDirectory() as out_dir:
    ...     paths = save_heatmaps(images, maps, out_dir, vmin=0, vmax=1)
    ...     [path.name for path in paths]
    ['0000.png', '0001.png']
    """
    if "path" in kwargs:
        raise TypeError("save_heatmaps names the files itself; pass names, not path.")
    if len(images) == 0:
        raise ValueError("images is empty.")
    if len(images) != len(maps):
        raise ValueError(f"Got {len(images)} images but {len(maps)} anomaly maps.")
    if names is None:
        digits = max(4, len(str(len(images) - 1)))
        names = [f"{index:0{digits}d}.png" for index in range(len(images))]
    else:
        names = list(names)
        if len(names) != len(images):
            raise ValueError(f"Got {len(names)} names for {len(images)} images.")
        for name in names:
            if not isinstance(name, str) or not name or Path(name).name != name:
                raise ValueError(f"names must be plain file names without folders; got {name!r}.")
        names = [name if name.lower().endswith(".png") else f"{name}.png" for name in names]
        if len(set(names)) != len(names):
            raise ValueError("names must be unique.")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"Could not create the folder {str(out_dir)!r}: {exc}") from exc
    paths = []
    for index, (image, anomaly_map, name) in enumerate(zip(images, maps, names, strict=True)):
        path = out_dir / name
        try:
            overlay_heatmap(image, anomaly_map, path=path, **kwargs)
        except (TypeError, ValueError) as exc:
            exc.add_note(f"While drawing image {index} ({name}).")
            raise
        paths.append(path)
    return paths
