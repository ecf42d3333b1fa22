"""What the detector does with pixels: maps, masks, regions and their export.

:class:`LocalizationMixin` gives :class:`~skanomaly.EfficientNetGaussianDetector`
its localization parameters and methods on top of
:class:`~skanomaly._base.BaseFeatureGaussianDetector`; the maps themselves come
from :class:`~skanomaly.localization.Explainer`, masks, regions and the pixel
threshold from :mod:`skanomaly.segmentation` and the ONNX graph from
:func:`skanomaly.export.export_onnx`, which receive the fitted parts, never
the estimator.
"""

import warnings
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from sklearn.exceptions import NotFittedError

from ._compat import Interval, Options, StrOptions, validate_params
from ._constants import (
    EXPLAIN_METHODS,
    PATCH_NEIGHBORHOOD_SCALES,
    PATCH_NEIGHBORHOODS,
    SPATIAL_LEVELS,
)
from ._progress import progress
from ._stacklevel import user_stacklevel
from .features import resolve_levels, spatial_moments
from .gaussian import ScoreRule
from .localization import Explainer
from .segmentation import map_sample, masks_from_maps, pixel_threshold, region_table

__all__ = ["LocalizationMixin"]


class LocalizationMixin:
    """Localization for a :class:`~skanomaly._base.BaseFeatureGaussianDetector`:
    the parameters ``lam``, ``explain_method``, ``n_steps``, ``step_size`` and
    ``smoothing`` (documented by the estimator), :meth:`explain` and
    :meth:`export_onnx`."""

    _parameter_constraints: ClassVar[dict] = {
        "lam": [Interval(Real, 0, np.inf, closed="left")],
        "explain_method": [StrOptions(set(EXPLAIN_METHODS))],
        "n_steps": [Interval(Integral, 0, None, closed="left")],
        "step_size": [Interval(Real, 0, np.inf, closed="left")],
        "smoothing": [Interval(Real, 0, np.inf, closed="left")],
        "patch_neighborhood": [
            Options(Integral, set(PATCH_NEIGHBORHOODS)),
            Options(tuple, set(PATCH_NEIGHBORHOOD_SCALES)),
        ],
    }

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
        maps = self._maps(X)
        if len({m.shape for m in maps}) > 1:
            return maps
        # Filled map by map, each let go once copied: np.stack would hold
        # the maps twice, 1.5 GB for 16 maps of 12 megapixels.
        stacked = np.empty((len(maps), *maps[0].shape), np.float32)
        for i in range(len(maps)):
            stacked[i], maps[i] = maps[i], None
        return stacked

    def _maps(self, X, reduce=None):
        """The :meth:`explain` maps of ``X`` as a list, or what ``reduce``
        makes of each."""
        return self._explainer().explain(
            self._fitted_extractor(),
            self._source(X, reset=False),
            (self.levels_, self.gaussians_),
            (self.spatial_levels_, self.spatial_gaussians_),
            self._patch_memory(self.patches_),
            rule=ScoreRule.of(self),
            reduce=reduce,
        )

    # ------------------------------------------------------------------- masks
    @validate_params(
        {
            "X": ["array-like", None],
            "fpr": [Interval(Real, 0, 1, closed="neither")],
            "threshold": [Interval(Real, None, None, closed="neither"), None],
        },
        prefer_skip_nested_validation=True,
    )
    def calibrate_pixels(self, X=None, fpr=0.01, *, threshold=None):
        """Set the pixel threshold of :meth:`segment` from normal images.

        ``pixel_threshold_`` becomes the conformal ``1 - fpr`` quantile of
        the pixels of the :meth:`explain` maps of normal images, so that
        about a fraction ``fpr`` of the pixels of new normal images is
        flagged. No defective image is needed. :meth:`segment` and
        :meth:`regions` call it with ``X=None`` when the threshold is
        missing. With ``threshold``, it becomes that value instead.

        Parameters
        ----------
        X : array-like or list, default=None
            Normal images not seen by :meth:`fit`, as for :meth:`explain`.
            None uses a uniform sample of at most 16 training images that
            ``fit`` keeps (not saved in model files), each explained as a
            new image would be: its patches (those of all its views, with
            ``augment``) leave the patch memory and its locations the
            spatial Gaussians.
        fpr : float in (0, 1), default=0.01
            Target share of normal pixels above the threshold.
        threshold : float, default=None
            The threshold itself, for the current map settings, without
            images: one chosen on labelled images, such as the lowest that
            outlines no region on normal ones, which ``skanomaly evaluate``
            prints. ``pixel_calibration_`` records ``source="given"`` and
            ``fpr=None``. ``X`` must then be None.

        Returns
        -------
        self : EfficientNetGaussianDetector
            The detector with ``pixel_threshold_`` and
            ``pixel_calibration_`` set.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the detector is not fitted, or ``X`` is None for a detector
            without its training sample (loaded from a model file).
        ValueError
            If ``X`` is empty or given with ``threshold``, ``fpr`` is not in
            (0, 1), or ``threshold`` is not finite (``InvalidParameterError``).

        Notes
        -----
        The threshold belongs to the maps it was set on: ``pixel_calibration_``
        records ``explain_method``, ``lam``, ``n_steps``, ``step_size``,
        ``smoothing``, ``input_size`` and ``keep_aspect``, and
        :meth:`segment` sets it again (from the training sample) or refuses
        when one of them has changed since.
        """
        self._validate_params()
        self._finish_partial_fit()
        if threshold is not None:
            if X is not None:
                raise ValueError(
                    "calibrate_pixels got both X and threshold: the threshold is set as "
                    "given, from no images; pass one of them."
                )
            return self._set_pixel_threshold(float(threshold), None, 0, "given")
        if X is None:
            samples, source = self._training_map_samples(), "training"
        else:
            if len(X) == 0:
                raise ValueError("calibrate_pixels got an empty X: pass normal images.")
            # Only a sample of each map stays in memory.
            samples = self._maps(X, reduce=map_sample)
            source = "held-out"
        return self._set_pixel_threshold(
            pixel_threshold(samples, fpr), float(fpr), len(samples), source
        )

    def _set_pixel_threshold(self, value, fpr, n_images, source):
        """Set ``pixel_threshold_`` to ``value`` and record how it was set,
        for the current map settings (``pixel_calibration_``)."""
        self.pixel_threshold_ = value
        self.pixel_calibration_ = {
            "fpr": fpr,
            "n_images": n_images,
            "source": source,
            **self._map_settings(),
        }
        return self

    @validate_params(
        {"X": ["array-like"], "min_area": [Interval(Integral, 1, None, closed="left")]},
        prefer_skip_nested_validation=True,
    )
    def segment(self, X, *, min_area=1):
        """Defect masks: the pixels whose :meth:`explain` map exceeds
        ``pixel_threshold_`` (set by :meth:`calibrate_pixels`, first called
        here with the training sample if it is missing).

        Parameters
        ----------
        X : array-like or list
            Images, as for :meth:`explain`.
        min_area : int, default=1
            Drop 8-connected regions of fewer pixels (specks).

        Returns
        -------
        masks : ndarray of shape (n, H, W), bool, or list of ndarray
            At each image's size; a list for images of different sizes.
        """
        threshold = self.resolve_pixel_threshold()
        return masks_from_maps(self.explain(X), threshold, min_area)

    @validate_params(
        {"X": ["array-like"], "min_area": [Interval(Integral, 1, None, closed="left")]},
        prefer_skip_nested_validation=True,
    )
    def regions(self, X, *, min_area=1):
        """The anomalous regions of each image: the 8-connected components
        of the masks of :meth:`segment`.

        Parameters
        ----------
        X : array-like or list
            Images, as for :meth:`explain`.
        min_area : int, default=1
            Leave out regions of fewer pixels.

        Returns
        -------
        table : dict of str to ndarray of shape (n_regions,)
            One row per region: ``image`` (index into ``X``), ``region``
            (0, 1, ... per image, highest peak first), ``area`` (pixels), the
            bounding box ``top``, ``left``, ``bottom``, ``right`` (exclusive)
            and the ``peak`` and ``mean`` map values;
            ``pandas.DataFrame(table)`` makes a data frame of it (see
            :func:`skanomaly.segmentation.region_table`).
        """
        threshold = self.resolve_pixel_threshold()
        return region_table(self.explain(X), threshold, min_area)

    def _map_settings(self):
        """The parameters that change the maps, which a pixel threshold belongs to."""
        return {
            "explain_method": self.explain_method,
            "lam": float(self.lam),
            "n_steps": int(self.n_steps),
            "step_size": float(self.step_size),
            "smoothing": float(self.smoothing),
            "input_size": self.input_size,
            "keep_aspect": bool(self.keep_aspect),
        }

    def resolve_pixel_threshold(self):
        """The threshold that :meth:`segment` applies to the current maps.

        ``pixel_threshold_`` if it was set for the current map settings;
        otherwise it is set first by :meth:`calibrate_pixels` from the
        training sample (at the target rate of the last calibration). Use
        it with :func:`skanomaly.segmentation.masks_from_maps` on maps that
        :meth:`explain` already returned.

        Returns
        -------
        threshold : float

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the detector is not fitted, or it has no threshold for these
            settings and no training sample to set one from (a loaded model
            whose threshold was set for other maps or on held-out images).
        """
        self._validate_params()
        self._finish_partial_fit()
        calibration = self.__dict__.get("pixel_calibration_") or {}
        changed = [k for k, v in self._map_settings().items() if calibration.get(k, v) != v]
        if "pixel_threshold_" in self.__dict__ and not changed:
            return self.pixel_threshold_
        if "_fit_state" in self.__dict__ and calibration.get("source", "training") == "training":
            self.calibrate_pixels(fpr=calibration.get("fpr", 0.01))
            return self.pixel_threshold_
        if changed:
            raise NotFittedError(
                "pixel_threshold_ was set for other maps ("
                + ", ".join(f"{k}={calibration[k]!r}" for k in changed)
                + "); call calibrate_pixels(X_normal), or calibrate_pixels(threshold=...) "
                "with a value chosen for these maps, again for these settings."
            )
        raise NotFittedError(
            "This detector has no pixel threshold, and the training images it is set "
            "from by default are not kept in model files or copies (pickle, deepcopy); call "
            "calibrate_pixels(X_normal) with normal images first."
        )

    def _training_map_samples(self):
        """Map samples of the training images ``fit`` kept, each explained
        by the spatial Gaussians and the patch memory without it."""
        state = self.__dict__.get("_fit_state")
        if state is None:
            raise NotFittedError(
                "calibrate_pixels() without images uses training images that fit "
                "keeps in memory, but model files and copies (pickle, deepcopy) do not "
                "keep them; call "
                "calibrate_pixels(X_normal) with normal images."
            )
        extractor, explainer = self._fitted_extractor(), self._explainer()
        samples = []
        inputs = progress(
            state.sample.pixel_inputs(), enabled=extractor.show_progress, desc="Pixel threshold"
        )
        for index, x0 in inputs:
            x0 = x0[None].to(extractor.device)
            levels = self.spatial_levels_
            own = spatial_moments(extractor.maps(x0, levels)) if levels else []
            gaussians, memory = state.leave_out(index, own)
            maps = explainer.input_maps(
                extractor,
                x0,
                (self.levels_, self.gaussians_),
                (self.spatial_levels_, gaussians),
                self._patch_memory(memory),
                rule=ScoreRule.of(self),
            )
            samples.append(map_sample(maps[0].cpu().numpy()))
        return samples

    # ------------------------------------------------------------------ export
    @validate_params(
        {"path": "no_validation", "maps": ["boolean"], "image_size": "no_validation"},
        prefer_skip_nested_validation=True,
    )
    def export_onnx(self, path, *, maps=False, image_size=None):
        """Write the detector as one ONNX graph, for runtimes without Python.

        The graph takes uint8 ``(n, H, W, 3)`` RGB images, as
        :meth:`score_samples` does (resizing included), and returns their
        ``scores`` in :meth:`score_samples`' convention (float32, equal to it
        within 1e-4 relative, as the test suite checks), the worst patch's
        part included with ``image_score`` other than ``"pooled"`` (the patch
        memory is then part of the file, and every patch is compared with all
        of it: slower than the library, which prunes that search), and with
        ``maps`` the ``"spatial"`` maps of :meth:`explain` as a second
        output. The Gaussians are baked in;
        ``offset_`` (and ``calibration_scores_``, after :meth:`calibrate`)
        are stored in the file's metadata (see
        :func:`skanomaly.export.read_onnx_metadata` and the Deployment page).
        It runs in onnxruntime or OpenVINO with neither torch nor skanomaly.

        Parameters
        ----------
        path : str or path-like
            The ``.onnx`` file to write (atomically).
        maps : bool, default=False
            Add the output ``maps``: ``(n, H, W)`` float32 maps, as
            :meth:`explain` gives with ``explain_method="spatial"``, whatever
            ``explain_method`` is.
        image_size : (int, int), default=None
            Export for images of this ``(height, width)`` only; None accepts
            any size. Required with ``keep_aspect=True``, whose input size
            depends on the image size.

        Warns
        -----
        UserWarning
            For a detector fitted in bfloat16 (``fit_precision_``): the graph
            runs the network in float32, which moves the scores against the
            offset.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the detector is not fitted.
        FileNotFoundError
            If the folder of ``path`` does not exist.
        TypeError
            If ``path`` is not a str or path-like, ``maps`` not a bool, or
            ``image_size`` not a pair.
        ValueError
            For ``maps`` without spatial Gaussians
            (``explain_method="reference"``), ``keep_aspect`` without
            ``image_size``, or ``image_size`` not two positive ints.
        ImportError
            Without the onnx package (``pip install 'skanomaly[onnx]'``).
        """
        from .export import export_onnx

        self._validate_params()
        self._finish_partial_fit()
        if getattr(self, "fit_precision_", None) == "bfloat16":
            warnings.warn(
                "This detector was fitted with its network in bfloat16, and the exported "
                "graph runs it in float32: its scores move against the offset and any "
                "calibration it carries, so they may flag many more normal images. Fit in "
                "float32 before exporting.",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
        if maps and not self.spatial_levels_:
            raise ValueError(
                "maps=True needs the spatial Gaussians, which fit skips for "
                "explain_method='reference'; fit with explain_method='spatial'."
            )
        export_onnx(
            path,
            self._fitted_extractor(precision="float32").network,
            (self.levels_, self.gaussians_),
            # The rule _scores applies, with its fitted statistics.
            score_rule=ScoreRule.of(self),
            spatial=(self.spatial_levels_, self.spatial_gaussians_) if maps else None,
            smoothing=self.smoothing,
            image_size=image_size,
            patches=self._exported_patch_score(),
            metadata={
                "image_score": self.feature_settings_.get("image_score", "pooled"),
                "offset": float(self.offset_),
                "calibration_scores": getattr(self, "calibration_scores_", None),
                "level_names": self.level_names_,
                "distance": self.distance,
                "backbone": self.backbone,
                "weights_digest": self.weights_digest_,
                "n_samples_fit": int(self.n_samples_fit_),
                "smoothing": self.smoothing,
            },
        )

    def _exported_patch_score(self):
        """The worst patch's part of the exported score, or None."""
        from .export import PatchScore

        if not self._uses_patches():
            return None
        return PatchScore(
            self.patch_levels_,
            self._score_patches(),
            self._fitted_neighborhood(),
            self.score_center_,
            self.score_scale_,
        )

    def _spatial_levels(self, names):
        # Only the reference method works without the spatial Gaussians;
        # skipping them keeps fits of shallow levels shallow.
        if self.explain_method == "reference":
            return ()
        return resolve_levels(SPATIAL_LEVELS, names, self.backbone)

    def _needs_patches(self):
        return self.explain_method != "reference" or super()._needs_patches()

    def _patch_neighborhood(self):
        return self.patch_neighborhood

    def _patch_memory(self, memory):
        """The ``patches`` argument of :class:`Explainer` for ``memory``
        (models saved before ``patch_excess_`` gated nothing)."""
        neighborhood = self._fitted_neighborhood()
        excess = self.__dict__.get("patch_excess_")
        return self.patch_levels_, memory, self.patch_threshold_, neighborhood, excess

    def _explainer(self):
        return Explainer(
            self.explain_method,
            n_steps=self.n_steps,
            step_size=self.step_size,
            lam=self.lam,
            smoothing=self.smoothing,
        )
