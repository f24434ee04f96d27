import os

import numpy as np
import pyro
import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")

# The tests' tensors are small: one intra-op thread is as fast on an idle machine and
# avoids the >10x slowdowns of spinning OpenMP/MKL threads on a busy one.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _clean_state():
    """Every test starts from an empty param store and a fixed global seed."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)
