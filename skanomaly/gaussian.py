"""Streaming Ledoit-Wolf Gaussians, their distances and the score rule.

The moments kept here are exactly what :func:`sklearn.covariance.ledoit_wolf`
needs, so a Gaussian fitted batch by batch (or by ``partial_fit``) equals one
fitted on all samples at once, with memory that does not grow with the
number of samples. One :class:`Gaussian` type serves the pooled features of
each level and the feature-map locations of the spatial levels; its
distances, and the rule that sums them into an image score, take numpy
arrays (float64 scoring) and torch tensors (maps, gradients) alike.
"""

import numpy as np
import torch
from scipy import linalg

__all__ = [
    "Gaussian",
    "LedoitWolfMoments",
    "ScoreRule",
    "cholesky",
    "combine_levels",
    "mahalanobis",
    "npca_precision",
    "precision_from_covariance",
    "root",
]

# Squared distances are floored here before the square root: its gradient
# at exactly 0 is infinite, and a distance of 1e-6 is 0 for every purpose.
_SQUARED_FLOOR = 1e-12


class LedoitWolfMoments:
    """Sufficient statistics of a sample for a Ledoit-Wolf covariance.

    Samples are shifted by the mean of the first batch before accumulating,
    which keeps the float64 sums well conditioned.

    Parameters
    ----------
    n_features : int
        Dimension of the samples.
    """

    def __init__(self, n_features):
        self.n_features = n_features
        self.n_samples = 0
        self.shift = None
        self.sum = np.zeros(n_features)
        self.sum_outer = np.zeros((n_features, n_features))
        self.sum_sqnorm_x = np.zeros(n_features)
        self.sum_sqnorm_sq = 0.0

    def update(self, X):
        """Add the rows of ``X`` (n, n_features)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"X must be (n, {self.n_features}) rows of features; got shape {X.shape}."
            )
        shift = X.mean(axis=0) if self.shift is None else self.shift
        Y = X - shift
        sqnorm = np.einsum("ij,ij->i", Y, Y)
        # A NaN or infinity anywhere makes its row's norm one; refused
        # before anything is added, so the moments stay usable.
        if not np.isfinite(sqnorm).all():
            raise ValueError("X contains NaN or infinity.")
        self.shift = shift
        self.n_samples += X.shape[0]
        self.sum += Y.sum(axis=0)
        self.sum_outer += Y.T @ Y
        self.sum_sqnorm_x += sqnorm @ Y
        self.sum_sqnorm_sq += float(sqnorm @ sqnorm)
        return self

    def _sums_around_shift(self, other):
        """``other``'s sums re-expressed around ``self.shift``: with
        ``delta = other.shift - self.shift`` each sample is ``y + delta``."""
        delta = other.shift - self.shift
        n, s1, s2 = other.n_samples, other.sum, other.sum_outer
        sq_delta = float(delta @ delta)
        s1_delta = float(s1 @ delta)
        trace = np.trace(s2)
        return (
            n,
            s1 + n * delta,
            s2 + np.outer(s1, delta) + np.outer(delta, s1) + n * np.outer(delta, delta),
            # sum of (|y|^2 + 2 y.delta + |delta|^2) (y + delta)
            other.sum_sqnorm_x
            + 2 * s2 @ delta
            + sq_delta * s1
            + (trace + 2 * s1_delta + n * sq_delta) * delta,
            # sum of (|y|^2 + 2 y.delta + |delta|^2)^2
            other.sum_sqnorm_sq
            + 4 * float(delta @ other.sum_sqnorm_x)
            + 4 * float(delta @ s2 @ delta)
            + 2 * sq_delta * trace
            + 4 * sq_delta * s1_delta
            + n * sq_delta**2,
        )

    def _combined(self, other, sign):
        if other.n_samples == 0:
            return self.copy()
        if self.n_samples == 0 and sign > 0:
            return other.copy()
        n, s1, s2, s3, s4 = self._sums_around_shift(other)
        combined = self.copy()
        combined.n_samples += sign * n
        combined.sum += sign * s1
        combined.sum_outer += sign * s2
        combined.sum_sqnorm_x += sign * s3
        combined.sum_sqnorm_sq += sign * s4
        return combined

    def merge(self, other):
        """The moments of both samples together (a new object)."""
        return self._combined(other, +1)

    def subtract(self, other):
        """The moments of this sample without ``other``, a part of it (a new
        object); used to fit Gaussians that have not seen ``other``."""
        if other.n_samples > self.n_samples:
            raise ValueError("Cannot remove more samples than the moments hold.")
        return self._combined(other, -1)

    def copy(self):
        new = LedoitWolfMoments(self.n_features)
        new.n_samples = self.n_samples
        new.shift = None if self.shift is None else self.shift.copy()
        new.sum = self.sum.copy()
        new.sum_outer = self.sum_outer.copy()
        new.sum_sqnorm_x = self.sum_sqnorm_x.copy()
        new.sum_sqnorm_sq = self.sum_sqnorm_sq
        return new

    @property
    def location(self):
        return self.shift + self.sum / self.n_samples

    def ledoit_wolf(self):
        """Mean, shrunk covariance and shrinkage, as ``sklearn.covariance.LedoitWolf``."""
        n, p = self.n_samples, self.n_features
        if not n:
            raise ValueError("The moments hold no samples: update() them with rows first.")
        m = self.sum / n
        emp_cov = self.sum_outer / n - np.outer(m, m)
        location = self.shift + m
        if p == 1:
            return location, emp_cov, 0.0
        # sum over samples of |z|^4 with z = y - m, expanded in the moments.
        c = float(m @ m)
        sum_z4 = (
            self.sum_sqnorm_sq
            + 4 * float(m @ self.sum_outer @ m)
            + n * c**2
            - 4 * float(m @ self.sum_sqnorm_x)
            + 2 * c * np.trace(self.sum_outer)
            - 4 * c * float(m @ self.sum)
        )
        trace = np.trace(emp_cov)
        mu = trace / p
        delta_ = float(np.sum(emp_cov**2))
        beta = (sum_z4 / n - delta_) / (p * n)
        delta = (delta_ - 2 * mu * trace + p * mu**2) / p
        beta = min(beta, delta)
        shrinkage = 0.0 if beta <= 0 else beta / delta
        covariance = (1 - shrinkage) * emp_cov
        covariance.flat[:: p + 1] += shrinkage * mu
        return location, covariance, shrinkage


def precision_from_covariance(covariance):
    """Inverse of a covariance, or its pseudo-inverse when it is singular.

    Ledoit-Wolf shrinkage makes the covariance positive definite whenever the
    shrinkage is positive, and a Cholesky inverse then takes a fraction of
    the arithmetic of the eigendecomposition of :func:`scipy.linalg.pinvh`
    (which scikit-learn uses, and which remains the fallback).
    """
    factor = cholesky(covariance)
    if factor is None:
        return linalg.pinvh(covariance, check_finite=False)
    # The inverse from the factor (LAPACK potri) costs half of solving
    # against the identity; it fills the lower triangle only.
    inverse, info = linalg.lapack.dpotri(factor, lower=True)
    if info != 0:
        return linalg.pinvh(covariance, check_finite=False)
    return np.tril(inverse) + np.tril(inverse, -1).T


def cholesky(covariance):
    """The lower Cholesky factor, or None when the covariance is singular."""
    try:
        return linalg.cholesky(covariance, lower=True, check_finite=False)
    except linalg.LinAlgError:
        return None


def root(squared):
    """Distances from squared distances (numpy or torch), floored at 1e-6."""
    return squared.clip(_SQUARED_FLOOR) ** 0.5


def mahalanobis(diff, precision):
    """Mahalanobis distances of the vectors on the last axis of ``diff``.

    The one implementation for numpy arrays and torch tensors: ``diff`` is
    ``(..., d)`` (rows of pooled features, or ``(n, h, w, d)`` feature-map
    locations) and ``precision`` ``(d, d)`` of the same kind.
    """
    if torch.is_tensor(diff):
        return root(torch.einsum("...i,ij,...j->...", diff, precision, diff))
    # The contraction that einsum's optimizer chooses, without its search for
    # it on every call: about 0.1 ms a level, as much as the product itself
    # for one image, so scoring one image per call paid it nine times.
    return root(np.einsum("...j,...j->...", diff @ precision, diff))


class ScoreRule:
    """The score rule with its fitted statistics: the pooling of each level
    (:func:`skanomaly.features.pool`, for the code that starts from feature
    maps), the ``distance`` rule and the per-level standardisation of
    :func:`combine_levels`. Built from the detector's parameters and fitted
    attributes (``level_center_``, ``level_scale_``), never stored."""

    def __init__(self, distance="mahalanobis", pooling="mean", center=None, scale=None):
        self.distance = distance
        self.pooling = pooling
        self.center = center
        self.scale = scale

    @classmethod
    def of(cls, detector):
        """The rule of a fitted detector: its ``distance`` and ``pooling``
        and its fitted standardisation (none for models saved before it)."""
        return cls(
            detector.distance,
            detector.pooling,
            getattr(detector, "level_center_", None),
            getattr(detector, "level_scale_", None),
        )


def combine_levels(distances, rule="mahalanobis"):
    """The anomaly score rule: the distances of the levels (last axis) summed.

    ``rule="squared"`` sums their squares instead, which weights each level
    like a chi-squared statistic. A :class:`ScoreRule` applies its
    ``distance`` and, when it has them, first standardises each level:
    ``(d_l - center_l) / scale_l``. The one implementation for numpy arrays
    and torch tensors.
    """
    center = scale = None
    if isinstance(rule, ScoreRule):
        rule, center, scale = rule.distance, rule.center, rule.scale
    if center is not None:
        if torch.is_tensor(distances):
            center, scale = (
                torch.as_tensor(v, dtype=distances.dtype, device=distances.device)
                for v in (center, scale)
            )
        distances = (distances - center) / scale
    if rule not in ("mahalanobis", "squared"):
        raise ValueError(f"The distance rule must be 'mahalanobis' or 'squared'; got {rule!r}.")
    if rule == "squared":
        distances = distances**2
    return distances.sum(-1)


def npca_precision(covariance, npca):
    """The precision of ``covariance`` restricted to its directions of least
    variance (NPCA, Rippel et al., 2020).

    The principal directions of most variance, as many as it takes for them
    to hold a fraction ``npca`` of the total variance, are left out of the
    distance: normal images vary most along them, so a deviation there says
    least. Only directions the data resolved are dropped (the flat floor that
    shrinkage adds is kept), and always at least one direction stays.
    """
    variances, directions = linalg.eigh(covariance, check_finite=False)
    variances, directions = variances[::-1], directions[:, ::-1]
    share = np.cumsum(variances) / variances.sum()
    n_drop = int(np.searchsorted(share, npca, side="left")) + 1
    resolved = int(np.sum(variances > variances[-1] * (1 + 1e-6)))
    n_drop = min(n_drop, resolved, len(variances) - 1)
    kept = directions[:, n_drop:]
    return (kept / np.maximum(variances[n_drop:], np.finfo(float).tiny)) @ kept.T


class Gaussian:
    """A Ledoit-Wolf Gaussian over feature vectors, with its precision.

    Parameters
    ----------
    location : ndarray of shape (d,)
    covariance : ndarray of shape (d, d)
    shrinkage : float
    npca : float in (0, 1), default=None
        Leave the directions of most variance that hold this fraction of it
        out of the precision (:func:`npca_precision`); None keeps them all.

    Attributes
    ----------
    precision : ndarray of shape (d, d)
        Inverse (or pseudo-inverse) of ``covariance``, or its NPCA restriction.
    """

    def __init__(self, location, covariance, shrinkage, npca=None):
        self.location = location
        self.covariance = covariance
        self.shrinkage = float(shrinkage)
        # Kept so that a Gaussian rebuilt from its numbers gets the same precision.
        self.npca = npca
        if npca and len(location) > 1:
            self.precision = npca_precision(covariance, npca)
        else:
            self.precision = precision_from_covariance(covariance)
        self._tensors = {}

    @classmethod
    def from_moments(cls, moments, npca=None):
        """The Gaussian of a :class:`LedoitWolfMoments`."""
        return cls(*moments.ledoit_wolf(), npca=npca)

    @classmethod
    def from_arrays(cls, location, covariance, shrinkage, precision):
        """A Gaussian whose precision is known, such as one read from a model
        file: it is kept, not recomputed, so distances are bit-identical."""
        gaussian = cls.__new__(cls)
        gaussian.location = location
        gaussian.covariance = covariance
        gaussian.shrinkage = float(shrinkage)
        gaussian.precision = precision
        gaussian._tensors = {}
        return gaussian

    @property
    def n_features(self):
        return self.location.shape[0]

    @property
    def degrees_of_freedom(self):
        """The directions that the distance measures: every channel, or
        those NPCA keeps (the precision's rank). The squared distance of a
        draw from the Gaussian is chi-squared with this many."""
        if not getattr(self, "npca", None) or self.n_features < 2:
            return self.n_features
        return int(np.linalg.matrix_rank(self.precision, hermitian=True))

    def distances(self, features):
        """Mahalanobis distances of ``features`` (``(..., d)``, numpy or torch).

        Tensors are scored in float32 on their own device with
        :meth:`tensors`, so that gradients flow through them.
        """
        if torch.is_tensor(features):
            location, precision = self.tensors(features.device)
        else:
            location, precision = self.location, self.precision
        return mahalanobis(features - location, precision)

    def tensors(self, device):
        """``(location, precision)`` as float32 tensors on ``device``, built
        once per device (and never pickled)."""
        key = str(device)
        if key not in self._tensors:
            self._tensors[key] = tuple(
                torch.as_tensor(a, dtype=torch.float32, device=device)
                for a in (self.location, self.precision)
            )
        return self._tensors[key]

    def __getstate__(self):
        return {**self.__dict__, "_tensors": {}}
