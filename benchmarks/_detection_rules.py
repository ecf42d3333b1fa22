"""Score rules evaluated offline on cached pooled features.

Each level's Gaussian is written through the SVD of its centred training
rows: with ``Z = U S W'`` (``n`` rows, ``d`` channels) the Ledoit-Wolf
covariance ``(1 - s) Z'Z / n + s mu I`` has eigenvalues ``(1 - s) l_i + s mu``
along the columns of ``W`` and ``s mu`` everywhere else, so a squared
Mahalanobis distance needs only the projections ``W'x`` and the residual
``|x|^2 - |W'x|^2``. Any shrinkage, and dropping the components of most
variance (NPCA, Rippel et al. 2020), are then cheap, without a ``d x d``
inverse per fold.
"""

import numpy as np
from sklearn.metrics import roc_auc_score


def ledoit_wolf_shrinkage(Z, lam):
    """``sklearn.covariance.ledoit_wolf_shrinkage`` of centred rows ``Z``
    from the eigenvalues ``lam`` of ``Z'Z / n``, without a d x d matrix."""
    n, p = Z.shape
    if n < 2 or p == 1:
        return 1.0 if n < 2 else 0.0
    mu = float(np.sum(lam)) / p
    delta_ = float(np.sum(lam**2))
    sum_z4 = float(np.sum(np.einsum("ij,ij->i", Z, Z) ** 2))
    beta = min((sum_z4 / n - delta_) / (p * n), (delta_ - 2 * mu * mu * p + p * mu**2) / p)
    delta = (delta_ - 2 * mu * mu * p + p * mu**2) / p
    return 0.0 if beta <= 0 else beta / delta


class LevelModel:
    """The Gaussian of one level's training rows, in SVD form."""

    def __init__(self, rows, shrinkage="lw", npca=0.0):
        rows = np.asarray(rows, dtype=np.float64)
        n, d = rows.shape
        self.location = rows.mean(axis=0)
        Z = rows - self.location
        _, sigma, Wt = np.linalg.svd(Z, full_matrices=False)
        keep = sigma > sigma[0] * 1e-9 if len(sigma) else sigma > 0
        self.W = Wt[keep].T
        self.lam = sigma[keep] ** 2 / n
        self.mu = float(np.sum(self.lam)) / d
        if shrinkage == "lw":
            shrinkage = ledoit_wolf_shrinkage(Z, self.lam)
        self.shrinkage = float(shrinkage)
        ridge = self.shrinkage * self.mu
        self.ridge = ridge if ridge > 0 else 1e-12
        self.eig = (1 - self.shrinkage) * self.lam + self.ridge
        # NPCA: drop the directions of most variance whose share of the
        # total variance (of the shrunk covariance) reaches npca.
        total = float(np.sum(self.eig) + self.ridge * (d - len(self.eig)))
        share = np.cumsum(self.eig) / total
        self.n_drop = int(np.searchsorted(share, npca, side="left") + (npca > 0)) if npca else 0
        self.n_drop = min(self.n_drop, len(self.eig))

    def squared(self, rows):
        x = np.asarray(rows, dtype=np.float64) - self.location
        p = x @ self.W
        residual = np.maximum(np.einsum("ij,ij->i", x, x) - np.einsum("ij,ij->i", p, p), 0)
        return (p[:, self.n_drop :] ** 2 / self.eig[self.n_drop :]).sum(1) + residual / self.ridge

    def distances(self, rows):
        return np.sqrt(np.maximum(self.squared(rows), 1e-12))


def fit_levels(train, **options):
    return [LevelModel(rows, **options) for rows in train]


def level_distances(models, rows):
    return np.stack([m.distances(r) for m, r in zip(models, rows)], axis=1)


def out_of_fold(train, groups, n_folds=5, **options):
    """Distances of each training image's own rows under the Gaussians of
    the other folds (folds by image: its augmented copies go with it)."""
    groups = np.asarray(groups)
    images = np.unique(groups)
    fold_of_image = {g: i % min(n_folds, len(images)) for i, g in enumerate(images)}
    fold = np.array([fold_of_image[g] for g in groups])
    # Only each image's own (first) row is scored.
    first = np.zeros(len(groups), bool)
    first[np.unique(groups, return_index=True)[1]] = True
    out = np.empty((first.sum(), len(train)))
    where = np.flatnonzero(first)
    for f in np.unique(fold):
        held = fold == f
        models = fit_levels([rows[~held] for rows in train], **options)
        rows = [r[first & held] for r in train]
        out[np.searchsorted(where, np.flatnonzero(first & held))] = level_distances(models, rows)
    return out


def combine(distances, rule, oof=None, weights=None):
    """Anomaly scores (higher: more anomalous) from ``(n, L)`` distances."""
    if weights is not None:
        distances = distances * weights
    if rule == "sum":
        return distances.sum(1)
    if rule == "squared":
        return (distances**2).sum(1)
    if rule == "sqrt_dims":
        raise ValueError("give weights instead")
    center, scale = oof.mean(0), oof.std(0, ddof=1)
    if rule == "zscore":
        return ((distances - center) / scale).sum(1)
    if rule == "ratio":
        return (distances / center).sum(1)
    if rule == "zmax":
        return ((distances - center) / scale).max(1)
    raise ValueError(rule)


def gaussian_scores(train, test, rule, groups=None, **options):
    """Anomaly scores of ``test`` rows under the level Gaussians of ``train``
    rows (lists of per-level arrays), combined by ``rule``; the rules that
    standardise take their statistics from ``train``'s out-of-fold
    distances, folds keeping the rows of one ``groups`` value (default: one
    per row) together."""
    distances = level_distances(fit_levels(train, **options), test)
    if rule in ("sum", "squared"):
        return combine(distances, rule)
    groups = np.arange(len(train[0])) if groups is None else groups
    return combine(distances, rule, out_of_fold(train, groups, **options))


def auroc(y, anomaly_scores):
    return float(roc_auc_score(y, -np.asarray(anomaly_scores)))
