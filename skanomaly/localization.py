"""Pixel anomaly maps for :meth:`EfficientNetGaussianDetector.explain`.

Every method works on the preprocessed input ``x0`` (the network's input size,
224 x 224 for Lite0) and returns one map per image there; :func:`explain`
blurs it and brings it back to each input image's resolution.

Methods (``explain_method``):

``"reference"``
    Dehaene et al. (ICLR 2020) exactly: descend the energy
    ``E(x) = score(x) + lam * ||x - x0||_1``, where ``score`` is the
    detector's anomaly score (the distances of the pooled features summed over
    ``levels_``), by ``x <- x - alpha * grad E(x)`` for ``n_steps`` steps; the
    map is ``|x_T - x0|`` averaged over channels. The gradient is huge (norm
    ~1e5 for Lite0), so ``alpha = step_size / max|grad E(x_t)|`` per image
    and step: the largest pixel change of a step is ``step_size`` (in the
    network's normalized units, where the image spans [-1, 1]).
``"spatial"``
    No gradients: the Mahalanobis distance of every location of the
    pre-pooling feature maps of a few mid-level stages to one Ledoit-Wolf
    Gaussian per level, shared over locations and fitted on the training
    images' maps; each level's distance map is divided by the square root of
    its channel count, upsampled and summed.
``"weighted"``
    The reference descent with the update weighted per pixel by the
    ``"spatial"`` map scaled to [0, 1] (Dehaene et al.'s weighting by a
    per-pixel anomaly prior, the spatial map standing in for their VAE
    reconstruction error), with early stopping of each image once its score
    falls into the normal range (``score_samples >= offset_``).
``"spatial_grad"``
    Like ``"weighted"`` but the energy is the sum of the spatial Mahalanobis
    maps, so the gradient is local and the forward pass stops at the deepest
    spatial stage (much cheaper than the full network).
``"spatial_grad_prior"``
    ``"spatial_grad"``'s map multiplied by the (normalized) ``"spatial"`` map:
    a pixel must both be unusual and be changed by the descent.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from ._constants import EXPLAIN_METHODS
from .features import pool
from .gaussian import combine_levels

__all__ = [
    "EXPLAIN_METHODS",
    "Explainer",
    "gaussian_blur",
    "pooled_scores",
    "spatial_distance_maps",
]

GRADIENT_METHODS = ("reference", "weighted", "spatial_grad", "spatial_grad_prior")


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


def _upsample_sum(level_maps, size):
    total = 0
    for m in level_maps:
        total = total + F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return total


def _normalize01(maps):
    flat = maps.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1)
    high = flat.max(dim=1).values.view(-1, 1, 1)
    return (maps - low) / (high - low).clamp_min(1e-12)


def _descend(x0, energy_fn, n_steps, step_size, lam, weight=None, stop_below=None):
    """Normalized gradient descent on the input, batched.

    ``energy_fn(x)`` returns the per-image energy without the L1 term
    ``(n,)``; every image's step is ``step_size * g / max|g|`` (times
    ``weight``). Images whose energy falls to ``stop_below`` freeze.
    """
    x = x0.detach().clone()
    active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    for _ in range(n_steps):
        x.requires_grad_(True)
        energy = energy_fn(x)
        (grad,) = torch.autograd.grad(energy.sum(), x)
        x = x.detach()
        if stop_below is not None:
            active &= energy.detach() > stop_below
            if not bool(active.any()):
                break
        if lam > 0:
            grad = grad + lam * torch.sign(x - x0)
        grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
        if weight is not None:
            grad = grad * weight[:, None]
        scale = grad.abs().flatten(1).max(dim=1).values.clamp_min(1e-20)
        step = step_size * grad / scale.view(-1, 1, 1, 1)
        x = x - step * active.view(-1, 1, 1, 1)
    return (x.detach() - x0).abs().mean(dim=1)


class Explainer:
    """Pixel anomaly maps from explicit parts: feature maps, Gaussians and
    the localization parameters (see the module docstring for the methods).

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

    def explain(self, extractor, source, pooled, spatial, *, rule, offset):
        """Maps of every image of ``source``, at its own size.

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
        rule : str
            The score rule (:func:`~skanomaly.gaussian.combine_levels`).
        offset : float
            The detector's threshold, where the weighted descent stops.

        Returns
        -------
        list of ndarray of shape (H_i, W_i), float32
        """
        if self.method != "reference" and not spatial[0]:
            raise ValueError(
                f"explain_method={self.method!r} needs the spatial Gaussians, which fit "
                "skips for explain_method='reference'; fit again with this method."
            )
        results = [None] * len(source)
        for positions, x0, sizes in extractor.batches(source):
            maps = self._input_size_maps(extractor, x0, pooled, spatial, rule, offset)
            maps = torch.nan_to_num(maps.float(), nan=0.0, posinf=0.0, neginf=0.0)
            # smoothing is in pixels of a 224-px input; scale to this input size.
            side = math.sqrt(maps.shape[-2] * maps.shape[-1])
            maps = gaussian_blur(maps, self.smoothing * side / 224.0)
            for position, m, size in zip(positions, maps, sizes):
                m = m[None, None]
                if tuple(m.shape[-2:]) != size:
                    m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
                results[position] = m[0, 0].cpu().numpy().astype(np.float32)
        return results

    def _input_size_maps(self, extractor, x0, pooled, spatial, rule, offset):
        """``(n, h, w)`` maps at the network's input size."""
        pooled_levels, pooled_gaussians = pooled
        spatial_levels_, spatial_gaussians = spatial

        def descend(energy, weight=None, stop_below=None):
            return _descend(x0, energy, self.n_steps, self.step_size, self.lam, weight, stop_below)

        def score_energy(x):
            return pooled_scores(extractor.maps(x, pooled_levels, grad=True), pooled_gaussians, rule)

        if self.method == "reference":
            return descend(score_energy)
        distances = spatial_distance_maps(extractor.maps(x0, spatial_levels_), spatial_gaussians)
        prior = _upsample_sum(distances, x0.shape[-2:])
        if self.method == "spatial":
            return prior
        weight = _normalize01(prior)
        if self.method == "weighted":
            return descend(score_energy, weight, stop_below=-offset)

        def spatial_energy(x):
            maps = extractor.maps(x, spatial_levels_, grad=True)
            return sum(m.flatten(1).mean(dim=1) for m in spatial_distance_maps(maps, spatial_gaussians))

        grad_map = descend(spatial_energy, weight)
        if self.method == "spatial_grad":
            return grad_map
        return grad_map * weight  # spatial_grad_prior
