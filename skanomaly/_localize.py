"""What the detector does with pixels: maps, and their export.

:class:`LocalizationMixin` gives :class:`~skanomaly.EfficientNetGaussianDetector`
its localization parameters and methods on top of
:class:`~skanomaly._base.BaseFeatureGaussianDetector`; the maps themselves come
from :class:`~skanomaly.localization.Explainer` and the ONNX graph from
:func:`skanomaly.export.export_onnx`, which receive the fitted parts, never
the estimator.
"""

from numbers import Integral, Real
from typing import ClassVar

import numpy as np

from ._compat import Interval, StrOptions
from ._constants import EXPLAIN_METHODS, PATCH_LEVELS, SPATIAL_LEVELS
from .features import resolve_levels
from .localization import Explainer

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
        maps = self._explainer().explain(
            self._fitted_extractor(),
            self._source(X, reset=False),
            (self.levels_, self.gaussians_),
            (self.spatial_levels_, self.spatial_gaussians_),
            (self.patch_levels_, self.patches_, self.patch_threshold_),
            rule=self._score_rule(),
        )
        return np.stack(maps) if len({m.shape for m in maps}) == 1 else maps

    # ------------------------------------------------------------------ export
    def export_onnx(self, path, *, maps=False, image_size=None):
        """Write the detector as one ONNX graph, for runtimes without Python.

        The graph takes uint8 ``(n, H, W, 3)`` RGB images, as
        :meth:`score_samples` does (resizing included), and returns their
        ``scores`` in :meth:`score_samples`' convention (float32, equal to it
        within about 1e-5 relative), and with ``maps`` the ``"spatial"`` maps
        of :meth:`explain` as a second output. The Gaussians are baked in;
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

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the detector is not fitted.
        FileNotFoundError
            If the folder of ``path`` does not exist.
        ValueError
            For ``maps`` without spatial Gaussians
            (``explain_method="reference"``), or ``keep_aspect`` without
            ``image_size``.
        ImportError
            Without the onnx package (``pip install 'skanomaly[onnx]'``).
        """
        from .export import export_onnx

        self._validate_params()
        self._finish_partial_fit()
        if maps and not self.spatial_levels_:
            raise ValueError(
                "maps=True needs the spatial Gaussians, which fit skips for "
                "explain_method='reference'; fit with explain_method='spatial'."
            )
        export_onnx(
            path,
            self._fitted_extractor().network,
            (self.levels_, self.gaussians_),
            # The rule _scores applies, with its fitted statistics.
            score_rule=self._score_rule(),
            spatial=(self.spatial_levels_, self.spatial_gaussians_) if maps else None,
            smoothing=self.smoothing,
            image_size=image_size,
            metadata={
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

    def _spatial_levels(self, names):
        # Only the reference method works without the spatial Gaussians;
        # skipping them keeps fits of shallow levels shallow.
        if self.explain_method == "reference":
            return ()
        return resolve_levels(SPATIAL_LEVELS, names, self.backbone)

    def _patch_levels(self, names):
        if self.explain_method == "reference":
            return ()
        return resolve_levels(PATCH_LEVELS, names, self.backbone)

    def _explainer(self):
        return Explainer(
            self.explain_method,
            n_steps=self.n_steps,
            step_size=self.step_size,
            lam=self.lam,
            smoothing=self.smoothing,
        )
