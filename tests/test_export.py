"""ONNX export: one graph from uint8 images to the scores (and maps) of the
library, checked on real solar cells in onnxruntime, without torch and
skanomaly, and in OpenVINO."""

import contextlib
import copy
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.exceptions import NotFittedError

from skanomaly import EfficientNetGaussianDetector, load, save
from skanomaly.cli import main
from skanomaly.export import interpolation_matrix, read_onnx_metadata

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

DOCS = Path(__file__).resolve().parents[1] / "docs" / "deployment.rst"


def _resized(images, size):
    """Real cells at another size (width, height), as PIL resizes them."""
    return np.stack([np.asarray(Image.fromarray(im).resize(size, Image.BICUBIC)) for im in images])


def _run(path, images):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images})


def _spatial_maps(fitted, images):
    """What the graph's second output reproduces: the ``"spatial"`` map
    (the default ``"descent"`` needs gradients, which a graph for
    inference does not run)."""
    fitted.set_params(explain_method="spatial")
    try:
        return fitted.explain(images)
    finally:
        fitted.set_params(explain_method="descent")


def _relative(a, b):
    """The largest error relative to the largest magnitude: the default
    fused scores are standardised and cross zero."""
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def exported(fitted, tmp_path_factory):
    """The session's fitted detector, exported with maps."""
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    fitted.export_onnx(path, maps=True)
    return path


@pytest.fixture(scope="module")
def checked(cells):
    """8 held-out normal and 8 defective cells (64 x 64 RGB)."""
    normal, defective = cells
    return np.concatenate([normal[16:], defective])


# ------------------------------------------------------------------ the resize
_LENGTHS = [(64, 224), (224, 224), (300, 224), (97, 224), (28, 224), (224, 150), (224, 64)]
_MODES = [("bicubic", True), ("bilinear", True), ("bilinear", False)]


@pytest.mark.parametrize(("n_in", "n_out"), _LENGTHS)
@pytest.mark.parametrize(("mode", "antialias"), _MODES)
def test_interpolation_matrix_is_torch_interpolate(n_in, n_out, mode, antialias):
    # torch's own interpolate of an identity matrix gives its weights.
    eye = torch.eye(n_in)[None, None]
    expected = F.interpolate(
        eye, size=(n_in, n_out), mode=mode, align_corners=False, antialias=antialias
    )[0, 0].T
    # torch's plain bilinear source coordinate can be one float32 step away
    # (FMA): near pixel 256 that moves a weight by 1.5e-5.
    atol = 2e-6 if antialias else 3e-5
    matrix = interpolation_matrix(n_in, n_out, mode, antialias)
    np.testing.assert_allclose(matrix, expected, atol=atol)


def test_interpolation_matrix_modes():
    with pytest.raises(ValueError, match="antialiased bicubic"):
        interpolation_matrix(4, 2, "bicubic")
    with pytest.raises(ValueError, match="mode='nearest'"):
        interpolation_matrix(4, 2, "nearest", antialias=True)


# --------------------------------------------------------------------- parity
def test_scores_and_maps_equal_the_library(fitted, exported, checked):
    scores, maps = _run(exported, checked)
    expected = fitted.score_samples(checked)
    assert scores.dtype == np.float32 and scores.shape == (16,)
    assert _relative(scores, expected) < 1e-4
    # The defective cells still rank below the normal ones, as in Python.
    assert np.argsort(scores).tolist() == np.argsort(expected).tolist()
    expected_maps = _spatial_maps(fitted, checked)
    assert maps.shape == expected_maps.shape == (16, 64, 64)
    assert np.max(np.abs(maps - expected_maps)) < 1e-4 * np.max(expected_maps)


def test_any_batch_and_image_size(fitted, exported, elpv_mono):
    # Sizes below, at and above the network's 224 px, in batches of 2 and 1;
    # at 224 the library does not resize, and neither does the graph.
    cells = elpv_mono.X[elpv_mono.y == -1][:2]
    for images in (_resized(cells, (150, 97)), _resized(cells[:1], (224, 224)), cells[1:]):
        scores, maps = _run(exported, images)
        assert _relative(scores, fitted.score_samples(images)) < 1e-4
        expected_maps = _spatial_maps(fitted, images)
        assert maps.shape == images.shape[:3]
        assert np.max(np.abs(maps - expected_maps)) < 1e-4 * np.max(expected_maps)


def test_openvino_reads_the_same_file(fitted, exported, checked):
    ov = pytest.importorskip("openvino")
    compiled = ov.Core().compile_model(str(exported), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled([checked])
    scores, maps = result[compiled.output("scores")], result[compiled.output("maps")]
    assert _relative(scores, fitted.score_samples(checked)) < 1e-4
    onnxruntime_scores, onnxruntime_maps = _run(exported, checked)
    assert _relative(scores, onnxruntime_scores) < 1e-5
    np.testing.assert_allclose(maps, onnxruntime_maps, rtol=1e-4, atol=1e-4 * maps.max())


def test_the_graph_is_standard_onnx(exported):
    model = onnx.load(str(exported))
    onnx.checker.check_model(model, full_check=True)
    ops = {node.op_type for node in model.graph.node}
    # The resize is matrix products and the distances plain products.
    assert "Resize" not in ops and "Einsum" not in ops
    assert {o.domain or "ai.onnx" for o in model.opset_import} == {"ai.onnx"}
    assert [o.name for o in model.graph.output] == ["scores", "maps"]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8


# ------------------------------------------------ deployment without skanomaly
_BLOCKER = """
import importlib.abc, sys

class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {"torch", "torchvision", "timm", "skanomaly", "sklearn"}:
            raise ImportError(f"{name} is not installed here")
        return None

sys.meta_path.insert(0, _Blocked())
"""

_REPORT = """
assert not {m.partition(".")[0] for m in sys.modules} & {"torch", "skanomaly"}
np.savez("out.npz", scores=scores, labels=labels, p_values=p_values)
"""


def _documented_example():
    """The onnxruntime example of docs/deployment.rst, as the docs show it."""
    text = DOCS.read_text(encoding="utf-8")
    block = text.split(".. test: this block runs in tests/test_export.py")[1]
    block = block.split(".. code-block:: python\n\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("   "):
            break
        lines.append(line[3:])
    return "\n".join(lines)


def test_documented_example_runs_without_torch_or_skanomaly(fitted, cells, tmp_path):
    normal, defective = cells
    # The scored cell is not among the calibration cells: the score of one
    # of them ties its own calibration score, and rounding breaks the tie
    # either way.
    detector = copy.deepcopy(fitted).calibrate(normal[17:], fpr=0.2)
    detector.export_onnx(tmp_path / "model.onnx")
    images = np.stack([normal[16], defective[0]])
    for path, image in zip(["cell_a.png", "cell_b.png"], images):
        Image.fromarray(image).save(tmp_path / path)
    script = _BLOCKER + _documented_example() + _REPORT
    # -I: no PYTHONPATH, user site or script folder, so not this checkout.
    done = subprocess.run(
        [sys.executable, "-I", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "out.npz") as out:
        assert _relative(out["scores"], detector.score_samples(images)) < 1e-4
        np.testing.assert_array_equal(out["labels"], detector.predict(images))
        np.testing.assert_array_equal(out["p_values"], detector.p_values(images))


def test_metadata_carries_the_threshold(fitted, exported, cells, tmp_path):
    meta = read_onnx_metadata(exported)
    assert meta["offset"] == fitted.offset_
    assert meta["calibration_scores"] is None
    assert meta["outputs"] == ["scores", "maps"]
    assert meta["level_names"] == fitted.level_names_
    assert meta["image_size"] is None and meta["input_size"] == [224, 224]
    # A calibrated threshold replaces it, with its scores.
    detector = copy.deepcopy(fitted).calibrate(cells[0][16:], fpr=0.2)
    detector.export_onnx(tmp_path / "calibrated.onnx")
    meta = read_onnx_metadata(tmp_path / "calibrated.onnx")
    assert meta["offset"] == detector.offset_ != fitted.offset_
    np.testing.assert_array_equal(meta["calibration_scores"], detector.calibration_scores_)
    assert meta["outputs"] == ["scores"]


# -------------------------------------------------------------- fixed sizes
def test_keep_aspect_exports_for_one_image_size(cells, elpv_mono, tmp_path):
    detector = EfficientNetGaussianDetector(keep_aspect=True).fit(cells[0][:16])
    with pytest.raises(ValueError, match=r"keep_aspect=True.*image_size=\(height, width\)"):
        detector.export_onnx(tmp_path / "any.onnx")
    assert not (tmp_path / "any.onnx").exists()
    images = _resized(elpv_mono.X[elpv_mono.y == -1][:2], (96, 64))  # 64 x 96, 2:3
    detector.export_onnx(tmp_path / "wide.onnx", image_size=(64, 96))
    (scores,) = _run(tmp_path / "wide.onnx", images)
    assert _relative(scores, detector.score_samples(images)) < 1e-4
    assert read_onnx_metadata(tmp_path / "wide.onnx")["input_size"] == [184, 272]
    with pytest.raises(Exception, match="dimensions"):
        _run(tmp_path / "wide.onnx", images[:, :, :64])


# ------------------------------------------------------------------ bad input
def test_unfitted_detector(tmp_path):
    with pytest.raises(NotFittedError):
        EfficientNetGaussianDetector().export_onnx(tmp_path / "model.onnx")
    assert not list(tmp_path.iterdir())


def test_output_in_a_missing_folder_or_a_folder(fitted, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"folder .*missing.* does not exist"):
        fitted.export_onnx(tmp_path / "missing" / "model.onnx")
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        fitted.export_onnx(tmp_path)


@pytest.mark.parametrize(
    "path, image_size, error, match",
    [
        (None, None, TypeError, "path of the ONNX file must be a str or path-like"),
        ("model.onnx", 5, TypeError, r"image_size must be a \(height, width\) pair"),
        ("model.onnx", (64, 64, 3), TypeError, r"image_size must be a \(height, width\) pair"),
        ("model.onnx", (32.7, 32), ValueError, "two positive ints"),
        ("model.onnx", ("a", "b"), ValueError, "two positive ints"),
        ("model.onnx", (0, 32), ValueError, "two positive ints"),
    ],
)
def test_bad_path_or_image_size(fitted, tmp_path, path, image_size, error, match):
    with pytest.raises(error, match=match):
        fitted.export_onnx(path and tmp_path / path, image_size=image_size)
    assert not list(tmp_path.iterdir())


def test_maps_need_the_spatial_gaussians(cells, tmp_path):
    detector = EfficientNetGaussianDetector(levels=(0, 1), explain_method="reference")
    detector.fit(cells[0][:4])
    with pytest.raises(ValueError, match="maps=True needs the spatial Gaussians"):
        detector.export_onnx(tmp_path / "model.onnx", maps=True)


def test_a_bfloat16_fit_warns_that_the_graph_runs_float32(cells, tmp_path):
    """The graph's float32 scores would not match an offset_ set on
    bfloat16 ones; a float32 fit exports quietly. The graph runs in float32
    whatever ``precision`` says now, so only the fit's precision counts:
    one warning, never the scoring's about the parameter."""
    normal = cells[0][:4]
    detector = EfficientNetGaussianDetector(levels=(0, 1), precision="bfloat16").fit(normal)
    for precision in ("bfloat16", "float32"):
        detector.set_params(precision=precision)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            detector.export_onnx(tmp_path / f"bfloat16-{precision}.onnx")
        assert [str(w.message)[:60] for w in caught] == [
            "This detector was fitted with its network in bfloat16, and t"
        ]
    detector.set_params(precision="float32").fit(normal)
    for precision in ("float32", "bfloat16"):
        detector.set_params(precision=precision)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            detector.export_onnx(tmp_path / f"f32-{precision}.onnx")
    assert len(list(tmp_path.glob("*.onnx"))) == 4


def test_unreadable_or_foreign_onnx_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_onnx_metadata(tmp_path / "missing.onnx")
    text = tmp_path / "notes.onnx"
    text.write_text("not a model\n")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(b"\x08\x07\x12\x05onnx\x3a\xff\xff\xff")
    for path in (text, truncated):
        with pytest.raises(ValueError, match="is not a readable ONNX file"):
            read_onnx_metadata(path)
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "foreign",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph), foreign)
    with pytest.raises(ValueError, match="skanomaly did not write"):
        read_onnx_metadata(foreign)


# ------------------------------------------------------------ command line
@pytest.fixture(scope="module")
def model_file(cells, tmp_path_factory):
    """A model file of shallow levels, with the other score rule: summed
    squared distances, which the graph must apply too."""
    detector = EfficientNetGaussianDetector(levels=(0, 1, 2, 3), distance="squared")
    detector.fit(cells[0][:8])
    path = tmp_path_factory.mktemp("cli-export") / "model.skanomaly"
    save(detector, path)
    return path


def test_cli_export(model_file, cells, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main(["export", str(model_file), str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "offset" in printed
    detector = load(model_file)
    (scores,) = _run(out, cells[1])
    assert _relative(scores, detector.score_samples(cells[1])) < 1e-4
    assert read_onnx_metadata(out)["offset"] == detector.offset_


def _one_error_line(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("skanomaly: error: "), err
    return lines[0]


def test_cli_export_errors(model_file, exported, tmp_path, capsys):
    assert main(["export", str(model_file), str(tmp_path / "no" / "model.onnx")]) == 2
    assert re.search(r"folder .*no.* does not exist", _one_error_line(capsys))
    assert main(["export", str(exported), str(tmp_path / "again.onnx")]) == 2
    assert "is an ONNX file" in _one_error_line(capsys)
    assert main(["export", str(tmp_path / "absent.skanomaly"), str(tmp_path / "m.onnx")]) == 2
    assert "does not exist" in _one_error_line(capsys)
    assert not (tmp_path / "m.onnx").exists()


def test_cli_help_mentions_the_metadata(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    assert "offset" in capsys.readouterr().out


def test_an_interrupted_export_keeps_the_previous_file(model_file, tmp_path, monkeypatch):
    import skanomaly.export

    target = tmp_path / "model.onnx"
    target.write_bytes(b"the previous file")
    atomic_write = skanomaly.export.atomic_write

    @contextlib.contextmanager
    def interrupted(path):
        # Half of the file is written, then Ctrl-C.
        with atomic_write(path) as handle:

            class Half:
                def write(self, data):
                    handle.write(data[: len(data) // 2])
                    raise KeyboardInterrupt

            yield Half()

    monkeypatch.setattr(skanomaly.export, "atomic_write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load(model_file).export_onnx(target)
    assert target.read_bytes() == b"the previous file"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


@pytest.mark.parametrize(
    ("image_score", "neighborhood", "score_coreset"),
    [("pooled+patches", 3, 1.0), ("patches", 3, 1.0), ("pooled+patches", (1, 3), 0.1)],
)
def test_patch_scores_equal_the_library(
    cells, checked, image_score, neighborhood, score_coreset, tmp_path
):
    normal, _ = cells
    detector = EfficientNetGaussianDetector(
        image_score=image_score,
        patch_neighborhood=neighborhood,
        explain_method="spatial",
        score_coreset=score_coreset,
    ).fit(normal[:8])
    # 8 cells of 784 patches: the graph compares them in 4 chunks of rows,
    # or the first 1,638 of them in one.
    assert len(detector.patches_) == 6272
    assert detector.n_score_patches_ == (6272 if score_coreset == 1 else 1638)
    path = tmp_path / "patches.onnx"
    detector.export_onnx(path)
    (scores,) = _run(path, checked)
    expected = detector.score_samples(checked)
    # The fused scores are standardised and cross zero: their error is
    # measured against their largest magnitude, not each score's own.
    assert np.max(np.abs(scores - expected)) < 1e-4 * np.max(np.abs(expected))
    assert read_onnx_metadata(path)["image_score"] == image_score
    with contextlib.suppress(ImportError):
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        openvino_scores = compiled([checked])[compiled.output("scores")]
        assert np.max(np.abs(openvino_scores - expected)) < 1e-4 * np.max(np.abs(expected))
