"""GridSearchCV time with and without the feature cache (``memory=``).

A search over ``levels`` and ``contamination`` (6 candidates, 3 folds,
image AUROC) on ELPV monocrystalline cells, with the default detector:
without a cache, with an empty cache and with that cache warm, in turn,
``--repeats`` times (each repeat with a new empty cache); the median of each.

    python benchmarks/bench_search.py [--n-images 90] [--repeats 3]
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import environment, markdown_table, publish
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from skanomaly import EfficientNetGaussianDetector
from skanomaly.datasets import load_elpv


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=90)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "search.md"))
    args = parser.parse_args()

    cells = load_elpv(cell_type="mono", resize=224)
    rng = np.random.default_rng(0)
    normal = rng.choice(np.flatnonzero(cells.y == 1), 2 * args.n_images // 3, replace=False)
    defective = rng.choice(np.flatnonzero(cells.y == -1), args.n_images // 3, replace=False)
    index = np.r_[normal, defective]
    X, y = cells.X[index], cells.y[index]
    grid = {"levels": [(0, 1, 2, 3), (4, 5, 6), "all"], "contamination": [0.05, 0.1]}
    cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)

    def search(memory):
        searched = GridSearchCV(
            EfficientNetGaussianDetector(memory=memory), grid, scoring="roc_auc", cv=cv
        )
        start = time.perf_counter()
        searched.fit(X, y)
        return time.perf_counter() - start, searched

    labels = ["no cache", "cold cache", "warm cache"]
    seconds, found = {label: [] for label in labels}, {}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            for label, memory in zip(labels, [None, cache, cache]):
                took, found[label] = search(memory)
                seconds[label].append(took)
    rows = [
        [
            label,
            f"{np.median(seconds[label]):.1f}",
            f"{found[label].best_score_:.3f}",
            found[label].best_params_,
        ]
        for label in labels
    ]
    table = markdown_table(
        ["feature cache", "search seconds", "best AUROC", "best parameters"], rows
    )
    text = (
        f"### GridSearchCV with and without the feature cache\n\n{len(X)} ELPV cells, "
        "6 candidates x 3 folds + refit, the default detector; median of "
        f"{args.repeats} repeats, each with a new empty cache.\n\n"
        f"{table}\n\n{environment()}\n"
    )
    publish(text, args.out)


if __name__ == "__main__":
    main()
