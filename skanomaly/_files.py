"""Image files on disk: which files are images, and writing PNGs.

The data set loaders and the command line list folders with
:func:`list_images`, so both agree on what an image file is; plotting and
the command line's report write with :func:`write_png`.
"""

from operator import attrgetter
from pathlib import Path

__all__ = ["IMAGE_EXTENSIONS", "list_images", "write_png"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def list_images(folder):
    """The image files of ``folder`` and how many other files it holds.

    Hidden files (names starting with ``"."``) are neither: among them are
    the ``._name.png`` metadata files that macOS leaves on shared drives,
    which have an image extension but are not images. Subfolders are not
    searched.

    Parameters
    ----------
    folder : str or path-like
        The folder to list.

    Returns
    -------
    images : list of pathlib.Path
        The files whose extension is in :data:`IMAGE_EXTENSIONS` (any case),
        sorted by name.
    n_other : int
        The number of other (not hidden) files.

    Raises
    ------
    FileNotFoundError
        If ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Folder {str(folder)!r} does not exist.")
    files = [p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file()]
    images = sorted(
        (p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS), key=attrgetter("name")
    )
    return images, len(files) - len(images)


def write_png(array, path):
    """Write an image array to ``path`` as a PNG file, whatever its extension.

    Parameters
    ----------
    array : ndarray of shape (H, W) or (H, W, 3), dtype uint8
        The image.
    path : str or path-like
        Where to write it.

    Raises
    ------
    OSError
        If ``path`` cannot be written; the message names it.
    """
    # Pillow is imported here so that `skanomaly --help` does not pay for it.
    from PIL import Image

    try:
        Image.fromarray(array).save(path, format="PNG")
    except OSError as exc:
        raise OSError(f"Could not write the PNG file {str(path)!r}: {exc.strerror or exc}") from exc
