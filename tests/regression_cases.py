"""Recorded outputs that refactoring must not change.

``tests/data/regression.npz`` holds the scores, thresholds and maps that the
code gave before the package was split into one object per concern (issue
11), computed by :func:`run_cases` below on a fixed set of real ELPV cells.
It was re-recorded once since, when the batch norms were folded into the
convolutions (:func:`skanomaly.backbone.fold_batch_norms`): float rounding
that moved scores and spatial maps by at most 1.7e-6 relative, and the
reference descent's maps, which amplify the last bits, by up to 5%.
``tests/test_regression.py`` runs the same cases on the current code and
compares. Every case names all the parameters it relies on, so that a later
change of a default does not move it; a change of behaviour that is meant
must say so by re-recording (``python tests/regression_cases.py``) in its
own commit.
"""

from pathlib import Path

import numpy as np

RECORDED = Path(__file__).parent / "data" / "regression.npz"

# What every case pins: the behaviour of skanomaly 0.1 before issue 11.
BASE = {
    "levels": "all",
    "distance": "mahalanobis",
    "contamination": 0.05,
    "threshold": "out_of_fold",
    "batch_size": 16,
    "device": "cpu",
    "precision": "float32",
    "explain_method": "spatial",
    "smoothing": 4.0,
}
# Parameters added after the recording, with the values that reproduce it.
SINCE = {
    "pooling": "mean",
    "npca": None,
    "augment": None,
    "standardize": False,
    "image_score": "pooled",
}


def cells():
    """24 normal and 8 certainly defective mono ELPV cells at 64 px (the
    ``cells`` fixture of conftest.py)."""
    from PIL import Image

    from skanomaly.datasets import load_elpv

    data = load_elpv(cell_type="mono")

    def shrink(images):
        return np.stack(
            [np.asarray(Image.fromarray(im).resize((64, 64), Image.BICUBIC)) for im in images]
        )

    return shrink(data.X[data.y == 1][:24]), shrink(data.X[data.y == -1][:8])


def _detector(**params):
    from skanomaly import EfficientNetGaussianDetector

    return EfficientNetGaussianDetector(**{**BASE, **SINCE, **params})


def run_cases(normal, defective):
    """Every recorded quantity, by name."""
    out = {}
    X = np.concatenate([normal, defective])
    explained = np.concatenate([defective[:3], normal[16:18]])

    default = _detector().fit(normal[:16])
    out["default/offset"] = np.float64(default.offset_)
    out["default/scores"] = default.score_samples(X)
    out["default/level_distances"] = default.level_distances(X)
    out["default/maps"] = default.explain(explained)
    out["default/shrinkage"] = np.asarray(default.shrinkage_)

    other = _detector(distance="squared", threshold="chi2", levels=(2, 4, 8)).fit(normal[:16])
    out["squared_chi2/offset"] = np.float64(other.offset_)
    out["squared_chi2/scores"] = other.score_samples(X)

    streamed = _detector()
    streamed.partial_fit(normal[:8]).partial_fit(normal[8:16])
    out["partial_fit/offset"] = np.float64(streamed.offset_)
    out["partial_fit/scores"] = streamed.score_samples(X)

    calibrated = _detector().fit(normal[:16]).calibrate(normal[16:], fpr=0.2)
    out["calibrate/offset"] = np.float64(calibrated.offset_)
    out["calibrate/p_values"] = calibrated.p_values(defective)

    out["fit_predict/labels"] = _detector(contamination=0.3).fit_predict(normal[:16])

    for lam in (0.0, 1000.0):
        reference = _detector(explain_method="reference", n_steps=3, step_size=0.005, lam=lam)
        reference.fit(normal[:16])
        out[f"reference_lam{lam:g}/maps"] = reference.explain(defective[:2])
    return out


if __name__ == "__main__":
    RECORDED.parent.mkdir(exist_ok=True)
    results = run_cases(*cells())
    np.savez_compressed(RECORDED, **results)
    for name, value in results.items():
        print(f"{name}: shape {np.shape(value)}")
