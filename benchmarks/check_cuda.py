"""A short prepared check of the CUDA path, for a machine with a GPU.

Runs the CUDA test, then times fit, score_samples and explain on CPU and
CUDA on the same real images, and prints a table. About a minute.

    python benchmarks/check_cuda.py
"""

import subprocess
import sys
import time

import numpy as np
import torch

from _common import environment, markdown_table
from skanomaly import EfficientNetGaussianDetector
from skanomaly.datasets import load_elpv


def main():
    if not torch.cuda.is_available():
        sys.exit("CUDA is not available here.")
    subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/test_cuda.py"], check=True)
    cells = load_elpv(cell_type="mono", resize=224, max_samples=256).X
    rows = []
    for device in ("cpu", "cuda"):
        detector = EfficientNetGaussianDetector(device=device, batch_size=16 if device == "cpu" else 64)
        start = time.perf_counter()
        detector.fit(cells[:128])
        fit = time.perf_counter() - start
        detector.score_samples(cells[128:144])
        start = time.perf_counter()
        scores = detector.score_samples(cells[128:])
        if device == "cuda":
            torch.cuda.synchronize()
        score = time.perf_counter() - start
        start = time.perf_counter()
        detector.explain(cells[128:136])
        explain = (time.perf_counter() - start) / 8
        rows.append([device, f"{128 / fit:.1f}", f"{128 / score:.1f}", f"{explain:.3f}", f"{np.median(scores):.2f}"])
    print(markdown_table(["device", "fit img/s", "score img/s", "explain s/img", "median score"], rows))
    print(environment())


if __name__ == "__main__":
    main()
