"""Metrics and scorers for anomaly detection and localization.

Two families of metrics live here:

* image level: ROC AUC of one score per image against image labels, with
  the scikit-learn outlier convention (``+1`` normal, ``-1`` anomalous, and
  ``score_samples`` higher for more normal images);
* pixel level: ROC AUC over all pixels pooled, and the area under the
  per-region overlap curve (AU-PRO), both as in the MVTec AD benchmark, for
  anomaly maps where higher means more anomalous; and, at one pixel
  threshold, how many defect regions the flagged regions find and how many
  flagged regions lie outside every defect.

The scorers (:data:`pixel_roc_auc_scorer`, :data:`pro_scorer`,
:func:`masks_image_roc_auc_scorer`) plug those metrics into
:class:`~sklearn.model_selection.GridSearchCV`, with the ground-truth masks
passed as ``y``.
"""

# Private modules by level: _pixel and _image hold the metrics, _scorers the
# scorers built on them, and _checks the input checks they all share.
from ._image import image_roc_auc, image_scores_from_maps, masks_to_labels
from ._pixel import pixel_roc_auc, pro_score, region_hits
from ._scorers import (
    make_localization_scorer,
    masks_image_roc_auc_scorer,
    pixel_roc_auc_scorer,
    pro_scorer,
)

__all__ = [
    "image_roc_auc",
    "image_scores_from_maps",
    "make_localization_scorer",
    "masks_image_roc_auc_scorer",
    "masks_to_labels",
    "pixel_roc_auc",
    "pixel_roc_auc_scorer",
    "pro_score",
    "pro_scorer",
    "region_hits",
]
