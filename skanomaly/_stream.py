"""What ``fit`` and ``partial_fit`` accumulate, and what it becomes.

:class:`FitState` holds exact running moments per level, the moments of the
spatial levels' feature-map locations, a bounded sample of rows for the
threshold, a bounded sample of patch features for localization and a few
images for the image score's threshold and the pixel threshold;
:meth:`FitState.gaussians` turns it into the fitted Gaussians. Memory does
not grow with the number of images.
"""

import copy

import numpy as np

from . import patches, threshold
from .gaussian import Gaussian, LedoitWolfMoments

__all__ = ["FitState", "InputSample"]

# Training images the image score's threshold and standardisation measure
# as new ones. With 16, a conformal 5% threshold is their least normal
# score: over three draws each of ELPV cells and magnetic tiles it flagged
# 0.7% to 15.8% of held-out normal images; with 64, 0.8% to 7.0%
# (benchmarks/results/threshold_sample16.md and threshold.md). Their
# features take 30 MB on Lite0 at 224 px where the image score uses the
# patches.
SCORE_SAMPLE_SIZE = 64

# Of those, the images kept for the pixel threshold: their maps give
# 16 x 50,176 values at 224 px, enough for a pixel false-positive rate of
# 1e-4, and their network inputs take 9.6 MB.
PIXEL_SAMPLE_SIZE = 16


class InputSample:
    """A uniform sample of at most ``size`` training images, with what the
    fit's own pass computed for each, the owner ids of their rows in the
    patch memory and, for at most ``n_inputs`` of them, their network
    inputs.

    The image score's standardisation and threshold measure the worst
    patches of all of them against the patch memory without their own rows,
    from the features kept here, without a second forward pass;
    ``calibrate_pixels()`` explains those with inputs again, the same way.
    Bottom-k sampling: each image draws a key and the ``size`` smallest keys
    stay, so the ``n_inputs`` smallest of them are a uniform sample too,
    nested in the first (Algorithm R's first slots are not: they favour the
    first images). An image's rank among the keys only grows, so an input
    once dropped is never needed again. Images stay in the order they came;
    ``inputs`` holds None for those without one. Candidates come as
    callables, so that only the inputs kept are preprocessed.

    Parameters
    ----------
    size : int
        Images kept.
    n_inputs : int
        Of those, images whose network inputs are kept.
    seed : int, default=0
        Seed of the keys.
    """

    def __init__(self, size=SCORE_SAMPLE_SIZE, n_inputs=PIXEL_SAMPLE_SIZE, seed=0):
        self.size = size
        self.n_inputs = n_inputs
        self.keys = []
        self.inputs = []
        self.features = []
        self.owners = []
        self.rng = np.random.default_rng(seed)

    def offer(self, make, owners):
        """Offer one image: ``make(with_input)`` returns its preprocessed
        ``(3, h, w)`` input (None without ``with_input``) and its features
        (any object: the caller's), ``owners`` the owner ids of its patch
        rows."""
        key = self.rng.random()
        if len(self.keys) == self.size:
            largest = int(np.argmax(self.keys))
            if key >= self.keys[largest]:
                return
            for items in (self.keys, self.inputs, self.features, self.owners):
                del items[largest]
        rank = sum(other < key for other in self.keys)
        x, features = make(rank < self.n_inputs)
        for items, item in zip(
            (self.keys, self.inputs, self.features, self.owners),
            (key, x, features, tuple(owners)),
        ):
            items.append(item)
        if rank < self.n_inputs < len(self.keys):
            # This image pushed the one ranked n_inputs out of the inputs.
            self.inputs[int(np.argsort(self.keys)[self.n_inputs])] = None

    def pixel_inputs(self):
        """``(index, input)`` of the images whose inputs are kept."""
        return [(index, x) for index, x in enumerate(self.inputs) if x is not None]

    def copy(self):
        new = InputSample(self.size, self.n_inputs)
        # Nothing kept is modified in place: sharing it is safe.
        new.keys, new.inputs, new.features = list(self.keys), list(self.inputs), list(self.features)
        new.owners = list(self.owners)
        new.rng = copy.deepcopy(self.rng)
        return new


class FitState:
    """Running statistics of a stream of normal images.

    Parameters
    ----------
    levels, spatial_levels, patch_levels : tuple of int
        The modelled levels, the levels with spatial Gaussians and those
        whose patch features are kept.
    image_shape : tuple or None
        The ``(H, W, C)`` of the first chunk's array, which later array
        chunks must share (None for lists of images or paths, which may mix
        sizes, as may any later list).
    n_views : int, default=1
        Views of each image (1 + its augmented copies).
    npca : float, default=None
        The Gaussians' ``npca`` (see :class:`~skanomaly.gaussian.Gaussian`).
    patch_neighborhood : int or tuple of int, default=1
        Locations averaged into each patch feature, or the sizes whose
        features are put side by side
        (:func:`~skanomaly.features.patch_features`).
    """

    def __init__(
        self,
        levels,
        spatial_levels,
        patch_levels,
        image_shape,
        n_views=1,
        npca=None,
        patch_neighborhood=1,
    ):
        self.levels = levels
        self.spatial_levels = spatial_levels
        self.patch_levels = patch_levels
        self.image_shape = image_shape
        self.n_views = n_views
        self.npca = npca
        self.patch_neighborhood = patch_neighborhood
        self.moments = None
        self.spatial_moments = None
        # Looked up here, so that tests can shrink them.
        self.reservoir = threshold.Reservoir(threshold.RESERVOIR_SIZE)
        self.patches = patches.PatchReservoir(patches.PATCH_MEMORY_SIZE) if patch_levels else None
        self.sample = InputSample(SCORE_SAMPLE_SIZE, PIXEL_SAMPLE_SIZE)

    @property
    def n_samples(self):
        """Images accumulated (each with its ``n_views`` views)."""
        return self.moments[0].n_samples // self.n_views

    def update(self, pooled, spatial_moments, patch_rows=None, inputs=None):
        """Add one batch: pooled ``(b, d_l)`` rows, or ``(b, n_views, d_l)``
        with augmented views, spatial moments, each view's patch features
        and ``inputs(k, with_input)``, the network input of the batch's
        image ``k`` (None without ``with_input``) and its features, for the
        sample of images (None: not offered)."""
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
        first = None
        if self.patches is not None:
            first = self.patches.n_images
            self.patches.add(patch_rows)
        if inputs is not None:
            n = pooled[0].shape[0]
            for k in range(n):
                # The reservoir numbers the batch's views in order, and a
                # batch holds all first views, then all second views, ...
                # (AugmentedSource): image k owns first + v * n + k.
                owners = () if first is None else range(first + k, first + self.n_views * n, n)
                self.sample.offer(lambda with_input, k=k: inputs(k, with_input), owners)

    def gaussians(self):
        """The pooled and the spatial Gaussians of the moments so far."""
        pooled = [Gaussian.from_moments(m, npca=self.npca) for m in self.moments]
        spatial = [Gaussian.from_moments(m) for m in self.spatial_moments or ()]
        return pooled, spatial

    def leave_out(self, index, spatial_moments, score=False):
        """The spatial Gaussians and the patch memory of image ``index`` of
        the sample as if it had not been fitted on: without
        ``spatial_moments``, the moments of its locations at each spatial
        level, and without its patch rows (those of all its views; the
        locations of its augmented views stay, as only the image is kept).
        A single training image loses only its own view's patch rows, so it
        is measured against its augmented views; without views it keeps its
        patches: there is no other. With ``score``, the memory is the part
        the image scores search."""
        spatial = [
            Gaussian.from_moments(total.subtract(own))
            for total, own in zip(self.spatial_moments or (), spatial_moments)
        ]
        if self.patches is None:
            return spatial, None
        return spatial, self.patches.without(self.sample.owners[index], score)

    def copy(self):
        """An independent copy, so that a failed chunk leaves this one as it was."""
        new = FitState(
            self.levels,
            self.spatial_levels,
            self.patch_levels,
            self.image_shape,
            self.n_views,
            self.npca,
            self.patch_neighborhood,
        )
        new.moments = [m.copy() for m in self.moments]
        new.spatial_moments = (
            None if self.spatial_moments is None else [m.copy() for m in self.spatial_moments]
        )
        new.reservoir = self.reservoir.copy()
        new.patches = None if self.patches is None else self.patches.copy()
        new.sample = self.sample.copy()
        return new
