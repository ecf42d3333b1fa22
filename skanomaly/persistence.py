"""Model files: a fitted detector saved with the versions that wrote it.

A model file is a joblib pickle of a dictionary that holds the detector, the
skanomaly and scikit-learn versions that wrote it and the file format
number. :func:`save` writes one and :func:`load` checks it; the command
line's ``fit`` and ``score``/``explain`` use the same two functions.

Loading a pickle runs code: only load model files you created or trust.
"""

import warnings
from pathlib import Path

from ._version import __version__

__all__ = ["MODEL_FORMAT", "check_version", "check_writable", "load", "save"]

#: Version of the layout of model files; :func:`load` refuses other ones.
MODEL_FORMAT = 1


def _compatible(version):
    """Whether a model saved by skanomaly ``version`` loads in this one.

    Fitted attributes may change between minor versions, so the major and
    minor versions must agree.
    """
    return version is not None and str(version).split(".")[:2] == __version__.split(".")[:2]


def check_version(saved_version):
    """Refuse a detector saved by an incompatible skanomaly version.

    Parameters
    ----------
    saved_version : str or None
        The skanomaly version that saved the detector; None for versions
        before 0.1, which did not record it.

    Raises
    ------
    ValueError
        Unless ``saved_version`` agrees with this version in major.minor.
    """
    if not _compatible(saved_version):
        raise ValueError(
            f"This detector was saved by skanomaly {saved_version or '< 0.1'} and "
            f"cannot be loaded by skanomaly {__version__}: versions must "
            "agree in major.minor. Refit it with this version."
        )


def check_writable(path):
    """Refuse a model path that :func:`save` could not write.

    Called before a long fit, so that a mistyped path fails at once.

    Parameters
    ----------
    path : str or path-like
        Where the model file is to be written.

    Raises
    ------
    IsADirectoryError
        If ``path`` is a folder.
    FileNotFoundError
        If the folder that should hold ``path`` does not exist.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write the model to {str(path)!r}: it is a folder")
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"cannot write the model file {str(path)!r}: folder "
            f"{str(path.parent)!r} does not exist"
        )


def save(detector, path):
    """Write a fitted detector to a model file.

    Parameters
    ----------
    detector : EfficientNetGaussianDetector
        The fitted detector. Its network is not saved: it is rebuilt from
        its name or weights file when the model is loaded.
    path : str or path-like
        The file to write, conventionally ``*.joblib``.

    Raises
    ------
    OSError
        If ``path`` cannot be written (:class:`IsADirectoryError` and
        :class:`FileNotFoundError` as in :func:`check_writable`).

    See Also
    --------
    load : Read the model file back.

    Examples
    --------
    >>> import skanomaly
    >>> skanomaly.save(detector, "model.joblib")  # doctest: +SKIP
    >>> detector = skanomaly.load("model.joblib")  # doctest: +SKIP
    """
    import joblib
    import sklearn

    path = Path(path)
    check_writable(path)
    payload = {
        "skanomaly_version": __version__,
        "format": MODEL_FORMAT,
        "sklearn_version": sklearn.__version__,
        "detector": detector,
    }
    try:
        joblib.dump(payload, path)
    except OSError as exc:
        raise OSError(f"cannot write the model file {str(path)!r}: {exc.strerror or exc}") from exc


def _read(path):
    """The payload of the model file ``path``, unchecked."""
    import joblib

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"model file {str(path)!r} is a folder")
    try:
        # Unpickling warns about scikit-learn versions; the version check
        # below says what matters in one sentence.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return joblib.load(path)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "corrupt"
        raise ValueError(
            f"{str(path)!r} is not a readable skanomaly model file "
            f"({type(exc).__name__}: {reason})"
        ) from exc


def load(path):
    """Read a fitted detector from a model file written by :func:`save`.

    Parameters
    ----------
    path : str or path-like
        The model file. Loading it runs code (it is a pickle): only load
        files you created or trust.

    Returns
    -------
    detector : EfficientNetGaussianDetector
        The fitted detector.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    IsADirectoryError
        If ``path`` is a folder.
    ValueError
        If the file is not a readable model file, was written by a
        skanomaly version that differs in major.minor or in another file
        format, or holds no fitted detector.

    See Also
    --------
    save : Write a model file.
    """
    from .detector import EfficientNetGaussianDetector

    payload = _read(path)
    path = str(Path(path))
    if not isinstance(payload, dict) or "skanomaly_version" not in payload:
        raise ValueError(
            f"{path!r} is not a skanomaly model file (write one with 'skanomaly fit')"
        )
    version = payload.get("skanomaly_version")
    if payload.get("format") != MODEL_FORMAT or not _compatible(version):
        raise ValueError(
            f"model file {path!r} was written by skanomaly {version} (format "
            f"{payload.get('format')}), incompatible with skanomaly {__version__}; "
            "fit it again with this version"
        )
    detector = payload.get("detector")
    if not isinstance(detector, EfficientNetGaussianDetector) or not hasattr(detector, "offset_"):
        raise ValueError(f"model file {path!r} holds no fitted detector")
    return detector
