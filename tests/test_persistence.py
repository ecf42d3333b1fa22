"""Saved detectors: small, network-free, version- and weights-checked."""

import pickle
import subprocess
import sys

import joblib
import numpy as np
import pytest
import torch

import skanomaly._base
import skanomaly.features
from skanomaly import EfficientNetGaussianDetector
from skanomaly.backbone import load_backbone
from skanomaly.persistence import check_version


def test_reloads_in_a_fresh_offline_process(fitted, cells, tmp_path):
    _, defective = cells
    np.save(tmp_path / "X.npy", defective)
    joblib.dump(fitted, tmp_path / "model.joblib")
    code = (
        "import sys, joblib, numpy as np\n"
        "model = joblib.load(sys.argv[1] + '/model.joblib')\n"
        "np.save(sys.argv[1] + '/scores.npy', model.score_samples(np.load(sys.argv[1] + '/X.npy')))\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "PATH": "", "HOME": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, check=True, timeout=300)
    # Equal up to BLAS summation order, which may differ between processes.
    np.testing.assert_allclose(
        np.load(tmp_path / "scores.npy"), fitted.score_samples(defective), rtol=1e-12
    )


def test_saved_model_is_small(fitted, tmp_path):
    joblib.dump(fitted, tmp_path / "model.joblib")
    network_bytes = sum(
        t.numel() * t.element_size() for t in load_backbone(fitted.backbone).state_dict().values()
    )
    # The Gaussians (covariance and precision of the 1280-d head dominate),
    # never the network.
    gaussian_bytes = sum(c.nbytes + p.nbytes for c, p in zip(fitted.covariance_, fitted.precision_))
    size = (tmp_path / "model.joblib").stat().st_size
    assert size < 1.1 * gaussian_bytes + 1e6
    assert network_bytes > 15e6


def test_incompatible_version_is_refused(fitted, monkeypatch):
    monkeypatch.setattr(skanomaly._base, "__version__", "9.3.0")
    blob = pickle.dumps(fitted)
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"saved by skanomaly 9\.3\.0"):
        pickle.loads(blob)


def test_other_weights_are_refused(cells, tmp_path):
    normal, defective = cells
    state = load_backbone("tf_efficientnet_lite0").state_dict()
    torch.save(state, tmp_path / "w.pth")
    detector = EfficientNetGaussianDetector(weights=tmp_path / "w.pth", levels=(0, 1)).fit(normal[:6])
    detector.score_samples(defective)
    # The same file name now holds other weights (one tensor changed).
    state["conv_stem.weight"] = state["conv_stem.weight"] * 1.01
    torch.save(state, tmp_path / "w.pth")
    skanomaly.features._network.cache_clear()
    skanomaly.features._pretrained.cache_clear()
    with pytest.raises(ValueError, match="fitted with other weights"):
        detector.score_samples(defective)


def test_save_and_load_a_model_file(fitted, cells, tmp_path):
    _, defective = cells
    path = tmp_path / "model.joblib"
    skanomaly.save(fitted, path)
    loaded = skanomaly.load(path)
    assert loaded is not fitted
    np.testing.assert_array_equal(loaded.score_samples(defective), fitted.score_samples(defective))
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        skanomaly.save(fitted, tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        skanomaly.save(fitted, tmp_path / "missing" / "model.joblib")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        skanomaly.load(tmp_path / "missing.joblib")


def test_load_refuses_what_is_not_a_model_of_this_version(fitted, tmp_path):
    path = tmp_path / "model.joblib"
    joblib.dump([1, 2], path)
    with pytest.raises(ValueError, match="not a skanomaly model file"):
        skanomaly.load(path)
    skanomaly.save(fitted, path)
    payload = joblib.load(path)
    payload["skanomaly_version"] = "0.0.1"
    joblib.dump(payload, path)
    with pytest.raises(ValueError, match=r"0\.0\.1.*incompatible"):
        skanomaly.load(path)
    payload.update(skanomaly_version=skanomaly.__version__, detector="not a detector")
    joblib.dump(payload, path)
    with pytest.raises(ValueError, match="holds no fitted detector"):
        skanomaly.load(path)


@pytest.mark.parametrize("saved", [None, "0.0.1", "9.3.0"])
def test_check_version_refuses_other_minor_versions(saved):
    check_version(skanomaly.__version__)
    with pytest.raises(ValueError, match=f"saved by skanomaly {saved or '< 0.1'} "):
        check_version(saved)


def test_save_and_load_do_not_import_torch():
    code = (
        "import sys, skanomaly\n"
        "skanomaly.save, skanomaly.load\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
