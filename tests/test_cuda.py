"""The CUDA path (#16): every registered family, by every method it supports, end to end
on ``device="cuda"``: fit, ``log_prob`` (or the family's score), ``sample``, ArviZ, and
save / load onto the CPU and back onto the GPU.

The cases are the contract suite's (tests/cases.py), so a family registered later is
covered without a change here. These tests need a GPU: they skip on CPU-only machines
(CI has none) and run where the ``device`` tool lends one; the last such run is recorded
in docs/scale-out.md ("GPUs").
"""

import arviz as az
import pytest
import torch

import pyro_genmodels as pgm
from tests.cases import CASES, case_method_pairs, check_inference_data
from tests.distributed_worker import ORACLE_RUNS, fit_tensors, mcmc_fit, oracle_fit
from tests.test_distributed import assert_close, assert_trace_close, of_run, run_ok

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device here: the GPU path runs where one is lent")

#: float32 on the GPU sums in another order than on the CPU (and cuDNN may use TF32 in
#: convolutions), so a log density of a few hundred nats agrees to a few ulps of float32
#: times its terms' count, not bit for bit: 2e-4 relative covers sums of ~10^3 float32
#: terms (each rounding ~6e-8 relative), and atol the scores near zero
RTOL, ATOL = 2e-4, 1e-3


def _tensors(obj):
    """Every tensor in a sample: a tensor, or a tuple / list / dict of them (strings: none)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


def end_to_end(name: str, method: str, device: str, tmp_path) -> None:
    """Fit the case's data on ``device`` and check every facade call there, then the
    round trip through ``save`` / ``load`` onto the CPU and back onto ``device``."""
    case = CASES[name]
    data, held = case.make_data(0), case.make_data(1)
    fit = case.make_model().fit(data.x, method=method, seed=0, progress=False, device=device,
                                **data.kw, **case.fast_options[method])
    dev = torch.device(device).type
    # the fit's data, parameters, posterior draws and network weights live on the device
    assert fit.data.device.type == dev
    for k, v in fit.params.items():
        assert v.device.type == dev, k
    for k, v in (fit.posterior or {}).items():
        assert v.device.type == dev, k
    for k, v in fit.model.state_dict().items():
        assert v.device.type == dev, k
    # log_prob (or the family's score) of unseen rows given on the CPU: on the device
    score = case.score(fit, held)
    assert score.device.type == dev and score.shape == (len(held),)
    assert not torch.isnan(score).any()
    draws = fit.sample(17, seed=3, c=case.sample_c, **case.sample_options)
    case.check_sample(draws, 17)
    for t in _tensors(draws):
        assert t.device.type == dev
    check_inference_data(fit, method)
    # saved on the device, loaded on the CPU (the default) and back onto the device
    fit.save(tmp_path / "run")
    cpu = pgm.load(tmp_path / "run")
    for k, v in cpu.params.items():
        assert v.device.type == "cpu", k
    for k, v in fit.model.state_dict().items():
        assert torch.equal(cpu.model.state_dict()[k], v.cpu()), k
    if not case.monte_carlo_score:  # else the same weights (above) are what can agree
        torch.testing.assert_close(case.score(cpu, held), score.cpu(), rtol=RTOL, atol=ATOL)
    back = pgm.load(tmp_path / "run", device=device)
    for k, v in back.params.items():
        assert torch.equal(v, fit.params[k]), k
    torch.testing.assert_close(case.score(back, held), score, rtol=RTOL, atol=ATOL)
    check_inference_data(back, method)


@pytest.mark.parametrize("name,method", case_method_pairs())
def test_every_family_end_to_end_on_cuda(name, method, tmp_path):
    end_to_end(name, method, "cuda", tmp_path)


def test_a_posterior_with_many_chains_on_cuda():
    """Batched ChEES-HMC, 64 chains as one computation on the GPU, against the conjugate
    oracle: a known-covariance Gaussian's mean has the posterior N(N xbar / (N + 1/10^2),
    1 / (N + 1/10^2)) under its N(0, 10^2) prior; the draws' mean within 4 Monte Carlo
    standard errors (posterior sd / sqrt(ESS), ESS by ArviZ) and their sd within 4 of its
    own (about sd / sqrt(2 ESS))."""
    g = torch.Generator().manual_seed(0)
    n = 200
    x = torch.randn(n, 2, generator=g) + torch.tensor([1.0, -2.0])
    fit = pgm.Gaussian(2, covariance=torch.eye(2)).fit(
        x, method="chees", num_chains=64, warmup_steps=300, num_samples=200, seed=0,
        progress=False, device="cuda")
    loc = fit.posterior["loc"]
    assert loc.is_cuda and loc.shape == (64, 200, 2)
    precision = n + 1 / 10.0 ** 2
    mean, sd = (n * x.mean(0) / precision).double(), precision ** -0.5
    draws = loc.double().cpu()
    ess = torch.as_tensor(az.ess({"loc": draws.numpy()})["loc"].values)
    assert (ess > 1000).all(), ess  # 12,800 draws: ChEES mixes, else the check below is weak
    se = sd / ess.sqrt()
    got_mean, got_sd = draws.reshape(-1, 2).mean(0), draws.reshape(-1, 2).std(0)
    assert ((got_mean - mean).abs() < 4 * se).all(), (got_mean, mean, se)
    assert ((got_sd - sd).abs() < 4 * sd / (2 * ess).sqrt()).all(), (got_sd, sd, ess)


def test_a_data_parallel_fit_on_cuda_runs_on_nccl(tmp_path):
    """``distributed=True, device="cuda"`` under torchrun: the group is nccl, and the
    point fits (a flow's weights, lazily created Pyro params) and NUTS chains reach the
    one-process GPU fit to 1e-8 relative in float64, as the gloo oracle does on the CPU.
    One process: the machines lent here have one GPU, and nccl refuses two ranks on one
    device, so the two-rank split itself is the gloo oracle's (tests/test_distributed.py)."""
    ranks = run_ok("cuda", tmp_path, world=1)
    facts, tensors = ranks[0]
    for name in ORACLE_RUNS:
        one = oracle_fit(name, device="cuda")
        assert facts[name]["info"]["distributed"] == {"world_size": 1, "backend": "nccl"}
        assert_trace_close(facts[name]["losses"], one.losses, name)
        assert_close(of_run(tensors, name), fit_tensors(one), name)
    assert_close(of_run(tensors, "nuts"), fit_tensors(mcmc_fit(device="cuda")), "nuts")
