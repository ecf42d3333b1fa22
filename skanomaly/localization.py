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

import numbers

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.validation import check_is_fitted

from ._constants import EXPLAIN_METHODS
from .backbone import autocast
from .gaussian import LedoitWolfMoments, gaussians_on, precision_from_covariance

__all__ = [
    "EXPLAIN_METHODS",
    "SPATIAL_LEVELS",
    "SpatialGaussians",
    "check_explain_params",
    "explain",
    "spatial_levels",
    "spatial_moments",
]

# Stages whose pre-pooling maps get a spatial Gaussian (28x28, 14x14, 14x14
# and 7x7 for Lite0 at 224 px; chosen by benchmarks/bench_explain.py).
# Names, resolved against the network's level names.
SPATIAL_LEVELS = ("stage3", "stage4", "stage5", "stage6")

_GRADIENT_METHODS = ("reference", "weighted", "spatial_grad", "spatial_grad_prior")
_SPATIAL_METHODS = ("spatial", "weighted", "spatial_grad", "spatial_grad_prior")


# ---------------------------------------------------------------- Gaussians
class SpatialGaussians:
    """One Ledoit-Wolf Gaussian per level, shared over all locations.

    ``fit`` feeds it the moments of the training images' pre-pooling feature
    maps (:func:`spatial_moments`, from the same forward pass as the pooled
    features), then :meth:`finalize` computes the Gaussians.

    Parameters
    ----------
    levels : sequence of int
        Sorted level indices of the network (see :data:`SPATIAL_LEVELS`).
    """

    def __init__(self, levels):
        self.levels = tuple(sorted(int(level) for level in levels))
        self.moments = None
        self.location_ = None
        self.precision_ = None

    def add(self, moments):
        """Merge one :class:`LedoitWolfMoments` per level into the running ones."""
        self.moments = (
            list(moments)
            if self.moments is None
            else [old.merge(new) for old, new in zip(self.moments, moments)]
        )
        return self

    def finalize(self):
        """Compute the Gaussians from the moments gathered so far."""
        estimates = [moments.ledoit_wolf() for moments in self.moments]
        self.location_ = [e[0] for e in estimates]
        self.precision_ = [precision_from_covariance(e[1]) for e in estimates]
        self.__dict__.pop("_tensors", None)
        return self

    def copy(self):
        """An independent copy of the running moments (not of the Gaussians)."""
        new = SpatialGaussians(self.levels)
        new.moments = None if self.moments is None else [m.copy() for m in self.moments]
        return new

    def copy_finalized(self):
        """The Gaussians of the moments so far, as a new object, leaving this
        one free to gather more moments."""
        new = SpatialGaussians(self.levels)
        new.moments = self.moments
        return new.finalize()

    def distance_maps(self, maps, device):
        """Per-level ``(n, h_l, w_l)`` Mahalanobis distances / sqrt(c_l)."""
        out = []
        tensors = gaussians_on(self, self.location_, self.precision_, device)
        for m, (loc, prec) in zip(maps, tensors):
            diff = m.permute(0, 2, 3, 1) - loc
            sq = torch.einsum("nhwi,ij,nhwj->nhw", diff, prec, diff)
            out.append(torch.sqrt(sq.clamp_min(1e-12)) / np.sqrt(m.shape[1]))
        return out

    def __getstate__(self):
        # Tensors are rebuilt per device on demand; the moments are only
        # needed while fitting goes on (partial_fit keeps its own copy).
        state = self.__dict__.copy()
        state.pop("_tensors", None)
        state["moments"] = None
        return state


def spatial_moments(maps):
    """One :class:`LedoitWolfMoments` per ``(n, c, h, w)`` map, over all
    its locations."""
    moments = []
    for m in maps:
        rows = m.detach().permute(0, 2, 3, 1).reshape(-1, m.shape[1])
        moments.append(LedoitWolfMoments(m.shape[1]).update(rows.double().cpu().numpy()))
    return moments


def spatial_levels(network, names=SPATIAL_LEVELS):
    """Indices of the spatial levels in ``network.level_names``."""
    return tuple(sorted(network.level_names.index(name) for name in names))


# --------------------------------------------------------------- parameters
def _check_number(value, name, *, integer=False, positive=False):
    bad = isinstance(value, bool) or not isinstance(
        value, numbers.Integral if integer else numbers.Real
    )
    if not bad:
        bad = not np.isfinite(value) or value < 0 or (positive and value == 0)
    if bad:
        kind = "an integer" if integer else "a finite number"
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be {kind} {bound}; got {value!r}.")


def check_explain_params(detector):
    """Validate the localization parameters of ``detector``."""
    if detector.explain_method not in EXPLAIN_METHODS:
        raise ValueError(
            f"explain_method must be one of {EXPLAIN_METHODS}; got {detector.explain_method!r}."
        )
    _check_number(detector.n_steps, "n_steps", integer=True)
    _check_number(detector.step_size, "step_size")
    _check_number(detector.smoothing, "smoothing")
    _check_number(detector.lam, "lam")


# ------------------------------------------------------------------ helpers
def gaussian_blur(maps, sigma):
    """Blur ``(n, h, w)`` maps with a Gaussian of ``sigma`` pixels (reflect)."""
    if sigma <= 0:
        return maps
    radius = max(1, int(round(3 * sigma)))
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


def _pooled_score(detector, maps, device):
    """Anomaly score per image (sum of distances over ``levels_``), ``(n,)``."""
    total = 0
    for m, (loc, prec) in zip(maps, detector._gaussians_on(device)):
        diff = m.mean(dim=(2, 3)) - loc
        sq = torch.einsum("ni,ij,nj->n", diff, prec, diff).clamp_min(1e-12)
        total = total + (sq if detector.distance == "squared" else torch.sqrt(sq))
    return total


def _spatial_prior(detector, network, x0, spatial):
    with torch.no_grad():
        # Only the network runs in mixed precision: distances of half-precision
        # features in half precision lose the small eigen-directions.
        with autocast(x0.device, detector._autocast_dtype()):
            maps = [m.float() for m in network(x0, spatial.levels)]
        return _upsample_sum(spatial.distance_maps(maps, x0.device), x0.shape[-2:])


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


# ------------------------------------------------------------------ methods
def _input_size_maps(detector, network, x0, method, n_steps, step_size, lam):
    device = x0.device

    def score_energy(x):
        return _pooled_score(detector, network(x, detector.levels_), device)

    if method == "reference":
        return _descend(x0, score_energy, n_steps, step_size, lam)
    spatial = detector.spatial_
    if not spatial.levels:
        raise ValueError(
            f"explain_method={method!r} needs the spatial Gaussians, which fit "
            "skips for explain_method='reference'; fit again with this method."
        )
    prior = _spatial_prior(detector, network, x0, spatial)
    if method == "spatial":
        return prior
    weight = _normalize01(prior)
    if method == "weighted":
        return _descend(
            x0, score_energy, n_steps, step_size, lam, weight=weight, stop_below=-detector.offset_
        )

    def spatial_energy(x):
        maps = spatial.distance_maps(network(x, spatial.levels), device)
        return sum(m.flatten(1).mean(dim=1) for m in maps)

    grad_map = _descend(x0, spatial_energy, n_steps, step_size, lam, weight=weight)
    if method == "spatial_grad":
        return grad_map
    return grad_map * weight  # spatial_grad_prior


def explain(detector, X):
    """Pixel anomaly maps of ``X``; see :meth:`EfficientNetGaussianDetector.explain`."""
    check_is_fitted(detector)
    detector._check_params()
    method = detector.explain_method
    n_steps = detector.n_steps
    step_size = float(detector.step_size)
    smoothing = float(detector.smoothing)
    lam = float(detector.lam)
    source = detector._images(X, reset=False)
    network = detector._network()
    scale_sigma = None
    results = []
    for _, images in source.batches(detector.batch_size, network.device):
        sizes = (
            [tuple(img.shape[-2:]) for img in images]
            if isinstance(images, list)
            else [tuple(images.shape[-2:])] * images.shape[0]
        )
        x0 = network.prepare(images)
        with torch.enable_grad():
            maps = _input_size_maps(detector, network, x0, method, n_steps, step_size, lam)
        maps = torch.nan_to_num(maps.float(), nan=0.0, posinf=0.0, neginf=0.0)
        if scale_sigma is None:
            # smoothing is in pixels of a 224-px input; scale to this input size.
            scale_sigma = smoothing * maps.shape[-1] / 224.0
        maps = gaussian_blur(maps, scale_sigma)
        for i, size in enumerate(sizes):
            m = maps[i : i + 1, None]
            if tuple(m.shape[-2:]) != size:
                m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
            results.append(m[0, 0].cpu().numpy().astype(np.float32))
    if len({r.shape for r in results}) == 1:
        return np.stack(results)
    return results
