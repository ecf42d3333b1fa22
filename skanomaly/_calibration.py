"""Thresholds from held-out normal images: :meth:`calibrate` and :meth:`p_values`
of :class:`~skanomaly._base.BaseFeatureGaussianDetector`, which the
conformal functions of :mod:`skanomaly.threshold` compute from its scores."""

from numbers import Real

from sklearn.utils.validation import check_is_fitted

from ._compat import Interval, validate_params
from .threshold import conformal_offset, conformal_p_values

__all__ = ["CalibrationMixin"]


class CalibrationMixin:
    """Conformal thresholds and p-values for a detector with
    ``score_samples``; sets ``offset_`` and ``calibration_scores_``."""

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
