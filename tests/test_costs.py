"""The multiply-add accountant: per-layer counts, parts, skipped modules and per-layer weights."""

import torch
from torch import nn

from effhub.costs import MultiplyAddCounter, executed_fraction, module_multiply_adds


def test_counts_convolutions_and_linear_layers_per_part():
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
    grouped = nn.Conv2d(8, 8, kernel_size=3, padding=1, groups=4)
    head = nn.Linear(8, 5)
    with MultiplyAddCounter({"backbone": nn.Sequential(conv, grouped), "head": head}) as counter:
        features = grouped(conv(torch.zeros(2, 3, 4, 4)))
        head(features.mean(dim=(2, 3)))
    assert counter.counts == {"backbone": 8 * 16 * 27 + 8 * 16 * 18, "head": 5 * 8}  # one sample counted
    assert counter.total == sum(counter.counts.values())
    assert module_multiply_adds(head, torch.zeros(1, 5)) == 40


def test_modules_not_run_count_nothing_and_weights_scale():
    first, second = nn.Conv2d(1, 1, 1), nn.Conv2d(1, 1, 1)
    with MultiplyAddCounter({"net": nn.Sequential(first, second)}) as counter:
        first(torch.zeros(1, 1, 2, 2))  # `second` is skipped
    assert counter.counts["net"] == 4
    with MultiplyAddCounter({"net": nn.Sequential(first, second)}, weight=lambda m: 0.0 if m is first else 8.0) as c:
        second(first(torch.zeros(1, 1, 2, 2)))
    assert c.counts["net"] == 32.0
    assert executed_fraction({"a": 1, "b": 1}, {"a": 2, "b": 2}) == 0.5
    assert not first._forward_hooks  # hooks are removed on exit
