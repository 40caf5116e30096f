"""Fixtures shared by several test modules."""

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One torch thread for every test: the models are tiny, and threads contending for a shared CPU
    (or with the subprocesses some tests start) slow them down up to 10x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
