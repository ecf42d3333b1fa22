"""Throughput of fit and score_samples next to the bare backbone forward.

The backbone forward is the speed limit of a feature method: this script
times, in one run and on the same images, the bare forward pass (eager,
channels-last, and optionally torch.compile) and the detector's ``fit`` and
``score_samples`` at several batch sizes, and writes a Markdown table.

    python benchmarks/bench_throughput.py [--repeats 3] [--compile]
"""

import argparse
from pathlib import Path

import torch

from _common import environment, markdown_table, median_time
from skanomaly import EfficientNetGaussianDetector
from skanomaly.backbone import EfficientNetFeatures, load_backbone
from skanomaly.datasets import load_elpv


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--n-images", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "throughput.md"))
    args = parser.parse_args()

    features = EfficientNetFeatures(load_backbone(args.backbone)).eval()
    size = features.input_size
    # Real solar cells at the backbone's input size, so no resize is timed.
    cells = load_elpv(cell_type="mono", resize=size, max_samples=args.n_images).X
    n = len(cells)
    x = features.preprocess(torch.from_numpy(cells / 255.0).float().permute(0, 3, 1, 2))
    levels = list(range(len(features.level_names)))

    def forward(model, batch_size, channels_last):
        def run():
            with torch.inference_mode():
                for start in range(0, n, batch_size):
                    batch = x[start : start + batch_size]
                    if channels_last:
                        batch = batch.contiguous(memory_format=torch.channels_last)
                    model(batch, levels)

        return run

    eager = features
    channels_last = EfficientNetFeatures(load_backbone(args.backbone)).eval().to(
        memory_format=torch.channels_last
    )
    variants = [("bare forward, eager", eager, False), ("bare forward, channels_last", channels_last, True)]
    if args.compile:
        variants.append(("bare forward, torch.compile", torch.compile(channels_last), True))

    rows = []
    for batch_size in args.batch_sizes:
        bare = {}
        for name, model, cl in variants:
            seconds = median_time(forward(model, batch_size, cl), args.repeats)
            bare[name] = n / seconds
            rows.append([name, batch_size, f"{n / seconds:.1f}", ""])
        detector = EfficientNetGaussianDetector(args.backbone, batch_size=batch_size)
        fit_seconds = median_time(lambda: detector.fit(cells), args.repeats)
        score_seconds = median_time(lambda: detector.score_samples(cells), args.repeats)
        reference = bare["bare forward, channels_last"]
        rows.append(
            ["fit", batch_size, f"{n / fit_seconds:.1f}", f"{n / fit_seconds / reference:.2f} of channels_last"]
        )
        rows.append(
            ["score_samples", batch_size, f"{n / score_seconds:.1f}",
             f"{n / score_seconds / reference:.2f} of channels_last"]
        )
        if args.compile:
            compiled = EfficientNetGaussianDetector(
                args.backbone, batch_size=batch_size, torch_compile=True
            ).fit(cells)
            seconds = median_time(lambda: compiled.score_samples(cells), args.repeats)
            ratio = n / seconds / bare["bare forward, torch.compile"]
            rows.append(
                ["score_samples, torch_compile=True", batch_size, f"{n / seconds:.1f}",
                 f"{ratio:.2f} of compiled"]
            )

    table = markdown_table(["what", "batch size", "images/s", "ratio to bare forward"], rows)
    text = (
        f"### Throughput, {args.backbone} at {size[0]}x{size[1]} px, {n} ELPV cells\n\n"
        f"Median of {args.repeats} repeats after a warm-up.\n\n{table}\n\n{environment()}\n"
    )
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
