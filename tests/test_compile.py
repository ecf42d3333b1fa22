"""The torch.compile path gives the eager scores (it compiles, so it is slow)."""

import numpy as np

from skanomaly import EfficientNetGaussianDetector


def test_compiled_backbone_scores_like_eager(cells):
    normal, defective = cells
    eager = EfficientNetGaussianDetector(levels=(0, 1, 2, 3), batch_size=8).fit(normal[:16])
    compiled = EfficientNetGaussianDetector(
        levels=(0, 1, 2, 3), batch_size=8, torch_compile=True
    ).fit(normal[:16])
    np.testing.assert_allclose(
        compiled.score_samples(defective), eager.score_samples(defective), rtol=1e-3
    )
    maps = compiled.explain(defective[:2])
    assert maps.shape == defective[:2].shape[:3] and np.all(np.isfinite(maps))
