"""VideoIQ model, config and processor: the shared model checks, the quantisers, dynamic inference that runs each
frame only at its chosen precision (and skipped frames not at all), BitOPs through the shared accountant, bad input."""

import numpy as np
import pytest
import torch
from transformers import AutoImageProcessor, AutoModelForVideoClassification

from effhub.costs import MultiplyAddCounter
from effhub.errors import ConfigError, DatasetError
from effhub.models.videoiq import (
    VideoIQConfig,
    VideoIQForVideoClassification,
    VideoIQImageProcessorPil,
)
from effhub.models.videoiq.modeling_videoiq import (
    VideoIQConvCalibration,
    VideoIQInputQuantizer,
    VideoIQQuantizedConv2d,
    VideoIQQuantizedLSTMCell,
    _int8_convolution,
    _output_grid,
    bitops_weight,
    pact,
    quantize_symmetric,
    quantize_weight,
)
from tests.model_tester import EffhubModelTesterMixin


def tiny_config(**kwargs):
    values = {"num_frames": 4, "image_size": 16, "backbone_depth": 18, "base_width": 4, "stem_stride": 2,
              "policy_backbone": "small", "policy_width_multiplier": 0.25, "policy_image_size": 16,
              "policy_feature_size": 16, "policy_hidden_size": 8, "num_labels": 5, "bit_width_family": [32, 4, 2],
              "skip_list": [1, 2]}
    values.update(kwargs)
    return VideoIQConfig(**values)


def clips(batch_size, config=None, seed=0):
    config = config or tiny_config()
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, config.num_frames, 3, config.image_size, config.image_size, generator=generator)


class TestVideoIQModel(EffhubModelTesterMixin):
    model_class = VideoIQForVideoClassification
    auto_class = AutoModelForVideoClassification
    output_key = ("logits", "policy", "bitops")

    def get_config(self):
        return tiny_config()

    def get_inputs(self, batch_size):
        return {"pixel_values": clips(batch_size, seed=batch_size)}

    def get_loss(self, outputs, inputs):
        return outputs.logits.square().mean()


class TestVideoIQBottleneck(TestVideoIQModel):
    """ResNet-50 blocks, the 8/4/2 family, the MobileNetV2 policy encoder; run at one uniform bit-width (the
    deterministic path of the any-precision stage)."""

    output_key = ("logits", "bitops")
    learning_rate = 1e-3  # Adam at 1e-2 overshoots on tanh-normalised (DoReFa) bottleneck weights

    def get_inputs(self, batch_size):
        return {"pixel_values": clips(batch_size, seed=batch_size), "precision": 8}

    def get_config(self):
        return tiny_config(backbone_depth=50, bit_width_family=[8, 4, 2], policy_backbone="mobilenet_v2",
                           policy_width_multiplier=0.25)


class TestVideoIQQuantizedPolicy(TestVideoIQModel):
    """The policy network at 8 bits (quantised convolutions, LSTM cell and heads, their running input ranges)."""

    def get_config(self):
        return tiny_config(policy_bit_width=8)


# -- quantisers ------------------------------------------------------------------------------------------------------
def test_lower_bit_widths_truncate_the_top_bit_integers():
    weight = torch.randn(64, 8)
    top = quantize_weight(weight, 8, 8)
    levels = (top + 1) / 2 * 255
    assert torch.allclose(levels, levels.round(), atol=1e-3), "8-bit weights lie on the 255-level grid"
    four = quantize_weight(weight, 4, 8)
    # truncating the 4 least-significant bits of the 8-bit integers, then re-aligning the mean
    integers = levels.round()
    truncated = torch.floor(integers / 16) * 16
    expected = truncated * (integers.mean() / truncated.mean()) / 255 * 2 - 1
    assert torch.allclose(four, expected, atol=1e-5)
    assert len(torch.unique(four)) <= 16


def test_weight_quantiser_passes_gradients_straight_through():
    weight = torch.randn(16, 4, requires_grad=True)
    quantize_weight(weight, 2, 32).sum().backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0


def test_pact_clips_rounds_and_trains_alpha_only_above_it():
    alpha = torch.tensor(1.0, requires_grad=True)
    inputs = torch.tensor([-1.0, 0.2, 0.5, 1.5, 3.0], requires_grad=True)
    output = pact(inputs, alpha, 2)
    assert torch.allclose(output, torch.tensor([0.0, 1 / 3, 2 / 3, 1.0, 1.0]))  # 3 levels of 1/3
    output.sum().backward()
    assert alpha.grad.item() == 2.0  # two inputs above alpha
    assert inputs.grad.tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]


# -- dynamic inference -----------------------------------------------------------------------------------------------
def test_symmetric_quantiser_rounds_to_the_grid_clips_and_passes_gradients_inside():
    values = torch.tensor([-3.0, -0.26, 0.0, 0.1, 0.74, 2.5], requires_grad=True)
    quantised = quantize_symmetric(values, 3, 1.0)  # 3 levels a side: steps of 1/3
    assert quantised.tolist() == pytest.approx([-1.0, -1 / 3, 0.0, 0.0, 2 / 3, 1.0])
    quantised.sum().backward()
    assert values.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]


def test_input_quantizer_tracks_its_range_in_training_and_keeps_it_in_eval():
    quantizer = VideoIQInputQuantizer(8)
    assert quantizer.absmax.item() == 0.0
    quantizer(torch.tensor([0.5, -2.0]))
    assert quantizer.absmax.item() == 2.0  # the first training call sets it
    quantizer(torch.tensor([4.0]))
    assert quantizer.absmax.item() == pytest.approx(0.9 * 2.0 + 0.1 * 4.0)
    quantizer.eval()
    out = quantizer(torch.tensor([10.0, -0.3]))
    assert quantizer.absmax.item() == pytest.approx(2.2)
    assert out[0].item() == pytest.approx(2.2)  # clipped at the tracked range, not the call's own maximum
    assert out[1].item() == pytest.approx(round(-0.3 / (2.2 / 127)) * 2.2 / 127)


def test_quantized_policy_layers_equal_their_float_layers_on_grid_values():
    """Weights and inputs already on the 8-bit grid pass unchanged: the quantised conv and LSTM cell then compute
    exactly what `nn.Conv2d` and `nn.LSTMCell` compute."""
    torch.manual_seed(0)
    conv = VideoIQQuantizedConv2d(8, 4, 6, 3, padding=1, bias=False).eval()
    with torch.no_grad():
        conv.weight.copy_(torch.randint(-127, 128, conv.weight.shape) / 127 * 0.5)
        conv.weight[0, 0, 0, 0] = 0.5  # the per-tensor maximum sets the scale 0.5 / 127
        conv.input_quantizer.absmax.fill_(2.0)
    inputs = torch.randint(-127, 128, (2, 4, 5, 5)) / 127 * 2.0
    reference = torch.nn.functional.conv2d(inputs, conv.weight, padding=1)
    assert torch.allclose(conv(inputs), reference, atol=1e-5)

    cell = VideoIQQuantizedLSTMCell(8, 3, 4).eval()
    float_cell = torch.nn.LSTMCell(3, 4)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh"):
            weight = torch.randint(-127, 128, getattr(cell, name).shape) / 127 * 0.3
            weight[0, 0] = 0.3
            getattr(cell, name).copy_(weight)
        cell.input_quantizer.absmax.fill_(1.0)
        float_cell.load_state_dict(cell.state_dict(), strict=False)
    features = torch.randint(-127, 128, (2, 3)) / 127
    hidden = torch.randint(-127, 128, (2, 4)) / 127
    state = (hidden, torch.randn(2, 4))
    for mine, theirs in zip(cell(features, state), float_cell(features, state)):
        assert torch.allclose(mine, theirs, atol=1e-5)


def test_quantized_policy_costs_count_its_stem_at_32_bits_and_the_rest_at_its_bit_width():
    full = VideoIQForVideoClassification(tiny_config()).frame_costs()
    model = VideoIQForVideoClassification(tiny_config(policy_bit_width=8))
    costs = model.frame_costs()
    stem = costs["policy_stem_macs"]
    assert costs["policy_macs"] == full["policy_macs"]
    assert full["policy_bitops"] == pytest.approx(full["policy_macs"] * 32 * 32)
    assert costs["policy_bitops"] == pytest.approx(stem * 32 * 32 + (costs["policy_macs"] - stem) * 8 * 8)
    quantised_convs = [m for m in model.policy.encoder.modules() if isinstance(m, VideoIQQuantizedConv2d)]
    assert len(quantised_convs) == sum(isinstance(m, torch.nn.Conv2d) for m in model.policy.encoder.modules()) - 1
    actions = torch.tensor([[0, 1, 2, 3]])
    eight, thirty_two = model.video_costs(actions)["bitops"], \
        VideoIQForVideoClassification(tiny_config()).video_costs(actions)["bitops"]
    saved = 4 * (full["policy_bitops"] - costs["policy_bitops"]) + full["policy_video_bitops"] \
        - costs["policy_video_bitops"]
    assert (thirty_two - eight).item() == pytest.approx(saved, rel=1e-5)


def _count_backbone_frames(model):
    """Frames the backbone runs at each family index (None: full precision), recorded by a forward hook."""
    seen = []
    hook = model.backbone.register_forward_hook(lambda module, args, output: seen.append((args[1], args[0].shape[0])))
    return seen, hook


def test_each_frame_runs_once_at_its_precision_and_skipped_frames_not_at_all():
    config = tiny_config()
    model = VideoIQForVideoClassification(config).eval()
    actions = torch.tensor([[0, 3, 2, 1], [2, 4, 0, 0]])  # 3 = skip 1; 4 = skip 2 covers frames 2 and 3 of clip 2
    model.frame_costs()  # measured once, before the hook
    seen, hook = _count_backbone_frames(model)
    with torch.no_grad():
        model(clips(2), actions=actions)
    hook.remove()
    assert sorted(seen) == [(0, 2), (1, 1), (2, 2)], "frames are batched by action; the 3 skipped frames run nowhere"


def test_inference_caches_the_quantised_weight_until_it_changes():
    model = VideoIQForVideoClassification(tiny_config()).eval()
    conv = model.backbone.blocks[0].conv1
    with torch.no_grad():
        first = conv.quantized_weight(4)
        assert conv.quantized_weight(4) is first
        assert torch.equal(first, quantize_weight(conv.weight, 4, 32))
        conv.weight.mul_(0.5).add_(0.1)  # an optimiser step or a load changes the weight in place
        second = conv.quantized_weight(4)
    assert second is not first and torch.equal(second, quantize_weight(conv.weight, 4, 32))
    assert conv.quantized_weight(4).requires_grad  # with autograd: quantised afresh, gradients flow


def test_int8_kernels_run_the_low_bit_widths_close_to_the_simulation():
    config = tiny_config(bit_width_family=[8, 4, 2], image_size=32, base_width=8)
    torch.manual_seed(0)
    model = VideoIQForVideoClassification(config).eval()
    pixel_values = clips(6, config)
    with torch.no_grad():
        simulated = {bits: model(pixel_values, precision=bits).logits for bits in (8, 4, 2)}
        simulated_policy = model(pixel_values).logits
    assert model.prepare_int8_kernels(pixel_values[:2]) == [8, 4, 2] == model.int8_bit_widths
    with torch.no_grad():
        for bits in (8, 4, 2):
            kernel = model(pixel_values, precision=bits).logits
            # conv outputs are rounded to 8 bits: close to the simulation (an untrained network: about 10% of the
            # logits' norm), not equal to it
            assert (kernel - simulated[bits]).norm() < 0.25 * simulated[bits].norm(), bits
            assert not torch.equal(kernel, simulated[bits])  # really another path
        assert (model(pixel_values).logits - simulated_policy).norm() < 0.25 * simulated_policy.norm()
    model.train()  # the training path (autograd) never uses the kernels
    assert torch.equal(model.backbone.blocks[0].conv1.quantized_weight(8),
                       quantize_weight(model.backbone.blocks[0].conv1.weight, 8, 8))
    model.eval()
    model.release_int8_kernels()
    assert model.int8_bit_widths == []
    with torch.no_grad():
        assert torch.equal(model(pixel_values, precision=8).logits, simulated[8])


def test_int8_kernels_leave_32_bit_in_float_and_follow_weight_changes():
    config = tiny_config(image_size=32, base_width=8)  # 32/4/2
    model = VideoIQForVideoClassification(config).eval()
    pixel_values = clips(2, config)
    assert model.prepare_int8_kernels(pixel_values) == [4, 2]
    with pytest.raises(ConfigError, match="not a bit-width"):
        model.prepare_int8_kernels(pixel_values, bit_widths=[8])
    with torch.no_grad():
        before = model(pixel_values, precision=4).logits
        for module in model.backbone.modules():
            if hasattr(module, "pact_alpha"):
                module.weight.mul_(-1.0)  # stale kernels must not be used
        after = model(pixel_values, precision=4).logits
        model.release_int8_kernels()
        assert torch.equal(after, model(pixel_values, precision=4).logits)
    assert not torch.equal(before, after)


def _spread_batchnorms(model, seed=0):
    """Running statistics and affine parameters away from their initial 0 / 1 (a trained network's)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                for tensor, low, high in ((module.running_mean, -0.5, 0.5), (module.running_var, 0.5, 2.0),
                                          (module.weight, 0.5, 1.5), (module.bias, -0.2, 0.2)):
                    tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)


def test_inference_folds_each_batchnorm_into_its_convolution():
    config = tiny_config(bit_width_family=[8, 4, 2])
    torch.manual_seed(0)
    model = VideoIQForVideoClassification(config).eval()
    _spread_batchnorms(model)
    pixel_values = clips(3, config)
    model.frame_costs()  # measured once, at inference: fills the caches; emptied here to watch them fill
    conv = model.backbone.blocks[0].conv1
    conv._folded_cache.clear()
    for precision in ("full", 8, 4, 2):
        with torch.enable_grad():  # autograd: convolution, then BatchNorm
            separate = model(pixel_values, precision=precision).logits.detach()
        assert not conv._folded_cache.get(None if precision == "full" else precision)
        with torch.no_grad():  # inference: one convolution with the BatchNorm folded in
            folded = model(pixel_values, precision=precision).logits
        assert conv._folded_cache.get(None if precision == "full" else precision)
        torch.testing.assert_close(folded, separate, rtol=1e-4, atol=1e-5)
    norm = model.backbone.blocks[0].bn1.norms[1]
    with torch.no_grad():
        before = model(pixel_values, precision=4).logits
        norm.running_var.mul_(3.0)  # a load or a training step changes a BatchNorm in place: folded afresh
        after = model(pixel_values, precision=4).logits
    with torch.enable_grad():
        torch.testing.assert_close(after, model(pixel_values, precision=4).logits.detach(), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(before, after)


@pytest.mark.parametrize("policy_bit_width", [32, 8])
def test_policy_encoder_folds_its_full_precision_batchnorms_at_inference(policy_bit_width):
    config = tiny_config(policy_bit_width=policy_bit_width)
    torch.manual_seed(0)
    model = VideoIQForVideoClassification(config).eval()
    _spread_batchnorms(model)
    encoder = model.policy.encoder
    frames = clips(3, config).flatten(0, 1)
    with torch.enable_grad():
        separate = encoder(frames).detach()
    with torch.no_grad():
        folded = encoder(frames)
    torch.testing.assert_close(folded, separate, rtol=1e-4, atol=1e-5)
    copy = encoder.folded_features()
    norms = sum(isinstance(module, torch.nn.BatchNorm2d) for module in copy.modules())
    if policy_bit_width == 32:
        assert norms == 0  # every BatchNorm follows a full-precision convolution
    else:
        assert norms == sum(isinstance(module, torch.nn.BatchNorm2d) for module in encoder.features.modules()) - 1
    assert encoder.folded_features() is copy  # kept while nothing changes
    with torch.no_grad():
        encoder.features[1].running_mean.add_(0.5)  # the stem's BatchNorm changes in place: folded afresh
        changed = encoder(frames)
    assert encoder.folded_features() is not copy
    with torch.enable_grad():
        torch.testing.assert_close(changed, encoder(frames).detach(), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(changed, folded)


def test_int8_block_keeps_activations_in_8_bits_and_drops_stale_kernels():
    config = tiny_config(bit_width_family=[8, 4, 2], image_size=32, base_width=8)
    torch.manual_seed(0)
    model = VideoIQForVideoClassification(config).eval()
    _spread_batchnorms(model)
    pixel_values = clips(4, config)
    assert model.prepare_int8_kernels(pixel_values[:2]) == [8, 4, 2]
    block = model.backbone.blocks[2]  # a block with a downsampling shortcut
    assert block.downsample is not None
    inputs = torch.relu(torch.randn(6, block.conv1.in_channels, 8, 8))
    kernels = block._int8[1]  # 4 bits
    first = kernels.kernels[0](torch.quantize_per_tensor(inputs.clamp(0, kernels.alphas[0]),
                                                         kernels.alphas[0] / 15, 0, torch.quint8))
    # the first convolution writes onto the second one's 4-bit PACT grid: scale alpha / 15, zero point 0
    assert first.q_scale() == pytest.approx(kernels.alphas[1] / 15) and first.q_zero_point() == 0
    with torch.no_grad():
        kernel_output = block(inputs, 1)
        with model.float_simulation():
            simulated = block(inputs, 1)
        assert model.int8_bit_widths == [8, 4, 2]  # back after the simulation
        assert not torch.equal(kernel_output, simulated)
        assert (kernel_output - simulated).norm() < 0.1 * simulated.norm()
        block.downsample_bn.norms[1].running_mean.add_(0.3)  # stale kernels must not be used
        with model.float_simulation():
            simulated = block(inputs, 1)
        assert torch.equal(block(inputs, 1), simulated)


@pytest.mark.parametrize("which", ["conv1", "downsample"])
def test_int8_convolution_corrects_the_mean_shift_of_its_rounded_weights(which):
    config = tiny_config(bit_width_family=[8, 4, 2], image_size=32, base_width=8)
    torch.manual_seed(0)
    model = VideoIQForVideoClassification(config).eval()
    _spread_batchnorms(model)
    block = model.backbone.blocks[2]  # conv1: 3x3 stride 2; downsample: 1x1 stride 2
    conv, norm = (block.conv1, block.bn1) if which == "conv1" else (block.downsample, block.downsample_bn)
    inputs = torch.relu(torch.randn(8, conv.in_channels, 8, 8, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        simulated = conv(inputs, 1, norm)  # 4 bits, BatchNorm folded
        calibration = VideoIQConvCalibration.observe(conv, 1, inputs, simulated)
        patches = torch.nn.functional.unfold(pact(inputs, conv.pact_alpha[1], 4), conv.kernel_size,
                                             conv.dilation, conv.padding, conv.stride)
    torch.testing.assert_close(calibration.input_patch_mean.float(),
                               patches.mean(dim=(0, 2)).view(conv.in_channels, *conv.kernel_size))
    assert (calibration.low, calibration.high) == (float(simulated.min()), float(simulated.max()))
    uncorrected = VideoIQConvCalibration(calibration.low, calibration.high,
                                         torch.zeros_like(calibration.input_patch_mean))
    quantised_inputs = torch.quantize_per_tensor(inputs.clamp(0, conv.pact_alpha[1].item()),
                                                 conv.pact_alpha[1].item() / 15, 0, torch.quint8)
    shifts = {}
    for name, statistics in (("corrected", calibration), ("uncorrected", uncorrected)):
        kernel = _int8_convolution(conv, 4, norm.norms[1], statistics, _output_grid(calibration))
        shifts[name] = (kernel(quantised_inputs).dequantize() - simulated).mean(dim=(0, 2, 3)).abs()
    # what remains of the channels' mean shifts is the output's own rounding (scale ~ range / 255)
    scale = _output_grid(calibration)[0]
    assert shifts["corrected"].max() < 0.1 * scale < shifts["uncorrected"].max()


def test_costs_are_the_same_with_int8_kernels_prepared():
    config = tiny_config(bit_width_family=[8, 4, 2], image_size=32, base_width=8)
    model = VideoIQForVideoClassification(config).eval()
    expected = model.frame_costs()
    model._costs = None
    model.prepare_int8_kernels(clips(2, config))
    assert model.frame_costs() == expected


def test_dynamic_inference_equals_the_mixed_training_path():
    config = tiny_config()
    model = VideoIQForVideoClassification(config).eval()
    pixel_values = clips(3)
    with torch.no_grad():
        policy = model(pixel_values)
        mixed = model.run_mixed(pixel_values, policy.policy)
    assert torch.allclose(policy.logits, mixed, atol=1e-5)
    assert policy.policy.shape == (3, config.num_frames, config.num_actions)


def test_kept_frame_logits_hold_the_skip_decisions_fixed():
    """The training path's `kept_frame_logits` equal `logits` in value, and their gradient reaches the choice of
    bit-width but not the skip action (the student of `policy.kd_frames: executed`)."""
    config = tiny_config(skip_list=[1])
    model = VideoIQForVideoClassification(config).train()
    model.dropout.eval()  # as in the policy stage (two dropout draws would differ)
    torch.manual_seed(0)
    out = model(pixel_values=clips(4, config), temperature=5.0)
    skipped = out.policy[..., config.num_precisions:].sum(-1)
    assert 0 < skipped.sum() < skipped.numel()  # this draw keeps some frames and skips others
    assert torch.allclose(out.kept_frame_logits, out.logits, atol=1e-6)
    bias = model.policy.action_head.bias
    skip = config.num_precisions
    (kept_grad,) = torch.autograd.grad(out.kept_frame_logits.square().sum(), bias, retain_graph=True)
    (full_grad,) = torch.autograd.grad(out.logits.square().sum(), bias)
    assert kept_grad[skip].abs() < 1e-6 * kept_grad[:skip].abs().max()
    assert kept_grad[:skip].abs().max() > 0 and full_grad[skip].abs() > 0
    model.eval()
    with torch.no_grad():
        assert model(pixel_values=clips(2, config)).kept_frame_logits is None  # training path only


def test_skip_carries_the_decision_and_the_lstm_state_over():
    config = tiny_config(skip_list=[3], policy_keeps_a_frame=False)
    model = VideoIQForVideoClassification(config).eval()
    with torch.no_grad():  # make the skip action win everywhere
        model.policy.action_head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 50.0]))
        out = model.policy(clips(2, config))
    assert out.actions.argmax(-1).tolist() == [[3, 3, 3, 3]] * 2
    assert out.decided.tolist() == [[True, False, False, True]] * 2


@pytest.mark.parametrize("policy_bit_width", [32, 8])
def test_decisions_on_all_frames_at_once_equal_the_frame_by_frame_loop(policy_bit_width, monkeypatch):
    """Without sampling and without skips longer than one frame no decision feeds back into the next frames:
    inference then runs the LSTM's input side and the heads on all frames at once, with the loop's decisions,
    log-probabilities and auxiliary logits (also where a clip would skip every frame and keeps one)."""
    config = tiny_config(skip_list=[1], policy_bit_width=policy_bit_width, num_frames=6)
    model = VideoIQForVideoClassification(config)
    model.train()
    model.policy(clips(4, config, seed=1), sample=True)  # tracks the quantisers' ranges, as training does
    model.eval()
    pixel_values = clips(16, config, seed=2)
    with torch.no_grad():
        if policy_bit_width < 32:
            assert model.policy.lstm.input_quantizer.absmax > 0
        features = model.policy.encode(pixel_values)
        for skip_bias in (0.0, 4.0):  # the second makes some clips skip every frame
            model.policy.action_head.bias[config.num_precisions] += skip_bias
            at_once = model.policy.decide_all_frames(features)
            looped = model.policy.decide_frame_by_frame(features)
            assert torch.equal(at_once.actions, looped.actions)
            assert torch.equal(at_once.decided, looped.decided)
            assert torch.allclose(at_once.logprobs, looped.logprobs, atol=1e-6)
            assert torch.allclose(at_once.aux_logits, looped.aux_logits, atol=1e-6)
        would_skip_all = (at_once.logprobs.argmax(-1) == config.num_precisions).all(1)
        kept_frames = at_once.actions[would_skip_all, :, :config.num_precisions].sum((1, 2))
        assert would_skip_all.any() and (kept_frames == 1).all()

        def refuse(*args, **kwargs):
            raise AssertionError("inference without sampling should decide on all frames at once")

        monkeypatch.setattr(model.policy, "decide_frame_by_frame", refuse)
        assert torch.equal(model.policy(pixel_values).actions, at_once.actions)


def test_a_clip_that_would_skip_every_frame_keeps_its_likeliest_frame():
    """At inference a clip never goes without a frame: the frame least likely skipped runs at its likeliest
    bit-width; clips that keep a frame and the sampled training path are left alone."""
    from effhub.models.videoiq.modeling_videoiq import keep_a_frame

    config = tiny_config(skip_list=[1])
    skip, four_bit = 3, 1
    actions = torch.nn.functional.one_hot(torch.tensor([[skip, skip, skip, skip], [skip, 2, skip, skip]]), 4).float()
    probs = torch.tensor([[0.05, 0.05, 0.05, 0.85]] * 4)
    probs = torch.stack([probs, probs])
    probs[0, 2] = torch.tensor([0.1, 0.3, 0.0, 0.6])  # clip 0: frame 2 is the least likely skipped, 4 bits its best
    kept = keep_a_frame(actions, probs.log(), config.num_precisions)
    assert kept.argmax(-1).tolist() == [[skip, skip, four_bit, skip], [skip, 2, skip, skip]]
    assert kept.sum(-1).eq(1).all()  # still one-hot

    model = VideoIQForVideoClassification(config).eval()
    with torch.no_grad():  # make the skip action win everywhere
        model.policy.action_head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 50.0]))
        out = model(pixel_values=clips(3, config))
        assert ((out.policy.argmax(-1) < config.num_precisions).sum(1) == 1).all()
        model.config.policy_keeps_a_frame = False
        assert (model(pixel_values=clips(3, config)).policy.argmax(-1) == skip).all()  # the paper's rule
    model.config.policy_keeps_a_frame = True
    model.train()
    sampled = model.policy(clips(3, config), sample=True, temperature=1.0)
    assert (sampled.actions.argmax(-1) == skip).all()  # training samples unchanged


def test_bitops_match_the_shared_counter_frame_by_frame():
    config = tiny_config()
    model = VideoIQForVideoClassification(config).eval()
    pixel_values = clips(1)
    actions = torch.tensor([[2, 0, 3, 1]])
    with torch.no_grad():
        reported = model(pixel_values, actions=actions).bitops.item()
        with MultiplyAddCounter({"backbone": model.backbone}, weight=bitops_weight) as counter:
            for t, action in enumerate(actions[0].tolist()):
                if action < config.num_precisions:
                    model.backbone(pixel_values[0, t:t + 1], action)
    classifier = model.classifier.in_features * model.classifier.out_features * 32 * 32
    assert reported == pytest.approx(counter.total + classifier, rel=1e-6)
    costs = model.frame_costs()
    assert costs["frame_bitops"][0] > costs["frame_bitops"][1] > costs["frame_bitops"][2]


def test_costs_of_the_paper_network_match_the_paper():
    """ResNet-50 at 224 px: about 4.1 GMACs per frame, 0.12 of them in the first layer (65.76 and 1.92 for 16)."""
    model = VideoIQForVideoClassification(VideoIQConfig(policy_backbone="small"))
    costs = model.frame_costs()
    assert 16 * costs["frame_macs"] / 1e9 == pytest.approx(65.76, rel=0.01)
    assert 16 * costs["stem_macs"] / 1e9 == pytest.approx(1.92, rel=0.02)


def test_proxy_counts_32_bit_like_8_bit_and_bitops_do_not():
    config = tiny_config(bit_width_family=[32, 8, 2])
    model = VideoIQForVideoClassification(config).eval()
    with torch.no_grad():
        top = model(clips(1, config), precision=32)
        eight = model(clips(1, config), precision=8)
    assert top.gflops_proxy.item() == pytest.approx(eight.gflops_proxy.item())
    assert top.bitops.item() > 5 * eight.bitops.item()  # 16x on the quantised layers; the stem is 32x32 in both


# -- bad input -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pixel_values, match", [
    (torch.randn(2, 3, 3, 16, 16), "3 frames per clip"),
    (torch.randn(2, 4, 3, 20, 20), "resize the frames"),
    (torch.randn(4, 3, 16, 16), "shape"),
    (torch.zeros(2, 4, 3, 16, 16, dtype=torch.uint8), "float tensor"),
])
def test_wrong_frame_count_or_shape(pixel_values, match):
    model = VideoIQForVideoClassification(tiny_config()).eval()
    with pytest.raises(ConfigError, match=match):
        model(pixel_values)


def test_bit_width_outside_the_family():
    model = VideoIQForVideoClassification(tiny_config()).eval()
    with pytest.raises(ConfigError, match=r"precision 8 is not a bit-width of this model's family \[32, 4, 2\]"):
        model(clips(1), precision=8)
    with pytest.raises(ConfigError, match="outside"):
        model(clips(1), actions=torch.full((1, 4), 9))


@pytest.mark.parametrize("kwargs, match", [
    ({"policy_bit_width": 1}, "policy_bit_width"),
    ({"policy_bit_width": 64}, "policy_bit_width"),
    ({"bit_width_family": [2, 4]}, "highest precision down"),
    ({"bit_width_family": [64, 4]}, "between 1 and 32"),
    ({"backbone_depth": 34}, "backbone_depth"),
    ({"image_size": 20}, "multiple of 16"),
    ({"skip_list": [1, 1]}, "each skip length once"),
])
def test_bad_config(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        tiny_config(**kwargs)


def test_corrupt_checkpoint(tmp_path):
    from effhub.errors import CheckpointError

    VideoIQForVideoClassification(tiny_config()).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        VideoIQForVideoClassification.from_pretrained(tmp_path)


# -- processor -------------------------------------------------------------------------------------------------------
def test_processor_samples_resizes_and_normalises_like_training(tmp_path):
    processor = VideoIQImageProcessorPil(size={"height": 16, "width": 16}, num_frames=4)
    video = np.random.default_rng(0).integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)
    pixel_values = processor(list(video), return_tensors="pt")["pixel_values"]
    assert pixel_values.shape == (1, 4, 3, 16, 16)
    expected = processor.normalize_pixels(torch.from_numpy(video[[1, 3, 6, 8]]))  # segment centres of 10 frames
    assert torch.allclose(pixel_values[0], expected, atol=1e-5)
    processor.save_pretrained(tmp_path)
    VideoIQConfig(num_frames=4, image_size=16, stem_stride=2, num_labels=3).save_pretrained(tmp_path)
    reloaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(reloaded, VideoIQImageProcessorPil) and reloaded.num_frames == 4
    with pytest.raises(DatasetError, match="no frames"):
        processor([[]])


def test_channels_last_frames_train_as_contiguous_ones():
    # frames decoded as (H, W, 3) and permuted reach the convolutions with channels-last strides; oneDNN's
    # convolution backward corrupted the heap on such input (an AVX2 CPU, one thread): processor and model hand
    # the backbone contiguous frames, and the numbers are those of the contiguous input
    processor = VideoIQImageProcessorPil(size={"height": 16, "width": 16}, num_frames=4)
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 4, 16, 16, 3), dtype=np.uint8))
    assert processor.normalize_pixels(frames).is_contiguous()
    torch.manual_seed(0)
    model = VideoIQForVideoClassification(tiny_config()).train()
    channels_last = clips(2).permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    assert not channels_last.is_contiguous()
    losses = []
    for pixel_values in (channels_last, channels_last.contiguous()):
        model.zero_grad()
        torch.manual_seed(1)  # the same dropout mask for both
        loss = model(pixel_values=pixel_values, labels=torch.tensor([0, 1]), precision="full").loss
        loss.backward()
        losses.append((loss.detach(), model.classifier.weight.grad.clone()))
    assert torch.equal(losses[0][0], losses[1][0]) and torch.equal(losses[0][1], losses[1][1])
