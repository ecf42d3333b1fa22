"""Pixel anomaly maps for :meth:`EfficientNetGaussianDetector.explain`.

Every method works on the preprocessed input ``x0`` (the network's input
size, 224 x 224 for Lite0) and returns one map per image there;
:meth:`Explainer.explain` blurs it and brings it back to each image's
resolution. Nothing here sees the estimator: the maps come from feature maps,
fitted Gaussians, a patch memory and settings.

Methods (``explain_method``):

``"descent"`` (the default)
    The energy descent of Dehaene et al. (ICLR 2020),
    ``E(x) = A(x) + lam * ||x - x0||_1``, with a training-free stand-in for
    their autoencoder's per-pixel weighting. ``A(x)`` is the mean over the
    patches of the image of how far each lies beyond the normal range: its
    distance to the nearest patch of the normal images
    (:mod:`skanomaly.patches`; with ``patch_neighborhood`` > 1 each patch
    feature is the average of its neighbourhood, as in PatchCore, and with a
    tuple of sizes those averages side by side) less
    ``patch_threshold_``, the 90th percentile
    of that distance among normal patches, floored at 0 (smoothly), so that
    normal patches contribute almost nothing. Each step moves every pixel by
    ``step_size * w * g / max|g|``, ``g`` the gradient of ``A`` and ``w``
    the nearest-patch distance map scaled to [0, 1] per image (the
    per-pixel weight), then soft-thresholds the change ``x - x0`` by
    ``step_size * lam``: the proximal step of the L1 term, which holds
    pixels exactly at their value unless the weighted gradient exceeds
    ``lam`` of its largest value, so ``lam`` is scale-free. The map is the
    prior ``sqrt(spatial * patches)``, the geometric mean of the
    ``"spatial"`` and ``"patches"`` maps (which ranks pixels alike whatever
    either map's units), sharpened where the image had to change:
    ``prior * (1 + 16 * |x_T - x0| / (n_steps * step_size))``: the prior
    where nothing changed, and everywhere for ``lam >= 1``. As a prior the
    mean followed defects more closely than the ``"spatial"`` map alone (the
    prior before) and kept its pixel AUROC on magnetic tiles, which the
    ``"patches"`` map alone loses (benchmarks/results/explain.md,
    left_out.md). As each image's step is scaled by its own largest
    gradient, a normal image would be changed as much as a defective one,
    at its least normal patches (a tenth of normal patches lie beyond
    ``patch_threshold_``), so the change is gated per image: multiplied by
    ``min(1, e / (2 * patch_excess_))``, ``e`` the image's mean patch
    distance beyond ``patch_threshold_`` and ``patch_excess_`` that of the
    median training image (each patch measured without its own image):
    a typical normal image's change counts half, and one at least twice as
    far beyond normal counts fully.
    Gradients flow only through the stages of the patch features.
``"spatial"``
    No gradients: the Mahalanobis distance of every location of the
    pre-pooling feature maps of a few mid-level stages to one Ledoit-Wolf
    Gaussian per level, shared over locations and fitted on the training
    images' maps; each level's distance map is divided by the square root of
    its channel count, upsampled and summed.
``"patches"``
    No gradients: the distance of every patch of the image to its nearest
    normal patch (the patch memory of ``"descent"``), upsampled: PatchCore's
    anomaly map (Roth et al., 2022). ``lam`` does not enter it. It followed
    defects more closely than ``"descent"`` on paper and cookies, less on
    magnetic tiles (benchmarks/results/explain.md).
``"reference"``
    Dehaene et al.'s descent exactly as the seed of this project did it, for
    comparison: descend ``E(x) = score(x) + lam * ||x - x0||_1``, where
    ``score`` is the detector's anomaly score (the distances of the pooled
    features summed over ``levels_``), by ``x <- x - alpha * grad E(x)``
    for ``n_steps`` steps; the map is ``|x_T - x0|`` averaged over channels.
    The gradient has the score's scale, large and model-dependent, so
    ``alpha = step_size / max|grad E(x_t)|`` per image and step (the seed
    used ``n_steps=50, step_size=0.005``).
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from ._constants import EXPLAIN_METHODS
from .features import autocast, patch_features, pool
from .gaussian import combine_levels
from .patches import nearest_patches

__all__ = [
    "EXPLAIN_METHODS",
    "Explainer",
    "gaussian_blur",
    "pooled_scores",
    "spatial_distance_maps",
]


def spatial_distance_maps(maps, gaussians):
    """Per-level ``(n, h_l, w_l)`` Mahalanobis distance of every location of
    ``(n, c_l, h_l, w_l)`` feature maps, divided by sqrt(c_l) so that levels
    of many channels do not dominate the sum."""
    return [
        gaussian.distances(m.permute(0, 2, 3, 1)) / np.sqrt(m.shape[1])
        for m, gaussian in zip(maps, gaussians)
    ]


def pooled_scores(maps, gaussians, rule):
    """The anomaly score (the score rule of the pooled distances), ``(n,)``;
    ``rule`` a distance rule or a :class:`~skanomaly.gaussian.ScoreRule`."""
    pooling = getattr(rule, "pooling", "mean")
    distances = [g.distances(pool(m, pooling)) for m, g in zip(maps, gaussians)]
    return combine_levels(torch.stack(distances, dim=-1), rule)


def gaussian_blur(maps, sigma):
    """Blur ``(n, h, w)`` maps with a Gaussian of ``sigma`` pixels (reflect)."""
    if sigma <= 0:
        return maps
    radius = max(1, round(3 * sigma))
    radius = min(radius, maps.shape[-1] - 1, maps.shape[-2] - 1)
    if radius < 1:
        return maps
    t = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = maps[:, None]
    x = F.pad(x, (radius, radius, 0, 0), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))
    return x[:, 0]


def _upsample(maps, size):
    """``(n, h, w)`` maps resized bilinearly to ``size``."""
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def _upsample_sum(level_maps, size):
    return sum(_upsample(m, size) for m in level_maps)


def _normalize01(maps):
    flat = maps.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1)
    high = flat.max(dim=1).values.view(-1, 1, 1)
    return (maps - low) / (high - low).clamp_min(1e-12)


def _descend(x0, energy_fn, n_steps, step_size, lam):
    """The seed's normalized gradient descent on the input, batched.

    ``energy_fn(x)`` returns the per-image energy without the L1 term
    ``(n,)``; every image's step is ``step_size * g / max|g|``.
    """
    x = x0.detach().clone()
    for _ in range(n_steps):
        x.requires_grad_(True)
        (grad,) = torch.autograd.grad(energy_fn(x).sum(), x)
        x = x.detach()
        if lam > 0:
            grad = grad + lam * torch.sign(x - x0)
        grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
        scale = grad.abs().flatten(1).max(dim=1).values.clamp_min(1e-20)
        x = x - step_size * grad / scale.view(-1, 1, 1, 1)
    return (x.detach() - x0).abs().mean(dim=1)


def _proximal_descent(x0, excess, weight, n_steps, step_size, lam):
    """Weighted proximal gradient descent of ``excess(x)`` (``(n,)``) plus
    the L1 distance to ``x0``; returns ``|x_T - x0|`` averaged over
    channels."""
    x = x0.detach().clone()
    for _ in range(n_steps):
        x.requires_grad_(True)
        (grad,) = torch.autograd.grad(excess(x).sum(), x)
        grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0) * weight
        grad = grad / grad.abs().flatten(1).max(dim=1).values.clamp_min(1e-20).view(-1, 1, 1, 1)
        change = x.detach() - x0 - step_size * grad
        x = x0 + torch.sign(change) * (change.abs() - step_size * lam).clamp_min(0)
    return (x - x0).abs().mean(dim=1)


# How much the descent's change sharpens the spatial map: a pixel that
# moved by the most any pixel can counts 1 + 16 times its spatial value.
_CHANGE_GAIN = 16.0
# Nearest normal patches kept per patch at x0: a descent this short does
# not move a patch past all of them, so its nearest one is among them.
_CANDIDATES = 8
# Width of the smooth minimum and hinge of the descent, relative to the
# normal patch distance.
_SMOOTHING = 0.01


def _gate(distances, threshold, normal_excess):
    """``(n,)`` weights in [0, 1] of each image's change: its patches' mean
    distance beyond ``threshold``, over twice that of a typical normal
    image (``normal_excess``), capped at 1 (see ``"descent"`` in the module
    docstring). 1 for models saved before the gate (``normal_excess`` None)."""
    if normal_excess is None:
        return torch.ones(len(distances), device=distances.device)
    excess = (distances - threshold).clamp_min(0).flatten(1).mean(dim=1)
    return (excess / max(2 * normal_excess, 1e-12)).clamp(max=1)


class Explainer:
    """Pixel anomaly maps from explicit parts: feature maps, Gaussians, a
    patch memory and the localization parameters (see the module docstring
    for the methods).

    Parameters
    ----------
    method : str
        One of :data:`EXPLAIN_METHODS`.
    n_steps, step_size, lam, smoothing : float
        As for :class:`~skanomaly.EfficientNetGaussianDetector`.
    """

    def __init__(self, method, *, n_steps, step_size, lam, smoothing):
        self.method = method
        self.n_steps = n_steps
        self.step_size = float(step_size)
        self.lam = float(lam)
        self.smoothing = float(smoothing)

    def explain(self, extractor, source, pooled, spatial, patches, *, rule, reduce=None):
        """Maps of every image of ``source``, at its own size, or what
        ``reduce`` makes of each (so that only that stays in memory).

        Parameters
        ----------
        extractor : FeatureExtractor
            Batches and feature maps (:meth:`~skanomaly.features.FeatureExtractor.maps`).
        source : ImageSource
            The validated images.
        pooled : (tuple of int, list of Gaussian)
            The modelled levels and their pooled-feature Gaussians.
        spatial : (tuple of int, list of Gaussian)
            The spatial levels and their location Gaussians (empty when the
            detector was fitted for the reference method only).
        patches : (tuple of int, ndarray of shape (m, c), float, int, float or None)
            The patch levels, the normal patch features, the distance below
            which a patch is normal, the neighbourhood the features were
            averaged over (:func:`~skanomaly.features.patch_features`) and a
            typical normal image's mean excess over that distance (None: no
            gate).
        rule : str
            The score rule (:func:`~skanomaly.gaussian.combine_levels`).
        reduce : callable, default=None
            Applied to each map as it is made; None keeps the maps.

        Returns
        -------
        list of ndarray of shape (H_i, W_i), float32, or of what ``reduce`` returns
        """
        results = [None] * len(source)
        for positions, x0, sizes in extractor.batches(source):
            maps = self.input_maps(extractor, x0, pooled, spatial, patches, rule=rule)
            for position, m, size in zip(positions, maps, sizes):
                m = m[None, None]
                if tuple(m.shape[-2:]) != size:
                    m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
                m = m[0, 0].cpu().numpy().astype(np.float32)
                results[position] = m if reduce is None else reduce(m)
        return results

    def input_maps(self, extractor, x0, pooled, spatial, patches, *, rule):
        """The blurred ``(n, h, w)`` maps of the preprocessed batch ``x0``, at
        the network's input size (:meth:`explain` before the resizing to each
        image); the other arguments as for :meth:`explain`."""
        self._check(spatial)
        maps = self._input_size_maps(extractor, x0, pooled, spatial, patches, rule)
        maps = torch.nan_to_num(maps.float(), nan=0.0, posinf=0.0, neginf=0.0)
        # smoothing is in pixels of a 224-px input; scale to this input size.
        side = math.sqrt(maps.shape[-2] * maps.shape[-1])
        return gaussian_blur(maps, self.smoothing * side / 224.0)

    def _check(self, spatial):
        if self.method != "reference" and not spatial[0]:
            raise ValueError(
                f"explain_method={self.method!r} needs the spatial Gaussians and the "
                "patch memory, which fit skips for explain_method='reference'; fit "
                "again with this method."
            )

    def _input_size_maps(self, extractor, x0, pooled, spatial, patches, rule):
        """``(n, h, w)`` maps at the network's input size."""
        if self.method == "reference":
            levels, gaussians = pooled

            def score(x):
                return pooled_scores(extractor.maps(x, levels, grad=True), gaussians, rule)

            with autocast(x0.device, None):  # strict float32, as in _change
                return _descend(x0, score, self.n_steps, self.step_size, self.lam)
        patch_levels = patches[0]
        if self.method == "patches":
            return self._nearest(x0, extractor.maps(x0, patch_levels), patches)[2]
        spatial_levels, gaussians = spatial
        wanted = sorted(set(spatial_levels) | set(patch_levels))
        maps = dict(zip(wanted, extractor.maps(x0, wanted)))
        prior = _upsample_sum(
            spatial_distance_maps([maps[level] for level in spatial_levels], gaussians),
            x0.shape[-2:],
        )
        if self.method == "spatial":
            return prior
        # The proximal step moves no pixel from lam=1 on (the weighted
        # gradient is normalized to at most 1): no candidates are needed.
        k = 1 if self.lam >= 1 else _CANDIDATES
        # The memory on the device once: the start's search and the
        # descent's candidates both read it.
        patches = (patch_levels, torch.as_tensor(patches[1], device=x0.device), *patches[2:])
        start, found, nearest_map = self._nearest(
            x0, [maps[level] for level in patch_levels], patches, k
        )
        # The geometric mean ranks pixels alike whatever the units of either
        # map: neither the Mahalanobis nor the feature distance's scale counts.
        base = (prior.clamp_min(0) * nearest_map.clamp_min(0)).sqrt()
        if self.lam >= 1:
            return base
        change = self._change(extractor, x0, start, found, nearest_map, patches)
        return base * (1 + _CHANGE_GAIN * change)

    @staticmethod
    def _nearest(x0, level_maps, patches, k=1):
        """``(start, (distances, indices), map)``: the patch features of
        ``x0`` from the feature maps of its patch levels, their ``k``
        nearest normal patches, and the nearest one's distance at the input
        size (the ``"patches"`` map)."""
        _, memory, _, neighborhood, _ = patches
        start = patch_features(level_maps, neighborhood)
        found = nearest_patches(start, torch.as_tensor(memory, device=x0.device), k=k)
        return start, found, _upsample(found[0][..., 0], x0.shape[-2:])

    def _change(self, extractor, x0, start, found, nearest_map, patches):
        """``|x_T - x0|`` of the proximal descent of the patches' excess
        distance, relative to the most a pixel can move, times each image's
        gate (:func:`_gate`); ``start``, ``found`` and ``nearest_map`` (the
        steps' per-pixel weight) as :meth:`_nearest` gives them, with
        ``_CANDIDATES`` nearest patches; the memory of ``patches`` a tensor
        on ``x0``'s device."""
        patch_levels, memory, threshold, neighborhood, normal_excess = patches
        distances, nearest = found
        n, h, w, c = start.shape
        candidates = memory[nearest].view(n, h * w, _CANDIDATES, c)
        candidate_norms = candidates.square().sum(-1)

        # A smooth minimum and a smooth hinge, a few percent of the normal
        # distance wide: with hard ones, a change of the input in the 7th
        # digit switches which neighbour or patch the gradient follows, and
        # the descent amplifies that into visibly different maps.
        width = _SMOOTHING * max(threshold, 1e-6)

        def excess(x):
            found = patch_features(extractor.maps(x, patch_levels, grad=True), neighborhood)
            found = found.reshape(n, h * w, c)
            # |f - c|^2 = |f|^2 - 2 f.c + |c|^2: a batched product instead of
            # the (n, patches, candidates, channels) differences, which cost
            # a fifth of the descent forward and backward.
            cross = torch.einsum("npc,npkc->npk", found, candidates)
            gaps = found.square().sum(-1, keepdim=True) - 2 * cross + candidate_norms
            gaps = gaps.clamp_min(1e-12).sqrt()
            nearest_gap = -width * torch.logsumexp(-gaps / width, dim=-1)
            return F.softplus(nearest_gap - threshold, beta=1 / width).mean(dim=1)

        weight = _normalize01(nearest_map)[:, None]
        # Strict float32 around the forward and backward passes: CUDA runs
        # convolutions in TF32 by default, and the descent amplifies that.
        with autocast(x0.device, None):
            change = _proximal_descent(x0, excess, weight, self.n_steps, self.step_size, self.lam)
        gate = _gate(distances[..., 0], threshold, normal_excess)
        return change * gate.view(-1, 1, 1) / max(self.n_steps * self.step_size, 1e-12)
