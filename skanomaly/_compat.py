"""scikit-learn's private helpers, imported in this one place.

The estimator declares its parameters the way scikit-learn's own estimators
do (``_parameter_constraints`` checked by ``_fit_context``), and those tools
are private to scikit-learn: they may move between releases. They exist, with
these names and signatures, in scikit-learn 1.6 through 1.9, the range that
pyproject.toml allows; a release that moves them needs a branch here, not a
change in every module (imbalanced-learn's ``utils/_sklearn_compat.py`` does
the same).
"""

from sklearn.base import _fit_context
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    InvalidParameterError,
    Options,
    StrOptions,
    validate_params,
)
from sklearn.utils.validation import validate_data

__all__ = [
    "HasMethods",
    "Interval",
    "InvalidParameterError",
    "Options",
    "StrOptions",
    "_fit_context",
    "validate_data",
    "validate_estimator_params",
    "validate_params",
]


def validate_estimator_params(estimator):
    """Check ``estimator``'s parameters against its ``_parameter_constraints``
    outside ``fit`` (scikit-learn's private ``BaseEstimator._validate_params``),
    for an estimator rebuilt from a model file."""
    estimator._validate_params()
