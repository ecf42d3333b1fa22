"""Shared fixtures: small real images and fitted detectors on real weights."""

import os

import numpy as np
import pytest

from skanomaly import EfficientNetGaussianDetector
from skanomaly.datasets import load_elpv, shared_data_dir


@pytest.fixture(scope="session")
def elpv_mono():
    """Monocrystalline ELPV cells: the real solar-cell data set from PyPI."""
    return load_elpv(cell_type="mono")


@pytest.fixture(scope="session")
def cells(request):
    """24 defect-free and 8 certainly defective cells, downsized to 64 px.

    The backbone resizes every image to its 224 px input, so small arrays
    keep the tests light without changing what the network sees in kind.
    ``SKANOMALY_TEST_CELLS`` names a ``.npz`` of such cells for machines
    without elpv-dataset (the GPU check of ``benchmarks/check_cuda.py``).
    """
    from PIL import Image

    prepared = os.environ.get("SKANOMALY_TEST_CELLS")
    if prepared:
        with np.load(prepared) as data:
            return data["normal"], data["defective"]
    elpv_mono = request.getfixturevalue("elpv_mono")

    def shrink(images):
        return np.stack(
            [np.asarray(Image.fromarray(im).resize((64, 64), Image.BICUBIC)) for im in images]
        )

    normal = elpv_mono.X[elpv_mono.y == 1][:24]
    defective = elpv_mono.X[elpv_mono.y == -1][:8]
    return shrink(normal), shrink(defective)


@pytest.fixture(scope="session")
def fitted(cells):
    """A default detector fitted on 16 normal cells."""
    normal, _ = cells
    return EfficientNetGaussianDetector().fit(normal[:16])


@pytest.fixture(scope="session")
def pooled_fitted(cells):
    """The same with the pooled distances alone as its score (Rippel et al.)."""
    normal, _ = cells
    return EfficientNetGaussianDetector(image_score="pooled").fit(normal[:16])


@pytest.fixture(scope="session")
def shared_data():
    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data is not present (set SKANOMALY_DATA to use it)")
    return path


@pytest.fixture
def forward_passes(monkeypatch):
    """The batch sizes of every backbone pass that fit or scoring runs."""
    import skanomaly.features

    calls = []
    original = skanomaly.features._summarize

    def counting(network, images, *args, **kwargs):
        calls.append(len(images))
        return original(network, images, *args, **kwargs)

    monkeypatch.setattr(skanomaly.features, "_summarize", counting)
    return calls
