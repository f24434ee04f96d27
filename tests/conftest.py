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


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """pytest-xdist, on the controller: tell each worker the scheduling mode (a worker's
    own ``--dist`` reads "no")."""
    node.workerinput["pgm_dist"] = node.config.getoption("dist")


@pytest.hookimpl(trylast=True)  # after -m / -k have deselected
def pytest_collection_modifyitems(config, items):
    """Under ``-n N --dist worksteal``, start the tests marked ``cost(seconds)`` first,
    spread over the workers (tests/schedule.py says why and how)."""
    from tests.schedule import balanced

    workerinput = getattr(config, "workerinput", None)
    if workerinput is None or workerinput.get("pgm_dist") != "worksteal":
        return
    costs = [float(m.args[0]) if (m := item.get_closest_marker("cost")) else 0.0
             for item in items]
    items[:] = balanced(items, costs, int(workerinput["workercount"]))
