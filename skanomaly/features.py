"""Backbone features of images, batch by batch: the feature extractor.

:class:`FeatureExtractor` owns everything between validated images and the
numbers the Gaussians need: the shared pretrained network (built once per
configuration), the device and precision policy, ``torch.compile``,
batching, the on-disk feature cache, the BLAS thread limit and progress
bars. It knows nothing of Gaussians or thresholds.
"""

import contextlib
import copy
import numbers
import os
import tempfile
import threading
import warnings
from functools import cache, partial
from pathlib import Path

import numpy as np
import threadpoolctl
import torch
import torch.nn.functional as F
from sklearn.utils.validation import check_memory

from ._constants import PATCH_LEVELS, PATCH_NEIGHBORHOOD, SPATIAL_LEVELS
from ._progress import progress
from ._stacklevel import user_stacklevel
from .backbone import EfficientNetLevels, load_backbone
from .gaussian import LedoitWolfMoments

__all__ = [
    "FeatureExtractor",
    "autocast",
    "get_network",
    "onednn_supports",
    "patch_features",
    "pool",
    "resolve_device",
    "resolve_levels",
    "spatial_moments",
]


def resolve_device(device):
    """The :class:`torch.device` for ``"auto"``, ``"cpu"``, ``"cuda[:i]"``
    or a device; ValueError for anything else or for CUDA without a GPU."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda'; got {device!r}.")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here.")
    return resolved


def autocast_dtype(precision, device):
    """The autocast dtype of forward passes without gradients, or None for
    strict float32; ``"auto"`` is float16 on CUDA and float32 elsewhere.
    Warns where a CPU has no oneDNN kernels for the dtype."""
    if precision == "auto":
        precision = "float16" if device.type == "cuda" else "float32"
    if precision == "float32":
        return None
    dtype = getattr(torch, precision)
    if device.type == "cpu" and not onednn_supports(dtype):
        warnings.warn(
            f"precision={precision!r}: this CPU lacks the instructions of oneDNN's "
            f"{precision} kernels, so the network runs in PyTorch's fallback kernels, "
            "many times slower than in float32. Use precision='float32' (what 'auto' "
            "gives on a CPU).",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    return dtype


def onednn_supports(dtype):
    """Whether oneDNN has fast CPU kernels for ``dtype`` on this machine.

    bfloat16 needs AVX-512 or Arm's BF16, float16 AVX512-FP16 or AMX-FP16.
    Without them the Lite0 forward pass ran 15-33 times slower than in
    float32 (benchmarks/results/precision.md), and a detector with that
    ``precision`` on a CPU warns.

    Parameters
    ----------
    dtype : torch.dtype
        ``torch.bfloat16`` or ``torch.float16``.

    Returns
    -------
    supported : bool
        True where oneDNN has the kernels, or where PyTorch cannot tell.

    Raises
    ------
    ValueError
        For any other dtype.

    Examples
    --------
    >>> import torch
    >>> from skanomaly.features import onednn_supports
    >>> isinstance(onednn_supports(torch.bfloat16), bool)
    True
    """
    name = {torch.bfloat16: "_is_mkldnn_bf16_supported", torch.float16: "_is_mkldnn_fp16_supported"}
    if dtype not in name:
        raise ValueError(f"onednn_supports takes torch.bfloat16 or torch.float16, not {dtype!r}")
    try:
        return bool(getattr(torch.ops.mkldnn, name[dtype])())
    except (AttributeError, RuntimeError):
        return True


def autocast(device, dtype):
    """Mixed precision at ``dtype`` on ``device``'s type, or strict float32
    for None: CUDA convolutions otherwise run in TF32 by default."""
    if dtype is not None:
        return torch.autocast(device.type, dtype=dtype)
    if device.type == "cuda":
        cudnn = torch.backends.cudnn
        return cudnn.flags(
            enabled=cudnn.enabled,
            benchmark=cudnn.benchmark,
            deterministic=cudnn.deterministic,
            allow_tf32=False,
        )
    return contextlib.nullcontext()


def resolve_levels(levels, names, backbone):
    """Sorted level indices for ``levels``: "all", or names and/or indices
    into ``names``; ValueError naming the backbone's levels otherwise."""
    if isinstance(levels, str) and levels == "all":
        return tuple(range(len(names)))
    if isinstance(levels, (str, int, np.integer)):
        levels = (levels,)
    indices = []
    for level in levels:
        if isinstance(level, str):
            if level not in names:
                raise ValueError(f"Unknown level {level!r}; {backbone} has levels {names}.")
            indices.append(names.index(level))
        elif isinstance(level, (int, np.integer)) and not isinstance(level, bool):
            if not 0 <= level < len(names):
                raise ValueError(
                    f"Level {level} is out of range; {backbone} has {len(names)} "
                    f"levels, 0..{len(names) - 1} ({names})."
                )
            indices.append(int(level))
        else:
            raise ValueError(f"levels must hold names or indices; got {level!r}.")
    if not indices:
        raise ValueError("levels is empty; give at least one level.")
    if len(set(indices)) != len(indices):
        raise ValueError(f"levels has repeated entries: {levels!r}.")
    return tuple(sorted(indices))


_LOCK = threading.Lock()


@cache
def _pretrained(backbone, weights, version=None):
    """The loaded model, on the CPU; copied, never modified. ``version``
    (see :func:`_file_version`) keys the cache on the weights file's
    content, not only its path."""
    return load_backbone(backbone, weights)


def _file_version(weights):
    """``(modification time, size)`` of a weights file, None where there is
    none: a file written again under the same path is loaded again."""
    try:
        status = os.stat(weights)
    except (TypeError, OSError):
        return None
    return status.st_mtime_ns, status.st_size


@cache
def _network(backbone, weights, version, device, depth, input_size, keep_aspect, compiled):
    model = copy.deepcopy(_pretrained(backbone, weights, version))
    network = EfficientNetLevels(model, depth, input_size, keep_aspect).to(device).eval()
    if device.type == "cpu":
        network = network.to(memory_format=torch.channels_last)
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return torch.compile(network) if compiled else network


def get_network(
    backbone,
    weights=None,
    device="cpu",
    depth=None,
    input_size=None,
    keep_aspect=False,
    compiled=False,
):
    """A shared :class:`~skanomaly.backbone.EfficientNetLevels`, built once
    per configuration.

    Clones made by model selection share one network instead of loading the
    weights again; the network is never trained, so sharing is safe. It is
    pruned after ``depth``. With ``compiled``, its forward pass goes through
    :func:`torch.compile` (the other methods and attributes stay reachable
    on the wrapper).
    """
    weights = None if weights is None else str(Path(weights).resolve())
    version = _file_version(weights)
    if input_size is not None:
        input_size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    with _LOCK:
        # The head (the last level, after every stage) is kept either way.
        if depth is not None and depth > len(_pretrained(backbone, weights, version).blocks):
            depth = None
        return _network(
            backbone,
            weights,
            version,
            torch.device(device),
            depth,
            input_size,
            keep_aspect,
            compiled,
        )


def pool(maps, pooling="mean"):
    """Global pooling of ``(n, c, h, w)`` or ``(c, h, w)`` feature maps over
    their locations.

    ``"mean"`` averages each channel (Rippel et al., 2020); ``"max"`` keeps
    each channel's largest response, which a defect covering a few
    locations moves as much as one covering the whole image. The one
    implementation for scoring and for the gradient-based explain methods.
    """
    if pooling not in ("mean", "max"):
        raise ValueError(f"pooling must be 'mean' or 'max'; got {pooling!r}.")
    if pooling == "max":
        # The same values as maps.amax(dim=(-2, -1)), several times faster
        # on channels-last maps (and differentiable the same way).
        return torch.nn.functional.adaptive_max_pool2d(maps, 1).flatten(-3)
    return maps.mean(dim=(-2, -1))


def spatial_moments(maps):
    """One :class:`~skanomaly.gaussian.LedoitWolfMoments` per ``(n, c, h, w)``
    map, over all its locations."""
    moments = []
    for m in maps:
        rows = m.detach().permute(0, 2, 3, 1).reshape(-1, m.shape[1])
        moments.append(LedoitWolfMoments(m.shape[1]).update(rows.double().cpu().numpy()))
    return moments


def patch_features(maps, neighborhood=1, upsample=None):
    """``(n, h, w, c)`` patch features: the ``(n, c_l, h_l, w_l)`` maps of
    a few levels, each upsampled (bilinear) to the first one's grid, their
    channels side by side.

    With ``neighborhood`` k > 1 each map is first averaged over k x k
    locations, zero-padded at the border: PatchCore's locally aware patch
    features (Roth et al., 2022). The padding is part of the recipe: it
    scales the border patches down, in the normal images as in new ones.
    A tuple of sizes puts the features of each side by side: one patch then
    describes its location at several scales, and its distance to a normal
    patch counts a difference at any of them. ``upsample(map, grid)`` does
    the bilinear upsampling where given (the exported graph's matrix
    products, which every runtime computes alike).
    """
    if isinstance(neighborhood, tuple):
        return torch.cat([patch_features(maps, k, upsample) for k in neighborhood], dim=-1)
    # An even square has no centre: its average would belong to no location.
    if not isinstance(neighborhood, numbers.Integral) or neighborhood < 1 or neighborhood % 2 == 0:
        raise ValueError(
            f"neighborhood must be an odd positive integer or a tuple of them; got {neighborhood!r}."
        )
    if neighborhood > 1:
        maps = [F.avg_pool2d(m, neighborhood, stride=1, padding=neighborhood // 2) for m in maps]
    grid = maps[0].shape[-2:]
    if upsample is None:
        upsample = partial(F.interpolate, mode="bilinear", align_corners=False)
    upsampled = [m if m.shape[-2:] == grid else upsample(m, grid) for m in maps]
    return torch.cat(upsampled, dim=1).permute(0, 2, 3, 1)


def _summarize(
    network, images, levels, spatial, precision, patch_levels=(), pooling="mean", neighborhood=1
):
    """Pooled features of ``levels``, spatial moments of ``spatial`` and the
    patch features of ``patch_levels`` over ``neighborhood`` (one
    ``(h * w, c)`` float32 array per image, or None without patch levels).

    ``precision`` is the autocast dtype of the forward pass (None for
    float32); pooling (:func:`pool`) and moments are computed in float32 or
    wider.
    """
    wanted = tuple(sorted(set(levels) | set(spatial) | set(patch_levels)))
    order, rows, moments, patches = [], [], None, []
    for positions, x in network.prepare(images):
        with torch.inference_mode(), autocast(x.device, precision):
            maps = dict(zip(wanted, (m.float() for m in network(x, wanted))))
        # One transfer for all levels: each .cpu() waits for the device.
        vectors = [pool(maps[level], pooling) for level in levels]
        rows.append(torch.cat(vectors, dim=1))
        order.extend(positions)
        found = spatial_moments([maps[level] for level in spatial])
        moments = found if moments is None else [a.merge(b) for a, b in zip(moments, found)]
        if patch_levels:
            grid = patch_features([maps[level] for level in patch_levels], neighborhood)
            grid = grid.cpu().numpy()
            patches.extend(grid.reshape(len(grid), -1, grid.shape[-1]))
    inverse = np.argsort(order)
    # Split where the pooled vectors end, whatever width the pooling gives.
    ends = np.cumsum([v.shape[1] for v in vectors])[:-1]
    pooled = torch.cat(rows).double().cpu().numpy()[inverse]
    patches = [patches[i] for i in inverse] if patch_levels else None
    return np.split(pooled, ends, axis=1), moments, patches


def _summarize_cached(
    weights_digest,
    precision,
    resizing,
    images,
    levels,
    spatial,
    patch_levels,
    network,
    pooling="mean",
    neighborhood=1,
):
    """:func:`_summarize` keyed by what determines its result.

    ``images`` are the batch's pixels as arrays (hashed by joblib); the
    network is identified by ``weights_digest`` and ``resizing`` (its input
    size and aspect rule) and ignored by the cache.
    """
    if isinstance(images, list):
        images = [torch.from_numpy(image) for image in images]
    else:
        images = torch.from_numpy(images)
    return _summarize(
        network, images, levels, spatial, precision, patch_levels, pooling, neighborhood
    )


def _usable_memory(memory):
    """A joblib Memory for ``memory``, or None (with a warning) when its
    folder cannot be written, so that caching never stops the work."""
    if isinstance(memory, (str, os.PathLike)):
        location = memory
    else:
        location = getattr(memory, "location", None)
    if location is not None:
        try:
            os.makedirs(location, exist_ok=True)
            with tempfile.TemporaryFile(dir=location):
                pass
        except OSError as exc:
            warnings.warn(
                f"The feature cache folder {str(location)!r} cannot be written "
                f"({exc}); running without a cache.",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
            return None
    memory = check_memory(memory)
    return None if getattr(memory, "location", None) is None else memory


@cache
def _blas_controller():
    return threadpoolctl.ThreadpoolController()


class _OneBlasThread:
    """One BLAS thread while any thread of the process is inside.

    The limit is process-wide, so a limit of its own per thread would let
    a second thread take the first's limit of 1 for the original and
    restore it for good: the first to enter sets the limit, and the last
    to leave restores what was there before.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._inside = 0
        self._limiter = None

    @contextlib.contextmanager
    def __call__(self):
        with self._lock:
            if not self._inside:
                self._limiter = _blas_controller().limit(limits=1, user_api="blas")
            self._inside += 1
        try:
            yield
        finally:
            with self._lock:
                self._inside -= 1
                if not self._inside:
                    self._limiter.restore_original_limits()


_one_blas_thread = _OneBlasThread()


class FeatureExtractor:
    """Pooled features and spatial moments of images, batch by batch.

    Parameters
    ----------
    backbone, weights : str
        As for :func:`~skanomaly.backbone.load_backbone`.
    depth : int, default=None
        The deepest level that will be asked for (the network is pruned
        after it); None keeps the head.
    device : str or torch.device, default="auto"
        See :func:`resolve_device`.
    precision : {"auto", "float32", "float16", "bfloat16"}, default="auto"
        Autocast dtype of forward passes without gradients.
    compiled : bool, default=False
        Run the network through :func:`torch.compile`.
    batch_size : int, default=16
        Images per forward pass.
    memory : str, path or joblib.Memory, default=None
        On-disk cache of the summaries of all levels, keyed by the weights,
        the precision, the input size and the pixels of each batch; callers
        cache their own work in it too (:meth:`cached`).
    show_progress : bool, default=False
        A progress bar over batches.
    input_size : int or (int, int), default=None
        The network's input size; None takes the pretrained one.
    keep_aspect : bool, default=False
        Resize images in their own aspect ratio (see
        :class:`~skanomaly.backbone.EfficientNetLevels`).
    pooling : {"mean", "max"}, default="mean"
        How each level's feature maps become one vector (:func:`pool`).
    patch_neighborhood : int or tuple of int, default=(1, 3)
        Locations averaged into each patch feature, or the sizes whose
        features are put side by side (:func:`patch_features`).
    """

    def __init__(
        self,
        backbone,
        weights=None,
        *,
        depth=None,
        device="auto",
        precision="auto",
        compiled=False,
        batch_size=16,
        memory=None,
        show_progress=False,
        input_size=None,
        keep_aspect=False,
        pooling="mean",
        patch_neighborhood=PATCH_NEIGHBORHOOD,
    ):
        self.device = resolve_device(device)
        # Cached summaries hold every level, so that detectors with other
        # levels share them: the network must then keep them all.
        depth = None if memory is not None else depth
        self.network = get_network(
            backbone, weights, self.device, depth, input_size, keep_aspect, compiled
        )
        self.precision = autocast_dtype(precision, self.device)
        self.batch_size = batch_size
        self.memory = memory
        self.show_progress = show_progress
        self.pooling = pooling
        self.patch_neighborhood = patch_neighborhood

    @property
    def level_names(self):
        return self.network.level_names

    @property
    def precision_name(self):
        """The dtype of the forward passes without gradient, by name."""
        return "float32" if self.precision is None else str(self.precision).removeprefix("torch.")

    @property
    def weights_digest(self):
        return self.network.weights_digest

    def host_algebra(self):
        """A context with one BLAS thread for the host's float64 algebra of
        a CPU extractor.

        Between the network's batches, the per-batch products (moments,
        distances) are small, and the threads numpy's BLAS starts for them
        keep spinning afterwards, taking the cores from torch's own threads.
        The Gaussians and the threshold are many mid-sized factorizations,
        for which the threads cost more than they bring on a few cores.
        GPU hosts, with many cores, are left alone.
        """
        if self.device.type != "cpu":
            return contextlib.nullcontext()
        return _one_blas_thread()

    def cached(self, function):
        """``function`` through the on-disk cache of ``memory``, or
        ``function`` itself without a usable one."""
        memory = self._disk_cache()
        return function if memory is None else memory.cache(function)

    def _disk_cache(self):
        """The joblib Memory of ``memory``, or None (see
        :func:`_usable_memory`); its folder is checked once per extractor,
        so that one fit warns once about a folder it cannot write."""
        if not hasattr(self, "_memory"):
            self._memory = _usable_memory(self.memory)
        return self._memory

    def summaries(self, source, levels, spatial=(), desc="Extracting", patch_levels=()):
        """Yield ``(pooled, moments, patches)`` per batch of ``source``: the
        pooled ``(b, c_l)`` float64 features of ``levels``, one
        :class:`~skanomaly.gaussian.LedoitWolfMoments` per level of
        ``spatial`` and the :func:`patch_features` of ``patch_levels`` of
        each image as ``(h * w, c)`` rows (None without patch levels).
        """
        summarize, device = self._summarizer()
        # The limit holds while the caller works on each batch too.
        with self.host_algebra():
            for _, images in self._counted(source, device, desc):
                yield summarize(images, levels, spatial, patch_levels)

    def _summarizer(self):
        """``(summarize, device)``: ``summarize(images, levels, spatial)``
        for batches of images on ``device``.

        With ``memory`` the pooled features of all levels are cached on
        disk (with the moments of ``spatial``), so that model selection over
        levels or thresholds pays the forward pass once per batch of images.
        The key is hashed on the host, so those batches stay there until the
        network needs them.
        """
        network = self.network
        memory = self._disk_cache()
        if memory is None:
            return (
                lambda images, levels, spatial, patch_levels: _summarize(
                    network,
                    images,
                    levels,
                    spatial,
                    self.precision,
                    patch_levels,
                    self.pooling,
                    self.patch_neighborhood,
                ),
                self.device,
            )
        cached = memory.cache(_summarize_cached, ignore=["network"])
        every_level = tuple(range(len(network.level_names)))
        # Fits need the spatial moments and patches and scoring does not;
        # computing them always lets both share one cache entry per batch.
        names = network.level_names
        default_spatial = resolve_levels(SPATIAL_LEVELS, names, "the backbone")
        default_patches = resolve_levels(PATCH_LEVELS, names, "the backbone")

        def summarize(images, levels, spatial, patch_levels):
            key = images.numpy() if torch.is_tensor(images) else [i.numpy() for i in images]
            every_spatial = tuple(sorted(set(default_spatial) | set(spatial)))
            pooled, moments, patches = cached(
                network.weights_digest,
                self.precision,
                (network.input_size, network.keep_aspect),
                key,
                every_level,
                every_spatial,
                patch_levels or default_patches,
                network=network,
                pooling=self.pooling,
                neighborhood=self.patch_neighborhood,
            )
            moments = dict(zip(every_spatial, moments))
            pooled = [pooled[level] for level in levels]
            return pooled, [moments[level] for level in spatial], patches if patch_levels else None

        return summarize, torch.device("cpu")

    def batches(self, source, desc="Explaining"):
        """Yield ``(positions, x, sizes)`` per batch of one input size: the
        images' positions in ``source``, the preprocessed input on the
        device and each image's ``(H, W)``; with a progress bar named
        ``desc`` where the extractor shows progress."""
        for start, images in self._counted(source, self.device, desc):
            for positions, x in self.network.prepare(images):
                sizes = [tuple(images[i].shape[-2:]) for i in positions]
                yield [start + i for i in positions], x, sizes

    def _counted(self, source, device, desc):
        """``source.batches`` on ``device``, under a bar named
        ``desc`` that counts images (batches of large images hold fewer
        than ``batch_size``) where the extractor shows progress."""
        with progress(enabled=self.show_progress, total=len(source), desc=desc) as bar:
            for start, images in source.batches(self.batch_size, device):
                yield start, images
                bar.update(len(images))

    def maps(self, x, levels, grad=False):
        """Feature maps of the preprocessed ``x`` at ``levels``, float32.

        Without ``grad`` the forward pass runs under the autocast
        ``precision``; with it, with gradients and no autocast (a descent on
        the input has no loss scaling for half precision): callers run it
        and its backward pass under ``autocast(device, None)``, which also
        turns off CUDA's TF32 convolutions.
        """
        if grad:
            with torch.enable_grad():
                return self.network(x, levels)
        with torch.no_grad(), autocast(x.device, self.precision):
            return [m.float() for m in self.network(x, levels)]
