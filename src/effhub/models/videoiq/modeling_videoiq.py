"""VideoIQ (Sun et al., ICCV 2021, arXiv 2108.10394): dynamic per-frame quantisation for efficient video recognition.

- **Any-precision operations** shared by every bit-width of the family: DoReFa weights quantised at the family's top
  bit-width, lower bit-widths by truncating least-significant bits of the same integer weights (one weight tensor
  serves all precisions, re-aligned to the top bit-width's mean), PACT activations with one clip value per
  bit-width, one BatchNorm per bit-width, straight-through gradients. The stem convolution and the classifier stay at
  full precision.
- **Recognition network**: a TSN-style 2D ResNet (18 or 50) over the T frames; frame features are averaged over the
  frames that were not skipped, then dropout and a linear classifier.
- **Policy network**: a light CNN (MobileNetV2, or a smaller variant) on downsampled frames feeding an LSTM cell; per
  frame one action among the bit-widths and the skips, sampled with hard Gumbel-softmax while training (argmax at
  inference). "Skip s" skips the current frame and the next s - 1, which carry the LSTM state and the decision over.
- **Dynamic inference**: after the policy pass, frames are grouped by their action and each group runs once at its
  precision; skipped frames are not computed at all. Per video the model reports multiply-adds, exact BitOPs (per
  layer: weight bits x activation bits x multiply-adds) and the paper's GFLOPs proxy (codebook c_b = min(b, 8)^2 / 64).

A clean re-implementation from the paper and the facts gathered about the authors' code (which carries no licence).
"""

import contextlib
import copy
import functools
import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from ...errors import ConfigError
from ..loading import CheckedLoadingMixin
from .configuration_videoiq import (
    FULL_PRECISION_BITS,
    RESNET_STAGE_BLOCKS,
    VideoIQConfig,
)

CONV_MEMORY_FORMAT = torch.channels_last
"""Layout of the frames through both networks' convolutions. Channels-last measured faster on CPU at width 16 than
the default layout (the recognition network's forward ~20% and a training step 6-12%, the policy encoder ~30%;
PyTorch's int8 convolutions work in it too); the GPU kernels prefer it as well."""

FULL_PRECISION = "full"
"""`precision=FULL_PRECISION` runs the network unquantised (stage 1, and the distillation teacher)."""


# -- quantisers ------------------------------------------------------------------------------------------------------
def quantize_weight(weight: torch.Tensor, bits: int | None, top_bits: int) -> torch.Tensor:
    """DoReFa weights with LSB truncation (straight-through gradients).

    `w~ = tanh(w) / (2 max|tanh(w)|) + 0.5` is quantised to `q_K = round((2^K - 1) w~)` at the family's top
    bit-width K; bit-width k < K keeps the top k bits, `q_k = floor(q_K / 2^(K-k)) 2^(K-k)`, rescaled so that its
    mean equals q_K's. The result is mapped to `2 q / (2^K - 1) - 1` in [-1, 1]. `bits=None` gives the unquantised
    `2 w~ - 1` (full precision).

    Args:
        weight (`torch.Tensor`): the shared full-precision weight.
        bits (`int`, *optional*): the bit-width k (None: full precision).
        top_bits (`int`): the family's top bit-width K.
    """
    normalised = torch.tanh(weight)
    normalised = normalised / (2 * normalised.abs().max().clamp_min(1e-12)) + 0.5
    if bits is None:
        return 2 * normalised - 1
    with torch.no_grad():
        levels = float(2 ** top_bits - 1)
        top = torch.round(normalised.detach().double() * levels)
        if bits < top_bits:
            step = float(2 ** (top_bits - bits))
            truncated = torch.floor(top / step) * step
            truncated = truncated * (top.mean() / truncated.mean().clamp_min(1e-12))
        else:
            truncated = top
        quantised = (truncated / levels).to(normalised.dtype)
    return 2 * (normalised + (quantised - normalised).detach()) - 1


def pact(inputs: torch.Tensor, alpha: torch.Tensor, bits: int | None) -> torch.Tensor:
    """PACT activation quantisation: `round(clamp(x, 0, alpha) (2^k - 1) / alpha) alpha / (2^k - 1)`.

    Gradients pass straight through inside [0, alpha]; alpha's gradient is the sum of the upstream gradients where
    x > alpha. `bits=None` or 32 clip without rounding.
    """
    if not torch.is_grad_enabled():  # inference: the same values with fewer temporaries
        top = float(alpha)
        clipped = inputs.clamp(0.0, top)
        if bits is None or bits >= FULL_PRECISION_BITS:
            return clipped
        scale = (2 ** bits - 1) / max(top, 1e-8)
        return clipped.mul_(scale).round_().div_(scale)
    clipped = torch.minimum(F.relu(inputs), alpha)
    if bits is None or bits >= FULL_PRECISION_BITS:
        return clipped
    scale = (2 ** bits - 1) / alpha.detach().clamp_min(1e-8)
    rounded = torch.round(clipped * scale) / scale
    return clipped + (rounded - clipped).detach()


def quantize_symmetric(values: torch.Tensor, bits: int, absmax: torch.Tensor | float) -> torch.Tensor:
    """Signed uniform quantisation over `[-absmax, absmax]` with `2^(bits-1) - 1` levels a side (zero exact),
    straight-through gradients inside the range, none outside (the clip)."""
    levels = float(2 ** (bits - 1) - 1)
    if not torch.is_grad_enabled():  # inference: the same values with fewer temporaries
        top = max(float(absmax), 1e-8)
        scale = levels / top
        return values.clamp(-top, top).mul_(scale).round_().div_(scale)
    limit = torch.as_tensor(absmax, dtype=values.dtype, device=values.device).clamp_min(1e-8)
    clipped = torch.maximum(torch.minimum(values, limit), -limit)
    scale = limit / levels
    rounded = torch.round(clipped / scale) * scale
    return clipped + (rounded - clipped).detach()


# -- the quantised policy network (policy_bit_width < 32) ------------------------------------------------------------
class VideoIQInputQuantizer(nn.Module):
    """Quantises a layer's input to `bits` over a symmetric range: `fixed_absmax` where the input is bounded by
    construction (the LSTM state lies in (-1, 1)), else a running maximum of |input| (`absmax`, exponential average
    with momentum 0.1, updated in training mode; while it is still 0, i.e. never trained, each call uses its own
    maximum).

    Args:
        bits (`int`): the bit-width.
        fixed_absmax (`float`, *optional*): the known bound of the input.
    """

    def __init__(self, bits: int, fixed_absmax: float | None = None):
        super().__init__()
        self.bits = bits
        self.fixed_absmax = fixed_absmax
        if fixed_absmax is None:
            self.register_buffer("absmax", torch.zeros(()))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.fixed_absmax is not None:
            return quantize_symmetric(inputs, self.bits, self.fixed_absmax)
        if self.training:
            with torch.no_grad():
                observed = inputs.detach().abs().amax().to(self.absmax.dtype)
                self.absmax.copy_(torch.where(self.absmax > 0, 0.9 * self.absmax + 0.1 * observed, observed))
            return quantize_symmetric(inputs, self.bits, self.absmax)
        tracked = float(self.absmax)  # read once: one host synchronisation per call
        return quantize_symmetric(inputs, self.bits, tracked if tracked > 0 else inputs.detach().abs().amax())


def _parameter_version(weight: torch.Tensor) -> tuple:
    """What changes when a parameter is updated in place or replaced: the key of the inference weight caches."""
    return (weight._version, weight.data_ptr(), weight.device, weight.dtype)


def _cached_weight(cache: dict, key, weight: torch.Tensor, quantize, also: tuple = ()):
    """`quantize(weight)`; without autograd kept in `cache[key]` until the weight (or a tensor of `also`) changes (an
    optimiser step or a load bumps its version), so that inference does not re-quantise a weight on every call."""
    if torch.is_grad_enabled():
        return quantize(weight)
    version = tuple(_parameter_version(tensor) for tensor in (weight, *also))
    cached = cache.get(key)
    if cached is None or cached[0] != version:
        cached = (version, quantize(weight))
        cache[key] = cached
    return cached[1]


class _SourceSnapshot:
    """What an inference-only derivative (int8 kernels, a folded copy of layers) was built from: `(module, name)`
    pairs of parameters and buffers. `current()` is False once one of them was changed in place (an optimiser step, a
    load), replaced, or moved (`.to()` moves them all: the first one's place and type tell). It runs on every inference
    call, so it reads the modules' parameter and buffer tables and the kept tensors' versions directly, not through
    the modules' attribute lookup and `_parameter_version` on each."""

    def __init__(self, sources: list[tuple[nn.Module, str]]):
        self.sources = [(owner._parameters if name in owner._parameters else owner._buffers, name, getattr(owner, name))
                        for owner, name in sources]
        self.versions = tuple(tensor._version for _, _, tensor in self.sources)
        self.place = _parameter_version(self.sources[0][2])

    def current(self) -> bool:
        return all(table.get(name) is tensor for table, name, tensor in self.sources) and \
            tuple(tensor._version for _, _, tensor in self.sources) == self.versions and \
            _parameter_version(self.sources[0][2]) == self.place


def _quantized_parameter(module: nn.Module, name: str, bits: int) -> torch.Tensor:
    """`module.<name>` on the symmetric `bits` grid scaled by its largest magnitude (cached for inference)."""
    return _cached_weight(module._weight_cache, name, getattr(module, name),
                          lambda weight: quantize_symmetric(weight, bits, weight.detach().abs().amax()))


class _VideoIQQuantizedLayer:
    """What a quantised policy layer adds to its `nn` layer: `bits` (as `last_bits`, which the BitOPs counter reads),
    an input quantiser and the inference weight cache."""

    def _set_up_quantization(self, bits: int, input_absmax: float | None) -> None:
        self.last_bits = bits
        self.input_quantizer = VideoIQInputQuantizer(bits, fixed_absmax=input_absmax)
        self._weight_cache: dict = {}

    def _quantized(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.input_quantizer(inputs), _quantized_parameter(self, "weight", self.last_bits)


class VideoIQQuantizedConv2d(_VideoIQQuantizedLayer, nn.Conv2d):
    """A policy convolution at `bits`: per-tensor symmetric weights (scaled by max |w|) and inputs (a tracked range),
    straight-through gradients."""

    def __init__(self, bits: int, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._set_up_quantization(bits, None)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(*self._quantized(inputs), self.bias)


class VideoIQQuantizedLinear(_VideoIQQuantizedLayer, nn.Linear):
    """A policy linear layer at `bits` (weights and inputs as in [`VideoIQQuantizedConv2d`]); its input is an LSTM
    state, bounded by 1."""

    def __init__(self, bits: int, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._set_up_quantization(bits, 1.0)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return F.linear(*self._quantized(inputs), self.bias)


class VideoIQQuantizedLSTMCell(nn.LSTMCell):
    """The policy's LSTM cell with both products at `bits` (weights, the frame features and the previous hidden
    state quantised; gates, nonlinearities and the cell state stay in floating point, as an integer kernel would
    keep its accumulators). The parameters are `nn.LSTMCell`'s, so the state dict is unchanged."""

    def __init__(self, bits: int, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size)
        self.bits = bits
        self.input_quantizer = VideoIQInputQuantizer(bits)
        self.hidden_quantizer = VideoIQInputQuantizer(bits, fixed_absmax=1.0)
        self._weight_cache: dict = {}

    def forward(self, inputs: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        return lstm_step(self, lstm_input_gates(self, inputs), state)


def lstm_input_gates(lstm: nn.LSTMCell, inputs: torch.Tensor) -> torch.Tensor:
    """The input side of an LSTM cell's gates, `W_ih x + b_ih`, for inputs of any leading shape (all the frames of a
    clip at once); quantised as in [`VideoIQQuantizedLSTMCell`] when `lstm` is one."""
    if isinstance(lstm, VideoIQQuantizedLSTMCell):
        return F.linear(lstm.input_quantizer(inputs), _quantized_parameter(lstm, "weight_ih", lstm.bits), lstm.bias_ih)
    return F.linear(inputs, lstm.weight_ih, lstm.bias_ih)


def lstm_step(lstm: nn.LSTMCell, input_gates: torch.Tensor,
              state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of an LSTM cell (`nn.LSTMCell`'s gate order: input, forget, cell, output) from its input gates
    ([`lstm_input_gates`]) and the previous `(hidden, cell)`; returns the new `(hidden, cell)`."""
    hidden, cell = state
    if isinstance(lstm, VideoIQQuantizedLSTMCell):
        hidden_gates = F.linear(lstm.hidden_quantizer(hidden), _quantized_parameter(lstm, "weight_hh", lstm.bits),
                                lstm.bias_hh)
    else:
        hidden_gates = F.linear(hidden, lstm.weight_hh, lstm.bias_hh)
    input_gate, forget_gate, cell_gate, output_gate = (input_gates + hidden_gates).chunk(4, dim=-1)
    cell = torch.sigmoid(forget_gate) * cell + torch.sigmoid(input_gate) * torch.tanh(cell_gate)
    return torch.sigmoid(output_gate) * torch.tanh(cell), cell


# -- any-precision layers --------------------------------------------------------------------------------------------
def fold_batchnorm(weight: torch.Tensor, norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """A convolution weight and bias computing `norm(conv(x, weight))` in one convolution, with `norm`'s running
    statistics (inference): `weight * s` and `beta - mean * s` per output channel, `s = gamma / sqrt(var + eps)`."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    return weight * scale.view(-1, 1, 1, 1), norm.bias - norm.running_mean * scale


BATCHNORM_STATE = ("weight", "bias", "running_mean", "running_var")
"""What a folded BatchNorm is computed from."""


class VideoIQAnyPrecisionConv2d(nn.Conv2d):
    """A convolution whose input activations (PACT, one clip value per bit-width) and weights (DoReFa with LSB
    truncation) are quantised to the bit-width chosen at call time; one weight tensor serves every bit-width.

    Args:
        bit_width_family (`list[int]`): the bit-widths, highest first.
        args, kwargs: those of `nn.Conv2d` (no bias).
    """

    def __init__(self, bit_width_family: list[int], *args, **kwargs):
        super().__init__(*args, bias=False, **kwargs)
        self.bit_width_family = list(bit_width_family)
        # one clip value per bit-width (separate parameters: the recipe gives each bit-width its own LR and decay)
        self.pact_alpha = nn.ParameterList(nn.Parameter(torch.empty(())) for _ in self.bit_width_family)
        self.last_bits = FULL_PRECISION_BITS  # the bit-width of the latest call (read by the BitOPs counter)
        self._weight_cache: dict = {}  # inference only: bits -> (weight version, quantised weight)
        self._folded_cache: dict = {}  # inference only: bits -> (versions, weight and bias with a BatchNorm folded)

    def quantized_weight(self, bits: int | None) -> torch.Tensor:
        """The weight at `bits` (None: full precision). Without autograd the result is cached per bit-width until
        the weight changes (an optimiser step or a load bumps its version), so inference does not re-quantise the
        shared weight on every call."""
        return _cached_weight(self._weight_cache, bits, self.weight,
                              lambda weight: quantize_weight(weight, bits, self.bit_width_family[0]))

    def folded_weight(self, bits: int | None, norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
        """The weight at `bits` with `norm` folded in, and its bias (inference; cached until either changes)."""
        return _cached_weight(self._folded_cache, bits, self.weight,
                              lambda weight: fold_batchnorm(self.quantized_weight(bits), norm),
                              also=tuple(getattr(norm, name) for name in BATCHNORM_STATE))

    def forward(self, inputs: torch.Tensor, precision: int | None = None,
                norm: "VideoIQSwitchableBatchNorm2d | None" = None) -> torch.Tensor:
        """Run at the family's `precision`-th bit-width (None: full precision, clip value of the top bit-width),
        followed by `norm` at that precision when given: at inference (no autograd, `norm` in eval mode) folded into
        the convolution, one call instead of two."""
        bits = None if precision is None else self.bit_width_family[precision]
        self.last_bits = FULL_PRECISION_BITS if bits is None else bits
        alpha = self.pact_alpha[0 if precision is None else precision]
        batch_norm = None if norm is None else norm.norms[0 if precision is None else precision]
        folded = batch_norm is not None and not batch_norm.training and not torch.is_grad_enabled()
        weight, bias = self.folded_weight(bits, batch_norm) if folded else (self.quantized_weight(bits), None)
        outputs = F.conv2d(pact(inputs, alpha, bits), weight, bias, self.stride, self.padding, self.dilation,
                           self.groups)
        return outputs if batch_norm is None or folded else batch_norm(outputs)


class VideoIQSwitchableBatchNorm2d(nn.Module):
    """One BatchNorm per bit-width (full precision uses the top bit-width's)."""

    def __init__(self, num_precisions: int, channels: int):
        super().__init__()
        self.norms = nn.ModuleList(nn.BatchNorm2d(channels) for _ in range(num_precisions))

    def forward(self, inputs: torch.Tensor, precision: int | None = None) -> torch.Tensor:
        return self.norms[0 if precision is None else precision](inputs)


@dataclass
class VideoIQConvCalibration:
    """What calibration saw of one any-precision convolution at one bit-width (float simulation, BatchNorm folded):
    the lowest and highest output, and the mean input patch `(in_channels, kh, kw)` after PACT, over every output
    position of the calibration frames (zero padding included)."""

    low: float
    high: float
    input_patch_mean: torch.Tensor

    @classmethod
    def observe(cls, conv: "VideoIQAnyPrecisionConv2d", precision: int, inputs: torch.Tensor,
                outputs: torch.Tensor) -> "VideoIQConvCalibration":
        """The statistics of one call `outputs = conv(inputs, precision, norm)`."""
        quantised = pact(inputs, conv.pact_alpha[precision], conv.bit_width_family[precision]).double()
        # the summed input patches are the gradient of the summed outputs with respect to a one-channel weight
        ones = quantised.new_ones(outputs.shape[0], 1, *outputs.shape[2:])
        patch_sum = torch.nn.grad.conv2d_weight(quantised, (1, conv.in_channels, *conv.kernel_size), ones,
                                                conv.stride, conv.padding, conv.dilation)[0]
        return cls(float(outputs.min()), float(outputs.max()), patch_sum / ones.numel())


def _int8_convolution(conv: VideoIQAnyPrecisionConv2d, bits: int, norm: nn.BatchNorm2d,
                      calibration: VideoIQConvCalibration, output_grid: tuple[float, int] | None = None):
    """PyTorch's quantized convolution for `conv` at `bits` with `norm` folded in: the folded weight re-quantised per
    output channel to signed 8 bits (the `bits` grid times the BatchNorm's scale: exact up to one rounding), the
    output an unsigned 8-bit tensor of `output_grid` (scale, zero point; default the calibrated output range,
    `_output_grid`). The folded bias (float) is corrected
    by the mean output change that the weight's rounding makes on the calibration inputs (empirical bias correction,
    Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization and Bias Correction"): the inputs are
    non-negative, so the rounding errors of a channel's weights do not average out, and on the coarse PACT grids below
    8 bits a shifted mean moves many activations by a whole level."""
    import torch.ao.nn.quantized as nnq

    weight, bias = (tensor.detach().float().cpu() for tensor in conv.folded_weight(bits, norm))
    scales = weight.abs().amax(dim=(1, 2, 3)).clamp_min(1e-8).double() / 127
    zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
    quantised = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
    rounding = quantised.dequantize().double() - weight.double()
    bias = bias - (rounding * calibration.input_patch_mean.cpu()).sum(dim=(1, 2, 3)).float()
    kernel = nnq.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                        padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True)
    kernel.set_weight_bias(quantised, bias)
    output_scale, output_zero_point = output_grid or _output_grid(calibration)
    kernel.scale, kernel.zero_point = float(output_scale), int(output_zero_point)
    return kernel


def _output_grid(calibration: VideoIQConvCalibration) -> tuple[float, int]:
    """Scale and zero point of an unsigned 8-bit tensor covering the calibrated output range (widened to hold 0)."""
    low, high = min(calibration.low, 0.0), max(calibration.high, 0.0)
    scale = max(high - low, 1e-6) / 255
    return scale, int(min(max(round(-low / scale), 0), 255))


class VideoIQInt8Block:
    """One residual block at one bit-width (8 or less) on PyTorch's quantized CPU kernels, for inference.

    Each convolution has its BatchNorm folded in and its bias corrected for the rounding of its weights to 8 bits
    (see `_int8_convolution`). PACT at k <= 8 bits is exactly an unsigned 8-bit tensor (scale
    alpha / (2^k - 1), zero point 0), so every convolution but the last writes its output straight onto the next
    convolution's PACT grid (zero point 0 is the ReLU, the top of the grid PACT's clip, with one more clamp below 8
    bits): between them nothing returns to float. The last convolution's and the shortcut's outputs are rounded to
    8 bits over their calibrated range (lowest to highest value seen), then added and rectified in float, where the
    next block's PACT reads them. Built by `VideoIQResidualBlock.prepare_int8`; stale (`built_from.current()` False)
    once a weight, clip value or BatchNorm of the block changes."""

    def __init__(self, block: "VideoIQResidualBlock", precision: int, calibration: dict):
        pairs = block.conv_norm_pairs()
        self.bits = bits = pairs[0][0].bit_width_family[precision]
        levels = 2 ** bits - 1
        self.alphas = [float(conv.pact_alpha[precision]) for conv, _ in pairs]
        self.kernels = []
        for index, (conv, norm) in enumerate(pairs):
            # every convolution but the last writes onto the next one's PACT grid; the last over its calibrated range
            next_grid = (self.alphas[index + 1] / levels, 0) if index + 1 < len(pairs) else None
            self.kernels.append(_int8_convolution(conv, bits, norm.norms[precision], calibration[conv], next_grid))
        self.shortcut = None
        if block.downsample is not None:
            self.shortcut_alpha = float(block.downsample.pact_alpha[precision])
            self.shortcut = _int8_convolution(block.downsample, bits, block.downsample_bn.norms[precision],
                                              calibration[block.downsample])
        self.built_from = _SourceSnapshot(block.int8_sources(precision))

    def _quantize_input(self, inputs: torch.Tensor, alpha: float) -> torch.Tensor:
        if self.bits < 8:  # below 8 bits the grid ends at alpha before the 8-bit range does
            inputs = inputs.clamp(0.0, alpha)
        return torch.quantize_per_tensor(inputs, alpha / (2 ** self.bits - 1), 0, torch.quint8)

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        inputs = inputs.contiguous(memory_format=CONV_MEMORY_FORMAT)
        quantised = self._quantize_input(inputs, self.alphas[0])
        hidden = quantised
        for index, kernel in enumerate(self.kernels):
            hidden = kernel(hidden)
            if index + 1 < len(self.kernels) and self.bits < 8:
                hidden = torch.clamp(hidden, 0.0, self.alphas[index + 1])
        outputs = hidden.dequantize()
        if self.shortcut is None:
            shortcut = inputs
        else:
            source = quantised if self.shortcut_alpha == self.alphas[0] else \
                self._quantize_input(inputs, self.shortcut_alpha)
            shortcut = self.shortcut(source).dequantize()
        return F.relu(outputs + shortcut)


class VideoIQResidualBlock(nn.Module):
    """What the basic and bottleneck blocks share: a chain of (any-precision convolution, switchable BatchNorm)
    pairs with ReLUs between, a shortcut (identity or a 1x1 any-precision convolution), the sum rectified; at
    inference each pair runs as one convolution (BatchNorm folded), or the whole block on int8 kernels once
    `prepare_int8` has run for the bit-width."""

    downsample: VideoIQAnyPrecisionConv2d | None

    def __init__(self):
        super().__init__()
        self._int8: dict = {}  # inference only: family index -> VideoIQInt8Block

    def conv_norm_pairs(self) -> list[tuple[VideoIQAnyPrecisionConv2d, VideoIQSwitchableBatchNorm2d]]:
        raise NotImplementedError

    def int8_sources(self, precision: int) -> list[tuple[nn.Module, str]]:
        """What the block's int8 kernels at family index `precision` are built from, as `(module, name)`: weights,
        clip values, BatchNorms."""
        pairs = self.conv_norm_pairs()
        if self.downsample is not None:
            pairs = [*pairs, (self.downsample, self.downsample_bn)]
        return [source for conv, norm in pairs
                for source in ((conv, "weight"), (conv.pact_alpha, str(precision)),
                               *((norm.norms[precision], name) for name in BATCHNORM_STATE))]

    def prepare_int8(self, precision: int, calibration: dict) -> None:
        """Build the int8 kernels at family index `precision` (see [`VideoIQInt8Block`]); `calibration` maps each of
        the block's convolutions to its [`VideoIQConvCalibration`] at that precision."""
        self._int8[precision] = VideoIQInt8Block(self, precision, calibration)

    def release_int8(self) -> None:
        self._int8.clear()

    def forward(self, inputs: torch.Tensor, precision: int | None = None) -> torch.Tensor:
        kernels = self._int8.get(precision) if precision is not None else None
        if kernels is not None and not torch.is_grad_enabled() and inputs.device.type == "cpu" \
                and kernels.built_from.current():
            return kernels(inputs)
        pairs = self.conv_norm_pairs()
        hidden = inputs
        for conv, norm in pairs[:-1]:
            hidden = F.relu(conv(hidden, precision, norm))
        conv, norm = pairs[-1]
        hidden = conv(hidden, precision, norm)
        shortcut = inputs if self.downsample is None else self.downsample(inputs, precision, self.downsample_bn)
        return F.relu(hidden + shortcut)


class VideoIQBasicBlock(VideoIQResidualBlock):
    expansion = 1

    def __init__(self, family: list[int], in_channels: int, channels: int, stride: int):
        super().__init__()
        count = len(family)
        self.conv1 = VideoIQAnyPrecisionConv2d(family, in_channels, channels, 3, stride=stride, padding=1)
        self.bn1 = VideoIQSwitchableBatchNorm2d(count, channels)
        self.conv2 = VideoIQAnyPrecisionConv2d(family, channels, channels, 3, padding=1)
        self.bn2 = VideoIQSwitchableBatchNorm2d(count, channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = VideoIQAnyPrecisionConv2d(family, in_channels, channels, 1, stride=stride)
            self.downsample_bn = VideoIQSwitchableBatchNorm2d(count, channels)

    def conv_norm_pairs(self):
        return [(self.conv1, self.bn1), (self.conv2, self.bn2)]


class VideoIQBottleneck(VideoIQResidualBlock):
    expansion = 4

    def __init__(self, family: list[int], in_channels: int, channels: int, stride: int):
        super().__init__()
        count, out_channels = len(family), channels * self.expansion
        self.conv1 = VideoIQAnyPrecisionConv2d(family, in_channels, channels, 1)
        self.bn1 = VideoIQSwitchableBatchNorm2d(count, channels)
        self.conv2 = VideoIQAnyPrecisionConv2d(family, channels, channels, 3, stride=stride, padding=1)
        self.bn2 = VideoIQSwitchableBatchNorm2d(count, channels)
        self.conv3 = VideoIQAnyPrecisionConv2d(family, channels, out_channels, 1)
        self.bn3 = VideoIQSwitchableBatchNorm2d(count, out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = VideoIQAnyPrecisionConv2d(family, in_channels, out_channels, 1, stride=stride)
            self.downsample_bn = VideoIQSwitchableBatchNorm2d(count, out_channels)

    def conv_norm_pairs(self):
        return [(self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)]


class VideoIQResNet(nn.Module):
    """The any-precision recognition backbone: a full-precision stem, then four stages of any-precision residual
    blocks, then global average pooling. `forward(frames, precision)` gives one feature vector per frame."""

    def __init__(self, config: VideoIQConfig):
        super().__init__()
        family, width = config.bit_width_family, config.base_width
        if config.stem_stride == 4:
            self.stem_conv = nn.Conv2d(config.num_channels, width, 7, stride=2, padding=3, bias=False)
        else:
            self.stem_conv = nn.Conv2d(config.num_channels, width, 3, stride=config.stem_stride, padding=1,
                                       bias=False)
        self.stem_bn = nn.BatchNorm2d(width)
        self.stem_pool = config.stem_stride == 4
        block = VideoIQBottleneck if config.backbone_depth == 50 else VideoIQBasicBlock
        blocks, in_channels = [], width
        for stage, count in enumerate(RESNET_STAGE_BLOCKS[config.backbone_depth]):
            channels = width * 2 ** stage
            for index in range(count):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(block(family, in_channels, channels, stride))
                in_channels = channels * block.expansion
        self.blocks = nn.ModuleList(blocks)
        self.num_features = in_channels

    def forward(self, frames: torch.Tensor, precision: int | None = None) -> torch.Tensor:
        hidden = F.relu(self.stem_bn(self.stem_conv(frames.contiguous(memory_format=CONV_MEMORY_FORMAT))))
        if self.stem_pool:
            hidden = F.max_pool2d(hidden, 3, stride=2, padding=1)
        for block in self.blocks:
            hidden = block(hidden, precision)
        return hidden.mean(dim=(2, 3))


# -- policy network --------------------------------------------------------------------------------------------------
MOBILENET_V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                         (6, 320, 1, 1))
"""MobileNetV2's inverted-residual stages: (expansion, channels, repeats, first stride)."""
SMALL_SETTINGS = ((1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 2, 2))
"""The `small` policy encoder: MobileNetV2's first three stages with expansion 4."""


def _divisible(value: float, divisor: int = 8) -> int:
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


def _policy_conv(bits: int, *args, **kwargs) -> nn.Conv2d:
    """A policy convolution: plain at full precision, else [`VideoIQQuantizedConv2d`] at `bits`."""
    if bits >= FULL_PRECISION_BITS:
        return nn.Conv2d(*args, **kwargs)
    return VideoIQQuantizedConv2d(bits, *args, **kwargs)


class VideoIQInvertedResidual(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int,
                 bits: int = FULL_PRECISION_BITS):
        super().__init__()
        hidden = in_channels * expansion
        layers = []
        if expansion != 1:
            layers += [_policy_conv(bits, in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
                       nn.ReLU6(inplace=True)]
        layers += [_policy_conv(bits, hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),
                   nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
                   _policy_conv(bits, hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]
        self.layers = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, inputs):
        output = self.layers(inputs)
        return inputs + output if self.residual else output


class VideoIQPolicyEncoder(nn.Module):
    """MobileNetV2 (or its small variant) features of one frame: conv stem, inverted residuals, a 1x1 conv to
    `policy_feature_size` channels, global average pooling. Below 32 `policy_bit_width`, every convolution but the
    stem's is quantised."""

    def __init__(self, config: VideoIQConfig):
        super().__init__()
        multiplier = config.policy_width_multiplier
        settings = MOBILENET_V2_SETTINGS if config.policy_backbone == "mobilenet_v2" else SMALL_SETTINGS
        first = _divisible((32 if config.policy_backbone == "mobilenet_v2" else 16) * multiplier)
        layers = [nn.Conv2d(config.num_channels, first, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(first),
                  nn.ReLU6(inplace=True)]
        in_channels = first
        for expansion, channels, repeats, stride in settings:
            out_channels = _divisible(channels * multiplier)
            for index in range(repeats):
                layers.append(VideoIQInvertedResidual(in_channels, out_channels, stride if index == 0 else 1,
                                                      expansion, config.policy_bit_width))
                in_channels = out_channels
        layers += [_policy_conv(config.policy_bit_width, in_channels, config.policy_feature_size, 1, bias=False),
                   nn.BatchNorm2d(config.policy_feature_size), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self._folded: tuple | None = None  # inference only: (_SourceSnapshot, the folded copy of `features`)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        frames = frames.contiguous(memory_format=CONV_MEMORY_FORMAT)
        if torch.is_grad_enabled() or self.training:
            return self.features(frames).mean(dim=(2, 3))
        return self.folded_features()(frames).mean(dim=(2, 3))

    def folded_features(self) -> nn.Sequential:
        """`features` for inference: a copy in which every full-precision convolution has the BatchNorm that follows
        it folded in (`fold_batchnorm`; quantised convolutions keep theirs), rebuilt when any parameter or buffer of
        `features` changes in place or is replaced. Equal to `features` in eval mode up to float rounding."""
        if self._folded is not None and self._folded[0].current():
            return self._folded[1]
        built_from = _SourceSnapshot([(owner, name) for owner in self.features.modules()
                                      for name, _ in itertools.chain(owner.named_parameters(recurse=False),
                                                                     owner.named_buffers(recurse=False))])
        folded = copy.deepcopy(self.features)
        with torch.no_grad():
            for sequential in folded.modules():
                if not isinstance(sequential, nn.Sequential):
                    continue
                for index in range(len(sequential) - 1):
                    conv, norm = sequential[index], sequential[index + 1]
                    if type(conv) is nn.Conv2d and isinstance(norm, nn.BatchNorm2d):
                        weight, bias = fold_batchnorm(conv.weight, norm)
                        conv.weight = nn.Parameter(weight, requires_grad=False)
                        conv.bias = nn.Parameter(bias, requires_grad=False)
                        sequential[index + 1] = nn.Identity()
        folded.eval()
        self._folded = (built_from, folded)
        return folded


@dataclass
class VideoIQPolicyOutput(ModelOutput):
    """Output of [`VideoIQPolicyNetwork`].

    Args:
        actions (`torch.FloatTensor` of shape `(batch_size, num_frames, num_actions)`): one-hot decision per frame
            (hard Gumbel-softmax with straight-through gradients when sampling).
        logprobs (`torch.FloatTensor` of shape `(batch_size, num_frames, num_actions)`): the policy's log-softmax.
        decided (`torch.BoolTensor` of shape `(batch_size, num_frames)`): the frame's action was decided there (False
            for the frames a longer skip carried over).
        aux_logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`, *optional*): the auxiliary classifier.
        precision_actions (`torch.FloatTensor` of shape `(batch_size, num_frames, num_precisions)`, *optional*): when
            sampling, the bit-width each frame would run at if kept: the hard Gumbel-softmax over the bit-widths alone
            (the same noise), whose straight-through gradient does not reach the skip actions.
    """

    actions: torch.FloatTensor | None = None
    logprobs: torch.FloatTensor | None = None
    decided: torch.BoolTensor | None = None
    aux_logits: torch.FloatTensor | None = None
    precision_actions: torch.FloatTensor | None = None


class VideoIQPolicyNetwork(nn.Module):
    """Per-frame decisions: frame encoder on downsampled frames -> dropout -> LSTM cell over time -> linear -> one
    action per frame (a bit-width of the family or a skip), plus an optional auxiliary classifier. At
    `policy_bit_width` < 32 every layer but the encoder's stem is quantised (see `VideoIQConfig`)."""

    def __init__(self, config: VideoIQConfig):
        super().__init__()
        self.config = config
        self.encoder = VideoIQPolicyEncoder(config)
        self.dropout = nn.Dropout(config.policy_dropout)
        bits = config.policy_bit_width
        if bits >= FULL_PRECISION_BITS:
            self.lstm = nn.LSTMCell(config.policy_feature_size, config.policy_hidden_size)
            linear = nn.Linear
        else:
            self.lstm = VideoIQQuantizedLSTMCell(bits, config.policy_feature_size, config.policy_hidden_size)
            linear = functools.partial(VideoIQQuantizedLinear, bits)
        self.action_head = linear(config.policy_hidden_size, config.num_actions)
        self.aux_classifier = linear(config.policy_hidden_size, config.num_labels) \
            if config.policy_aux_classifier else None

    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Features `(B, T, policy_feature_size)` of the frames, downsampled to `policy_image_size`."""
        batch, frames = pixel_values.shape[:2]
        flat = pixel_values.flatten(0, 1)
        size = self.config.policy_image_size
        if flat.shape[-1] != size or flat.shape[-2] != size:
            flat = F.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False)
        return self.encoder(flat).view(batch, frames, -1)

    def forward(self, pixel_values: torch.Tensor, sample: bool = False, temperature: float = 1.0,
                generator: torch.Generator | None = None) -> VideoIQPolicyOutput:
        """Decisions for the frames of `pixel_values` `(B, T, C, H, W)`: the most likely action per frame, or with
        `sample` a hard Gumbel-softmax sample at `temperature`."""
        features = self.dropout(self.encode(pixel_values))
        if sample or self.training or any(length > 1 for length in self.config.skip_list) \
                or not self._lstm_input_range_fixed():
            return self.decide_frame_by_frame(features, sample, temperature, generator)
        return self.decide_all_frames(features)

    def _lstm_input_range_fixed(self) -> bool:
        """Whether the LSTM quantises its inputs over a range that does not depend on the call (always at full
        precision; once trained when quantised): only then may one call cover all the frames."""
        quantizer = getattr(self.lstm, "input_quantizer", None)
        return quantizer is None or float(quantizer.absmax) > 0

    def decide_all_frames(self, features: torch.Tensor) -> VideoIQPolicyOutput:
        """The most likely action of every frame where no decision feeds back into the next ones (inference without
        sampling, no skip longer than one frame): only the LSTM recurrence runs frame by frame; the input side of its
        gates and the heads run on all frames at once. Equals [`decide_frame_by_frame`] with `sample=False` there
        with a fraction of its calls (the policy is a few percent of the multiply-adds but many small calls)."""
        config = self.config
        batch, frames = features.shape[:2]
        input_gates = lstm_input_gates(self.lstm, features)
        hidden = features.new_zeros(batch, config.policy_hidden_size)
        cell = features.new_zeros(batch, config.policy_hidden_size)
        states = []
        for t in range(frames):
            hidden, cell = lstm_step(self.lstm, input_gates[:, t], (hidden, cell))
            states.append(hidden)
        states = torch.stack(states, 1)
        logprobs = F.log_softmax(self.action_head(states), dim=-1)
        actions = F.one_hot(logprobs.argmax(-1), config.num_actions).to(logprobs.dtype)
        if config.policy_keeps_a_frame:
            actions = keep_a_frame(actions, logprobs, config.num_precisions)
        aux = self.aux_classifier(states.mean(1)) if self.aux_classifier is not None else None
        return VideoIQPolicyOutput(actions=actions, logprobs=logprobs, aux_logits=aux,
                                   decided=torch.ones(batch, frames, dtype=torch.bool, device=features.device))

    def decide_frame_by_frame(self, features: torch.Tensor, sample: bool = False, temperature: float = 1.0,
                              generator: torch.Generator | None = None) -> VideoIQPolicyOutput:
        """Decisions frame after frame from the encoded frames `(B, T, policy_feature_size)`: a skip of n frames
        carries its action and the LSTM state over the next n - 1 frames; with `sample`, hard Gumbel-softmax
        samples (and the bit-width each frame would run at if kept)."""
        config = self.config
        batch, frames = features.shape[:2]
        skip_lengths = torch.tensor([0] * config.num_precisions + list(config.skip_list), device=features.device)
        hidden = features.new_zeros(batch, config.policy_hidden_size)
        cell = features.new_zeros(batch, config.policy_hidden_size)
        remaining = torch.zeros(batch, dtype=torch.long, device=features.device)
        previous = None
        actions, logprobs, decided, states, precision_choices = [], [], [], [], []
        previous_precision = None
        for t in range(frames):
            new_hidden, new_cell = self.lstm(features[:, t], (hidden, cell))
            logprob = F.log_softmax(self.action_head(new_hidden), dim=-1)
            if sample:
                choice, precision_choice = _hard_gumbel_softmax(logprob, temperature, config.num_precisions,
                                                                generator)
            else:
                choice = F.one_hot(logprob.argmax(-1), config.num_actions).to(logprob.dtype)
            carried = remaining > 0
            if previous is not None:
                choice = torch.where(carried[:, None], previous, choice)
            if sample:
                if previous_precision is not None:
                    precision_choice = torch.where(carried[:, None], previous_precision, precision_choice)
                previous_precision = precision_choice
                precision_choices.append(precision_choice)
            keep = carried[:, None]
            hidden = torch.where(keep, hidden, new_hidden)
            cell = torch.where(keep, cell, new_cell)
            chosen_skip = skip_lengths[choice.argmax(-1)]
            remaining = torch.where(carried, remaining - 1, (chosen_skip - 1).clamp_min(0))
            previous = choice
            actions.append(choice)
            logprobs.append(logprob)
            decided.append(~carried)
            states.append(hidden)
        aux = None
        if self.aux_classifier is not None:
            aux = self.aux_classifier(torch.stack(states, 1).mean(1))
        actions, logprobs = torch.stack(actions, 1), torch.stack(logprobs, 1)
        if not sample and config.policy_keeps_a_frame:
            actions = keep_a_frame(actions, logprobs, config.num_precisions)
        return VideoIQPolicyOutput(actions=actions, logprobs=logprobs,
                                   decided=torch.stack(decided, 1), aux_logits=aux,
                                   precision_actions=torch.stack(precision_choices, 1) if sample else None)


def keep_a_frame(actions: torch.Tensor, logprobs: torch.Tensor, num_precisions: int) -> torch.Tensor:
    """One-hot `actions` `(B, T, A)` in which a clip that skips every frame keeps the frame with the highest
    probability of being kept, at its most likely bit-width (`logprobs`: the policy's, same shape)."""
    skipped_all = actions[..., :num_precisions].sum((1, 2)) == 0
    if not skipped_all.any():
        return actions
    precision_logprobs = logprobs[..., :num_precisions]
    frame = precision_logprobs.logsumexp(-1).argmax(1)  # (B,): the frame least likely skipped
    rows = torch.arange(actions.shape[0], device=actions.device)
    bit_width = precision_logprobs[rows, frame].argmax(-1)
    kept = actions.clone()
    kept[rows[skipped_all], frame[skipped_all]] = F.one_hot(bit_width[skipped_all], actions.shape[-1]).to(actions)
    return kept


def _straight_through_one_hot(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """One-hot argmax of `scores` with the gradient of softmax(scores / temperature)."""
    soft = F.softmax(scores / temperature, dim=-1)
    hard = F.one_hot(soft.argmax(-1), scores.shape[-1]).to(soft.dtype)
    return hard + soft - soft.detach()


def _hard_gumbel_softmax(logprob: torch.Tensor, temperature: float, num_precisions: int, generator=None):
    """One-hot sample of softmax((logprob + Gumbel noise) / temperature), straight-through gradients; and the
    sample over the first `num_precisions` actions alone (the same noise): the action the frame would take if it
    were kept, whose gradient does not reach the other actions."""
    uniform = torch.rand(logprob.shape, generator=generator, device=logprob.device, dtype=logprob.dtype) \
        if generator is not None else torch.rand_like(logprob)
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-10, 1.0 - 1e-7)))
    perturbed = logprob + gumbel
    return (_straight_through_one_hot(perturbed, temperature),
            _straight_through_one_hot(perturbed[..., :num_precisions], temperature))


# -- the model -------------------------------------------------------------------------------------------------------
@dataclass
class VideoIQOutput(ModelOutput):
    """Output of [`VideoIQForVideoClassification`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): cross-entropy, when `labels` are given.
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`): class scores of each clip.
        policy (`torch.FloatTensor` of shape `(batch_size, num_frames, num_actions)`, *optional*): one-hot action
            per frame (bit-widths of the family, then skips); absent when a uniform `precision` was asked for.
        policy_logprobs (`torch.FloatTensor`, *optional*): the policy's log-probabilities, same shape.
        policy_aux_logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`, *optional*): the policy's
            auxiliary classifier.
        bitops (`torch.FloatTensor` of shape `(batch_size,)`): exact bit operations per video (weight bits x
            activation bits x multiply-adds, per layer; policy network included).
        macs (`torch.FloatTensor` of shape `(batch_size,)`): multiply-adds executed per video (policy included).
        gflops_proxy (`torch.FloatTensor` of shape `(batch_size,)`): the paper's GFLOPs proxy per video.
        kept_frame_logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`, *optional*): training path
            only: `logits` with the skip decisions held fixed, so that their gradient reaches only the choice of
            bit-width of the kept frames (the student of `policy.kd_frames: executed`).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    policy: torch.FloatTensor | None = None
    policy_logprobs: torch.FloatTensor | None = None
    policy_aux_logits: torch.FloatTensor | None = None
    kept_frame_logits: torch.FloatTensor | None = None
    bitops: torch.FloatTensor | None = None
    macs: torch.FloatTensor | None = None
    gflops_proxy: torch.FloatTensor | None = None


class VideoIQPreTrainedModel(CheckedLoadingMixin, PreTrainedModel):
    """Weight initialisation and loading of VideoIQ models."""

    config: VideoIQConfig
    base_model_prefix = "videoiq"
    main_input_name = "pixel_values"
    input_modalities = ("video",)

    @torch.no_grad()
    def _init_weights(self, module):
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
            if isinstance(module, VideoIQAnyPrecisionConv2d):
                for alpha in module.pact_alpha:
                    init.constant_(alpha, self.config.pact_init)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)
        elif isinstance(module, nn.LSTMCell):
            bound = 1.0 / math.sqrt(module.hidden_size)
            for weight in (module.weight_ih, module.weight_hh, module.bias_ih, module.bias_hh):
                init.uniform_(weight, -bound, bound)
        elif isinstance(module, VideoIQInputQuantizer) and module.fixed_absmax is None:
            init.zeros_(module.absmax)  # 0: not calibrated yet


class VideoIQForVideoClassification(VideoIQPreTrainedModel):
    """VideoIQ: an any-precision recognition network and a per-frame policy over bit-widths and skips.

    `model(pixel_values)` in eval mode runs the policy (argmax), then each frame at its chosen precision only.
    `model(pixel_values, precision=bits)` runs every frame at one bit-width of the family (or `"full"`: unquantised),
    without the policy. In training mode the policy samples hard Gumbel-softmax decisions and every precision runs on
    every frame so that the decisions get gradients (the paper's training path).
    """

    def __init__(self, config: VideoIQConfig):
        super().__init__(config)
        self.backbone = VideoIQResNet(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(self.backbone.num_features, config.num_labels)
        self.policy = VideoIQPolicyNetwork(config)
        self._costs: dict | None = None
        self.post_init()

    # ---------------------------------------------------------------------------------------------- inputs
    def precision_index(self, precision) -> int | None:
        """The family index of `precision` (a bit-width of the family, or `"full"` -> None)."""
        if precision == FULL_PRECISION:
            return None
        family = self.config.bit_width_family
        if isinstance(precision, bool) or not isinstance(precision, int) or precision not in family:
            raise ConfigError(f"precision {precision!r} is not a bit-width of this model's family {family}",
                              f"pass one of {family}, or '{FULL_PRECISION}' for the unquantised network")
        return family.index(precision)

    def check_pixel_values(self, pixel_values) -> None:
        """Raise `ConfigError` unless `pixel_values` is a float tensor `(B, T, C, H, W)` this model reads."""
        config = self.config
        expected = f"(batch, {config.num_frames}, {config.num_channels}, {config.image_size}, {config.image_size})"
        if not isinstance(pixel_values, torch.Tensor) or not pixel_values.is_floating_point():
            raise ConfigError(f"pixel_values is a {type(pixel_values).__name__} "
                              f"{getattr(pixel_values, 'dtype', '')}, not a float tensor",
                              f"pass a float tensor {expected} (the VideoIQ processor makes one)")
        if pixel_values.dim() != 5:
            raise ConfigError(f"pixel_values has shape {tuple(pixel_values.shape)}, expected {expected}",
                              "stack the frames of each clip: [batch, frames, channels, height, width]")
        _, frames, channels, height, width = pixel_values.shape
        if frames != config.num_frames:
            raise ConfigError(f"pixel_values has {frames} frames per clip, this model reads {config.num_frames}",
                              f"sample {config.num_frames} frames per clip (the processor's num_frames)")
        if channels != config.num_channels or height != config.image_size or width != config.image_size:
            raise ConfigError(f"pixel_values frames are {channels}x{height}x{width}, this model reads "
                              f"{config.num_channels}x{config.image_size}x{config.image_size}",
                              "resize the frames with the model's processor")

    # ---------------------------------------------------------------------------------------------- pieces
    def frame_features(self, frames: torch.Tensor, precision: int | None) -> torch.Tensor:
        """Backbone features `(N, num_features)` of `N` frames at family index `precision` (None: full)."""
        return self.backbone(frames, precision)

    def classify(self, features: torch.Tensor, executed: torch.Tensor) -> torch.Tensor:
        """Logits from per-frame features `(B, T, D)` averaged over the executed frames `(B, T)` (weights 0/1)."""
        count = executed.sum(1, keepdim=True).clamp_min(1.0)
        pooled = features.sum(1) / count
        return self.classifier(self.dropout(pooled))

    def run_uniform(self, pixel_values: torch.Tensor, precision: int | None,
                    kept: torch.Tensor | None = None) -> torch.Tensor:
        """Logits with every frame at family index `precision` (None: full precision), averaged over the frames
        `kept` `(B, T)` (weights 0/1; every frame when None)."""
        batch, frames = pixel_values.shape[:2]
        features = self.frame_features(pixel_values.flatten(0, 1), precision).view(batch, frames, -1)
        if kept is None:
            return self.classify(features, pixel_values.new_ones(batch, frames))
        return self.classify(features * kept[..., None], kept)

    def run_dynamic(self, pixel_values: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Logits with each frame run once at the precision its action names; skipped frames are not computed.

        Frames are grouped by action, so each precision runs one batch (BatchNorm must be in eval mode: statistics
        of a group would otherwise depend on which frames share it)."""
        batch, frames = actions.shape
        flat_frames = pixel_values.flatten(0, 1)
        flat_actions = actions.reshape(-1)
        features = None
        for index in range(self.config.num_precisions):
            chosen = (flat_actions == index).nonzero().squeeze(1)
            if chosen.numel() == 0:
                continue
            computed = self.frame_features(flat_frames[chosen], index)
            if features is None:
                features = computed.new_zeros(batch * frames, computed.shape[1])
            features[chosen] = computed
        if features is None:  # every frame skipped: the classifier sees zero features
            features = flat_frames.new_zeros(batch * frames, self.backbone.num_features)
        executed = (actions < self.config.num_precisions).to(features.dtype)
        return self.classify(features.view(batch, frames, -1), executed)

    def run_mixed(self, pixel_values: torch.Tensor, actions: torch.Tensor,
                  precision_actions: torch.Tensor | None = None):
        """The training path: every precision on every frame, mixed by the one-hot `actions` `(B, T, A)` so that the
        decisions receive gradients; skipped frames contribute zero features.

        With `precision_actions` `(B, T, num_precisions)` (the policy's bit-width per frame if kept), returns
        `(logits, kept_frame_logits)`: the second mixes the kept frames by `precision_actions` under the skip
        decisions of `actions` held fixed."""
        batch, frames = pixel_values.shape[:2]
        flat = pixel_values.flatten(0, 1)
        precisions = self.config.num_precisions
        per_precision = [self.frame_features(flat, index).view(batch, frames, -1) for index in range(precisions)]

        def mixed(weights):  # per-frame features mixed by one-hot weights over the bit-widths
            return sum(weights[..., i:i + 1] * per_precision[i] for i in range(precisions))

        executed = actions[..., :precisions].sum(-1)
        logits = self.classify(mixed(actions), executed)
        if precision_actions is None:
            return logits
        kept = executed.detach()
        return logits, self.classify(mixed(precision_actions) * kept[..., None], kept)

    # ---------------------------------------------------------------------------------------------- forward
    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.FloatTensor,
        labels: torch.LongTensor | None = None,
        precision: int | str | None = None,
        actions: torch.LongTensor | None = None,
        temperature: float | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> VideoIQOutput:
        r"""Classify clips `pixel_values` of shape `(batch_size, num_frames, num_channels, image_size, image_size)`.

        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*): class ids; when given, `loss` is the
            cross-entropy of `logits`.
        precision (`int` or `str`, *optional*): run every frame at this bit-width of the family (`"full"`:
            unquantised) without the policy.
        actions (`torch.LongTensor` of shape `(batch_size, num_frames)`, *optional*): run these per-frame actions
            (indices into `config.action_names`) instead of the policy's, dynamically.
        temperature (`float`, *optional*): Gumbel-softmax temperature of the training path (defaults to
            `config.temperature_init`).
        """
        self.check_pixel_values(pixel_values)
        # frames in contiguous (C, H, W) layout: channels-last strides (e.g. a permuted HWC array) reach oneDNN's
        # convolution backward, which corrupted the heap on an AVX2 CPU with one thread (torch 2.13)
        pixel_values = pixel_values.contiguous()
        config = self.config
        policy_output = kept_frame_logits = None
        if precision is not None:
            if actions is not None:
                raise ConfigError("both precision and actions were given", "pass one of them")
            index = self.precision_index(precision)
            logits = self.run_uniform(pixel_values, index)
            action_ids = torch.full(pixel_values.shape[:2], -1 if index is None else index, dtype=torch.long,
                                    device=pixel_values.device)
        elif actions is not None:
            actions = torch.as_tensor(actions, device=pixel_values.device)
            if actions.shape != pixel_values.shape[:2] or actions.dtype.is_floating_point:
                raise ConfigError(f"actions have shape {tuple(actions.shape)} ({actions.dtype}), expected integer "
                                  f"ids of shape {tuple(pixel_values.shape[:2])}",
                                  f"pass one action id per frame, in [0, {config.num_actions})")
            if actions.min() < 0 or actions.max() >= config.num_actions:
                raise ConfigError(f"an action id is outside [0, {config.num_actions})",
                                  f"use ids of {config.action_names}")
            action_ids = _expand_skips(actions, config)
            logits = self.run_dynamic(pixel_values, action_ids)
        else:
            sample = self.training
            policy_output = self.policy(pixel_values, sample=sample,
                                        temperature=temperature or config.temperature_init)
            action_ids = policy_output.actions.argmax(-1)
            if sample:
                logits, kept_frame_logits = self.run_mixed(pixel_values, policy_output.actions,
                                                           policy_output.precision_actions)
            else:
                logits = self.run_dynamic(pixel_values, action_ids)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        costs = self.video_costs(action_ids, with_policy=policy_output is not None)
        return VideoIQOutput(
            loss=loss, logits=logits,
            policy=policy_output.actions if policy_output is not None else None,
            policy_logprobs=policy_output.logprobs if policy_output is not None else None,
            policy_aux_logits=policy_output.aux_logits if policy_output is not None else None,
            kept_frame_logits=kept_frame_logits,
            bitops=costs["bitops"], macs=costs["macs"], gflops_proxy=costs["gflops_proxy"],
        )

    @torch.no_grad()
    def prepare_int8_kernels(self, pixel_values: torch.Tensor, bit_widths: list[int] | None = None) -> list[int]:
        """Run the bit-widths of 8 or less (or `bit_widths`) on PyTorch's quantized CPU kernels (best effort).

        Every residual block gets int8 kernels per bit-width (see [`VideoIQInt8Block`]: BatchNorms folded, the
        activations kept in 8 bits from one convolution to the next inside a block), the ranges of the blocks'
        outputs calibrated on `pixel_values` `(B, T, C, H, W)` (a few training clips) run in float simulation.
        Each convolution's mean input patch there corrects its bias for the rounding of its weights to 8 bits.
        Dynamic and uniform inference then use these kernels for those bit-widths until the block's weights change
        or `release_int8_kernels()` is called; accuracy must be measured on this path (weights re-quantised to 8 bits
        per channel, the blocks' outputs rounded to 8 bits). Returns the bit-widths prepared: none (float simulation
        stays) when the model is not on the CPU or the build has no quantized engine.
        """
        self.check_pixel_values(pixel_values)
        family = self.config.bit_width_family
        wanted = [bits for bits in family if bits <= 8] if bit_widths is None else list(bit_widths)
        for bits in wanted:
            self.precision_index(bits)  # a bit-width of the family
            if bits > 8:
                raise ConfigError(f"no 8-bit kernel path for bit-width {bits} of {family}",
                                  "prepare bit-widths of the family that are 8 or less")
        engine = torch.backends.quantized.engine
        if not wanted or self.classifier.weight.device.type != "cpu" or engine in (None, "none") or \
                engine not in torch.backends.quantized.supported_engines:
            return []
        self.release_int8_kernels()
        convs = [module for module in self.backbone.modules() if isinstance(module, VideoIQAnyPrecisionConv2d)]
        frames = pixel_values.flatten(0, 1)
        modes = [(module, module.training) for module in self.modules()]
        self.eval()
        try:
            for bits in wanted:
                precision = family.index(bits)
                calibration: dict = {}
                hooks = [conv.register_forward_hook(
                    lambda module, args, output: calibration.__setitem__(
                        module, VideoIQConvCalibration.observe(module, precision, args[0], output)))
                    for conv in convs]
                try:
                    self.backbone(frames, precision)
                finally:
                    for hook in hooks:
                        hook.remove()
                for block in self.backbone.blocks:
                    block.prepare_int8(precision, calibration)
                self.backbone(frames[:1], precision)  # an engine that lacks an op fails here, not later
        except (RuntimeError, NotImplementedError) as error:  # a build without the kernels: stay in float
            import warnings

            warnings.warn(f"VideoIQ: no int8 kernels ({error}); the bit-widths stay in float simulation")
            self.release_int8_kernels()
            return []
        finally:
            for module, training in modes:
                module.training = training
        return wanted

    def release_int8_kernels(self) -> None:
        """Drop the int8 kernels of `prepare_int8_kernels` (every bit-width back to float simulation)."""
        for block in self.backbone.blocks:
            block.release_int8()

    @contextlib.contextmanager
    def float_simulation(self):
        """Inside, every bit-width runs in float simulation; the int8 kernels prepared before come back after."""
        saved = [(block, dict(block._int8)) for block in self.backbone.blocks]
        try:
            self.release_int8_kernels()
            yield self
        finally:
            for block, kernels in saved:
                block._int8.clear()
                block._int8.update(kernels)

    @property
    def int8_bit_widths(self) -> list[int]:
        """The bit-widths currently running on int8 kernels."""
        family = self.config.bit_width_family
        return sorted((family[index] for index in self.backbone.blocks[0]._int8), reverse=True)

    @torch.no_grad()
    def spread_top_batchnorm(self) -> None:
        """Copy every switchable BatchNorm's top-precision (full-precision) statistics and affine parameters to the
        other bit-widths: the any-precision stage starts from the full-precision network this way."""
        for module in self.modules():
            if isinstance(module, VideoIQSwitchableBatchNorm2d):
                source = module.norms[0].state_dict()
                for norm in module.norms[1:]:
                    norm.load_state_dict(source)

    # ---------------------------------------------------------------------------------------------- costs
    def frame_costs(self) -> dict:
        """Per-frame costs, measured once with `effhub.costs.MultiplyAddCounter` on one frame per precision.

        Returns a dict: `stem_macs` (the full-precision first layer), `frame_macs` (the whole backbone per frame),
        `frame_bitops` (one value per bit-width of the family), `frame_bitops_full` (the full-precision network),
        `policy_macs` and `policy_bitops` (the policy network per frame: encoder, LSTM cell, action head; BitOPs at
        `policy_bit_width`, its full-precision stem at 32 x 32), `policy_stem_macs` (that stem),
        `policy_video_macs` and `policy_video_bitops` (per video: the auxiliary classifier), `video_macs` (per
        video, full precision: the classifier).
        """
        if self._costs is None:
            self._costs = measure_frame_costs(self)
        return self._costs

    def policy_video_costs(self) -> dict[str, float]:
        """The policy network's multiply-adds and BitOPs per video: every frame encoded and decided, the auxiliary
        classifier once."""
        costs, frames = self.frame_costs(), self.config.num_frames
        return {"macs": frames * costs["policy_macs"] + costs["policy_video_macs"],
                "bitops": frames * costs["policy_bitops"] + costs["policy_video_bitops"]}

    def video_costs(self, action_ids: torch.Tensor, with_policy: bool = True) -> dict[str, torch.Tensor]:
        """Per video: executed multiply-adds, BitOPs and the paper's GFLOPs proxy of the per-frame `action_ids`
        `(B, T)` (family index, a skip action id, or -1 for the unquantised network)."""
        costs = self.frame_costs()
        config = self.config
        precisions = config.num_precisions
        bits_table = torch.tensor(list(costs["frame_bitops"]) + [0.0] * len(config.skip_list)
                                  + [costs["frame_bitops_full"]], dtype=torch.float64)
        codebook = torch.tensor([min(b, 8) ** 2 / 64 for b in config.bit_width_family]
                                + [0.0] * len(config.skip_list) + [1.0], dtype=torch.float64)
        ids = action_ids.detach().cpu().long()
        ids = torch.where(ids < 0, torch.full_like(ids, config.num_actions), ids)
        executed = ((ids < precisions) | (ids == config.num_actions)).to(torch.float64)
        frames = ids.shape[1]  # the config's num_frames (checked at the input)
        policy = self.policy_video_costs() if with_policy else {"macs": 0.0, "bitops": 0.0}
        policy_macs, policy_bitops = policy["macs"], policy["bitops"]
        # the paper's policy proxy: its quantised layers weighted by the codebook entry of policy_bit_width
        policy_proxy = frames * costs["policy_stem_macs"] + (policy_macs - frames * costs["policy_stem_macs"]) \
            * min(config.policy_bit_width, 8) ** 2 / 64 if with_policy else 0.0
        macs = executed.sum(1) * costs["frame_macs"] + costs["video_macs"] + policy_macs
        bitops = bits_table[ids].sum(1) + costs["video_macs"] * FULL_PRECISION_BITS ** 2 + policy_bitops
        quantised = costs["frame_macs"] - costs["stem_macs"]
        proxy = frames * costs["stem_macs"] + quantised * codebook[ids].sum(1) + policy_proxy
        device = action_ids.device
        return {"macs": macs.float().to(device), "bitops": bitops.float().to(device),
                "gflops_proxy": (proxy / 1e9).float().to(device)}


def _expand_skips(actions: torch.Tensor, config: VideoIQConfig) -> torch.Tensor:
    """Given per-frame action ids, apply the skip semantics (skip s covers the next s - 1 frames too)."""
    skip_lengths = [0] * config.num_precisions + list(config.skip_list)
    result = actions.clone()
    for row in range(actions.shape[0]):
        remaining, last = 0, None
        for t in range(actions.shape[1]):
            if remaining > 0:
                result[row, t] = last
                remaining -= 1
                continue
            last = int(actions[row, t])
            remaining = max(skip_lengths[last] - 1, 0)
    return result


def bitops_weight(module: nn.Module) -> float:
    """The BitOPs weight of a layer for `MultiplyAddCounter`: weight bits x activation bits of its latest call
    (32 x 32 for full-precision layers)."""
    bits = getattr(module, "last_bits", FULL_PRECISION_BITS)
    return float(bits * bits)


@torch.no_grad()
def measure_frame_costs(model: VideoIQForVideoClassification) -> dict:
    """Measure the per-frame cost table of `model` (see `VideoIQForVideoClassification.frame_costs`)."""
    from ...costs import MultiplyAddCounter

    config = model.config
    modes = [(module, module.training) for module in model.modules()]  # restored one by one: parts may be frozen
    model.eval()
    # the counter hooks modules: count in float simulation (int8 kernels are not modules)
    try:
        with model.float_simulation():
            frame = torch.zeros(1, config.num_channels, config.image_size, config.image_size,
                                device=model.classifier.weight.device)
            with MultiplyAddCounter({"stem": model.backbone.stem_conv}) as stem:
                model.backbone(frame, None)
            with MultiplyAddCounter({"backbone": model.backbone}) as everything:
                model.backbone(frame, None)
            bitops = []
            for index in [*range(config.num_precisions), None]:
                with MultiplyAddCounter({"backbone": model.backbone}, weight=bitops_weight) as counter:
                    model.backbone(frame, index)
                bitops.append(counter.total)
            small = torch.zeros(1, config.num_channels, config.policy_image_size, config.policy_image_size,
                                device=frame.device)
            encoder = model.policy.encoder
            with MultiplyAddCounter({"encoder": encoder, "stem": encoder.features[0]}) as encoder_macs, \
                    MultiplyAddCounter({"encoder": encoder}, weight=bitops_weight) as encoder_bitops:
                encoder.features(small)  # its own layers (at inference its forward runs a folded copy)
    finally:
        for module, training in modes:
            module.training = training
    lstm = 4 * config.policy_hidden_size * (config.policy_feature_size + config.policy_hidden_size)
    head = config.policy_hidden_size * config.num_actions
    aux = config.policy_hidden_size * config.num_labels if config.policy_aux_classifier else 0
    # the LSTM cell and the heads run at the policy's bit-width (LSTMCell is not a counted module type)
    policy_bits = config.policy_bit_width ** 2
    return {"stem_macs": float(stem.total), "frame_macs": float(everything.total),
            "frame_bitops": [float(value) for value in bitops[:-1]], "frame_bitops_full": float(bitops[-1]),
            "policy_macs": float(encoder_macs.counts["encoder"] + lstm + head), "policy_video_macs": float(aux),
            "policy_stem_macs": float(encoder_macs.counts["stem"]),
            "policy_bitops": float(encoder_bitops.total + (lstm + head) * policy_bits),
            "policy_video_bitops": float(aux * policy_bits),
            "video_macs": float(model.classifier.in_features * model.classifier.out_features)}


__all__ = [
    "FULL_PRECISION",
    "VideoIQAnyPrecisionConv2d",
    "VideoIQConvCalibration",
    "VideoIQForVideoClassification",
    "VideoIQInputQuantizer",
    "VideoIQInt8Block",
    "VideoIQOutput",
    "VideoIQPolicyEncoder",
    "VideoIQPolicyNetwork",
    "VideoIQPolicyOutput",
    "VideoIQPreTrainedModel",
    "VideoIQQuantizedConv2d",
    "VideoIQQuantizedLSTMCell",
    "VideoIQQuantizedLinear",
    "VideoIQResNet",
    "VideoIQResidualBlock",
    "VideoIQSwitchableBatchNorm2d",
    "bitops_weight",
    "fold_batchnorm",
    "measure_frame_costs",
    "pact",
    "quantize_symmetric",
    "quantize_weight",
]
