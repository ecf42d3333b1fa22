"""What the fitted attributes of a model file must be, checked by
:func:`skanomaly.persistence.load`.

A hand-edited file can be a valid archive holding values that ``fit`` never
makes, which fail (or, not finite, score wrongly) only at scoring, far from
the file. Each check returns what is wrong, or a falsy value.
"""

import math
import numbers

import numpy as np

from ._constants import PATCH_NEIGHBORHOOD_SCALES, PATCH_NEIGHBORHOODS

__all__ = ["GAUSSIAN_FIELDS", "invalid_attribute", "missing_attributes"]

#: The arrays of a Gaussian, as model files store them.
GAUSSIAN_FIELDS = ("location", "covariance", "shrinkage", "precision")


def _not_a(kind, value, size=None):
    if not isinstance(value, kind):
        return f"its type is {type(value).__name__}, not {kind.__name__}"
    return None if size is None or len(value) == size else f"it has {len(value)} items, not {size}"


def _not_number(value, kind=numbers.Real, low=-math.inf):
    # NaN fails every comparison.
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value < math.inf:
        what = "an int" if kind is numbers.Integral else "a number"
        return f"{value!r} is not {what} in [{low}, inf)"
    return None


def _not_neighborhood(value):
    allowed = PATCH_NEIGHBORHOODS + PATCH_NEIGHBORHOOD_SCALES
    # Typed first, items too: an array compares elementwise, and True equals 1.
    items = value if isinstance(value, tuple) else (value,)
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in items):
        return f"{value!r} is not an int or a tuple of ints"
    if value not in allowed:
        return f"{value!r} is not one of {allowed}"
    return None


def _not_array(value, shape):
    """``shape`` holds None where any length goes."""
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "iuf":
        return f"its type is {getattr(value, 'dtype', type(value).__name__)}, not a numeric array"
    if value.ndim != len(shape) or any(n not in (None, m) for n, m in zip(shape, value.shape)):
        return f"its shape is {value.shape}, not {tuple(shape)}"
    return None if np.isfinite(value).all() else "it holds values that are not finite"


def _not_levels(value, n_levels):
    # JSON gives ints; fit() gives sorted tuples of them.
    ints = isinstance(value, tuple) and all(type(v) is int for v in value)
    if not ints or list(value) != sorted(set(value)) or not all(0 <= v < n_levels for v in value):
        return f"{value!r} is not a tuple of increasing levels in the backbone's 0..{n_levels - 1}"
    return None


def _not_gaussians(value, dims):
    """``dims``: the backbone's channels at each Gaussian's level."""
    from .gaussian import Gaussian

    problem = _not_a(list, value, len(dims))
    for i, gaussian in enumerate([] if problem else value):
        # The decoder has checked that their shapes fit together.
        arrays = [np.asarray(getattr(gaussian, f, None)) for f in GAUSSIAN_FIELDS]
        problem = (
            _not_a(Gaussian, gaussian)
            or next(filter(None, (_not_array(a, a.shape) for a in arrays)), None)
            or _not_width(len(arrays[0]), dims[i], "dimensions")
        )
        if problem:
            return f"Gaussian {i}: {problem}"
    return problem


def _not_width(width, channels, what):
    if width != channels:
        return f"it has {width} {what}, but the backbone's features there have {channels}"
    return None


def _not_patch_width(attributes, channels):
    """``(name, what is wrong)`` where the patch memory's columns are not
    each patch level's channels, once per size of the neighbourhood; last,
    as the levels and the neighbourhood must pass their own checks first."""
    memory = attributes.get("patches_")
    neighborhood = attributes.get("patch_neighborhood_", 1)
    sizes = len(neighborhood) if isinstance(neighborhood, tuple) else 1
    width = sizes * sum(channels[i] for i in attributes.get("patch_levels_", ()))
    problem = memory is not None and _not_width(memory.shape[1], width, "columns")
    return ("patches_", problem) if problem else None


# What scoring, explain and the report read without a fallback, in the
# order of their checks (the levels first: the others are sized by them).
_REQUIRED = {
    "levels_": lambda v, d, c: _not_levels(v, len(c)) or (not v and "no levels"),
    "spatial_levels_": lambda v, d, c: _not_levels(v, len(c)),
    "patch_levels_": lambda v, d, c: _not_levels(v, len(c)),
    "level_names_": lambda v, d, c: (
        _not_a(list, v, len(d.levels_))
        or (not all(isinstance(name, str) for name in v) and "its items are not all names")
    ),
    "gaussians_": lambda v, d, c: _not_gaussians(v, [c[i] for i in d.levels_]),
    "spatial_gaussians_": lambda v, d, c: _not_gaussians(v, [c[i] for i in d.spatial_levels_]),
    "level_center_": lambda v, d, c: _not_array(v, (len(d.levels_),)),
    "level_scale_": lambda v, d, c: _not_array(v, (len(d.levels_),)),
    "level_reference_": lambda v, d, c: v is not None and _not_array(v, (2, len(d.levels_))),
    "patches_": lambda v, d, c: v is not None and _not_array(v, (None, None)),
    "patch_threshold_": lambda v, d, c: v is not None and _not_number(v),
    "offset_": lambda v, d, c: _not_number(v),
    "n_samples_fit_": lambda v, d, c: _not_number(v, numbers.Integral, low=1),
}
# What older files of this format lack, and what calibrate() and
# calibrate_pixels() add; feature_settings_ names parameters scoring compares.
_OPTIONAL = {
    "feature_settings_": lambda v, d, c: (
        _not_a(dict, v) or (set(v) - d.get_params().keys() and "it names unknown parameters")
    ),
    "patch_neighborhood_": lambda v, d, c: _not_neighborhood(v),
    "patch_excess_": lambda v, d, c: v is not None and _not_number(v, low=0),
    "n_score_patches_": lambda v, d, c: v is not None and _not_number(v, numbers.Integral, low=1),
    "score_center_": lambda v, d, c: v is not None and _not_array(v, (2,)),
    "score_scale_": lambda v, d, c: v is not None and _not_array(v, (2,)),
    "weights_digest_": lambda v, d, c: _not_a(str, v),
    "fit_precision_": lambda v, d, c: (
        _not_a(str, v) or (v not in ("float32", "float16", "bfloat16") and f"{v!r} names no dtype")
    ),
    "calibration_scores_": lambda v, d, c: _not_array(v, (None,)),
    "pixel_threshold_": lambda v, d, c: _not_number(v),
    "pixel_calibration_": lambda v, d, c: _not_a(dict, v),
}


def missing_attributes(detector):
    """The required fitted attributes that ``detector`` lacks."""
    return [name for name in _REQUIRED if name not in vars(detector)]


def invalid_attribute(detector):
    """``(name, what is wrong)`` of the first fitted attribute that ``fit``
    would not make, or None."""
    # Imported here: the command line imports this module, and its --help
    # must not wait for torch.
    from .backbone import level_channels

    attributes = vars(detector)
    # Each check gets the value, the detector and the backbone's channels
    # at each level.
    channels = level_channels(detector.backbone)
    for name, check in {**_REQUIRED, **_OPTIONAL}.items():
        problem = check(attributes[name], detector, channels) if name in attributes else None
        if problem:
            return name, problem
    return _missing_for_score(attributes) or _not_patch_width(attributes, channels)


def _missing_for_score(attributes):
    """``(name, what is wrong)`` of the first attribute that the image score
    the model was fitted with needs but lacks, or None: each passes its own
    check as None or empty, which the pooled score alone allows."""
    image_score = attributes.get("feature_settings_", {}).get("image_score", "pooled")
    if image_score == "pooled":
        return None
    needed = {"patches_": "the patch memory", "patch_levels_": "patch levels"}
    if image_score == "pooled+patches":
        needed.update(score_center_="a centre", score_scale_="a scale")
    for name, what in needed.items():
        value = attributes.get(name)
        if value is None or len(value) == 0:
            return name, f"it is empty, but image_score={image_score!r} needs {what}"
    return None
