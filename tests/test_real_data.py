"""Detection quality on real defect data, with the real pretrained model."""

import numpy as np
from sklearn.metrics import roc_auc_score

from skanomaly import EfficientNetGaussianDetector
from skanomaly.datasets import load_magnetic_tile


def test_elpv_monocrystalline_auroc(elpv_mono):
    # Fit on half of the defect-free cells; score the other half against the
    # cells that are certainly defective (probability 1.0).
    X, proba = elpv_mono.X, elpv_mono.proba
    rng = np.random.default_rng(0)
    normal = rng.permutation(np.flatnonzero(proba == 0))
    train, held_out = normal[: len(normal) // 2], normal[len(normal) // 2 :]
    defective = np.flatnonzero(proba == 1)
    detector = EfficientNetGaussianDetector().fit(X[train])
    test = np.r_[held_out, defective]
    auroc = roc_auc_score(np.where(proba[test] == 0, 1, -1), detector.score_samples(X[test]))
    assert auroc >= 0.90, auroc


def test_magnetic_tile_detection(shared_data):
    free = load_magnetic_tile(
        shared_data / "magnetic_tile", classes=["Free"], max_per_class=120, resize=224
    )
    defects = load_magnetic_tile(
        shared_data / "magnetic_tile",
        classes=["Blowhole", "Break", "Crack", "Fray", "Uneven"],
        max_per_class=12,
        resize=224,
    )
    detector = EfficientNetGaussianDetector().fit(free.X[:80])
    X = np.concatenate([free.X[80:], defects.X])
    y = np.r_[np.ones(len(free.X) - 80), -np.ones(len(defects.X))]
    auroc = roc_auc_score(y, detector.score_samples(X))
    assert auroc >= 0.75, auroc
