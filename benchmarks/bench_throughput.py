"""Throughput of fit and score_samples next to the bare backbone forward.

The backbone forward is the speed limit of a feature method: this script
times, in one run and on the same images, the bare forward pass (eager,
channels-last, channels-last with timm's own padding copies, which
``inline_same_padding`` removes, and optionally torch.compile) and the
detector's ``fit``, ``score_samples`` with each ``image_score`` (fitted on
other cells: the search for an image's worst patch prunes less, down to not
at all, the nearer its patches lie to the memory, as a training image's do;
the worst-patch scores with their default tenth of the memory and with all
of it, ``score_coreset=1.0``) and ``explain`` (the ``"spatial"`` maps, whose
forward pass stops at stage 6, the default descent and the ``"patches"``
maps, also with a tenth of the patch memory, ``patch_coreset=0.1``), at
batch size 1 also one image per call, as an inspection line calls them, at
several batch sizes, and writes a Markdown table.

    python benchmarks/bench_throughput.py [--repeats 3] [--compile]
"""

import argparse
from functools import partial
from itertools import product
from pathlib import Path
from unittest import mock

import torch
from _common import (
    bare_network,
    environment,
    in_calls,
    interleaved_median_times,
    markdown_table,
    publish,
)
from sklearn.base import clone

from skanomaly import EfficientNetGaussianDetector
from skanomaly._constants import IMAGE_SCORES
from skanomaly.backbone import EfficientNetLevels, load_backbone
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

    features = EfficientNetLevels(load_backbone(args.backbone)).eval()
    size = features.input_size
    # Real solar cells at the backbone's input size, so no resize is timed.
    loaded = load_elpv(cell_type="mono", resize=size, max_samples=2 * args.n_images).X
    cells, others = loaded[: args.n_images], loaded[args.n_images :]
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
    channels_last = bare_network(args.backbone)
    # The network as timm builds it: its strided convolutions copy their
    # input into a padded tensor (Conv2dSame), which the library's
    # inline_same_padding avoids.
    with mock.patch("skanomaly.backbone.inline_same_padding", lambda model: model):
        timm_padding = bare_network(args.backbone)
    variants = [
        ("bare forward, eager", eager, False),
        ("bare forward, channels_last", channels_last, True),
        ("bare forward, channels_last, timm's Conv2dSame padding", timm_padding, True),
    ]
    if args.compile:
        variants.append(("bare forward, torch.compile", torch.compile(channels_last), True))

    rows = []
    default = EfficientNetGaussianDetector().image_score
    for batch_size in args.batch_sizes:
        if args.compile:
            # Each batch size gets the compile cache of a process that uses
            # only it: after 8 variants of one function (batch shapes, level
            # sets, model instances) dynamo stops compiling and runs eager.
            torch._dynamo.reset()
        detector = EfficientNetGaussianDetector(args.backbone, batch_size=batch_size).fit(cells)
        timed = {name: forward(model, batch_size, cl) for name, model, cl in variants}
        timed["fit"] = partial(detector.fit, cells)
        # Fitted on other cells: the worst-patch search prunes less, down to
        # not at all, the nearer an image's patches lie to the memory, as a
        # training image's do.
        for image_score, coreset in product(IMAGE_SCORES, (0.1, 1.0)):
            if image_score == "pooled" and coreset < 1:
                continue
            scorer = EfficientNetGaussianDetector(
                args.backbone,
                batch_size=batch_size,
                image_score=image_score,
                explain_method="spatial",
                score_coreset=coreset,
            ).fit(others)
            name = f"score_samples, image_score={image_score!r}"
            name += ", score_coreset=1.0" if image_score != "pooled" and coreset == 1 else ""
            name += " (the default)" if image_score == default and coreset < 1 else ""
            timed[name] = partial(scorer.score_samples, cells)
            if batch_size == 1 and image_score == default and coreset < 1:
                # An inspection line scores each part as it comes, one call each.
                timed["score_samples (the default), one image per call"] = partial(
                    in_calls, scorer.score_samples, cells, 1
                )
        spatial = EfficientNetGaussianDetector(
            args.backbone, batch_size=batch_size, explain_method="spatial"
        ).fit(cells)
        timed["explain (spatial)"] = partial(spatial.explain, cells)
        if batch_size == 1:
            timed["explain (spatial), one image per call"] = partial(
                in_calls, spatial.explain, cells, 1
            )
        timed["explain (descent, the default)"] = partial(detector.explain, cells)
        patches = clone(detector).set_params(explain_method="patches")
        timed["explain (patches)"] = partial(patches.fit(others).explain, cells)
        patches = clone(patches).set_params(patch_coreset=0.1).fit(others)
        timed["explain (patches), patch_coreset=0.1"] = partial(patches.explain, cells)
        reference = dict.fromkeys(
            (name for name in timed if not name.startswith("bare forward")),
            "bare forward, channels_last",
        )
        if args.compile:
            compiled = EfficientNetGaussianDetector(
                args.backbone, batch_size=batch_size, torch_compile=True
            ).fit(cells)
            timed["score_samples, torch_compile=True"] = partial(compiled.score_samples, cells)
            timed["explain (spatial), torch_compile=True"] = partial(compiled.explain, cells)
            for name in (
                "score_samples, torch_compile=True",
                "explain (spatial), torch_compile=True",
            ):
                reference[name] = "bare forward, torch.compile"
        seconds = interleaved_median_times(timed, args.repeats)
        for name, value in seconds.items():
            ratio = ""
            if name in reference:
                ratio = (
                    f"{seconds[reference[name]] / value:.2f} of {reference[name].split(', ')[1]}"
                )
            rows.append([name, batch_size, f"{n / value:.1f}", ratio])

    table = markdown_table(["what", "batch size", "images/s", "ratio to bare forward"], rows)
    text = (
        f"### Throughput, {args.backbone} at {size[0]}x{size[1]} px, {n} ELPV cells\n\n"
        f"Median of {args.repeats} repeats after a warm-up; each repeat times every row "
        f"in turn, after a 0.5 s pause, so that ratios compare runs made at the same time.\n\n{table}\n\n{environment()}\n"
    )
    publish(text, args.out)


if __name__ == "__main__":
    main()
