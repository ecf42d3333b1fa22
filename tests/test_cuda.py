"""The CUDA path; runs only where a GPU is present (benchmarks/check_cuda.py
runs it on a GPU machine)."""

import numpy as np
import pytest
import torch

from skanomaly import EfficientNetGaussianDetector

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")


@pytest.fixture(scope="module")
def cpu_model(cells):
    return EfficientNetGaussianDetector(device="cpu").fit(cells[0][:16])


def test_float32_on_cuda_matches_cpu(cells, cpu_model):
    normal, defective = cells
    gpu = EfficientNetGaussianDetector(device="cuda", precision="float32").fit(normal[:16])
    np.testing.assert_allclose(
        gpu.score_samples(defective), cpu_model.score_samples(defective), rtol=1e-3
    )
    expected = cpu_model.set_params(explain_method="spatial").explain(defective[:4])
    maps = gpu.set_params(explain_method="spatial").explain(defective[:4])
    np.testing.assert_allclose(maps, expected, rtol=1e-3, atol=1e-3 * expected.max())
    # The descent amplifies the last digits in which CUDA's convolution
    # algorithms differ from the CPU's: single pixels moved by up to 15% of
    # the map's maximum on an H200, the maps as a whole agree.
    expected = cpu_model.set_params(explain_method="descent").explain(defective[:4])
    maps = gpu.set_params(explain_method="descent").explain(defective[:4])
    assert np.corrcoef(maps.ravel(), expected.ravel())[0, 1] > 0.995


def test_autocast_on_cuda_stays_close_to_float32(cells, cpu_model):
    normal, defective = cells
    gpu = EfficientNetGaussianDetector(device="cuda").fit(normal[:16])
    assert gpu._extractor().precision == torch.float16
    full = cpu_model.pooled_features(defective)["head"]
    half = gpu.pooled_features(defective)["head"]
    assert np.linalg.norm(half - full) / np.linalg.norm(full) < 0.05
    X = np.concatenate([normal[16:], defective])
    assert np.corrcoef(gpu.score_samples(X), cpu_model.score_samples(X))[0, 1] > 0.99
    maps = gpu.explain(defective[:4])
    assert maps.shape == defective[:4].shape[:3] and np.all(np.isfinite(maps))
    assert np.corrcoef(maps.ravel(), cpu_model.explain(defective[:4]).ravel())[0, 1] > 0.98


@pytest.mark.parametrize("method", ["reference", "descent"])
def test_gradient_explain_on_cuda(cells, method):
    normal, defective = cells
    gpu = EfficientNetGaussianDetector(device="cuda", explain_method=method, n_steps=5)
    maps = gpu.fit(normal[:16]).explain(defective[:2])
    assert maps.shape == defective[:2].shape[:3] and np.all(np.isfinite(maps)) and maps.max() > 0


def test_compiled_on_cuda_scores_like_eager(cells):
    normal, defective = cells
    eager = EfficientNetGaussianDetector(device="cuda").fit(normal[:16])
    compiled = EfficientNetGaussianDetector(device="cuda", torch_compile=True).fit(normal[:16])
    np.testing.assert_allclose(
        compiled.score_samples(defective), eager.score_samples(defective), rtol=1e-2
    )


@pytest.mark.parametrize("image_score", ["pooled+patches", "patches"])
def test_worst_patch_scores_on_cuda_match_cpu(cells, image_score):
    normal, defective = cells
    parameters = {"image_score": image_score, "explain_method": "spatial", "precision": "float32"}
    cpu = EfficientNetGaussianDetector(device="cpu", **parameters).fit(normal[:8])
    gpu = EfficientNetGaussianDetector(device="cuda", **parameters).fit(normal[:8])
    X = np.concatenate([normal[8:], defective])
    np.testing.assert_allclose(gpu.score_samples(X), cpu.score_samples(X), rtol=1e-3)
    assert gpu.offset_ == pytest.approx(cpu.offset_, rel=1e-3)


def test_model_fitted_on_cuda_scores_on_cpu_after_loading(cells, tmp_path):
    from skanomaly.persistence import load, save

    normal, defective = cells
    gpu = EfficientNetGaussianDetector(device="cuda", precision="float32").fit(normal[:16])
    save(gpu, tmp_path / "gpu.skanomaly")
    cpu = load(tmp_path / "gpu.skanomaly").set_params(device="cpu")
    np.testing.assert_allclose(
        cpu.score_samples(defective), gpu.score_samples(defective), rtol=1e-3
    )
