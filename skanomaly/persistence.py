"""Model files: a fitted detector as arrays and settings, never as code.

A model file is a NumPy ``.npz`` archive (``np.savez``, uncompressed)
written by :func:`save` and read by :func:`load`; skanomaly names them
``*.skanomaly``. It holds:

- one entry per array of the fitted detector (the location, covariance and
  precision of each Gaussian, calibration scores, NumPy scalars), named
  after where it belongs, e.g. ``gaussians_.0.precision`` (an array
  parameter would be ``params.<name>``);
- the entry ``__metadata__``: UTF-8 JSON bytes with the file format number,
  the skanomaly, scikit-learn and NumPy versions that wrote it, the
  estimator's class name, its parameters (``get_params``) and every fitted
  attribute (public names ending in ``_``), in which each array is referred
  to by the name of its entry.

Why not a pickle, or skops: a pickle runs code when it is loaded, so a model
file from a colleague, a vendor or a shared drive could run anything on the
inspection PC. skops makes pickles safer with a list of trusted types, but
the fitted detector is only arrays, numbers and strings, and a format that
holds data can be read with ``np.load(allow_pickle=False)`` and
:mod:`json`, which never execute code, without a new dependency. Loading
rebuilds the detector from its class (one that skanomaly knows) and its
parameters; nothing in the file chooses which code runs.

Not saved: the network (rebuilt from its name or weights file, and checked
against ``weights_digest_``), the running moments of ``partial_fit`` (a
loaded model cannot continue a stream), and ``memory``, a cache location on
the machine that fitted (the loaded detector has ``memory=None``). A
``weights`` path is saved as a string, ``device`` as its name.

Model files of the first format (early builds of skanomaly 0.1) are joblib
pickles: :func:`load` refuses them unless ``trust_pickle=True``.
"""

import contextlib
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np

from ._files import as_path, atomic_write
from ._files import check_writable as _check_writable
from ._fitted_checks import GAUSSIAN_FIELDS, invalid_attribute, missing_attributes
from ._stacklevel import user_stacklevel
from ._version import __version__

__all__ = ["MODEL_FORMAT", "MODEL_SUFFIX", "check_version", "check_writable", "load", "save"]

#: Version of the layout of model files; :func:`load` refuses other ones.
MODEL_FORMAT = 2
#: The file name suffix of model files, by convention (any name loads).
MODEL_SUFFIX = ".skanomaly"

# The first layout (early builds of skanomaly 0.1): a joblib pickle of a dict.
_PICKLE_FORMAT = 1
_METADATA = "__metadata__"
_ZIP_MAGIC = b"PK\x03\x04"
_SAVED_TYPES = (
    "None, bool, int, float, str, NumPy scalars, numeric arrays, Gaussians, "
    "and tuples, lists and dicts of them"
)


class _ModelFileError(ValueError):
    """What is wrong with a model file, already said in full."""


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
    TypeError
        If ``path`` is not a str or path-like.
    IsADirectoryError
        If ``path`` is a folder.
    FileNotFoundError
        If the folder that should hold ``path`` does not exist.
    """
    _check_writable(path, "the model file")


def _estimators():
    """The classes a model file may hold, by name."""
    from .detector import EfficientNetGaussianDetector

    return {"EfficientNetGaussianDetector": EfficientNetGaussianDetector}


def _is_fitted_name(name):
    return isinstance(name, str) and name.endswith("_") and not name.startswith("_")


# ------------------------------------------------------------------ saving
class _Encoder:
    """Values as JSON, with their arrays set aside under unique names.

    Lists and JSON scalars stay as they are; every other value becomes an
    object with one key that says what it is: ``tuple``, ``dict`` (a list of
    key-value pairs, so that keys need not be strings), ``float`` (a
    non-finite one, as text), ``array`` and ``scalar`` (the name of an
    entry), ``strings`` (an object array of strings, such as scikit-learn's
    ``feature_names_in_``) and ``gaussian``.
    """

    def __init__(self):
        self.arrays = {}

    def encode(self, value, name):
        """``value`` as JSON; ``name`` is where it is, for entry names and errors."""
        from .gaussian import Gaussian

        if isinstance(value, (np.ndarray, np.generic)):
            return self._array(value, name)
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"float": repr(value)}
        if isinstance(value, (list, tuple)):
            items = [self.encode(v, f"{name}.{i}") for i, v in enumerate(value)]
            return {"tuple": items} if isinstance(value, tuple) else items
        if isinstance(value, dict):
            return {
                "dict": [
                    [self.encode(k, f"{name}.{i}.key"), self.encode(v, f"{name}.{i}")]
                    for i, (k, v) in enumerate(value.items())
                ]
            }
        if isinstance(value, Gaussian):
            fields = {f: self.encode(getattr(value, f), f"{name}.{f}") for f in GAUSSIAN_FIELDS}
            return {"gaussian": fields}
        raise TypeError(
            f"{name} is a {type(value).__module__}.{type(value).__qualname__}, which a "
            f"model file cannot hold; it holds {_SAVED_TYPES}"
        )

    def _array(self, value, name):
        if value.dtype == object and value.ndim == 1 and all(isinstance(v, str) for v in value):
            return {"strings": self._set_aside(value.astype(str), name)}
        if value.dtype.kind not in "biufcU":
            raise TypeError(
                f"{name} is an array of dtype {value.dtype}, which a model file "
                f"cannot hold; it holds {_SAVED_TYPES}"
            )
        if isinstance(value, np.generic):
            return {"scalar": self._set_aside(np.asarray(value), name)}
        return {"array": self._set_aside(value, name)}

    def _set_aside(self, array, name):
        self.arrays[name] = array
        return name


def _param(name, value):
    """A parameter as it is saved: the JSON-able form of paths and devices."""
    import torch

    if name == "memory":
        # A cache folder belongs to the machine that fitted; elsewhere it
        # would be created, or read, wherever the file says.
        return None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, torch.device):
        return str(value)
    return value


def _encode(detector):
    """The arrays and the metadata of a fitted ``detector``."""
    import sklearn
    from sklearn.utils.validation import check_is_fitted

    estimator = type(detector).__name__
    if _estimators().get(estimator) is not type(detector):
        raise TypeError(f"cannot save a {estimator}: model files hold skanomaly detectors")
    check_is_fitted(detector)
    # Reading offset_ computes the Gaussians and the threshold that
    # partial_fit leaves for the first use; a stream that cannot be finished
    # yet lacks it, and says why.
    try:
        _ = detector.offset_
    except AttributeError as exc:
        raise ValueError(f"Cannot save this detector: {exc}") from None
    _check_loadable(detector)
    encoder = _Encoder()
    try:
        params = {
            key: encoder.encode(_param(key, value), f"params.{key}")
            for key, value in detector.get_params(deep=False).items()
        }
        attributes = {
            key: encoder.encode(value, key)
            for key, value in sorted(vars(detector).items())
            if _is_fitted_name(key)
        }
    except TypeError as exc:
        raise TypeError(f"cannot save the {estimator}: {exc}") from None
    metadata = {
        "format": MODEL_FORMAT,
        "skanomaly_version": __version__,
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "estimator": estimator,
        "params": params,
        "attributes": attributes,
    }
    return encoder.arrays, metadata


def save(detector, path):
    """Write a fitted detector to a model file.

    The file holds arrays and settings, never code (see
    :mod:`skanomaly.persistence`). It is written to a temporary file in the
    same folder and then moved into place, so an interrupted save leaves
    the previous file as it was.

    Parameters
    ----------
    detector : EfficientNetGaussianDetector
        The fitted detector. Its network is not saved: it is rebuilt from
        its name or weights file when the model is loaded.
    path : str or path-like
        The file to write, conventionally ``*.skanomaly``.

    Raises
    ------
    OSError
        If ``path`` cannot be written (:class:`IsADirectoryError` and
        :class:`FileNotFoundError` as in :func:`check_writable`).
    sklearn.exceptions.NotFittedError
        If ``detector`` is not fitted.
    ValueError
        If :func:`load` would refuse the file: a parameter set out of its
        range after fit, or a fitted attribute that fit does not make (the
        message names it). Nothing is written.
    TypeError
        If ``path`` is not a str or path-like, or a fitted attribute or
        parameter is of a type that a model file cannot hold; the message
        names it.

    See Also
    --------
    load : Read the model file back.

    Examples
    --------
    >>> import skanomaly
    >>> skanomaly.save(detector, "model.skanomaly")  # doctest: +SKIP
    >>> detector = skanomaly.load("model.skanomaly")  # doctest: +SKIP
    """
    check_writable(path)
    path = Path(path)
    arrays, metadata = _encode(detector)
    text = json.dumps(metadata, allow_nan=False, ensure_ascii=False)
    arrays[_METADATA] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    try:
        with atomic_write(path) as handle:
            np.savez(handle, **arrays)
    except OSError as exc:
        raise OSError(f"cannot write the model file {str(path)!r}: {exc.strerror or exc}") from exc


def _check_loadable(detector):
    """Refuse to save what :func:`load` would refuse (a parameter set out of
    range after fit, a fitted attribute set by hand), before a good file is
    replaced by one that cannot be read back."""
    from ._compat import validate_estimator_params

    validate_estimator_params(detector)
    invalid = invalid_attribute(detector)
    if invalid:
        raise ValueError(f"cannot save the detector: its {invalid[0]} is invalid: {invalid[1]}")


# ----------------------------------------------------------------- loading
class _Decoder:
    """The inverse of :class:`_Encoder`, reading arrays from ``archive``."""

    def __init__(self, archive):
        self.archive = archive
        self._tags = {
            "tuple": lambda items: tuple(map(self.decode, items)),
            "dict": lambda pairs: {self.decode(k): self.decode(v) for k, v in pairs},
            "float": float,
            "array": self._array,
            "scalar": lambda name: self._array(name)[()],
            "strings": lambda name: self._array(name).astype(object),
            "gaussian": self._gaussian,
        }

    def decode(self, value):
        if isinstance(value, list):
            return [self.decode(v) for v in value]
        if not isinstance(value, dict):
            return value
        ((tag, content),) = value.items()
        return self._tags[tag](content)

    def _array(self, name):
        if name not in self.archive.files:
            raise KeyError(f"no array {name!r}")
        return self.archive[name]

    def _gaussian(self, fields):
        from .gaussian import Gaussian

        location, covariance, shrinkage, precision = (
            self.decode(fields[f]) for f in GAUSSIAN_FIELDS
        )
        d = location.shape[0]
        if location.shape != (d,) or {covariance.shape, precision.shape} != {(d, d)}:
            raise ValueError("a Gaussian's arrays do not fit together")
        return Gaussian.from_arrays(location, covariance, shrinkage, precision)


def _check_fitted(detector, path):
    """Refuse a missing fitted attribute, or one that fit() would not make."""
    missing = missing_attributes(detector)
    if missing:
        raise _ModelFileError(
            f"model file {path!r} holds no fitted detector (it lacks {', '.join(missing)})"
        )
    invalid = invalid_attribute(detector)
    if invalid:
        raise _ModelFileError(f"model file {path!r} has an invalid {invalid[0]}: {invalid[1]}")


@contextlib.contextmanager
def _reading(path):
    """Turn a failure to read the model file ``path`` into a ValueError naming it."""
    try:
        yield
    except _ModelFileError:
        raise
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "corrupt"
        raise ValueError(
            f"{path!r} is not a readable skanomaly model file ({type(exc).__name__}: {reason})"
        ) from exc


def _not_a_model_file(path):
    return _ModelFileError(
        f"{path!r} is not a skanomaly model file (write one with 'skanomaly fit')"
    )


def _check_format(metadata, path, expected=MODEL_FORMAT):
    """Refuse another file format, or a skanomaly version that differs in
    major.minor; ``metadata`` is the dict that the file starts with."""
    version = metadata.get("skanomaly_version")
    if metadata.get("format") != expected or not _compatible(version):
        raise _ModelFileError(
            f"model file {path!r} was written by skanomaly {version} (format "
            f"{metadata.get('format')}), incompatible with skanomaly {__version__}; "
            "fit it again with this version"
        )


def _rebuild(metadata, decoder, path):
    """The detector that ``metadata`` describes."""
    estimator = _estimators().get(metadata["estimator"])
    if estimator is None:
        raise _ModelFileError(
            f"model file {path!r} holds a {metadata['estimator']!r}, which this "
            f"skanomaly version cannot rebuild"
        )
    params = {key: decoder.decode(value) for key, value in metadata["params"].items()}
    if params.get("memory") is not None:
        raise _ModelFileError(
            f"model file {path!r} names a feature cache, which model files never do"
        )
    detector = estimator(**params)
    from ._compat import validate_estimator_params

    validate_estimator_params(detector)
    attributes = {key: decoder.decode(value) for key, value in metadata["attributes"].items()}
    if not all(map(_is_fitted_name, attributes)):
        raise ValueError("an attribute name is not that of a fitted attribute")
    vars(detector).update(attributes)
    _check_fitted(detector, path)
    return detector


def _load_archive(path):
    with _reading(path), np.load(path, allow_pickle=False) as archive:
        if _METADATA not in archive.files:
            raise _not_a_model_file(path)
        metadata = json.loads(archive[_METADATA].tobytes().decode("utf-8"))
        _check_format(metadata, path)
        return _rebuild(metadata, _Decoder(archive), path)


def _warn_missing_weights(detector):
    """Warn, at load rather than at the first score, where the weights file
    the detector was fitted with is not found from here (a relative path is
    read from the working directory); returns ``detector``."""
    weights = getattr(detector, "weights", None)
    if weights is not None and not Path(weights).is_file():
        warnings.warn(
            f"The weights file {weights!r} that this model was fitted with is not found "
            f"from {os.getcwd()!r}; set_params(weights=...) to where it is before scoring.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    return detector


def _load_pickle(path):
    """The detector in a model file of the first format (a joblib pickle)."""
    import joblib

    from .detector import EfficientNetGaussianDetector

    with _reading(path), warnings.catch_warnings():
        # Unpickling warns about scikit-learn versions; the version check
        # below says what matters in one sentence.
        warnings.simplefilter("ignore")
        payload = joblib.load(path)
    if not isinstance(payload, dict) or "skanomaly_version" not in payload:
        raise _not_a_model_file(path)
    _check_format(payload, path, _PICKLE_FORMAT)
    detector = payload.get("detector")
    if not isinstance(detector, EfficientNetGaussianDetector) or not hasattr(detector, "offset_"):
        raise _ModelFileError(f"model file {path!r} holds no fitted detector")
    return detector


def load(path, *, trust_pickle=False):
    """Read a fitted detector from a model file written by :func:`save`.

    Reading runs no code from the file: it holds arrays and settings, read
    with ``np.load(allow_pickle=False)`` and JSON.

    Parameters
    ----------
    path : str or path-like
        The model file.
    trust_pickle : bool, default=False
        Also accept a model file of the first format (a joblib pickle of
        early builds of skanomaly 0.1). Loading a
        pickle runs whatever code it holds: only pass True for files you
        wrote or whose source you trust, and :func:`save` the detector again
        to convert the file.

    Returns
    -------
    detector : EfficientNetGaussianDetector
        The fitted detector. It scores exactly like the one saved, but
        cannot continue a :meth:`partial_fit` stream.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    IsADirectoryError
        If ``path`` is a folder.
    TypeError
        If ``path`` is not a str or path-like.
    ValueError
        If the file is a pickle and ``trust_pickle`` is False, is not a
        readable model file (foreign, corrupt or truncated), was written by
        a skanomaly version that differs in major.minor or in another file
        format, or holds no fitted detector (a fitted attribute missing,
        of the wrong type or shape, not finite, with levels outside the
        backbone's, or Gaussians or a patch memory sized for other channels
        than the backbone's); the message names the file and the attribute.

    See Also
    --------
    save : Write a model file.
    """
    path = as_path(path, "The 'path' of load")
    if not path.exists():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"model file {str(path)!r} is a folder")
    with open(path, "rb") as handle:
        head = handle.read(len(_ZIP_MAGIC))
    if head == _ZIP_MAGIC:
        return _warn_missing_weights(_load_archive(str(path)))
    if trust_pickle:
        return _warn_missing_weights(_load_pickle(str(path)))
    # Pickle protocols 2 to 5 start with PROTO and their number.
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise ValueError(
            f"{str(path)!r} is a pickle (a model file of the first format, written by "
            "early builds of skanomaly 0.1), not a model "
            "file that holds data only. Loading a pickle runs whatever code it holds, "
            "so it was not loaded. If you wrote it or trust where it came from, load "
            "it with trust_pickle=True (command line: --trust-pickle) and save it "
            "again to convert it."
        )
    raise ValueError(
        f"{str(path)!r} is not a readable skanomaly model file (corrupt, truncated, "
        "or another kind of file)"
    )
