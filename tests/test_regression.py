"""The recorded outputs of tests/regression_cases.py, reproduced."""

import numpy as np
import pytest
from regression_cases import RECORDED, cells, run_cases


@pytest.fixture(scope="module")
def results():
    return run_cases(*cells())


def test_recorded_outputs_are_reproduced(results):
    with np.load(RECORDED) as recorded:
        assert set(recorded.files) == set(results)
        for name in recorded.files:
            np.testing.assert_allclose(
                results[name], recorded[name], rtol=1e-6, atol=0, err_msg=name
            )
