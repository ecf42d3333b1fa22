"""ONNX export: one graph from uint8 images to scores (and spatial maps).

:func:`export_onnx` writes the graph of a fitted detector from its explicit
parts (the network, the levels and their Gaussians, the score rule and the
settings of the maps); it never sees the estimator.
:meth:`EfficientNetGaussianDetector.export_onnx
<skanomaly.EfficientNetGaussianDetector.export_onnx>` passes them.

The graph, :class:`ScoringGraph`, is the scoring path of the library, traced:

- input ``images``, uint8 ``(n, H, W, 3)``, as :meth:`score_samples` takes
  them: the same conversion to [0, 1] (:class:`~skanomaly._images.ImageSource`);
- the resize of :meth:`EfficientNetLevels.preprocess
  <skanomaly.backbone.EfficientNetLevels.preprocess>` (antialiased bicubic)
  as two matrix products, ``rows @ x @ columns.T``, whose weights the graph
  computes from ``H`` and ``W`` (:func:`interpolation_matrix`): ONNX
  ``Resize`` has antialiasing only since opset 18 and runtimes differ in its
  cubic coefficient and border handling, while a matrix product means the
  same everywhere, and for an image already at the input size the matrices
  are the identity, as torch skips the resize;
- the network, then the pooled features, :meth:`Gaussian.distances
  <skanomaly.gaussian.Gaussian.distances>` and
  :func:`~skanomaly.gaussian.combine_levels`: the library's own functions,
  traced with the fitted statistics as float32 constants;
- with ``image_score`` ``"pooled+patches"`` or ``"patches"``, the worst
  patch: :func:`~skanomaly.features.patch_features` and, against the whole
  patch memory (a constant of the graph), every patch's nearest distance,
  by products with chunks of the memory; the library prunes that search,
  which a graph cannot, for the same distances;
- optionally the ``"spatial"`` map of
  :class:`~skanomaly.localization.Explainer`, blurred and resized to the
  image size as :meth:`explain` does.

The fitted threshold travels in the file's ``metadata_props`` (see
:func:`read_onnx_metadata` and the Deployment page of the documentation).
"""

import copy
import io
import json
import math
import numbers
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ._files import atomic_write, check_writable
from ._patch_score import fused_scores, score_columns, score_neighborhood
from ._version import __version__
from .features import patch_features, pool
from .gaussian import combine_levels
from .localization import gaussian_blur, spatial_distance_maps
from .patches import exact_distances

__all__ = [
    "ONNX_OPSET",
    "PatchScore",
    "ScoringGraph",
    "export_onnx",
    "interpolation_matrix",
    "read_onnx_metadata",
]

#: The ONNX opset of exported graphs: every op they use is older, and
#: onnxruntime, OpenVINO and TensorRT all read it.
ONNX_OPSET = 17

# The key of metadata_props that marks a graph written by skanomaly.
_MARK = "skanomaly_version"
_INSTALL_HINT = "pip install 'skanomaly[onnx]'"

# Rows of the patch memory per product in the graph: the products of one
# image's 784 patches (Lite0, 224 px) with them take 6 MB, not the 51 MB of
# a whole memory of 16,384 rows.
_MEMORY_CHUNK = 2048

# torch's antialiased bicubic (and Pillow's) uses this cubic coefficient;
# its plain bicubic uses -0.75.
_CUBIC_A = -0.5


def _cubic(x):
    """The cubic convolution kernel of coefficient ``_CUBIC_A`` at ``x >= 0``."""
    a = _CUBIC_A
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def _triangle(x):
    """The linear interpolation kernel at ``x >= 0``."""
    return (1 - x).clamp(min=0.0)


def interpolation_matrix(n_in, n_out, mode, antialias=False):
    """The ``(n_out, n_in)`` matrix that resizes an axis as ``F.interpolate``.

    ``matrix @ x`` resizes the rows of ``x`` like
    :func:`torch.nn.functional.interpolate` with ``align_corners=False``:
    antialiased bicubic or bilinear as in
    :meth:`~skanomaly.backbone.EfficientNetLevels.preprocess`, or the plain
    bilinear of :meth:`~skanomaly.EfficientNetGaussianDetector.explain`.
    Every weight is computed densely from tensor operations, so in a traced
    graph the matrix follows a size given as a tensor.

    Parameters
    ----------
    n_in, n_out : int or 0-d integer tensor
        The input and output lengths.
    mode : {"bicubic", "bilinear"}
    antialias : bool, default=False
        Antialiased (required for bicubic): when downscaling, the kernel is
        stretched over the input pixels that an output pixel covers.

    Returns
    -------
    torch.Tensor of shape (n_out, n_in), float32
    """
    if mode not in ("bicubic", "bilinear") or (mode == "bicubic" and not antialias):
        raise ValueError(
            f"interpolation_matrix has antialiased bicubic and bilinear, and plain "
            f"bilinear; got mode={mode!r}, antialias={antialias!r}."
        )
    n_in = n_in if torch.is_tensor(n_in) else torch.as_tensor(n_in)
    n_out = n_out if torch.is_tensor(n_out) else torch.as_tensor(n_out)
    source = torch.arange(n_in).to(torch.float32)
    target = torch.arange(n_out).to(torch.float32)
    scale = n_in.to(torch.float32) / n_out.to(torch.float32)
    if not antialias:
        # torch clamps the source coordinate to the first and last pixel.
        position = (scale * (target + 0.5) - 0.5).clamp(min=0.0)
        position = torch.minimum(position, n_in.to(torch.float32) - 1)
        return _triangle((source[None] - position[:, None]).abs())
    # As torch (and Pillow): the kernel is stretched by the scale when
    # downscaling, and each row's weights are renormalized where the kernel
    # leaves the image.
    kernel = _cubic if mode == "bicubic" else _triangle
    stretch = scale.clamp(min=1.0)
    center = scale * (target + 0.5)
    weights = kernel(((source[None] - center[:, None] + 0.5) / stretch).abs())
    return weights / weights.sum(dim=1, keepdim=True)


def _resize(x, size, mode, antialias=False):
    """``(..., h, w)`` resized to ``size`` by two matrix products."""
    shape = torch.onnx.operators.shape_as_tensor(x)
    rows = interpolation_matrix(shape[-2], size[0], mode, antialias)
    columns = interpolation_matrix(shape[-1], size[1], mode, antialias)
    return rows @ x @ columns.T


class ScoringGraph(nn.Module):
    """Scores (and spatial maps) of uint8 images, for export.

    Parameters
    ----------
    network : EfficientNetLevels
        The feature maps and preprocessing; it is used as it is (pass a
        float32 copy on the CPU).
    pooled : (tuple of int, list of Gaussian)
        The modelled levels and their Gaussians.
    score_rule : ScoreRule
        The detector's :class:`~skanomaly.gaussian.ScoreRule`: its pooling
        and :func:`~skanomaly.gaussian.combine_levels`' rule; its per-level
        statistics become float32 constants of the graph.
    spatial : (tuple of int, list of Gaussian) or None
        The spatial levels and their Gaussians, for a second output with
        the ``"spatial"`` maps; None for scores only.
    smoothing : float
        Sigma of the maps' blur, in pixels of a 224-pixel input.
    input_size : (int, int)
        The network input every image is resized to.
    patches : PatchScore or None
        The worst patch's part of the score; None for the pooled score.
    """

    def __init__(
        self,
        network,
        pooled,
        score_rule,
        spatial=None,
        smoothing=0.0,
        input_size=(224, 224),
        patches=None,
    ):
        super().__init__()
        self.network = network
        self.levels, self.gaussians = tuple(pooled[0]), list(pooled[1])
        self.score_rule = score_rule
        self.spatial_levels, self.spatial_gaussians = spatial or ((), [])
        self.smoothing = float(smoothing)
        self.input_size = tuple(input_size)
        self.patches = patches

    def forward(self, images):
        shape = torch.onnx.operators.shape_as_tensor(images)
        # As ImageSource: uint8 to float32 in [0, 1], channels first.
        x = images.to(torch.float32).permute(0, 3, 1, 2) * (1.0 / 255.0)
        # As EfficientNetLevels.preprocess (antialiased, from timm's config).
        x = _resize(x, self.input_size, self.network.interpolation, antialias=True)
        x = (x - self.network.mean) / self.network.std
        patch_levels = self.patches.levels if self.patches else ()
        # The worst patch alone needs no pooled level, nor the stages past its own.
        levels = () if self.patches and self.patches.center is None else self.levels
        wanted = tuple(sorted(set(levels) | set(self.spatial_levels) | set(patch_levels)))
        maps = dict(zip(wanted, self.network(x, wanted)))
        scores = self._scores(maps)
        if not self.spatial_levels:
            return scores
        return scores, self._spatial_maps(maps, shape[1:3])

    def _scores(self, maps):
        """As BaseFeatureGaussianDetector._scores: float32 pooling, the
        Gaussians' distances and the score rule, here in float32, and the
        worst patch's part."""
        worst = self.patches.worst(maps) if self.patches else None
        if self.patches and self.patches.center is None:
            return -worst
        pooled = [pool(maps[level], self.score_rule.pooling) for level in self.levels]
        distances = torch.stack([g.distances(p) for g, p in zip(self.gaussians, pooled)], dim=-1)
        distances = combine_levels(distances, self.score_rule)
        if worst is None:
            return -distances
        return fused_scores(distances, worst, self.patches.center, self.patches.scale)

    def _spatial_maps(self, maps, image_size):
        """The ``"spatial"`` maps of :class:`~skanomaly.localization.Explainer`
        at the image size: the level maps upsampled and summed at the input
        size, blurred, resized bilinearly."""
        levels = spatial_distance_maps(
            [maps[level] for level in self.spatial_levels], self.spatial_gaussians
        )
        total = sum(_resize(m, self.input_size, "bilinear") for m in levels)
        total = torch.where(torch.isfinite(total), total, torch.zeros_like(total))
        side = math.sqrt(self.input_size[0] * self.input_size[1])
        total = gaussian_blur(total, self.smoothing * side / 224.0)
        return _resize(total, image_size, "bilinear")


class PatchScore:
    """The worst patch's part of an exported score.

    Parameters
    ----------
    levels : tuple of int
        The patch levels (``patch_levels_``).
    memory : array-like of shape (m, c)
        The normal patches (``patches_``).
    neighborhood : int or tuple of int
        Locations averaged into each patch feature, or the sizes whose
        features are put side by side (``patch_neighborhood_``); the score
        compares the features of the widest size, as the detector does.
    center, scale : (float, float) or None
        The standardisation of the fused score (``score_center_``,
        ``score_scale_``); None for the worst patch alone.
    """

    def __init__(self, levels, memory, neighborhood, center=None, scale=None):
        self.levels = tuple(levels)
        neighborhood = (
            tuple(map(int, neighborhood)) if isinstance(neighborhood, tuple) else int(neighborhood)
        )
        self.neighborhood = score_neighborhood(neighborhood)
        memory = score_columns(np.asarray(memory, dtype=np.float32), neighborhood)
        self.memory = torch.as_tensor(memory)
        self.norms = self.memory.square().sum(1)
        self.center = None if center is None else tuple(float(v) for v in center)
        self.scale = None if scale is None else tuple(float(v) for v in scale)

    def worst(self, maps):
        """``(n,)`` largest nearest-patch distance of each image of ``maps``.

        As :func:`~skanomaly.patches.nearest_patches`, the products give
        ``|m|^2 - 2 q.m``, whose smallest marks each patch's nearest row, and
        the distance to that row comes from their difference; but the
        memory, not the queries, is cut into chunks: its length is fixed at
        export, the number of images is not.
        """
        grid = patch_features(
            [maps[level] for level in self.levels],
            self.neighborhood,
            upsample=lambda m, size: _resize(m, size, "bilinear"),
        )
        rows = grid.flatten(1, 2)
        nearest = index = None
        for start in range(0, len(self.memory), _MEMORY_CHUNK):
            chunk = slice(start, start + _MEMORY_CHUNK)
            brackets = self.norms[chunk] - 2 * rows @ self.memory[chunk].T
            found, where = brackets.min(-1)
            if nearest is None:
                nearest, index = found, where
            else:
                closer = found < nearest
                nearest = torch.where(closer, found, nearest)
                index = torch.where(closer, where + start, index)
        return exact_distances(rows, self.memory, index[..., None]).flatten(1).max(-1).values


def _import_onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(
            f"Writing and reading ONNX files needs the onnx package: {_INSTALL_HINT}."
        ) from exc
    return onnx


def _metadata_text(value):
    """A metadata value as the text ONNX holds: JSON, floats round-tripping."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    return value if isinstance(value, str) else json.dumps(value, allow_nan=False)


def export_onnx(
    path,
    network,
    pooled,
    *,
    score_rule,
    spatial=None,
    smoothing=0.0,
    image_size=None,
    metadata=None,
    patches=None,
):
    """Write the ONNX graph from uint8 images to scores (and maps).

    Parameters
    ----------
    path : str or path-like
        The ``.onnx`` file to write; written to a temporary file beside it
        and moved into place.
    network : EfficientNetLevels
        The fitted detector's network; a float32 copy on the CPU is traced,
        the network itself is left as it was.
    pooled : (tuple of int, list of Gaussian)
        The modelled levels and their Gaussians.
    score_rule : ScoreRule
        The detector's :class:`~skanomaly.gaussian.ScoreRule` (pooling,
        rule, per-level statistics, which become float32 constants).
    spatial : (tuple of int, list of Gaussian), default=None
        The spatial levels and their Gaussians: the graph gets a second
        output, ``maps``, the ``"spatial"`` maps at the image size.
    smoothing : float, default=0.0
        Sigma of the maps' blur, in pixels of a 224-pixel input.
    image_size : (int, int), default=None
        Export for images of this ``(H, W)`` only (other sizes are refused
        by the runtime). Needed when ``network.keep_aspect``; otherwise
        None accepts any size.
    metadata : dict of str, default=None
        Stored in the file's ``metadata_props``, as text (JSON for
        non-strings), next to skanomaly's own keys.
    patches : PatchScore, default=None
        The worst patch's part of the score (``image_score`` other than
        ``"pooled"``); its memory becomes a constant of the graph.

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        If ``path`` is in a folder that does not exist, or is a folder.
    TypeError
        If ``path`` is not a str or path-like, or ``image_size`` not a pair.
    ValueError
        For ``keep_aspect`` without ``image_size``, or ``image_size`` not
        two positive ints.
    ImportError
        Without the onnx package.
    """
    onnx = _import_onnx()
    path = check_writable(path, "the ONNX file")
    image_size = _checked_image_size(image_size)
    if network.keep_aspect and image_size is None:
        raise ValueError(
            "This detector resizes each image in its own aspect ratio (keep_aspect=True), "
            "to an input size that depends on the image size: export it for one image "
            "size with image_size=(height, width)."
        )
    if network.interpolation not in ("bicubic", "bilinear"):
        raise ValueError(
            f"This backbone's images are resized with {network.interpolation!r} "
            "interpolation, which the ONNX export does not reproduce (it has "
            "bicubic and bilinear)."
        )
    network = _cpu_float32_copy(network)
    input_size = network.target_size(*image_size) if image_size else network.input_size
    graph = ScoringGraph(
        network, pooled, score_rule, spatial, smoothing, input_size, patches
    ).eval()
    model = _traced(graph, onnx, image_size, input_size, maps=bool(spatial))
    outputs = [o.name for o in model.graph.output]
    model.producer_name = "skanomaly"
    model.producer_version = __version__
    model.doc_string = (
        "skanomaly anomaly detector. Input 'images': uint8 (n, H, W, 3) RGB. Output "
        "'scores': score_samples (higher is more normal; anomalous below 'offset' in "
        "metadata_props)."
    )
    if spatial:
        model.doc_string += " Output 'maps': (n, H, W) anomaly maps, higher is more anomalous."
    props = {
        _MARK: __version__,
        "input": "images: uint8 (n, H, W, 3) RGB",
        "outputs": json.dumps(outputs),
        "image_size": json.dumps(list(image_size) if image_size else None),
        "input_size": json.dumps(list(input_size)),
        **{key: _metadata_text(value) for key, value in (metadata or {}).items()},
    }
    onnx.helper.set_model_props(model, props)
    try:
        with atomic_write(path) as handle:
            handle.write(model.SerializeToString())
    except OSError as exc:
        raise OSError(f"cannot write the ONNX file {str(path)!r}: {exc.strerror or exc}") from exc


def _checked_image_size(image_size):
    """``image_size`` as two positive ints (or None), or an error naming it."""
    if image_size is None:
        return None
    size = tuple(image_size) if isinstance(image_size, (tuple, list, np.ndarray)) else None
    if size is None or len(size) != 2:
        raise TypeError(f"image_size must be a (height, width) pair; got {image_size!r}.")
    # Integral, not bool: int() would silently truncate 32.7 to 32.
    if not all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1 for s in size
    ):
        raise ValueError(
            f"image_size must be two positive ints (height, width); got {image_size!r}."
        )
    return tuple(int(s) for s in size)


def _traced(graph, onnx, image_size, input_size, maps):
    """The ONNX model of ``graph``, traced by torch's TorchScript exporter."""
    # Not the input size, so that nothing is traced for the one size where
    # the resize is the identity (nothing is, but a trace would not show it).
    example_size = image_size or (input_size[0] + 1, input_size[1] + 3)
    example = torch.zeros((2, *example_size, 3), dtype=torch.uint8)
    sizes = {0: "n"} if image_size else {0: "n", 1: "height", 2: "width"}
    outputs = ["scores", "maps"] if maps else ["scores"]
    axes = {"images": sizes, "scores": {0: "n"}, **({"maps": sizes} if maps else {})}
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The exporter warns that it is deprecated, and the tracer about every
        # size, shape and constant it records: here on purpose, and checked by
        # the parity tests (tests/test_export.py).
        warnings.simplefilter("ignore")
        # The TorchScript exporter (dynamo=False) needs no package beyond
        # torch; the dynamo exporter would need onnxscript.
        torch.onnx.export(
            graph,
            (example,),
            buffer,
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=["images"],
            output_names=outputs,
            dynamic_axes=axes,
            do_constant_folding=True,
        )
    model = onnx.load_from_string(buffer.getvalue())
    _quadratic_forms_as_products(model, onnx)
    onnx.checker.check_model(model)
    return model


def _quadratic_forms_as_products(model, onnx):
    """Replace the Einsum of :func:`~skanomaly.gaussian.mahalanobis` by
    MatMul, Mul and ReduceSum, in place.

    ``"...i,ij,...j->..."`` with several leading axes (the feature-map
    locations) breaks OpenVINO's Einsum decomposition, and TensorRT reads no
    ellipsis; ``sum((a @ P) * a, -1)`` is the same quadratic form in ops
    every runtime has. Other equations are left as they are.
    """
    helper = onnx.helper
    axes = "skanomaly_last_axis"
    nodes, rewritten = [], False
    for node in model.graph.node:
        equation = next((a.s for a in node.attribute if a.name == "equation"), b"")
        if node.op_type != "Einsum" or equation.replace(b" ", b"") != b"...i,ij,...j->...":
            nodes.append(node)
            continue
        left, precision, right = node.input
        product, weighted = f"{node.output[0]}_product", f"{node.output[0]}_weighted"
        nodes += [
            helper.make_node("MatMul", [left, precision], [product]),
            helper.make_node("Mul", [product, right], [weighted]),
            helper.make_node("ReduceSum", [weighted, axes], list(node.output), keepdims=0),
        ]
        rewritten = True
    if rewritten:
        model.graph.initializer.append(
            onnx.numpy_helper.from_array(np.array([-1], dtype=np.int64), axes)
        )
        del model.graph.node[:]
        model.graph.node.extend(nodes)


def _cpu_float32_copy(network):
    network = getattr(network, "_orig_mod", network)  # torch.compile's wrapper
    network = copy.deepcopy(network).to("cpu", torch.float32)
    return network.to(memory_format=torch.contiguous_format).eval()


def read_onnx_metadata(path):
    """The ``metadata_props`` of an ONNX file written by skanomaly.

    Parameters
    ----------
    path : str or path-like
        An ``.onnx`` file written by :func:`export_onnx`.

    Returns
    -------
    dict
        Every key, with JSON values decoded: ``offset`` (the threshold on
        ``scores``), ``calibration_scores`` (sorted, or None without
        :meth:`calibrate`), ``outputs``, ``level_names``, ...

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If it is not a readable ONNX file, or one that skanomaly did not write.
    """
    onnx = _import_onnx()
    path = Path(path)
    if not path.is_file():
        reason = "is a folder" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"ONNX file {str(path)!r} {reason}.")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "corrupt"
        raise ValueError(
            f"{str(path)!r} is not a readable ONNX file ({type(exc).__name__}: {reason})"
        ) from exc
    # Protobuf parses many byte strings, text files among them, into an
    # empty model: a file without a graph is not an ONNX model either.
    if not model.ir_version or not model.graph.node:
        raise ValueError(f"{str(path)!r} is not a readable ONNX file (no graph in it)")
    props = {p.key: p.value for p in model.metadata_props}
    if _MARK not in props:
        raise ValueError(
            f"{str(path)!r} is an ONNX file that skanomaly did not write (no "
            f"{_MARK!r} in its metadata); export one with detector.export_onnx(path) "
            "or 'skanomaly export MODEL OUT.onnx'."
        )
    decoded = {}
    for key, value in props.items():
        try:
            decoded[key] = json.loads(value)
        except ValueError:
            decoded[key] = value
    return decoded
