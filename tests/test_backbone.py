"""The backbone: real ImageNet weights, offline, loaded by name."""

import copy
import os
import subprocess
import sys

import numpy as np
import pytest
import timm
import torch
from skimage import data

from skanomaly.backbone import (
    BUNDLED_WEIGHTS,
    EfficientNetLevels,
    _bundled_weights_path,
    fold_batch_norms,
    inline_same_padding,
    level_channels,
    level_names,
    load_backbone,
    lukemelas_to_timm,
)

# ImageNet classes 281-285: tabby, tiger cat, Persian, Siamese, Egyptian cat.
CAT_CLASSES = set(range(281, 286))


def _predict(model, image):
    # The levels module prunes its model's classifier: give it a copy.
    features = EfficientNetLevels(copy.deepcopy(model))
    x = torch.from_numpy(image / 255.0).float().permute(2, 0, 1)[None]
    with torch.inference_mode():
        return model(features.preprocess(x)).softmax(dim=1)[0]


@pytest.mark.parametrize("backbone", sorted(BUNDLED_WEIGHTS))
def test_bundled_weights_recognize_a_cat(backbone):
    # Chelsea is a photo of a cat: only genuine ImageNet weights put cat
    # classes on top; random or misloaded weights do not.
    probabilities = _predict(load_backbone(backbone), data.chelsea())
    top3 = set(probabilities.topk(3).indices.tolist())
    assert top3 <= CAT_CLASSES
    assert probabilities[list(CAT_CLASSES)].sum() > 0.5


def test_folded_batch_norms_give_the_unfolded_features():
    model = load_backbone("tf_efficientnet_lite0")
    levels = EfficientNetLevels(copy.deepcopy(model))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in levels.modules())
    x = levels.preprocess(torch.from_numpy(data.chelsea() / 255.0).float().permute(2, 0, 1)[None])
    with torch.inference_mode():
        folded = levels(x, range(9))
        head, stages = model.forward_intermediates(x, indices=list(range(8)), extra_blocks=True)
    for level, (a, b) in enumerate(zip(folded, [*stages, head])):
        # Float rounding only: a misfolded layer is off by its whole scale.
        np.testing.assert_allclose(
            a.numpy(), b.numpy(), rtol=0, atol=1e-4 * float(b.abs().max()), err_msg=f"level {level}"
        )


@pytest.mark.parametrize("size", [(224, 224), (97, 130), (64, 33)])
def test_inline_same_padding_gives_timms_features_and_gradients(size):
    # Odd and even sides take both branches: an even side pads one more row
    # after the input than before it, an odd one pads both sides alike.
    model = load_backbone("tf_efficientnet_lite0")
    inline = inline_same_padding(copy.deepcopy(model))
    assert any(type(m).__name__ == "Conv2dSame" for m in model.modules())
    assert not any(type(m).__name__ == "Conv2dSame" for m in inline.modules())
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    outputs, gradients = [], []
    for network in (model, inline):
        leaf = x.clone().requires_grad_()
        features = network.forward_features(leaf)
        (gradient,) = torch.autograd.grad(features.square().sum(), leaf)
        outputs.append(features.detach())
        gradients.append(gradient)
    for new, old in zip((outputs[1], gradients[1]), (outputs[0], gradients[0])):
        assert new.shape == old.shape
        # A window shifted by one pixel is off by the features' own scale.
        np.testing.assert_allclose(new, old, rtol=0, atol=1e-5 * float(old.abs().max()))


@pytest.mark.parametrize("rewrite", [fold_batch_norms, inline_same_padding])
@pytest.mark.parametrize("model", ["tf_efficientnet_lite0", None, np.zeros(3)])
def test_network_rewrites_refuse_what_is_not_a_module(rewrite, model):
    with pytest.raises(TypeError, match=f"{rewrite.__name__} rewrites a torch module"):
        rewrite(model)


def test_lite_preprocessing_comes_from_the_pretrained_config():
    features = EfficientNetLevels(load_backbone("tf_efficientnet_lite0"))
    assert features.input_size == (224, 224)
    assert features.interpolation == "bicubic"
    assert torch.allclose(features.mean.flatten(), torch.tensor([0.5, 0.5, 0.5]))
    assert torch.allclose(features.std.flatten(), torch.tensor([0.5, 0.5, 0.5]))
    assert EfficientNetLevels(load_backbone("tf_efficientnet_lite2")).input_size == (260, 260)


def test_key_map_follows_blocks_per_stage():
    model = timm.create_model("tf_efficientnet_lite0")
    state_dict = torch.load(
        _bundled_weights_path("tf_efficientnet_lite0"), map_location="cpu", weights_only=True
    )
    renamed = lukemelas_to_timm(state_dict, model)
    assert set(renamed) == set(model.state_dict())
    # Lite0 has [1, 2, 2, 3, 3, 4, 1] blocks: flat block 3 is stage 2's first.
    assert renamed["blocks.2.0.conv_pw.weight"] is state_dict["_blocks.3._expand_conv.weight"]
    assert renamed["blocks.0.0.conv_pw.weight"] is state_dict["_blocks.0._project_conv.weight"]
    assert renamed["blocks.6.0.bn3.bias"] is state_dict["_blocks.15._bn2.bias"]
    assert renamed["bn2.weight"] is state_dict["_bn1.weight"]


@pytest.mark.parametrize("key_style", ["timm", "lukemelas"])
def test_explicit_weights_file_matches_bundled(tmp_path, key_style):
    bundled = load_backbone("tf_efficientnet_lite0")
    if key_style == "timm":
        torch.save(bundled.state_dict(), tmp_path / "w.pth")
    else:
        source = _bundled_weights_path("tf_efficientnet_lite0")
        (tmp_path / "w.pth").write_bytes(source.read_bytes())
    loaded = load_backbone("tf_efficientnet_lite0", weights=tmp_path / "w.pth")
    for (k1, v1), (k2, v2) in zip(bundled.state_dict().items(), loaded.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)


def test_weights_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        load_backbone("tf_efficientnet_lite0", weights=tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a state dict")
    with pytest.raises(ValueError, match=r"junk\.pth"):
        load_backbone("tf_efficientnet_lite0", weights=tmp_path / "junk.pth")
    # Lite2's weights have other channel counts than Lite0.
    lite2 = _bundled_weights_path("tf_efficientnet_lite2")
    with pytest.raises(ValueError, match="do not fit"):
        load_backbone("tf_efficientnet_lite0", weights=lite2)


@pytest.mark.parametrize("name", ["resnet50", "efficientnet_b99", 3, None])
def test_unknown_backbone_is_rejected(name):
    for function in (load_backbone, level_names):
        with pytest.raises(ValueError, match="not a timm EfficientNet"):
            function(name)
    # An unhashable name (level_names caches by name, load_backbone looks it
    # up in the bundled weights) is still just a wrong name.
    for function in (load_backbone, level_names):
        with pytest.raises(ValueError, match="not a timm EfficientNet"):
            function([name])


def test_offline_download_failure_explains_weights_argument():
    code = (
        "from skanomaly.backbone import load_backbone\n"
        "try:\n    load_backbone('efficientnet_b0')\n"
        "except RuntimeError as e:\n    print('ERROR', e)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    ).stdout
    assert "ERROR" in out and "weights=" in out


@pytest.mark.parametrize(
    "backbone, n_levels", [("tf_efficientnet_lite0", 9), ("tf_efficientnetv2_b0", 8)]
)
def test_levels_are_stem_stages_and_head(backbone, n_levels):
    # Structure only: no weights are needed to count the levels.
    features = EfficientNetLevels(timm.create_model(backbone)).eval()
    assert len(features.level_names) == n_levels
    # The same names from the architecture alone, without its weights.
    assert level_names(backbone) == tuple(features.level_names)
    # Every batch norm of each block type is folded into its convolution.
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in features.modules())
    assert features.level_names[0] == "stem" and features.level_names[-1] == "head"
    x = torch.zeros(1, 3, 64, 64)
    with torch.inference_mode():
        maps = features(x, range(n_levels))
        partial = features(x, [1, 3])
    assert len(maps) == n_levels
    assert maps[-1].shape[1] == features.model.num_features
    # Their channels too, which size the Gaussians that a model file holds.
    assert level_channels(backbone) == tuple(m.shape[1] for m in maps)
    assert [m.shape for m in partial] == [maps[1].shape, maps[3].shape]
    assert np.all([torch.equal(a, b) for a, b in zip(partial, [maps[1], maps[3]])])
