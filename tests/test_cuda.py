"""The CUDA path; runs only where a GPU is present."""

import numpy as np
import pytest
import torch

from skanomaly import EfficientNetGaussianDetector

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")


def test_cuda_scores_match_cpu(cells):
    normal, defective = cells
    cpu = EfficientNetGaussianDetector(device="cpu").fit(normal[:16])
    gpu = EfficientNetGaussianDetector(device="cuda").fit(normal[:16])
    np.testing.assert_allclose(
        gpu.score_samples(defective), cpu.score_samples(defective), rtol=1e-3
    )
    maps = gpu.explain(defective[:2])
    assert maps.shape == defective[:2].shape[:3] and np.all(np.isfinite(maps))
