"""The detector inside scikit-learn's own tooling."""

import numpy as np
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from skanomaly import EfficientNetGaussianDetector

# A cheap configuration: the stem level only (the reference explain method
# needs no spatial Gaussians, so the forward pass stops there), and rows of
# scikit-learn's random tabular data read as 1-pixel-high images in a wide
# pixel range.
CHEAP = EfficientNetGaussianDetector(
    levels=(0,), image_shape=(1, -1), pixel_range=(-1e3, 1e3), explain_method="reference"
)

# The only expected failures. Both checks require that predicting on the
# training data flags exactly `contamination` of it. The threshold is set on
# out-of-fold scores instead, which is what makes it hold for new images
# (in-sample distances are far too small when images are few next to the
# feature dimensions); in-sample scores are higher, so fewer are flagged.
OUT_OF_FOLD_THRESHOLD = (
    "offset_ is a percentile of out-of-fold training scores, so predictions on "
    "the training data flag fewer than `contamination` of it"
)
EXPECTED_FAILURES = {
    "check_outliers_train": OUT_OF_FOLD_THRESHOLD,
    "check_outliers_fit_predict": OUT_OF_FOLD_THRESHOLD,
}


@parametrize_with_checks([CHEAP], expected_failed_checks=lambda estimator: EXPECTED_FAILURES)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_is_an_outlier_detector():
    from sklearn.base import is_outlier_detector

    assert is_outlier_detector(EfficientNetGaussianDetector())


def _labelled(cells):
    normal, defective = cells
    X = np.concatenate([normal, defective])
    y = np.r_[np.ones(len(normal), int), -np.ones(len(defective), int)]
    return X, y


def center_crop(X):
    """Drop the cells' outer frame, where the busbars meet the cell edge."""
    return X[:, 4:-4, 4:-4]


def test_pipeline_and_cross_val_score_roc_auc(cells):
    X, y = _labelled(cells)
    pipeline = make_pipeline(
        FunctionTransformer(center_crop), EfficientNetGaussianDetector(levels=(4, 5, 6, 7, 8))
    )
    pipeline.fit(X[y == 1])
    assert set(pipeline.predict(X)) <= {-1, 1}
    cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    scores = cross_val_score(pipeline, X, y, scoring="roc_auc", cv=cv)
    assert scores.shape == (3,)
    # Folds train on some defective cells too, so this is a loose floor;
    # the clean protocol is tested in test_real_data.py.
    assert np.mean(scores) > 0.6


def test_grid_search_over_levels(cells):
    X, y = _labelled(cells)
    search = GridSearchCV(
        EfficientNetGaussianDetector(),
        {"levels": [(0, 1, 2), (6, 7, 8), "all"]},
        scoring="roc_auc",
        cv=StratifiedKFold(n_splits=2, shuffle=True, random_state=0),
    )
    search.fit(X, y)
    assert len(search.cv_results_["mean_test_score"]) == 3
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.best_params_["levels"] in [(0, 1, 2), (6, 7, 8), "all"]
    assert search.best_estimator_.predict(X[:2]).shape == (2,)


def test_parameter_constraints_are_checked():
    """Every parameter set to a value of the wrong type, or out of range, is
    refused by fit, partial_fit and fit_predict with scikit-learn's own
    InvalidParameterError, before any work."""
    from sklearn.base import clone
    from sklearn.utils.estimator_checks import check_param_validation

    check_param_validation(type(CHEAP).__name__, clone(CHEAP))
