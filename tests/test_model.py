import numpy as np
import paddle
import pytest

from parity.models import ModelSpec, build_model
from parity.models.pptsm_v2 import DepthwiseSeparable, make_divisible

TINY = ModelSpec(num_classes=4, num_seg=8, size=64, scale=0.25, depths=[1, 1, 2, 1], class_expand=64)


def _full_keys():
    return set(build_model(ModelSpec(num_classes=400, num_seg=16, temporal_attention=True)).backbone.state_dict().keys())


def test_parameter_names_follow_paddlevideo():
    keys = _full_keys()
    expected = {
        "stem.0.conv.weight", "stem.0.bn.weight", "stem.0.bn.bias", "stem.0.bn._mean", "stem.0.bn._variance",
        "stem.1.dw_conv.conv.weight", "stem.1.pw_conv.bn._variance",
        "stages.0.0.dw_conv.conv.weight", "stages.0.0.pw_conv.conv.weight",
        "stages.2.0.dw_conv_list.0.conv.weight", "stages.2.0.dw_conv_list.1.bn._mean",
        "stages.2.0.dw_conv.weight", "stages.2.0.dw_conv.bias",
        "stages.2.0.se.conv1.weight", "stages.2.0.se.conv2.bias",
        "stages.2.0.pw_conv_1.conv.weight", "stages.2.0.pw_conv_2.bn.weight",
        "stages.3.1.dw_conv_list.2.conv.weight", "stages.3.1.pw_conv.conv.weight",
        "last_conv.weight", "fc.weight", "fc.bias", "global_attention.fc.weight", "global_attention.fc.bias",
    }
    assert expected <= keys
    # the 1x1 rep branch is dropped where the stride is 2
    assert "stages.2.0.dw_conv_list.2.conv.weight" not in keys
    assert "last_conv.bias" not in keys


def test_full_size_shapes():
    sd = build_model(ModelSpec(num_classes=101, num_seg=16, temporal_attention=True)).backbone.state_dict()
    assert list(sd["fc.weight"].shape) == [1280, 101]  # Paddle Linear is [in, out]
    assert list(sd["last_conv.weight"].shape) == [1280, 1024, 1, 1]
    assert list(sd["stages.2.0.dw_conv.weight"].shape) == [256, 1, 5, 5]  # stage3 takes stage2's 256 channels
    assert list(sd["stages.2.0.pw_conv_2.conv.weight"].shape) == [512, 256, 1, 1]
    assert list(sd["global_attention.fc.weight"].shape) == [16, 16]


def test_shortcut_only_in_stage4_after_first_block():
    bb = build_model(ModelSpec()).backbone
    flags = [(s, i) for s, stage in enumerate(bb.stages) for i, blk in enumerate(stage) if blk.use_shortcut]
    assert flags == [(3, 1)]


def test_make_divisible():
    assert make_divisible(32 * 0.25) == 8 and make_divisible(1024 * 0.25) == 256 and make_divisible(10) == 16


def test_rep_folds_branches_without_changing_outputs():
    paddle.seed(1)
    model = build_model(TINY)
    # give BN non-trivial statistics so the fold is really exercised
    for layer in model.sublayers():
        if isinstance(layer, paddle.nn.BatchNorm2D):
            layer._mean.set_value(np.random.uniform(-0.5, 0.5, layer._mean.shape).astype("float32"))
            layer._variance.set_value(np.random.uniform(0.5, 2, layer._variance.shape).astype("float32"))
    model.eval()
    x = paddle.randn([2, 8, 3, 64, 64])
    before = model(x).numpy()
    model.rep()
    assert all(b.is_repped for b in model.sublayers() if isinstance(b, DepthwiseSeparable) and b.use_rep)
    np.testing.assert_allclose(model(x).numpy(), before, atol=1e-4, rtol=1e-4)


def test_dropout_scales_by_keep_ratio_at_inference():
    paddle.seed(0)
    model = build_model(TINY)
    model.eval()
    x = paddle.randn([1, 8, 3, 64, 64])
    with_scale = model(x).numpy()
    model.backbone.dropout.p = 0.0
    no_scale = model(x).numpy()
    bias = model.backbone.fc.bias.numpy()
    np.testing.assert_allclose(with_scale - bias, 0.8 * (no_scale - bias), rtol=1e-4, atol=1e-5)


def test_temporal_attention_is_optional():
    off = build_model(ModelSpec(num_seg=8, temporal_attention=False)).backbone.state_dict()
    assert not any(k.startswith("global_attention") for k in off)


@pytest.mark.parametrize("batch", [1, 3])
def test_output_is_logits_per_clip(batch):
    model = build_model(TINY)
    model.eval()
    out = model(paddle.randn([batch, 8, 3, 64, 64]))
    assert list(out.shape) == [batch, 4]
