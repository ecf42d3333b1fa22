"""Peak memory of a streaming fit is flat in the number of images, and
that of scoring large images stays near one image's.

Each run is a fresh process that feeds N synthetic 224x224 RGB images
(seeded noise textures, made chunk by chunk and dropped after use) to
``partial_fit`` and reports its peak resident memory (VmHWM). A second
process fits on 6 small images, then scores and explains ``--large``
random images of 3000 x 4000 pixels in one call, and reports how far each
call raised its peak above what it held before: the images themselves are
counted in neither. Last, ``skanomaly fit`` runs on the first N of a folder of
``--files`` JPEG files of 1280 x 1024 pixels, each in a fresh process.

    python benchmarks/bench_memory.py [--sizes 1000 10000] [--chunk 256] [--large 8]
        [--files 64 256 1024]
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import environment, markdown_table, publish
from PIL import Image

CHILD = """
import sys, time
import numpy as np
from skanomaly import EfficientNetGaussianDetector

n, chunk = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
detector = EfficientNetGaussianDetector()
start = time.perf_counter()
for first in range(0, n, chunk):
    size = min(chunk, n - first)
    base = rng.integers(80, 176, size=(size, 1, 1, 3))
    noise = rng.integers(-40, 40, size=(size, 224, 224, 3))
    detector.partial_fit((base + noise).clip(0, 255).astype(np.uint8))
detector.offset_  # the Gaussians and the threshold are computed at first use
seconds = time.perf_counter() - start
peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(detector.n_samples_fit_, seconds, int(peak) / 1024)
"""

LARGE = """
import sys
import numpy as np
from skanomaly import EfficientNetGaussianDetector

def peak():
    return int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]) / 1024

n = int(sys.argv[1])
rng = np.random.default_rng(0)
small = rng.integers(0, 256, (6, 224, 224, 3), dtype=np.uint8)
detector = EfficientNetGaussianDetector(image_score="pooled", explain_method="spatial", batch_size=n)
detector.fit(small)
X = rng.integers(0, 256, (n, 3000, 4000, 3), dtype=np.uint8)
before = peak()
detector.score_samples(X)
scored = peak()
maps = detector.explain(X)
print(X.nbytes / 2**20, scored - before, peak() - before, maps.nbytes / 2**20)
"""

FOLDER = """
import sys
from skanomaly.cli import main

code = main(["fit", *sys.argv[2:], "-o", sys.argv[1], "--no-progress"])
peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(code, int(peak) / 1024)
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--large", type=int, default=8, help="images of 3000 x 4000 px")
    parser.add_argument("--files", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "memory.md"))
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(n), str(args.chunk)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        fitted, seconds, peak = int(out[0]), float(out[1]), float(out[2])
        rows.append([fitted, f"{seconds:.0f}", f"{fitted / seconds:.1f}", f"{peak:.0f}"])
    table = markdown_table(["images", "fit seconds", "images/s", "peak RSS MiB"], rows)
    text = (
        f"### Streaming fit: peak memory against the number of images\n\n"
        f"partial_fit in chunks of {args.chunk} synthetic 224x224 images, "
        f"default detector (all 9 levels), one process per row; the time includes "
        f"computing the Gaussians and the threshold after the last chunk.\n\n{table}\n\n"
        f"{_large_images(args.large)}\n\n{_folder_fits(args.files)}\n\n{environment()}\n"
    )
    publish(text, args.out)


def _large_images(n):
    """The section on scoring ``n`` images of 3000 x 4000 px in one call."""
    out = subprocess.run(
        [sys.executable, "-c", LARGE, str(n)], capture_output=True, text=True, check=True
    ).stdout.split()
    images, scored, explained, maps = (float(v) for v in out)
    header = [
        "images",
        "their pixels MiB",
        "score_samples: peak rise MiB",
        "explain: peak rise MiB",
        "maps returned MiB",
    ]
    row = [n, f"{images:.0f}", f"{scored:.0f}", f"{explained:.0f}", f"{maps:.0f}"]
    return (
        f"### Large images: peak memory of one call\n\n{n} random uint8 images of "
        f"3000 x 4000 px, batch_size={n} (a batch holds one such image: BATCH_PIXELS), "
        "image_score='pooled', explain_method='spatial', "
        "fitted on 6 small images: the rise of the process's peak RSS over what it held "
        "with the images loaded (explain's includes score_samples' peak, and the maps "
        f"it returns).\n\n{markdown_table(header, [row])}"
    )


def _folder_fits(sizes):
    """The section on ``skanomaly fit`` over the first N of a folder of
    JPEG files, for each N of ``sizes``."""
    rng = np.random.default_rng(0)
    base = rng.integers(90, 160, size=(64, 64, 3)).astype(np.uint8)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        files = []
        for i in range(max(sizes)):
            # A smooth texture with noise, so that each file decodes as a
            # camera's does (about 0.3 MB of JPEG, 3.75 MiB of pixels).
            noise = rng.integers(-8, 9, size=(1024, 1280, 3))
            image = np.asarray(Image.fromarray(base).resize((1280, 1024), Image.BILINEAR))
            path = Path(folder) / f"{i:04d}.jpg"
            Image.fromarray((image + noise).clip(0, 255).astype(np.uint8)).save(path, quality=92)
            files.append(str(path))
        for n in sorted(sizes):
            model = str(Path(folder) / "model.skanomaly")
            out = subprocess.run(
                [sys.executable, "-c", FOLDER, model, *files[:n]],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            if out[-2] != "0":
                raise RuntimeError(f"skanomaly fit on {n} files exited with {out[-2]}")
            rows.append([n, f"{n * 3.75:.0f}", f"{float(out[-1]):.0f}"])
    header = ["files", "their pixels MiB", "peak RSS MiB"]
    return (
        "### skanomaly fit on a folder: peak memory against the number of files\n\n"
        "JPEG files of 1280 x 1024 px (a noisy texture), default detector and "
        "command line, one process per row: each file is read once to check it, "
        "then the detector reads them again a batch at a time."
        f"\n\n{markdown_table(header, rows)}"
    )


if __name__ == "__main__":
    main()
