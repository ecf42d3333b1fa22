"""Speed and agreement of the exported ONNX graphs next to the library.

Fits detectors on real solar cells (ELPV mono, at their own 300x300 px, so
that every runtime also resizes them), exports each with
``export_onnx`` and times, on other cells, the library's ``score_samples``
(and ``explain``, for the graph with maps), onnxruntime and, where installed,
OpenVINO in float32: in batches and one image per call, as an inspection
line calls them. Each row also gives the largest score difference from the
library, relative to the largest score's magnitude (fused scores are
standardised and cross zero, so a per-score relative error means nothing),
and the file's size (the patch memory is a constant of the graph).

    python benchmarks/bench_export.py [--repeats 5]
"""

import argparse
import shlex
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
from _common import environment, in_calls, interleaved_median_times, markdown_table, publish

from skanomaly import EfficientNetGaussianDetector
from skanomaly.datasets import load_elpv

# What is exported: (name, detector parameters, maps=).
MODELS = (
    ("default (the worst patch in a tenth of the memory)", {}, False),
    ("default, maps=True", {"explain_method": "spatial"}, True),
    ("image_score='pooled'", {"image_score": "pooled"}, False),
    ("score_coreset=1.0 (the whole memory)", {"score_coreset": 1.0}, False),
)


def runtimes(path, maps):
    """``{name: (version, run)}`` for the installed runtimes: ``run({"images":
    images})`` returns ``[scores]``, or ``[scores, maps]`` with ``maps``."""
    import onnxruntime as ort

    found = {}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = ["scores", "maps"] if maps else ["scores"]
    found["onnxruntime"] = (ort.__version__, partial(session.run, outputs))
    try:
        import openvino as ov
    except ImportError:
        return found
    # float32: OpenVINO runs bfloat16 by default where the processor has it
    # (see the Deployment page), which these distances do not survive.
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    names = [compiled.output(o) for o in outputs]

    def run_openvino(feeds):
        result = compiled([feeds["images"]])
        return [result[name] for name in names]

    found["OpenVINO f32"] = (ov.__version__, run_openvino)
    return found


def scores_and_maps(detector, images):
    """What the graph with maps returns, from the library: two calls."""
    return detector.score_samples(images), detector.explain(images)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--n-fit", type=int, default=32)
    parser.add_argument("--n-images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "export.md"))
    args = parser.parse_args()

    cells = load_elpv(cell_type="mono", max_samples=args.n_fit + args.n_images).X
    fit_cells, cells = cells[: args.n_fit], cells[args.n_fit :]
    n, b = len(cells), args.batch_size
    rows, versions = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for name, params, maps in MODELS:
            detector = EfficientNetGaussianDetector(args.backbone, batch_size=b, **params).fit(
                fit_cells
            )
            path = Path(folder) / "model.onnx"
            detector.export_onnx(path, maps=maps)
            size_mb = path.stat().st_size / 2**20
            library = partial(scores_and_maps, detector) if maps else detector.score_samples
            timed = {
                ("library", b): partial(library, cells),
                ("library", 1): partial(in_calls, library, cells, 1),
            }
            expected = detector.score_samples(cells)
            errors = {}
            for runtime, (version, run) in runtimes(path, maps).items():
                versions[runtime] = version

                def call(images, run=run):
                    return run({"images": images})

                timed[(runtime, b)] = partial(in_calls, call, cells, b)
                timed[(runtime, 1)] = partial(in_calls, call, cells, 1)
                scores = np.concatenate([out[0] for out in in_calls(call, cells, b)])
                errors[runtime] = np.abs(scores - expected).max() / np.abs(expected).max()
            seconds = interleaved_median_times(timed, args.repeats)
            for (runtime, batch), value in seconds.items():
                rows.append(
                    [
                        name,
                        runtime,
                        batch,
                        f"{1000 * value / n:.1f}",
                        f"{seconds[('library', batch)] / value:.2f}",
                        f"{errors[runtime]:.1e}" if runtime in errors else "—",
                        f"{size_mb:.1f}",
                    ]
                )

    header = [
        "model",
        "runs in",
        "images per call",
        "ms/image",
        "speed vs library",
        "max score error (rel.)",
        "file MiB",
    ]
    runtime_versions = ", ".join(f"{k} {v}" for k, v in versions.items())
    text = (
        f"### Exported graphs, {args.backbone}, {n} ELPV mono cells at 300x300 px\n\n"
        f"`python benchmarks/bench_export.py {shlex.join(sys.argv[1:])}`. "
        f"Fitted on {args.n_fit} other cells. Median of {args.repeats} repeats after a "
        "warm-up; each repeat times every row of a model in turn, after a 0.5 s pause. "
        "Models were timed one after the other: compare rows of one model; across "
        "models, differences of a fifth were seen between runs. The library row is "
        "`score_samples` (and `explain` with the spatial maps, for the graph with maps, "
        "which returns both); speed vs library > 1: the runtime is faster. Runtimes: "
        f"{runtime_versions}.\n\n{markdown_table(header, rows)}\n\n{environment()}\n"
    )
    publish(text, args.out)


if __name__ == "__main__":
    main()
