"""What ``fit`` and ``partial_fit`` accumulate, and what it becomes.

:class:`FitState` holds exact running moments per level, the moments of the
spatial levels' feature-map locations, a bounded sample of rows for the
threshold and a bounded sample of patch features for localization;
:meth:`FitState.gaussians` turns it into the fitted Gaussians. Memory does
not grow with the number of images.
"""

from . import patches, threshold
from .gaussian import Gaussian, LedoitWolfMoments

__all__ = ["FitState"]


class FitState:
    """Running statistics of a stream of normal images.

    Parameters
    ----------
    levels, spatial_levels, patch_levels : tuple of int
        The modelled levels, the levels with spatial Gaussians and those
        whose patch features are kept.
    image_shape : tuple or None
        The ``(H, W, C)`` of the first chunk's array, which later chunks
        must share (None for lists of images).
    n_views : int, default=1
        Views of each image (1 + its augmented copies).
    npca : float, default=None
        The Gaussians' ``npca`` (see :class:`~skanomaly.gaussian.Gaussian`).
    """

    def __init__(self, levels, spatial_levels, patch_levels, image_shape, n_views=1, npca=None):
        self.levels = levels
        self.spatial_levels = spatial_levels
        self.patch_levels = patch_levels
        self.image_shape = image_shape
        self.n_views = n_views
        self.npca = npca
        self.moments = None
        self.spatial_moments = None
        # Looked up here, so that tests can shrink them.
        self.reservoir = threshold.Reservoir(threshold.RESERVOIR_SIZE)
        self.patches = patches.PatchReservoir(patches.PATCH_MEMORY_SIZE) if patch_levels else None

    @property
    def n_samples(self):
        """Images accumulated (each with its ``n_views`` views)."""
        return self.moments[0].n_samples // self.n_views

    def update(self, pooled, spatial_moments, patch_rows=None):
        """Add one batch: pooled ``(b, d_l)`` rows, or ``(b, n_views, d_l)``
        with augmented views, spatial moments and each view's patch
        features."""
        if self.moments is None:
            self.moments = [LedoitWolfMoments(p.shape[-1]) for p in pooled]
        for moments, features in zip(self.moments, pooled):
            moments.update(features.reshape(-1, features.shape[-1]))
        if self.spatial_moments is None:
            self.spatial_moments = list(spatial_moments)
        else:
            self.spatial_moments = [
                old.merge(new) for old, new in zip(self.spatial_moments, spatial_moments)
            ]
        self.reservoir.add(pooled)
        if self.patches is not None:
            self.patches.add(patch_rows)

    def gaussians(self):
        """The pooled and the spatial Gaussians of the moments so far."""
        pooled = [Gaussian.from_moments(m, npca=self.npca) for m in self.moments]
        spatial = [Gaussian.from_moments(m) for m in self.spatial_moments or ()]
        return pooled, spatial

    def copy(self):
        """An independent copy, so that a failed chunk leaves this one as it was."""
        new = FitState(
            self.levels,
            self.spatial_levels,
            self.patch_levels,
            self.image_shape,
            self.n_views,
            self.npca,
        )
        new.moments = [m.copy() for m in self.moments]
        new.spatial_moments = (
            None if self.spatial_moments is None else [m.copy() for m in self.spatial_moments]
        )
        new.reservoir = self.reservoir.copy()
        new.patches = None if self.patches is None else self.patches.copy()
        return new
