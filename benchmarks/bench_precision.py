"""Image scores and throughput at ``precision="float32"`` and ``"bfloat16"`` on a CPU.

``precision`` sets the autocast dtype of the forward passes that need no
gradient; the Gaussians and distances stay in float64 (scoring) whatever it
is. On CPUs with bfloat16 instructions (the ``avx512_bf16`` or ``amx_bf16``
flags of /proc/cpuinfo) oneDNN runs the convolutions in bfloat16; the page
names the flags of the machine that wrote it. This script measures, in one
run:

- **throughput**: the bare forward pass (channels-last, every level) under
  each autocast dtype, and ``score_samples`` with the pooled and the
  ``"pooled+patches"`` image scores, each fitted and scored in one
  precision (the patch score fitted on other cells, as in
  bench_throughput.py), on 64 ELPV cells at batch sizes 1, 8 and 16
  (interleaved medians);
- **accuracy**: the image AUROC of both image scores fitted and scored in
  float32, fitted and scored in bfloat16, and fitted in float32 but scored
  in bfloat16 (a model moved to a machine that runs bfloat16), on
  bench_peers' splits (magnetic tiles, cookies, ELPV mono) and every PIPED
  paper type with impurities (bench_detection's splits), seeds 0-2; the
  share of the normal test images flagged (below ``offset_``, which ``fit``
  set in its own precision; contamination 0.05); and the Spearman
  correlation of the test scores with float32's;
- **CPUs without the instructions**: the bare forward pass in float32,
  bfloat16 and float16 in child processes whose oneDNN is capped by
  ``ONEDNN_MAX_CPU_ISA`` at AVX-512 without bfloat16 (``AVX512_CORE``) and
  at AVX2 (most laptop and desktop CPUs without AVX-512), with what
  PyTorch then reports of oneDNN's bfloat16 and float16 support (the check
  behind the detector's warning). The cap binds oneDNN only, whose
  convolutions are nearly all of the forward pass; PyTorch's other kernels
  keep this CPU's instructions.

    python benchmarks/bench_precision.py [--repeats 5] [--seeds 0 1 2]
"""

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch
from _common import (
    bare_forward,
    bare_network,
    cpuinfo,
    environment,
    interleaved_median_times,
    markdown_table,
    median_time,
    publish,
)
from _detection_data import load_pools
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from skanomaly import EfficientNetGaussianDetector
from skanomaly.datasets import load_elpv
from skanomaly.features import onednn_supports

PRECISIONS = ("float32", "bfloat16")
IMAGE_SCORES = ("pooled", "pooled+patches")
# Fitted in the first precision, scored in the second.
PAIRS = (("float32", "float32"), ("bfloat16", "bfloat16"), ("float32", "bfloat16"))


def bfloat16_flags():
    """The bfloat16 flags of this CPU, as /proc/cpuinfo names them."""
    found = sorted(flag for flag in (cpuinfo("flags") or "").split() if "bf16" in flag)
    return ", ".join(found) or "none"


def throughput(n_images, batch_sizes, repeats):
    """Rows of images/s in each precision and their ratio."""
    cells = load_elpv(cell_type="mono", resize=224, max_samples=2 * n_images).X
    cells, others = cells[:n_images], cells[n_images:]
    network = bare_network()
    x = network.preprocess(torch.from_numpy(cells / 255.0).float().permute(0, 3, 1, 2))
    x = x.contiguous(memory_format=torch.channels_last)

    rows = []
    for batch_size in batch_sizes:
        timed = {}
        for precision in PRECISIONS:
            dtype = None if precision == "float32" else getattr(torch, precision)
            timed[("bare forward", precision)] = partial(
                bare_forward, network, x, batch_size, dtype
            )
            for image_score in IMAGE_SCORES:
                detector = EfficientNetGaussianDetector(
                    batch_size=batch_size, precision=precision, image_score=image_score
                )
                detector.fit(cells if image_score == "pooled" else others)
                timed[(f"score_samples, {image_score}", precision)] = partial(
                    detector.score_samples, cells
                )
        seconds = interleaved_median_times(timed, repeats)
        for what in dict.fromkeys(name for name, _ in timed):
            rate = {p: n_images / seconds[(what, p)] for p in PRECISIONS}
            bare = {p: n_images / seconds[("bare forward", p)] for p in PRECISIONS}
            rows.append(
                [
                    what,
                    batch_size,
                    *(f"{rate[p]:.0f}" for p in PRECISIONS),
                    f"{rate['bfloat16'] / rate['float32']:.2f}",
                    *(f"{rate[p] / bare[p]:.2f}" for p in PRECISIONS),
                ]
            )
    header = ["what", "batch size", "float32 img/s", "bfloat16 img/s", "bfloat16 / float32"]
    header += [f"{p}: ratio to bare forward" for p in PRECISIONS]
    return markdown_table(header, rows)


def bare_rates(batch_sizes, repeats, images=16):
    """``{batch size: {precision: images/s}}`` of the bare forward pass under
    each autocast dtype (float16 too), on random pixels."""
    network = bare_network()
    x = torch.rand(images, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    return {
        batch_size: {
            precision: images
            / median_time(partial(bare_forward, network, x, batch_size, dtype), repeats)
            for precision, dtype in (
                ("float32", None),
                ("bfloat16", torch.bfloat16),
                ("float16", torch.float16),
            )
        }
        for batch_size in batch_sizes
    }


def capped(batch_sizes, repeats):
    """Rows of the bare forward pass with oneDNN capped at each instruction
    set (one child process each: oneDNN reads the cap once)."""
    rows = []
    for isa in ("ALL", "AVX512_CORE", "AVX2"):
        command = [sys.executable, __file__, "--bare-only", "--repeats", str(repeats)]
        command += ["--batch-sizes", *map(str, batch_sizes)]
        env = {**os.environ, "ONEDNN_MAX_CPU_ISA": isa}
        child = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        found = json.loads(child.stdout.splitlines()[-1])
        for batch_size, rate in found["rates"].items():
            rows.append(
                [
                    "none (this CPU)" if isa == "ALL" else isa,
                    found["bfloat16"],
                    found["float16"],
                    batch_size,
                    *(f"{rate[p]:.0f}" for p in (*PRECISIONS, "float16")),
                ]
            )
    header = ["oneDNN capped at", "bfloat16 kernels", "float16 kernels", "batch size"]
    header += [f"{p} img/s" for p in (*PRECISIONS, "float16")]
    return markdown_table(header, rows)


def accuracy(seeds, log=print):
    """Rows per data set and image score, means over seeds, for each (fit,
    score) precision pair: image AUROC, the share of normal test images
    flagged (below ``offset_``, contamination 0.05), and the Spearman
    correlation of the test scores with float32's."""
    pools = load_pools(seeds, seeds)
    rows = []
    for name, data in pools.items():
        start = time.perf_counter()
        for image_score in IMAGE_SCORES:
            found = {pair: {"auroc": [], "flagged": [], "rho": []} for pair in PAIRS}
            for train, test in data.splits.values():
                fitted = {
                    p: EfficientNetGaussianDetector(image_score=image_score, precision=p).fit(
                        data.images(train)
                    )
                    for p in PRECISIONS
                }
                normal = data.y[test] == 1
                scores = {}
                for fit, score in PAIRS:
                    detector = fitted[fit].set_params(precision=score)
                    with warnings.catch_warnings():
                        # The detector warns of the very shift measured here.
                        warnings.filterwarnings("ignore", "This detector was fitted with")
                        scores[fit, score] = detector.score_samples(data.images(test))
                    value = scores[fit, score]
                    found[fit, score]["auroc"].append(roc_auc_score(normal, value))
                    found[fit, score]["flagged"].append(np.mean(value[normal] < detector.offset_))
                    found[fit, score]["rho"].append(spearmanr(scores[PAIRS[0]], value).statistic)
            mean = {pair: {k: np.mean(v) for k, v in f.items()} for pair, f in found.items()}
            rows.append(
                [
                    name,
                    image_score,
                    *(f"{mean[pair]['auroc']:.3f}" for pair in PAIRS),
                    *(f"{mean[pair]['flagged']:.3f}" for pair in PAIRS),
                    *(f"{mean[pair]['rho']:.4f}" for pair in PAIRS[1:]),
                ]
            )
        log(f"  {name}: {time.perf_counter() - start:.0f} s")
    names = [f"{fit} / {score}" for fit, score in PAIRS]
    header = ["data set", "image score"]
    header += [f"AUROC, {n}" for n in names] + [f"flagged, {n}" for n in names]
    header += [f"Spearman with float32, {n}" for n in names[1:]]
    return markdown_table(header, rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "precision.md"))
    parser.add_argument("--bare-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.bare_only:  # a child of capped()
        kernels = {p: onednn_supports(getattr(torch, p)) for p in ("bfloat16", "float16")}
        rates = bare_rates(args.batch_sizes, args.repeats)
        print(json.dumps({"rates": rates, **{p: "yes" if k else "no" for p, k in kernels.items()}}))
        return
    started = time.perf_counter()
    speed = throughput(args.n_images, args.batch_sizes, args.repeats)
    # Batches of 8 run fastest in float32 here; the fallback kernels take
    # seconds per image, so larger batches would add minutes for nothing.
    without = capped((1, 8), args.repeats)
    scores = accuracy(args.seeds)
    publish(
        "## float32 and bfloat16 on a CPU\n\n"
        f"`python benchmarks/bench_precision.py`, {(time.perf_counter() - started) / 60:.1f} "
        "min. Protocol: the module docstring of benchmarks/bench_precision.py. "
        f"bfloat16 flags of this CPU: {bfloat16_flags()}.\n\n"
        f"### Throughput, tf_efficientnet_lite0 at 224x224 px, {args.n_images} ELPV cells\n\n"
        f"Median of {args.repeats} repeats after a warm-up; each repeat times every row in "
        f"turn, after a 0.5 s pause.\n\n{speed}\n\n"
        "### The bare forward pass where oneDNN lacks the instructions\n\n"
        f"Median of {args.repeats} repeats after a warm-up, 16 random images.\n\n{without}\n\n"
        f"### Image scores, mean of seeds {', '.join(map(str, args.seeds))}\n\n"
        "Columns name the precision of the fit, then that of the scoring.\n\n"
        f"{scores}\n\n"
        f"{environment()}\n",
        args.out,
    )


if __name__ == "__main__":
    main()
