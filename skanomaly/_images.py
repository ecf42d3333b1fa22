"""Validation of image inputs and their conversion to float tensors.

Every public entry point goes through :class:`ImageSource`, so bad input is
rejected with a clear message here, before anything reaches torch.
"""

import numbers
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from scipy import sparse

from ._pixels import default_range
from ._stacklevel import user_stacklevel

__all__ = ["BATCH_PIXELS", "ImageSource", "open_image", "read_image", "rgb_image"]

#: The most pixels a batch holds: their float32 RGB copy takes 192 MiB, one
#: image of 16.8 megapixels, or 16 of 1 megapixel (the default batch_size).
#: Scoring 8 images of 12 megapixels raised the peak by 1,176 MiB in one
#: batch and by 276 one at a time, at the same speed (median 0.86 against
#: 0.80 s; 3 interleaved processes of 7 repeats, 2-core AMD EPYC): resizing
#: such an image costs far more than its share of a batched forward pass.
BATCH_PIXELS = 2**24


def open_image(path, convert):
    """``convert`` applied to the decoded image file at ``path``, upright.

    The EXIF orientation tag of phone photos and camera exports is applied,
    so the pixels are those that image viewers show. Multi-frame files
    (multi-page TIFF, animated GIF) give their first frame, with a warning.
    Missing files raise FileNotFoundError; undecodable ones, and files
    larger than Pillow's decompression-bomb limit, ValueError; both name
    the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Image file {str(path)!r} does not exist.")
    try:
        with _open_refusing_bombs(path) as image:
            _warn_if_several_frames(image, path)
            # Truncated files open without complaint and fail only when decoded.
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            return convert(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError(
            f"Image file {str(path)!r} has more pixels than the limit of "
            f"{Image.MAX_IMAGE_PIXELS:,} (PIL.Image.MAX_IMAGE_PIXELS) that guards "
            "against decompression bombs, so it was not decoded. If the file is "
            "genuine, raise the limit: PIL.Image.MAX_IMAGE_PIXELS = <pixels>."
        ) from None
    except Exception as exc:
        # Pillow reports corrupt data with many exception types (OSError,
        # SyntaxError, struct.error, ...); all of them mean the same here.
        raise ValueError(f"Cannot read image file {str(path)!r}: {exc}") from exc


def _open_refusing_bombs(path):
    """``Image.open(path)``, raising above Pillow's pixel limit.

    Pillow raises above twice ``Image.MAX_IMAGE_PIXELS`` but between once
    and twice only warns, and then decodes: here both raise, from the header
    alone, before any pixel is decoded.
    """
    # Warnings filters are process-wide; Pillow offers no other way to stop
    # before decoding. Only this one category changes, and only meanwhile.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(path)


def _warn_if_several_frames(image, path):
    # The frames after the first of a camera's MPO JPEG are previews or
    # stereo views, not pages: the first is the photo.
    if getattr(image, "is_animated", False) and image.format != "MPO":
        warnings.warn(
            f"Image file {str(path)!r} holds several frames (pages); only the first is used.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


# 16-bit grayscale modes; "I" is also how older Pillow versions open them.
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I")


def rgb_image(image):
    """An 8-bit RGB copy of the PIL ``image``, whatever its mode.

    16-bit grayscale is scaled to 8 bits (PIL's own conversion would clip
    it; 32-bit integers outside 0..65535 are refused). 32-bit float
    grayscale is read from [0, 1], as float arrays are, and refused outside
    it (PIL's conversion would clip it to 0..255: raw counts became a white
    image, [0, 1] a black one). Palettes are expanded, CMYK is converted
    with Pillow's formula (without an ICC profile), and an alpha channel is
    dropped: the stored colours are used, as for RGBA arrays.
    """
    if image.mode in _SIXTEEN_BIT:
        values = np.asarray(image)
        # Mode "I" also holds 32-bit integers, which /257 would clip.
        _value_map(values, "The 16-bit image", (0, 65535))
        gray = (values / 257.0).round().astype(np.uint8)
        image = Image.fromarray(gray)
    elif image.mode == "F":
        values = np.asarray(image)
        low, scale = _value_map(values, "The 32-bit float image", None)
        image = Image.fromarray(np.round((values - low) * scale * 255).astype(np.uint8))
    elif image.mode in ("P", "PA"):
        # Converting a palette with transparency straight to RGB warns; the
        # colours are the same through RGBA.
        image = image.convert("RGBA")
    return image.convert("RGB")


def read_image(path):
    """Read an image file into an upright ``(H, W, 3)`` uint8 RGB array."""
    return open_image(path, lambda image: np.asarray(rgb_image(image)))


def _check_dtype(array, where):
    kind = array.dtype.kind
    if kind == "b":
        raise TypeError(f"{where} has dtype bool; images must be uint8 or float.")
    if kind == "c":
        raise ValueError(f"{where} has the complex dtype {array.dtype}; images must be real.")
    if kind not in "uif":
        raise TypeError(
            f"{where} has dtype {array.dtype}; images must be numeric arrays "
            "(uint8 in 0..255 or float in [0, 1]) or image file paths."
        )


def _check_pixel_range(pixel_range):
    if pixel_range is None:
        return None
    try:
        low, high = (float(v) for v in pixel_range)
    except (TypeError, ValueError):
        raise ValueError(f"pixel_range must be None or (low, high); got {pixel_range!r}.") from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"pixel_range must be finite with low < high; got {pixel_range!r}.")
    return low, high


def _value_map(array, where, pixel_range):
    """``(low, scale)`` with ``(array - low) * scale`` in [0, 1], after checking."""
    low, high = pixel_range or default_range(array.dtype)
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ValueError(f"{where} contains NaN or infinity.")
    # uint8 and uint16 pixels cannot leave their default ranges.
    spans_range = array.dtype.kind == "u" and array.dtype.itemsize <= 2
    if array.size and (pixel_range is not None or not spans_range):
        seen_low, seen_high = float(array.min()), float(array.max())
        if seen_low < low or seen_high > high:
            hint = ""
            if (
                pixel_range is None
                and array.dtype.kind == "f"
                and seen_low >= 0
                and seen_high <= 255
            ):
                hint = " (for 8-bit data divide by 255 or pass pixel_range=(0, 255))"
            raise ValueError(
                f"{where} has values in [{seen_low:g}, {seen_high:g}], outside the "
                f"pixel range [{low:g}, {high:g}] expected for dtype "
                f"{array.dtype}{hint}."
            )
    return low, 1.0 / (high - low)


def _check_image_shape(image_shape):
    if image_shape is None:
        return None
    shape = tuple(image_shape) if not isinstance(image_shape, numbers.Integral) else None
    if (
        shape is None
        or len(shape) not in (2, 3)
        or not all(isinstance(s, numbers.Integral) for s in shape)
        or any(s == 0 or s < -1 for s in shape)
        or sum(s == -1 for s in shape) > 1
        or (len(shape) == 3 and shape[2] not in (1, 3, 4, -1))
    ):
        raise ValueError(
            f"image_shape must be (height, width) or (height, width, channels) "
            f"with positive sizes (one may be -1); got {image_shape!r}."
        )
    return shape


def _as_images_array(X, image_shape):
    """Bring an ndarray of checked dtype to (n, H, W, C) with C in {1, 3, 4}."""
    shape = _check_image_shape(image_shape)
    if X.ndim == 2:
        if shape is None:
            raise ValueError(
                f"X is 2-D with shape {X.shape}: pass image_shape=(height, width"
                "[, channels]) so that each row can be read as an image, or pass "
                "images as an (n, H, W[, C]) array."
            )
        try:
            X = X.reshape((X.shape[0], *shape))
        except ValueError:
            raise ValueError(
                f"X has {X.shape[1]} features per row, which cannot be reshaped "
                f"to image_shape={tuple(image_shape)}."
            ) from None
    elif X.ndim == 3 and X.shape[-1] in (1, 3, 4):
        # A last axis of 1, 3 or 4 is almost surely one image's channels,
        # whatever its size; grayscale images that narrow must say so (rows
        # reshaped by image_shape say what they are).
        raise ValueError(
            f"X has shape {X.shape}, which reads as {X.shape[0]} grayscale "
            f"images of {X.shape[1]}x{X.shape[2]} pixels; for one "
            "image pass X[np.newaxis] (for grayscale images that narrow, "
            "X[..., np.newaxis])."
        )
    if X.ndim == 3:
        X = X[..., np.newaxis]
    if X.ndim < 2:
        raise ValueError(
            f"X has shape {X.shape} but must be a stack of images. Reshape your "
            "data: X[np.newaxis] if it holds one image, or pass image_shape for "
            "flattened rows."
        )
    if X.ndim != 4:
        raise ValueError(
            f"X must be an array of images of shape (n, H, W), (n, H, W, C) or "
            f"(n, H*W*C) with image_shape; got {X.ndim} dimension(s), shape {X.shape}."
        )
    if X.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"X has shape {X.shape}: the last axis must be 1, 3 or 4 channels "
            "(channels last); for (n, C, H, W) arrays pass X.transpose(0, 2, 3, 1)."
        )
    return X


def _check_one_image(image, index):
    where = f"image {index} of X"
    _check_dtype(image, where)
    if image.ndim == 2:
        image = image[..., np.newaxis]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"{where} has shape {image.shape}; each image must be (H, W) or "
            "(H, W, C) with C in 1, 3 or 4."
        )
    if 0 in image.shape[:2]:
        raise ValueError(f"{where} has no pixels: shape {image.shape}.")
    return image


def _as_numeric(X):
    """An ndarray from array-likes, object arrays of numbers included."""
    if sparse.issparse(X):
        raise TypeError("X is a sparse matrix; images must be dense arrays (X.toarray()).")
    X = np.asarray(X)
    if X.dtype == object:
        try:
            X = X.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                "X is an object array that does not hold numbers; images of "
                f"different sizes go in a list of arrays ({exc})."
            ) from None
    return X


class ImageSource:
    """Validated images, handed out in batches of float tensors.

    Parameters
    ----------
    X : array-like or list
        An ``(n, H, W)``, ``(n, H, W, C)`` or (with ``image_shape``)
        ``(n, H*W*C)`` array, or a list of image arrays, PIL images (read
        as files are: palettes expanded, 16-bit scaled to 8) or file paths
        whose sizes may differ. Grayscale is replicated to RGB and an alpha
        channel is dropped.
    image_shape : tuple, default=None
        How to read the rows of a 2-D ``X``.
    pixel_range : (float, float), default=None
        The values that map to black and white. None means 0..255 for uint8
        and other integers, 0..65535 for uint16 and [0, 1] for floats.

    Attributes
    ----------
    image_shape : tuple or None
        ``(H, W, C)`` shared by all images of an array ``X``; None for lists.
    """

    def __init__(self, X, image_shape=None, pixel_range=None):
        pixel_range = _check_pixel_range(pixel_range)
        self.image_shape = None
        self._paths = None
        self._array = None
        self._images = None
        self._uniform = False
        if isinstance(X, (str, os.PathLike)):
            raise TypeError(
                "X is a single path; pass a list of image paths (e.g. [path]) "
                "or an array of images."
            )
        if isinstance(X, np.ndarray) and X.ndim == 1 and X.dtype.kind in "UO":
            # The file names of the loaders, or a column of a table.
            X = X.tolist()
        if isinstance(X, (list, tuple)) and X and all(isinstance(x, (str, os.PathLike)) for x in X):
            self._paths = [Path(x) for x in X]
            missing = [str(p) for p in self._paths if not p.is_file()]
            if missing:
                raise FileNotFoundError(
                    f"{len(missing)} image file(s) do not exist, e.g. {missing[0]!r}."
                )
            self.n_images = len(self._paths)
            return
        if sparse.issparse(X):
            _as_numeric(X)
        if X is None or isinstance(X, (numbers.Number, dict, set)):
            raise TypeError(
                f"X must be an array of images or a list of images or image "
                f"paths; got {type(X).__name__}."
            )
        if isinstance(X, (list, tuple)):
            if any(isinstance(x, (str, os.PathLike)) for x in X):
                raise TypeError(
                    "X mixes image paths with arrays or other objects; pass a list "
                    "of paths only, or of image arrays only."
                )
            # A PIL image's array holds palette indices, 16-bit counts or
            # CMYK as stored: its pixels are read as those of a file are.
            arrays = [_as_numeric(rgb_image(x) if isinstance(x, Image.Image) else x) for x in X]
            # Images, each checked and kept as it is (stacking them all would
            # hold every image twice); rows of a table, or nested lists, of
            # one shape stack into one array instead.
            if arrays and (
                any(a.ndim in (2, 3) for a in arrays) or len({a.shape for a in arrays}) > 1
            ):
                self._images = [_check_one_image(a, i) for i, a in enumerate(arrays)]
                self._maps = [
                    _value_map(a, f"image {i} of X", pixel_range)
                    for i, a in enumerate(self._images)
                ]
                # Images of one size and dtype (so of one value map) are
                # stacked a batch at a time, as the rows of an array are.
                self._uniform = len({(a.shape, a.dtype) for a in self._images}) == 1
                self.n_images = len(self._images)
                return
            X = np.stack(arrays) if arrays else np.empty((0, 0))
        else:
            X = _as_numeric(X)
        _check_dtype(X, "X")
        if X.ndim >= 1 and X.shape[0] == 0:
            raise ValueError(f"X is empty (shape {X.shape}); at least one image is needed.")
        X = _as_images_array(X, image_shape)
        if 0 in X.shape[1:3]:
            raise ValueError(f"Images in X have no pixels: shape {X.shape}.")
        self._map_all = _value_map(X, "X", pixel_range)
        self._array = X
        self.image_shape = X.shape[1:]
        self.n_images = X.shape[0]

    def __len__(self):
        return self.n_images

    def image(self, index):
        """Image ``index`` as an ``(H, W, C)`` array and its value map."""
        if self._array is not None:
            return self._array[index], self._map_all
        if self._images is not None:
            return self._images[index], self._maps[index]
        return read_image(self._paths[index]), (0.0, 1 / 255)

    def tensor(self, index):
        """Image ``index`` as a float32 ``(3, H, W)`` tensor in [0, 1], on the CPU."""
        return self._to_tensor(*self.image(index))

    @staticmethod
    def _to_tensor(block, value_map, device=None):
        """``(..., H, W, C)`` to float32 RGB ``(..., 3, H, W)`` in [0, 1] on
        ``device``."""
        low, scale = value_map
        if block.shape[-1] == 4:
            block = block[..., :3]
        # 8-bit pixels travel to an accelerator as they are, a quarter of the
        # bytes of float32, and are converted there.
        dtype = np.uint8 if block.dtype == np.uint8 else np.float32
        block = np.ascontiguousarray(block, dtype=dtype)
        if not block.flags.writeable:
            # torch warns about read-only arrays (np.asarray of a PIL image
            # is one) although it never writes to this one; a copy is silent.
            block = block.copy()
        tensor = torch.from_numpy(block)
        # One float copy, scaled in place: the batch holds the images at
        # their full size (each 144 MB at 12 megapixels) until the network
        # resizes them. A tensor still sharing the caller's float32 array is
        # copied, so that the array is never written to.
        moved = tensor.to(device)
        tensor = moved.to(torch.float32, copy=moved is tensor)
        tensor.sub_(low).mul_(scale)
        tensor = tensor.movedim(-1, -3)
        if tensor.shape[-3] == 1:
            tensor = tensor.expand(*tensor.shape[:-3], 3, *tensor.shape[-2:])
        return tensor

    def batches(self, batch_size, device=None):
        """Yield ``(start, images)`` with ``images`` a list of ``(3, H, W)``
        tensors, or one ``(b, 3, H, W)`` tensor for images of one size and
        dtype, on ``device`` (default the CPU): ``batch_size`` images, or
        fewer where their float32 pixels would pass ``BATCH_PIXELS`` (one
        image at least), as each is held at full size until the network
        resizes it."""
        if self._array is not None or self._uniform:
            height, width = self.image(0)[0].shape[:2]
            step = min(batch_size, max(1, BATCH_PIXELS // (height * width)))
            for start in range(0, self.n_images, step):
                stop = min(start + step, self.n_images)
                if self._array is not None:
                    block, value_map = self._array[start:stop], self._map_all
                else:
                    block, value_map = np.stack(self._images[start:stop]), self._maps[start]
                yield start, self._to_tensor(block, value_map, device)
            return
        start, batch, pixels = 0, [], 0
        for index in range(self.n_images):
            image, value_map = self.image(index)
            size = image.shape[0] * image.shape[1]
            if batch and (len(batch) == batch_size or pixels + size > BATCH_PIXELS):
                yield start, batch
                start, batch, pixels = index, [], 0
            batch.append(self._to_tensor(image, value_map, device))
            pixels += size
        yield start, batch
