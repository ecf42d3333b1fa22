"""Files on disk: which files are images, and writing files crash-safely.

The data set loaders and the command line list folders with
:func:`list_images`, so both agree on what an image file is. Every file
skanomaly writes (model files, CSVs, reports, PNGs) goes through
:func:`atomic_write`, so that a crash, a full disk or a Ctrl-C while
writing leaves the previous file as it was, never a truncated one.
"""

import contextlib
import os
import secrets
import stat
from operator import attrgetter
from pathlib import Path

__all__ = [
    "IMAGE_EXTENSIONS",
    "as_path",
    "atomic_write",
    "check_folder",
    "list_images",
    "write_png",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def check_folder(folder, what="Folder"):
    """``folder`` as a path, refused unless it is a folder (a
    ``FileNotFoundError`` that says whether it is a file or missing)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} {str(folder)!r} {_why_not_a_folder(folder)}.")
    return folder


def _why_not_a_folder(path):
    return "is a file, not a folder" if path.exists() else "does not exist"


def list_images(folder):
    """The image files of ``folder`` and how many other files it holds.

    Hidden files (names starting with ``"."``) are neither: among them are
    the ``._name.png`` metadata files that macOS leaves on shared drives,
    which have an image extension but are not images, and the temporary
    files of :func:`atomic_write`. Subfolders are not searched.

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
    folder = check_folder(folder)
    # A link whose target is gone is listed, so that reading it fails and
    # names it, as for any unreadable file, instead of a silent gap.
    files = [
        p
        for p in folder.iterdir()
        if not p.name.startswith(".") and (p.is_file() or (p.is_symlink() and not p.exists()))
    ]
    images = sorted(
        (p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS), key=attrgetter("name")
    )
    return images, len(files) - len(images)


def _temporary_beside(target):
    """A new, empty hidden file in ``target``'s folder, opened for writing."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            # Mode 0o666 lets the umask decide, as for a file opened with
            # open(); mkstemp's 0o600 would hide reports from their readers.
            return temporary, os.open(temporary, flags, 0o666)
        except FileExistsError:
            continue


def _sync_folder(folder):
    """Flush the folder entry of a renamed file to disk, where possible."""
    # Windows cannot open folders; there, and on file systems that refuse,
    # the rename is still atomic, only perhaps not yet durable.
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def as_path(path, name):
    """``path`` as a Path; a TypeError saying that ``name`` (e.g. "the path
    of the model file") must be a str or path-like otherwise, where pathlib's
    own error would not say which argument it was. Not scikit-learn's
    validate_params: the command line imports this, and its --help must not
    wait for scikit-learn."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or path-like; got {type(path).__name__}")
    return Path(path)


def check_writable(path, what):
    """``path`` as a Path, or an error saying why ``what`` (e.g. "the model
    file") cannot be written there: checked before long work, so that a
    mistyped path fails at once.

    Raises
    ------
    TypeError
        If ``path`` is not a str or path-like.
    IsADirectoryError
        If ``path`` is a folder, or ends with a separator as a folder's does.
    FileNotFoundError
        If the folder that should hold ``path`` does not exist.
    """
    path, text = as_path(path, f"the path of {what}"), path
    # Path() drops a trailing separator, which says that a folder is meant.
    if path.is_dir() or str(os.fspath(text)).endswith(("/", os.sep)):
        raise IsADirectoryError(f"cannot write {what} to {str(text)!r}: it is a folder")
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"cannot write {what} {str(path)!r}: folder {str(path.parent)!r} "
            f"{_why_not_a_folder(path.parent)}"
        )
    return path


@contextlib.contextmanager
def atomic_write(path, mode="wb", **kwargs):
    """Open a file that replaces ``path`` only once it is completely written.

    The data goes to a hidden temporary file in the same folder, which is
    flushed to disk and then renamed over ``path`` in one step
    (:func:`os.replace`). If anything fails or interrupts the writing (an
    exception, a full disk, ``KeyboardInterrupt``), the temporary file is
    removed and ``path`` keeps its previous content, or stays absent.

    Parameters
    ----------
    path : str or path-like
        The file to write. A symbolic link is followed: the file it points
        to is replaced and the link kept. An existing file keeps its
        permissions. A pipe or a device (such as ``/dev/stdout``) is
        written directly, as a stream: nothing replaces it.
    mode : {"wb", "w"}, default="wb"
        Binary or text.
    **kwargs
        Passed to :func:`open` (``encoding``, ``newline``).

    Yields
    ------
    handle : file object
        The open temporary file.

    Raises
    ------
    OSError
        If the folder cannot be written to; what the temporary file held
        is removed.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w'; got {mode!r}")
    if _is_stream(path):
        # A pipe or a device (/dev/stdout) is written as it is: renaming a
        # file over it would replace the device node or the pipe itself.
        with open(path, mode, **kwargs) as handle:
            yield handle
        return
    target = Path(os.path.realpath(path))
    temporary, descriptor = _temporary_beside(target)
    try:
        with open(descriptor, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(temporary, stat.S_IMODE(os.stat(target).st_mode))
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _sync_folder(target.parent)


def _is_stream(path):
    """Whether ``path`` is a pipe, a character device or a socket."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def write_png(array, path):
    """Write an image array to ``path`` as a PNG file, whatever its extension.

    Written with :func:`atomic_write`: an interrupted write leaves no
    partial file.

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

    image = Image.fromarray(array)
    try:
        with atomic_write(path) as handle:
            image.save(handle, format="PNG")
    except OSError as exc:
        raise OSError(f"Could not write the PNG file {str(path)!r}: {exc.strerror or exc}") from exc
