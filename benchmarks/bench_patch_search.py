"""The worst-patch search: time per image against the size of its cover.

``worst_patch_distances`` bounds every patch of an image by its nearest row
of a cover (every k-th row of the memory, and a finer one for the bounds
still in question), then searches the whole memory only for the patches
whose bound could still be the worst, the images of one call together. This
script times that search on the test images of bench_peers' seed-0 split
(patch features of ``patch_neighborhood=3``, extracted once), against
memories of the training images at several ``patch_coreset`` shares, in
calls of 16 images (the detector's batches), for covers of fixed sizes and
the library's rule (about ``3 * sqrt(rows)``), and for the rule also one
image per call, as an inspection line scores them. Every cover gives the
same distances (checked); only the time differs. All five sets were used
to choose the rule's factor and the finer cover's.
The last column is what preparing the memory
(:class:`~skanomaly.patches.PatchIndex`: checks, norms, covers) costs,
which a detector pays once per memory.

    python benchmarks/bench_patch_search.py [--repeats 5]
"""

import argparse
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch
from _common import environment, in_calls, interleaved_median_times, markdown_table, publish
from _detection_data import extract, load_pools

from skanomaly import EfficientNetGaussianDetector
from skanomaly.patches import PatchIndex, worst_patch_distances

BACKBONE = "tf_efficientnet_lite0"
COVERS = (64, 128, 256, 512)
DATA = ("magnetic tile", "cookies", "ELPV mono", "PIPED PA_BRG03_TL", "PIPED PA_FVN01_TL")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--coresets", type=float, nargs="+", default=[1.0, 0.3, 0.1])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "patch_search.md"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)

    started = time.perf_counter()
    pools = load_pools([0], [0], resize=224)
    rows = []
    for name in DATA:
        pool = pools[name]
        train, test = pool.splits[0]
        # The test images' patch features, as the detector extracts them.
        found = extract(pool.images(test), BACKBONE, None, False, patches=(3,))
        images = [torch.from_numpy(r) for r in found[("patches", 3)]]
        for coreset in args.coresets:
            detector = EfficientNetGaussianDetector(
                BACKBONE,
                image_score="patches",
                patch_neighborhood=3,
                patch_coreset=coreset,
                progress=False,
            ).fit(np.stack(pool.images(train)))
            index = PatchIndex(detector.patches_)
            expected = worst_patch_distances(images, index)
            covers = {str(size): PatchIndex(detector.patches_, size) for size in COVERS}
            covers["library rule"] = index
            for searched in covers.values():
                found = np.concatenate(
                    in_calls(partial(worst_patch_distances, memory=searched), images, 16)
                )
                np.testing.assert_allclose(found, expected, rtol=1e-6)
            # Timed in turn, so that a slow spell of the machine slows all alike.
            runs = {
                name: partial(in_calls, partial(worst_patch_distances, memory=c), images, 16)
                for name, c in covers.items()
            }
            runs["one per call"] = partial(
                in_calls, partial(worst_patch_distances, memory=index), images, 1
            )
            runs["prepare"] = partial(PatchIndex, detector.patches_)
            seconds = interleaved_median_times(runs, args.repeats, settle=0.1)
            prepare = seconds.pop("prepare")
            times = [f"{1000 * value / len(images):.2f}" for value in seconds.values()]
            label = f"{len(index.rows)} ({coreset:g})"
            cover_rows = " + ".join(str(len(rows)) for rows, _ in index.covers)
            rows.append([name, label, cover_rows, *times, f"{1000 * prepare:.2f}"])
        print(f"[{time.perf_counter() - started:5.0f} s] {name}", flush=True)

    header = [
        "data set",
        "memory rows (patch_coreset)",
        "library rule's cover rows (coarse + finer)",
        *[f"cover {size} rows, ms/img" for size in COVERS],
        "library rule, ms/img",
        "library rule, one image per call, ms/img",
        "PatchIndex, ms",
    ]
    text = (
        "### The worst-patch search against its cover\n\n"
        f"`python benchmarks/bench_patch_search.py --repeats {args.repeats}`, "
        f"{(time.perf_counter() - started) / 60:.1f} min. Median of {args.repeats} "
        "repeats per cell, milliseconds per test image (40 per data set, bench_peers' seed-0 "
        "split, Lite0 at 224 px, `patch_neighborhood=3`), searched in calls of 16 images "
        "unless the column says otherwise; every cover gives the same distances. "
        "A cover of k rows is every (rows // k)-th row of the memory, with a finer cover of "
        "every fourth of those steps where that is every third row or sparser. "
        "The coarse cover's rule (3 * sqrt(rows), after 4 * sqrt(rows) chosen on magnetic tile, "
        "cookies and ELPV) and the finer cover's factor (4 rather than 8 or 16) were chosen on "
        "all five sets below.\n\n"
        f"{markdown_table(header, rows)}\n\n{environment()}\n"
    )
    publish(text, args.out)


if __name__ == "__main__":
    main()
