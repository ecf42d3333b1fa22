"""The machinery of a Gaussian detector on backbone features.

:class:`BaseFeatureGaussianDetector` holds what the estimator does with its
parts: it builds the :class:`~skanomaly.features.FeatureExtractor` of its
parameters, accumulates a :class:`~skanomaly._stream.FitState`, turns it into
Gaussians and a threshold, scores, calibrates and pickles.
:class:`~skanomaly.EfficientNetGaussianDetector` adds its parameters, its
public entry points and localization.
"""

import os
import warnings
from functools import partial
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_array, check_is_fitted

from . import _patch_score
from ._augment import AugmentedSource, n_views
from ._calibration import CalibrationMixin
from ._compat import (
    HasMethods,
    Interval,
    StrOptions,
    validate_data,
    validate_params,
)
from ._constants import (
    AUGMENTS,
    CALIBRATE_ADVICE,
    IMAGE_SCORES,
    PATCH_LEVELS,
    POOLINGS,
    PRECISIONS,
)
from ._images import ImageSource
from ._progress import progress
from ._stacklevel import user_stacklevel
from ._stream import FitState
from ._version import __version__
from .features import FeatureExtractor, resolve_levels
from .gaussian import ScoreRule, combine_levels
from .patches import PatchIndex, worst_patch_distances
from .persistence import check_version
from .threshold import (
    chi2_offset,
    fewest_fold_rows,
    level_standardization,
    out_of_fold_distances,
    percentile_offset,
)

__all__ = ["BaseFeatureGaussianDetector"]


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
        try:
            instance._finish_partial_fit()
        except ValueError as exc:
            # A stream that cannot be finished yet (one image so far) lacks
            # the attribute: hasattr and getattr with a default, which only
            # catch AttributeError, must not fail on it.
            raise AttributeError(f"{self.name} is not available yet: {exc}") from exc
        return instance.__dict__[self.name]


# The fitted attributes that partial_fit leaves for the first use.
_DEFERRED = (
    "gaussians_",
    "spatial_gaussians_",
    "patches_",
    "n_score_patches_",
    "patch_threshold_",
    "patch_excess_",
    "offset_",
    "level_center_",
    "level_scale_",
    "level_reference_",
    "score_center_",
    "score_scale_",
)

# Pooled rows scored together: each product reads every precision matrix
# (13 MB at the head), which would cost more than the forward pass of a
# batch of one.
_ROWS_PER_PRODUCT = 256

# Parameters that change what the Gaussians and offset_ were fitted on
# (feature_settings_): scoring refuses other values. precision and device
# stay free, so that a model moves between machines (another precision
# than the fit's warns: _check_precision).
_FEATURE_SETTINGS = ("pooling", "input_size", "keep_aspect", "distance", "image_score")


def _check_precision(fitted, current):
    """Warn where the network now runs in bfloat16 and did not at fit, or
    the reverse: bfloat16's 8 significant bits move the distances enough to
    move the scores past ``offset_`` (fitted in float32 and scored in
    bfloat16, predict flagged up to half of the normal images of a paper
    type instead of 5%: benchmarks/results/precision.md). float16 keeps 11
    bits: swapped with float32 on three of those types it moved the share
    flagged by at most one image in 20 (docs: bfloat16 on a CPU), so the
    common fit on CUDA, score on a CPU stays quiet. Models saved before it
    have none."""
    if fitted is not None and fitted != current and "bfloat16" in (fitted, current):
        warnings.warn(
            f"This detector was fitted with its network in {fitted} and now runs it in "
            f"{current}: the scores move, and offset_ (and any calibration) belong to "
            f"{fitted} scores, so predict may flag many more normal images. Fit in "
            f"{current}, or set precision={fitted!r}.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


def _check_unchanged(fitted, current):
    """Refuse feature settings (``feature_settings_``) that differ from those
    the Gaussians and ``offset_`` were fitted with: scores would be
    confident and wrong. Models saved before it have none to check."""
    changed = [name for name, value in fitted.items() if current[name] != value]
    if changed:
        raise ValueError(
            "The detector was fitted with "
            + ", ".join(f"{name}={fitted[name]!r}" for name in changed)
            + ", but now has "
            + ", ".join(f"{name}={current[name]!r}" for name in changed)
            + "; its Gaussians and threshold belong to the features it was fitted "
            "on. Set the parameter back, or fit again (partial_fit: fit to start over)."
        )


def _check_features_vary(gaussians, names):
    """Refuse Gaussians of features that do not vary. Identical (or blank)
    images give a zero covariance, whose pseudo-inverse makes every distance
    0: every image would look perfectly normal."""
    flat = [name for name, g in zip(names, gaussians) if not np.trace(g.covariance) > 0]
    if flat:
        raise ValueError(
            f"The training images' features do not vary at {', '.join(flat)}: "
            "the images are identical (or blank), and a Gaussian fitted on them "
            "would call every image normal. Fit on several different normal images."
        )


def fewest_images(detector):
    """The fewest normal images ``detector``'s fit accepts: 2 Gaussian rows
    (an image's augmented views count), and 3 images for the summed score."""
    fewest = -(-2 // n_views(detector.augment))
    if detector.image_score == "pooled+patches":
        fewest = max(fewest, _patch_score.FEWEST_FOR_SUM)
    return fewest


def _warn_thin_folds(sample, uses):
    """Warn where out-of-fold statistics that the model ``uses`` (names,
    such as ``"offset_"``) rest on Gaussians of 2 rows or fewer: their
    held-out distances are 0 (1 row, no spread) or, with a Ledoit-Wolf
    shrinkage of 0 (2 rows), near 0 or in the hundreds of millions."""
    fewest = fewest_fold_rows(sample[0])
    if fewest > 2 or not uses:
        return
    why = (
        "one row has no spread, so every held-out distance is 0 and predict flags every image"
        if fewest == 1
        else "the Ledoit-Wolf shrinkage of 2 rows is 0, so each held-out distance is "
        "either near 0 or enormous, and predict may flag every image or none"
    )
    warnings.warn(
        f"The out-of-fold statistics behind {' and '.join(uses)} measure each held-out "
        f"training image against Gaussians of {fewest} row(s) (one per training image or "
        f"augmented view): {why}. {CALIBRATE_ADVICE}, fit on more images or with augment=, "
        "or rank by score_samples.",
        UserWarning,
        stacklevel=user_stacklevel(),
    )


class BaseFeatureGaussianDetector(CalibrationMixin, OutlierMixin, BaseEstimator):
    """Base class of the detectors: fitting, scoring and thresholds.

    Not meant to be used directly: use
    :class:`~skanomaly.EfficientNetGaussianDetector`, which documents the
    parameters and attributes.
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
        # 4096 px squares already take about 0.5 GB of feature maps per image.
        "input_size": [Interval(Integral, 32, 4096, closed="both"), None],
        "keep_aspect": ["boolean"],
        "pooling": [StrOptions(set(POOLINGS))],
        "npca": [Interval(Real, 0, 1, closed="neither"), None],
        "augment": [StrOptions(set(AUGMENTS)), None],
        "standardize": ["boolean"],
        "image_score": [StrOptions(set(IMAGE_SCORES))],
        "patch_coreset": [Interval(Real, 0, 1, closed="right")],
        "score_coreset": [Interval(Real, 0, 1, closed="right")],
    }

    gaussians_ = _AfterPartialFit()
    spatial_gaussians_ = _AfterPartialFit()
    patches_ = _AfterPartialFit()
    n_score_patches_ = _AfterPartialFit()
    patch_threshold_ = _AfterPartialFit()
    patch_excess_ = _AfterPartialFit()
    offset_ = _AfterPartialFit()
    level_center_ = _AfterPartialFit()
    level_scale_ = _AfterPartialFit()
    level_reference_ = _AfterPartialFit()
    score_center_ = _AfterPartialFit()
    score_scale_ = _AfterPartialFit()

    def __dir__(self):
        # scikit-learn's lists only the names hasattr finds, and hasattr on
        # an attribute partial_fit left for its first use, or on a property
        # read from one, would finish the stream (Gaussians, memory,
        # threshold) just to list it, as tab completion does.
        pending = "_fit_state" in self.__dict__ and "offset_" not in self.__dict__
        lazy = (_AfterPartialFit, property)
        return [
            n
            for n in object.__dir__(self)
            if (pending and isinstance(getattr(type(self), n, None), lazy)) or hasattr(self, n)
        ]

    # ------------------------------------------------------------------ parts
    def _extractor(self, depth=None, neighborhood=None, precision=None):
        """The feature extractor of the current parameters (its patch
        features over ``neighborhood``, its network in ``precision`` where
        given); its network is shared and checked against the weights the
        detector was fitted with."""
        extractor = FeatureExtractor(
            self.backbone,
            self.weights,
            depth=depth,
            device=self.device,
            precision=self.precision if precision is None else precision,
            compiled=self.torch_compile,
            batch_size=self.batch_size,
            memory=self.memory,
            show_progress=self.progress,
            input_size=self.input_size,
            keep_aspect=self.keep_aspect,
            pooling=self.pooling,
            patch_neighborhood=self._patch_neighborhood() if neighborhood is None else neighborhood,
        )
        expected = getattr(self, "weights_digest_", None)
        if expected is not None and extractor.weights_digest != expected:
            raise ValueError(
                f"This detector was fitted with other weights (SHA-256 {expected[:12]}...) "
                f"than those loaded now for backbone={self.backbone!r} "
                f"({extractor.weights_digest[:12]}...); its Gaussians do not apply. "
                "Refit it, or set backbone and weights= back to those of the fit."
            )
        return extractor

    def _fitted_extractor(self, neighborhood=None, precision=None):
        """:meth:`_extractor` for the fitted levels, refused where the
        feature settings changed since fit; a ``precision`` given overrides
        the parameter's and skips the warning about the fit's (the exported
        graph runs in float32 whatever ``precision`` says, and warns itself)."""
        _check_unchanged(self.__dict__.get("feature_settings_", {}), self._feature_settings())
        depth = max(self.levels_ + self.spatial_levels_ + self.patch_levels_)
        extractor = self._extractor(depth, neighborhood, precision)
        if precision is None:
            _check_precision(self.__dict__.get("fit_precision_"), extractor.precision_name)
        return extractor

    def _fitted_neighborhood(self):
        """``patch_neighborhood_``; 1 for models saved before
        ``patch_neighborhood`` averaged anything."""
        return self.__dict__.get("patch_neighborhood_", 1)

    def _feature_settings(self):
        """The parameters that the Gaussians and ``offset_`` belong to."""
        return {name: getattr(self, name) for name in _FEATURE_SETTINGS}

    def _source(self, X, reset):
        """Validated images; a 2-D table of flattened images goes through
        scikit-learn's own checks first (and sets ``n_features_in_``)."""
        if len(getattr(X, "shape", ())) == 2:
            X = validate_data(self, X, reset=reset, dtype="numeric")
        elif reset:
            # A fit on images after one on a table keeps neither of its attributes.
            self.__dict__.pop("n_features_in_", None)
            self.__dict__.pop("feature_names_in_", None)
        return ImageSource(X, self.image_shape, self.pixel_range)

    # ----------------------------------------------------------------- fitting
    def _partial_fit(self, X):
        """Add ``X`` to the running moments (the first chunk starts them)."""
        state = self.__dict__.get("_fit_state")
        if state is None and hasattr(self, "levels_"):
            raise ValueError(
                "This detector holds no running moments: model files, pickles and "
                "copies (copy.deepcopy, joblib) leave them out, so partial_fit cannot "
                "continue it; continue the original, or fit it again."
            )
        if state is None:
            self._fit(X, partial=True)
            return
        source = self._source(X, reset=False)
        # A list of images or paths may mix sizes, as fit's may; arrays of
        # one shape say what the stream holds, and another shape is a mistake.
        if None not in (source.image_shape, state.image_shape) and (
            source.image_shape != state.image_shape
        ):
            raise ValueError(
                f"partial_fit got images of shape {source.image_shape}, but the "
                f"first array chunk had {state.image_shape}; array chunks must agree."
            )
        extractor = self._extractor(
            depth=max(state.levels + state.spatial_levels + state.patch_levels)
        )
        names = extractor.level_names
        if (
            state.levels != resolve_levels(self.levels, names, self.backbone)
            or state.spatial_levels != self._spatial_levels(names)
            or state.patch_levels != self._patch_levels(names)
            or state.n_views != n_views(self.augment)
            or state.npca != self.npca
            or state.patch_neighborhood != self._patch_neighborhood()
        ):
            raise ValueError(
                "levels, augment, npca, explain_method, image_score or "
                "patch_neighborhood changed since the first partial_fit; call fit "
                "to start over."
            )
        _check_unchanged(self.feature_settings_, self._feature_settings())
        # Unlike scoring, which only reads the moments, a chunk in another
        # precision would be added to them: the Gaussians would mix features
        # of two dtypes and fit_precision_ would name only the last.
        if extractor.precision_name != self.fit_precision_:
            raise ValueError(
                f"partial_fit continues running moments of features computed in "
                f"{self.fit_precision_}, but the network now runs in "
                f"{extractor.precision_name}; the moments would mix both. Set "
                f"precision={self.fit_precision_!r}, or call fit to start over."
            )
        state = state.copy()
        # Lists hold no shape: the first array chunk sets the one that
        # later array chunks must share.
        state.image_shape = state.image_shape or source.image_shape
        self._accumulate(state, source, extractor)
        self._commit(state, extractor, None)

    def _spatial_levels(self, names):
        """The levels whose feature-map locations get Gaussians (for
        localization, which subclasses add)."""
        return ()

    def _patch_levels(self, names):
        """The levels whose patch features are kept, if anything needs them."""
        if not self._needs_patches():
            return ()
        return resolve_levels(PATCH_LEVELS, names, self.backbone)

    def _scores_patches(self):
        """Whether the image score (the parameter, not the fitted model's)
        reads the worst patch."""
        return self.image_score != "pooled"

    def _needs_patches(self):
        """Whether fit keeps patch features: for the patch score (and, in
        subclasses, for localization)."""
        return self._scores_patches()

    def _patch_neighborhood(self):
        """Locations averaged into each kept patch feature."""
        return 1

    def _fit(self, X, return_scores=False, partial=False):
        """Fit from scratch; return the training scores if asked. With
        ``partial`` (partial_fit's first chunk) the Gaussians and the
        threshold wait for the first use, as after later chunks: only then
        is the number of images known."""
        source = self._source(X, reset=True)
        _patch_score.check_image_score(self.image_score, self.threshold)
        if not partial:
            self._check_n_images(len(source))
        names = self._extractor(depth=0).level_names
        levels = resolve_levels(self.levels, names, self.backbone)
        spatial, patch_levels = self._spatial_levels(names), self._patch_levels(names)
        extractor = self._extractor(depth=max(levels + spatial + patch_levels))
        state = FitState(
            levels,
            spatial,
            patch_levels,
            source.image_shape,
            n_views(self.augment),
            self.npca,
            self._patch_neighborhood(),
        )
        pooled = self._accumulate(state, source, extractor, keep_pooled=return_scores)
        # Computed before any attribute changes, so that a failure keeps the
        # previous model.
        self._commit(state, extractor, None if partial else self._fitted_parts(state, extractor))
        if return_scores and self._scores_patches():
            # The worst patches need the finished patch memory: a second pass.
            return self.score_samples(X)
        return self._scores(pooled) if return_scores else None

    def _check_n_images(self, n_images):
        """Refuse to fit on fewer images than the Gaussians and the score need."""
        if n_images * n_views(self.augment) < 2:
            raise ValueError(
                f"n_samples={n_images}: fitting a Gaussian needs at least 2 "
                "normal images (a few dozen for a useful model), or one with "
                "augment= set, which adds augmented views of it."
            )
        _patch_score.check_image_score(self.image_score, self.threshold, n_images)

    def _accumulate(self, state, source, extractor, keep_pooled=False):
        """Feed ``source`` into ``state``; return its pooled features (of the
        images themselves, not their augmented views) if asked."""
        kept = []
        views = state.n_views
        fed = AugmentedSource(source, self.augment) if views > 1 else source

        fused = self._scores_patches()

        def sampled(index, own, patches, with_input):
            """Image ``index`` itself (not a view) as the network sees it
            (None without ``with_input``), and its features: ``own``, its
            pooled rows, and the image-score columns of ``patches``, its
            patch rows (None unless the image score uses them)."""
            x = None
            if with_input:
                ((_, x),) = extractor.network.prepare(source.tensor(index)[None])
                x = x[0].cpu()
            rows = _patch_score.score_columns(patches, state.patch_neighborhood) if fused else None
            return x, ([p.copy() for p in own], rows)

        consumed = 0
        for pooled, moments, patches in extractor.summaries(
            fed, state.levels, state.spatial_levels, "Fitting", state.patch_levels
        ):
            own = pooled
            if views > 1:
                # View-major rows to (images, views, d): one image's views
                # stay together in the threshold's sample.
                pooled = [p.reshape(views, -1, p.shape[1]).swapaxes(0, 1) for p in pooled]
                # The image itself is its first view, and the patches of all
                # first views come first (AugmentedSource).
                own = [p[:, 0] for p in pooled]
            state.update(
                pooled,
                moments,
                patches,
                inputs=lambda k, with_input, first=consumed, own=own, patches=patches: sampled(
                    first + k,
                    [p[k : k + 1] for p in own],
                    None if patches is None else patches[k],
                    with_input,
                ),
            )
            consumed += len(own[0])
            if keep_pooled:
                kept.append(own)
        return [np.concatenate(level) for level in zip(*kept)] if keep_pooled else None

    def _fitted_parts(self, state, extractor):
        """The Gaussians and the threshold of ``state``, as attributes."""
        # After the forward passes: seconds more, the patch memory's
        # selection most of them (4 of 6 s for 300 images).
        steps = progress(
            enabled=extractor.show_progress,
            total=3,
            desc="Gaussians, memory, threshold",
            unit="step",
        )
        with extractor.host_algebra(), steps:
            gaussians, spatial = state.gaussians()
            _check_features_vary(gaussians, [extractor.level_names[i] for i in state.levels])
            held_out = reference = None
            fused = self._scores_patches()
            if self.threshold == "out_of_fold" or self.standardize or fused:
                sample = state.reservoir.sample()
                held_out = out_of_fold_distances(state.moments, sample, npca=state.npca)
                # What a new normal image's distances are like, level by
                # level (the report measures images against it).
                reference = np.stack(level_standardization(held_out))
            if self.standardize:
                center, scale = reference
                rule = ScoreRule(self.distance, self.pooling, center, scale)
            else:
                # Scoring applies (d - 0) / 1, which is d exactly.
                center, scale = np.zeros(len(gaussians)), np.ones(len(gaussians))
                rule = ScoreRule(self.distance, self.pooling)
            steps.update()
            patches, patch_threshold, patch_excess = (
                state.patches.memory(
                    coreset=self.patch_coreset,
                    score_coreset=self.score_coreset if fused else 1.0,
                    columns=partial(
                        _patch_score.score_columns, neighborhood=state.patch_neighborhood
                    ),
                    cache=extractor.cached,
                )
                if state.patches is not None
                else (None, None, None)
            )
            steps.update()
            score_center = score_scale = None
            if fused:
                score_center, score_scale, offset = _patch_score.statistics(
                    self.image_score,
                    state,
                    combine_levels(held_out, rule),
                    rule,
                    self.contamination,
                )
            elif self.threshold == "chi2":
                dims = [g.degrees_of_freedom for g in gaussians]
                offset = chi2_offset(dims, rule, self.contamination)
            else:
                offset = percentile_offset(-combine_levels(held_out, rule), self.contamination)
            if held_out is not None:
                uses = ["level_center_ and level_scale_"] if self.standardize else []
                if self.image_score == "pooled+patches":
                    uses.append("the pooled part of score_center_ and score_scale_")
                elif self.image_score == "pooled" and self.threshold == "out_of_fold":
                    uses.append("offset_")
                _warn_thin_folds(sample, uses)
            steps.update()
        return {
            "gaussians_": gaussians,
            "spatial_gaussians_": spatial,
            "patches_": patches,
            "n_score_patches_": None if patches is None else state.patches.n_score,
            "patch_threshold_": patch_threshold,
            "patch_excess_": patch_excess,
            "offset_": offset,
            "level_center_": center,
            "level_scale_": scale,
            "level_reference_": reference,
            "score_center_": score_center,
            "score_scale_": score_scale,
        }

    def _commit(self, state, extractor, fitted):
        """Set the fitted attributes of ``state`` in one go.

        ``fitted`` None (partial_fit) leaves the Gaussians and the threshold
        to :meth:`_finish_partial_fit`; thresholds from :meth:`calibrate`
        and ``calibrate_pixels`` belonged to the previous model and go too.
        """
        for name in (*_DEFERRED, "calibration_scores_", "pixel_threshold_", "pixel_calibration_"):
            self.__dict__.pop(name, None)
        self.levels_ = state.levels
        self.level_names_ = [extractor.level_names[i] for i in state.levels]
        self.spatial_levels_ = state.spatial_levels
        self.patch_levels_ = state.patch_levels
        self.patch_neighborhood_ = state.patch_neighborhood
        self.feature_settings_ = self._feature_settings()
        self.fit_precision_ = extractor.precision_name
        self.n_samples_fit_ = state.n_samples
        self.weights_digest_ = extractor.weights_digest
        self._fit_state = state
        if fitted is not None:
            self._set_fitted(fitted)

    def _finish_partial_fit(self):
        """Compute the Gaussians and the threshold that :meth:`partial_fit`
        left for the first use; a no-op once they exist."""
        check_is_fitted(self)
        if "offset_" not in self.__dict__:
            self._check_n_images(self._fit_state.n_samples)
            self._set_fitted(self._fitted_parts(self._fit_state, self._fitted_extractor()))

    def _set_fitted(self, fitted):
        """Set the Gaussians and the threshold (``fitted``), and the patch
        index of a worst-patch score: built now, not by the first score, so
        that scoring leaves the detector's attributes as they were
        (scikit-learn's check_dict_unchanged)."""
        self.__dict__.update(fitted)
        if self._uses_patches():
            self._patch_index()

    @validate_params(
        {"X": ["array-like"], "return_scores": ["boolean"]}, prefer_skip_nested_validation=True
    )
    def level_distances(self, X, return_scores=False):
        """Mahalanobis distance of each image at each modelled level.

        Parameters
        ----------
        X : array-like or list
            Images, as for :meth:`fit`.
        return_scores : bool, default=False
            Also return :meth:`score_samples` of ``X``, from the same pass
            over the images: a score that uses the worst patch cannot be
            made from the distances alone
            (:meth:`scores_from_level_distances`).

        Returns
        -------
        distances : ndarray of shape (n, n_levels)
            Columns follow ``level_names_``.
        scores : ndarray of shape (n,)
            Only with ``return_scores``: :meth:`score_samples` of ``X``.
        """
        if not return_scores:
            return np.concatenate(self._map_pooled(X, self._distances, "Scoring"))

        def both(pooled, *worst):
            distances = self._distances(pooled)
            return distances, self._scores(pooled, *worst, distances=distances)

        parts = self._map_pooled(X, both, "Scoring", worst=self._uses_patches())
        return tuple(np.concatenate(part) for part in zip(*parts))

    def scores_from_level_distances(self, distances):
        """``score_samples`` from :meth:`level_distances`, without a second pass.

        Parameters
        ----------
        distances : ndarray of shape (n, n_levels)
            As returned by :meth:`level_distances`.

        Returns
        -------
        scores : ndarray of shape (n,)

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the detector is not fitted.
        ValueError
            If ``distances`` is empty, negative, not finite, or not
            ``(n, n_levels)``, or if the score uses the worst patch.
        """
        self._finish_partial_fit()
        if self._uses_patches():
            raise ValueError(
                f"With image_score={self.image_score!r} the score needs each image's "
                "worst patch, which level distances do not hold; call score_samples."
            )
        distances = check_array(distances, dtype=np.float64, input_name="distances")
        if (distances < 0).any():
            raise ValueError("distances are Mahalanobis distances, never negative; got some < 0.")
        if distances.shape[1] != len(self.levels_):
            raise ValueError(
                f"distances has {distances.shape[1]} columns, but the detector models "
                f"{len(self.levels_)} levels ({', '.join(self.level_names_)})."
            )
        return self._scores(None, distances=distances)

    def pooled_features(self, X):
        """Globally pooled backbone features of each modelled level (``pooling``).

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

    def _uses_patches(self):
        """Whether the fitted score uses the worst patch (older models: no)."""
        return getattr(self, "feature_settings_", {}).get("image_score", "pooled") != "pooled"

    def _scores(self, pooled, worst=None, distances=None):
        """Scores of the images of ``pooled``, their level ``distances``
        where the caller has them already (then ``pooled`` is not read), and
        their ``worst`` patch distances where the score uses them."""
        if self.image_score == "patches" and worst is not None:
            return -worst
        if distances is None:
            distances = self._distances(pooled)
        combined = combine_levels(distances, ScoreRule.of(self))
        if worst is None:
            return -combined
        return _patch_score.fused_scores(combined, worst, self.score_center_, self.score_scale_)

    def _map_pooled(self, X, function, desc, worst=False):
        """``function(pooled)`` over groups of up to ``_ROWS_PER_PRODUCT``
        rows of pooled features of ``X``; ``function(pooled, worst)`` with
        ``worst``, the images' worst-patch distances to ``patches_``."""
        self._validate_params()
        self._finish_partial_fit()
        source = self._source(X, reset=False)
        results, group, worst_rows = [], [], []
        patch_levels = self.patch_levels_ if worst else ()
        memory = self._patch_index() if worst else None

        def flush():
            pooled = [np.concatenate(level) for level in zip(*group)]
            results.append(
                function(pooled, np.concatenate(worst_rows)) if worst else function(pooled)
            )
            group.clear()
            worst_rows.clear()

        # The fitted patch features, whatever the parameter says now, as
        # the memory holds them; the image scores compare one size of them.
        # Only that size is computed (the others cost about 0.2 ms per
        # image), unless a feature cache keys all sizes, as fit's entries do.
        neighborhood = self._fitted_neighborhood()
        if self.memory is None:
            neighborhood = _patch_score.score_neighborhood(neighborhood)
        extractor = self._fitted_extractor(neighborhood)
        # The last group too is scored with one BLAS thread: threads that
        # numpy's BLAS starts keep spinning after the call and took the
        # cores from the next call's forward pass, which made scoring one
        # image per call about 4x slower than one call with batches of one.
        with extractor.host_algebra():
            for pooled, _, patches in extractor.summaries(
                source, self.levels_, (), desc, patch_levels
            ):
                group.append(pooled)
                if worst:
                    rows = [_patch_score.score_columns(p, neighborhood) for p in patches]
                    worst_rows.append(worst_patch_distances(rows, memory))
                if sum(len(p[0]) for p in group) >= _ROWS_PER_PRODUCT:
                    flush()
            if group:
                flush()
        return results

    def _patch_index(self):
        """The :class:`~skanomaly.patches.PatchIndex` of the columns of
        ``patches_`` that the image scores compare, kept until the memory
        changes: a line that scores one image per call would otherwise pay
        a pass over the memory each time."""
        memory, index = self.__dict__.get("_patch_index_cache", (None, None))
        if memory is not self.patches_:
            columns = _patch_score.score_columns(self._score_patches(), self._fitted_neighborhood())
            index = PatchIndex(columns)
            self._patch_index_cache = (self.patches_, index)
        return index

    def _score_patches(self):
        """The rows of ``patches_`` that the image scores search (all of
        them for models saved before ``score_coreset``)."""
        return self.patches_[: self.__dict__.get("n_score_patches_") or len(self.patches_)]

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
        # The patch index is derived from patches_ and rebuilt on first use.
        unsaved = ("_fit_state", "_patch_index_cache")
        state = {k: v for k, v in super().__getstate__().items() if k not in unsaved}
        state["_skanomaly_version"] = __version__
        return state

    def __setstate__(self, state):
        check_version(state.pop("_skanomaly_version", None))
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
