"""The recorded outputs of tests/regression_cases.py, reproduced."""

import numpy as np
import pytest
import torch
from regression_cases import RECORDED, cells, run_cases

# The reference method's gradient descent amplifies the last bits of the
# forward pass, which differ between CPUs (another vector width or BLAS
# kernel splits the sums differently): on an AMD EPYC its maps differ from
# the record made on an Intel Xeon by up to 0.24% in single pixels, while
# everything else agrees to 1e-6. Its maps are held to a relative L2
# distance that such rounding stays far below and a change of behaviour
# does not, and to a loose bound per pixel.
AMPLIFIED = ("reference_lam0/maps", "reference_lam1000/maps")


@pytest.fixture(scope="module")
def results():
    # Recorded with torch's 2 threads on the project's 2-core machines: the
    # reference descent also amplifies another split of the sums over threads.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        return run_cases(*cells())
    finally:
        torch.set_num_threads(threads)


def test_recorded_outputs_are_reproduced(results):
    with np.load(RECORDED) as recorded:
        assert set(recorded.files) == set(results)
        for name in recorded.files:
            if name in AMPLIFIED:
                continue
            np.testing.assert_allclose(
                results[name], recorded[name], rtol=1e-6, atol=0, err_msg=name
            )


@pytest.mark.parametrize("name", AMPLIFIED)
def test_recorded_descent_maps_are_reproduced(results, name):
    with np.load(RECORDED) as recorded:
        expected = recorded[name].astype(np.float64)
    actual = np.asarray(results[name], dtype=np.float64)
    assert actual.shape == expected.shape
    assert np.linalg.norm(actual - expected) <= 1e-3 * np.linalg.norm(expected), name
    np.testing.assert_allclose(actual, expected, rtol=0.05, atol=0, err_msg=name)
