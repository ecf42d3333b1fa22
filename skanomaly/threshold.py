"""Thresholds on the anomaly score, set from normal images only.

* :func:`out_of_fold_scores`: each training image scored by Gaussians fitted
  without its fold, removed exactly from the running moments (no second
  forward pass); a percentile of them is the default ``offset_``.
* :func:`chi2_offset`: the Gaussian reference of Rippel et al. (2020).
* :func:`conformal_offset` and :func:`conformal_p_values`: thresholds and
  p-values from held-out normal images (``calibrate``).
* :class:`Reservoir`: the bounded sample of training rows the out-of-fold
  scores are computed on, so that streaming fits keep flat memory.
"""

import copy
import warnings

import numpy as np
from scipy import linalg, stats

from ._reservoir import reservoir_add, reservoir_slots
from ._stacklevel import user_stacklevel
from .gaussian import LedoitWolfMoments, cholesky, combine_levels, npca_precision, root

__all__ = [
    "RESERVOIR_SIZE",
    "Reservoir",
    "chi2_offset",
    "conformal_offset",
    "conformal_p_values",
    "level_standardization",
    "out_of_fold_distances",
    "out_of_fold_scores",
    "percentile_offset",
    "squared_by_cholesky",
    "squared_low_rank",
]

N_FOLDS = 5
RESERVOIR_SIZE = 2048


class Reservoir:
    """A uniform sample of at most ``size`` training rows of every level.

    ``offset_`` needs training scores under the final Gaussians; a bounded
    sample keeps memory flat however many images stream through. An image
    fitted with augmented views is one row of ``(views, d_l)``, so that its
    views leave the Gaussians together when it is scored out of fold.
    """

    def __init__(self, size=RESERVOIR_SIZE, seed=0):
        self.size = size
        self.seen = 0
        self.rows = None
        self.rng = np.random.default_rng(seed)

    def add(self, pooled):
        """Offer the rows of one batch (a list of ``(b, d_l)`` arrays, or
        ``(b, views, d_l)`` for images with augmented views)."""
        n = pooled[0].shape[0]
        if self.rows is None:
            self.rows = [np.empty((0, *p.shape[1:]), np.float32) for p in pooled]
        slots = reservoir_slots(self.rng, self.seen, n, self.size)
        self.rows = reservoir_add(self.rows, [p.astype(np.float32) for p in pooled], slots)
        self.seen += n

    def sample(self):
        """The sampled rows of every level, float64."""
        return [r.astype(np.float64) for r in self.rows]

    def copy(self):
        new = copy.copy(self)
        new.rows = None if self.rows is None else [r.copy() for r in self.rows]
        new.rng = copy.deepcopy(self.rng)
        return new


def squared_by_cholesky(rows, location, covariance):
    """Squared Mahalanobis distances without the precision matrix.

    One Cholesky factor and a triangular solve: for a fold's few rows, much
    cheaper than inverting a covariance that is used once.
    """
    diff = rows - location
    factor = cholesky(covariance)
    if factor is None:
        return np.einsum("ij,ij->i", diff @ linalg.pinvh(covariance), diff)
    z = linalg.solve_triangular(factor, diff.T, lower=True, check_finite=False)
    return np.einsum("ij,ij->j", z, z)


def squared_low_rank(rows, location, samples, shrinkage, mu):
    """:func:`squared_by_cholesky` under the Ledoit-Wolf Gaussian of fewer
    ``samples`` than dimensions, in O(n^2 d) instead of O(d^3).

    The covariance ``(1 - shrinkage) Z'Z / n + shrinkage * mu * I`` (``Z`` the
    centred samples, ``mu`` the mean variance) is a scaled identity plus a
    rank-n term, so the Woodbury identity reduces its inverse to an n x n
    Cholesky factor. Returns None when the shrinkage is too small for that
    factor to exist in floating point.
    """
    diff = rows - location
    ridge = shrinkage * mu
    squared = np.einsum("ij,ij->i", diff, diff)
    if shrinkage < 1:
        centred = samples - location
        gram = centred @ centred.T
        gram.flat[:: len(gram) + 1] += ridge * len(samples) / (1 - shrinkage)
        factor = cholesky(gram)
        if factor is None:
            return None
        w = linalg.solve_triangular(factor, centred @ diff.T, lower=True, check_finite=False)
        squared = squared - np.einsum("ij,ij->j", w, w)
    return squared / ridge


def held_out_distances(moments, held, rows, npca=None):
    """Distances of ``rows[held]`` under the Gaussian of ``moments`` without them.

    ``rows`` are all the rows ``moments`` were accumulated from, or a sample
    of them (then only the Cholesky route is exact); ``(n, views, d)`` rows
    are images with augmented views, which leave the moments together and
    are scored by their first (unaugmented) view. ``npca`` restricts the
    distance as the fitted Gaussians do (:func:`~skanomaly.gaussian.npca_precision`).
    """
    n_features = rows.shape[-1]
    if rows.ndim == 2:
        rows = rows[:, np.newaxis]
    part = LedoitWolfMoments(n_features).update(rows[held].reshape(-1, n_features))
    location, covariance, shrinkage = moments.subtract(part).ledoit_wolf()
    scored, others = rows[held, 0], rows[~held].reshape(-1, n_features)
    if npca:
        diff = scored - location
        return root(np.einsum("ij,jk,ik->i", diff, npca_precision(covariance, npca), diff))
    squared = None
    complete = rows.shape[0] * rows.shape[1] == moments.n_samples
    # A fold's Gaussian is low-rank plus a ridge wherever it has fewer rows
    # than dimensions.
    if complete and shrinkage > 0 and len(others) < n_features:
        mu = np.trace(covariance) / n_features
        squared = squared_low_rank(scored, location, others, shrinkage, mu)
    if squared is None:
        squared = squared_by_cholesky(scored, location, covariance)
    return root(squared)


def out_of_fold_scores(moments, rows, rule, n_folds=N_FOLDS, npca=None):
    """Out-of-fold normality scores of the training rows ``rows``: the
    :func:`out_of_fold_distances` combined by ``rule``.
    """
    return -combine_levels(out_of_fold_distances(moments, rows, n_folds, npca), rule)


def out_of_fold_distances(moments, rows, n_folds=N_FOLDS, npca=None):
    """Out-of-fold distances of the training rows ``rows`` at every level.

    In-sample Mahalanobis distances are far too small when images are few
    next to the feature dimensions (1280 at the head), so a percentile of
    training scores would flag nearly every new normal image. Each fold is
    scored by Gaussians fitted on the other images, removed exactly from the
    moments, without another forward pass.

    Parameters
    ----------
    moments : list of LedoitWolfMoments
        The running moments of every level.
    rows : list of ndarray of shape (n, d_l) or (n, views, d_l)
        Training rows of every level (all of them, or a :class:`Reservoir`
        sample); with augmented views, each image's views. A single image's
        views are scored as if they were images (there is no other image
        to hold it out against).
    n_folds : int, default=5
    npca : float, default=None
        The Gaussians' NPCA fraction (:class:`~skanomaly.gaussian.Gaussian`).

    Returns
    -------
    distances : ndarray of shape (n, n_levels)
        Each image's distance at each level to the Gaussians of the folds
        it is not in.
    """
    rows = [_held_out_units(r) for r in rows]
    n_rows = rows[0].shape[0]
    fold_of = np.arange(n_rows) % min(n_folds, n_rows)
    distances = np.empty((n_rows, len(rows)))
    for fold in np.unique(fold_of):
        held = fold_of == fold
        for level, (level_moments, level_rows) in enumerate(zip(moments, rows)):
            distances[held, level] = held_out_distances(level_moments, held, level_rows, npca)
    return distances


def _held_out_units(rows):
    """One level's ``rows`` as :func:`out_of_fold_distances` holds them out,
    by image (with its views), or a single image's views one by one."""
    if rows.ndim == 3 and rows.shape[0] < 2:
        return rows.reshape(-1, 1, rows.shape[-1])
    return rows


def fewest_fold_rows(rows, n_folds=N_FOLDS):
    """The fewest rows that a Gaussian of :func:`out_of_fold_distances` is
    fitted on, for one level's training ``rows``: below 3 its Ledoit-Wolf
    shrinkage is 0 (2 rows) or it has no spread (1), and the held-out
    distances mean little."""
    rows = _held_out_units(rows)
    n_units, per_unit = rows.shape[0], rows.shape[1] if rows.ndim == 3 else 1
    largest_fold = -(-n_units // min(n_folds, n_units))
    return (n_units - largest_fold) * per_unit


def level_standardization(distances):
    """``(center, scale)`` of each level's out-of-fold ``distances``: their
    mean and standard deviation, so that a level's standardised distance
    says how unusual it is for that level, whatever its channel count."""
    center = distances.mean(axis=0)
    scale = distances.std(axis=0, ddof=1) if len(distances) > 1 else np.ones_like(center)
    # A level whose training distances do not vary cannot be rescaled.
    return center, np.where(scale > 0, scale, 1.0)


def _checked_scores(scores, name="scores"):
    """``scores`` as a 1-D float array, refused unless non-empty and finite."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or not len(scores):
        raise ValueError(f"{name} must be a non-empty 1-D array; got shape {scores.shape}.")
    if not np.isfinite(scores).all():
        raise ValueError(f"{name} contains NaN or infinity.")
    return scores


def _check_share(value, name):
    if not 0 < value < 1:
        raise ValueError(f"{name} must lie strictly between 0 and 1; got {value!r}.")


def percentile_offset(scores, contamination):
    """The threshold below which ``contamination`` of ``scores`` fall."""
    _check_share(contamination, "contamination")
    return float(np.percentile(_checked_scores(scores), 100.0 * contamination))


def chi2_offset(dims, rule, contamination, n_draws=200_000):
    """The threshold at which a Gaussian reference flags ``contamination``.

    If the features of normal images followed the fitted Gaussians, the
    squared distance at a level would be chi-squared with as many degrees
    of freedom as ``dims`` gives it: its channels, or the directions that
    NPCA keeps (Rippel et al., 2020). With the levels taken as
    independent, the sum of squares is chi-squared with ``sum(dims)``; the
    sum of distances, and any standardised rule (a
    :class:`~skanomaly.gaussian.ScoreRule`), have no closed form and are
    drawn (seeded).
    """
    _check_share(contamination, "contamination")
    standardized = getattr(rule, "center", None) is not None
    if getattr(rule, "distance", rule) == "squared" and not standardized:
        return -float(stats.chi2.ppf(1 - contamination, sum(dims)))
    rng = np.random.default_rng(0)
    distances = np.stack([np.sqrt(rng.chisquare(d, size=n_draws)) for d in dims], axis=1)
    return -float(np.quantile(combine_levels(distances, rule), 1 - contamination))


def conformal_offset(scores, fpr):
    """The threshold that flags a new normal image with probability <= ``fpr``.

    ``scores`` are normality scores of held-out normal images; the
    conformal quantile is their ``floor(fpr * (n + 1))``-th lowest. A
    ``fpr`` below ``1 / (n + 1)`` cannot be reached: a warning says so and
    the lowest score is used.
    """
    _check_share(fpr, "fpr")
    scores = np.sort(_checked_scores(scores))
    n = len(scores)
    if fpr < 1 / (n + 1):
        warnings.warn(
            f"A false-positive rate (fpr) of {fpr} is below 1 / (n + 1) = "
            f"{1 / (n + 1):.3g} for {n} calibration images: the threshold is the "
            "score of the least normal of them (the highest anomaly score) and "
            "the realized rate will be higher. Calibrate on more images.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    rank = int(np.floor(fpr * (n + 1)))
    return float(scores[max(rank - 1, 0)]), scores


def conformal_p_values(calibration_scores, scores):
    """``(1 + #{calibration scores <= score}) / (n + 1)`` for each score;
    ``calibration_scores`` sorted."""
    calibration_scores = _checked_scores(calibration_scores, "calibration_scores")
    below = np.searchsorted(calibration_scores, scores, side="right")
    return (1 + below) / (len(calibration_scores) + 1)
