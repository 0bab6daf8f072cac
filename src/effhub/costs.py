"""Multiply-add counting: the accountant behind every method's computation figure.

A :class:`MultiplyAddCounter` hooks the convolutions and linear layers of named parts of a model, and sums the
multiply-adds each executes during the forward passes run inside it; modules a forward pass does not execute (a
skipped block) count nothing. A `weight` callable scales each module's count, so a bit-operation count is the same
accountant with the product of weight and activation bit-widths as the weight (0 for a module masked off).

    >>> with MultiplyAddCounter({"backbone": model.backbone}) as counter:
    ...     model.backbone(torch.zeros(1, 3, 64, 64))
    >>> counter.counts["backbone"]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

COUNTED_MODULES = (nn.Conv2d, nn.Conv1d, nn.Conv3d, nn.Linear)
"""The layers whose multiply-adds are counted (the rest of a vision network is negligible next to them)."""


def module_multiply_adds(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-adds of one sample through a convolution or linear layer, from its output.

    A convolution costs (kernel volume x input channels / groups) per output element; a linear layer costs its input
    features per output element. The first sample of the batch is counted (`output[0]`).

    Args:
        module (`nn.Module`): a convolution (`Conv1d`/`Conv2d`/`Conv3d`) or `nn.Linear`.
        output (`torch.Tensor`): the module's output, batch first.
    """
    if isinstance(module, nn.Linear):
        return int(output[0].numel() * module.in_features)
    kernel = module.in_channels // module.groups
    for size in module.kernel_size:
        kernel *= size
    return int(output[0].numel() * kernel)


class MultiplyAddCounter:
    """Context manager that counts the multiply-adds of named parts of a model during the forward passes inside it.

    Args:
        parts (`Mapping[str, nn.Module]`): name -> module; every counted layer under a module adds to its name.
        weight (`Callable[[nn.Module], float]`, *optional*): a factor per layer (bit-widths for bit operations,
            0 for a layer masked off); counts stay integers without it.
        module_types (`tuple[type, ...]`, defaults to :data:`COUNTED_MODULES`): the layer types counted.
    """

    def __init__(self, parts: Mapping[str, nn.Module], weight: Callable[[nn.Module], float] | None = None,
                 module_types: tuple[type, ...] = COUNTED_MODULES):
        self.parts = dict(parts)
        self.weight = weight
        self.module_types = module_types
        self.counts: dict[str, int | float] = {name: 0 for name in self.parts}
        self._hooks: list = []

    def _hook(self, part: str):
        def hook(module, inputs, output):
            count = module_multiply_adds(module, output)
            self.counts[part] += count if self.weight is None else count * self.weight(module)

        return hook

    def __enter__(self) -> MultiplyAddCounter:
        for part, root in self.parts.items():
            self._hooks += [module.register_forward_hook(self._hook(part)) for module in root.modules()
                            if isinstance(module, self.module_types)]
        return self

    def __exit__(self, *exc_info) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    @property
    def total(self) -> int | float:
        """The sum over parts."""
        return sum(self.counts.values())


def executed_fraction(executed: Mapping[str, int | float], everything: Mapping[str, int | float]) -> float:
    """The share of `everything`'s multiply-adds that `executed` runs (both `{part: count}`)."""
    return sum(executed.values()) / sum(everything.values())


__all__ = ["COUNTED_MODULES", "module_multiply_adds", "MultiplyAddCounter", "executed_fraction"]
