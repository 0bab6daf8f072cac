"""Metric tests run torch on one thread: their tensors are small, and on a shared 2-core machine intra-op threads
contend with other processes and make elementwise ops up to 100x slower."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def single_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
