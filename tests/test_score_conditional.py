"""A conditional ScoreModel's prior at sigma_max is that of x given c: with the exact
conditional score plugged in, the ODE's draws and likelihood are those of p(x | c), and
Langevin starts at the mean predicted for c. The prior's slope and residual sd are a
least-squares fit, checked against ``torch.linalg.lstsq`` and per-class means, in any
units; a fit saved before the prior depended on c loads with the prior it was made with; a
streamed fit gets the prior of its sample of rows."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import TensorDataset

import pyro_genmodels as pgm
from pyro_genmodels._context import linear_prediction
from pyro_genmodels._rng import seeded
from pyro_genmodels.models.score_fit import prior_mean, prior_sd

SLOPE, NOISE, SIGMA_MAX, N = 2.0, 0.1, 20.0, 2000


def exact_rows(n=N):
    """c with mean 0 and sd 1, x = 2 c + 0.1 e, e with mean 0, sd 1 and orthogonal to c
    (all sds with n - 1, as the standardization takes them): the least-squares line of
    x on c is exactly x = 2 c with residual sd exactly 0.1, so the data-based prior is the
    exact p_sigma_max(y | c) and any error is the sampler's or the solver's."""
    with seeded(0):
        c, e = torch.randn(n, 1, dtype=torch.float64), torch.randn(n, 1, dtype=torch.float64)
    c = (c - c.mean()) / c.std()
    e = e - e.mean()
    e = e - (e * c).sum() / (c * c).sum() * c
    e = e / e.std()
    return SLOPE * c + NOISE * e, c


class ConditionalGaussianScore(torch.nn.Module):
    """The score of x | c ~ N(a c, v) blurred at sigma, -(x - a c) / (v + sigma^2), in the
    networks' units: standardized x = x / sx (sx = sqrt(a^2 + v), the data's sd), and c
    as it is (mean 0, sd 1), when ``standardize``. Its output depends on an unused weight,
    so that a fit of one tiny step runs and sets the model's buffers from the data."""

    def __init__(self, standardize: bool):
        super().__init__()
        sx = math.sqrt(SLOPE ** 2 + NOISE ** 2) if standardize else 1.0
        self.a, self.v = SLOPE / sx, NOISE ** 2 / sx ** 2
        self.unused = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x, sigma, c):
        var = self.v + sigma.reshape(-1, 1) ** 2
        return -(x - self.a * c) / var + 0 * self.unused


def exact_fit(standardize: bool):
    x, c = exact_rows()
    model = pgm.ScoreModel(1, context_dim=1, network=ConditionalGaussianScore(standardize),
                           standardize=standardize, sigma_max=SIGMA_MAX).double()
    fit = model.fit(x, c=c, method="dsm", num_steps=1, lr=1e-12, ema=None, seed=0,
                    progress=False)
    return fit, x, c, model


@pytest.mark.parametrize("standardize", [False, True])
def test_ode_draws_and_likelihood_are_those_of_x_given_c(standardize):
    """At c = 2 (two sds from the mean of x) the truth blurred at sigma_min = 0.01 (times the
    data's sd, 2.0025, when standardized) is N(4, 0.1^2 + sigma_min^2): 2000 ODE draws
    have that mean within 4 standard errors (0.0089) and that sd within 4 (0.0063); the
    prior of old, one for every c, put the mean 0.019 low (-8.4 standard errors;
    measured now +0.55). The ODE likelihood of 200 training rows, each at its own c, is
    log N(x; 2 c, 0.1^2 + sigma_min^2) to 2e-4 (the solver's bound of the far-data test
    in test_score; measured 3e-6 and 6e-6; the old prior's was off by up to 0.29
    nats)."""
    fit, x, c, _ = exact_fit(standardize)
    blur = fit.model.sigmas[-1].item() * float(fit.model.x_scale)  # on the data's scale
    blurred_sd = math.sqrt(NOISE ** 2 + blur ** 2)
    s = fit.sample(2000, sampler="ode", c=torch.tensor([2.0], dtype=torch.float64), seed=1)
    assert abs(float(s.mean()) - 2 * SLOPE) < 4 * blurred_sd / math.sqrt(2000), s.mean()
    assert abs(float(s.std()) - blurred_sd) < 4 * blurred_sd / math.sqrt(4000), s.std()
    rows, ctx = x[:200], c[:200]
    truth = torch.distributions.Normal(SLOPE * ctx[:, 0], blurred_sd).log_prob(rows[:, 0])
    got = fit.log_prob(rows, c=ctx, rtol=1e-7, atol=1e-7)
    assert float((got - truth).abs().max()) < 2e-4


def test_langevin_and_predictor_corrector_start_at_the_mean_given_c():
    """The samplers' start: annealed Langevin's N(m(c), sigma_max^2), and the
    predictor-corrector's and the ODE's N(m(c), r^2 + sigma_max^2), m(c) = 2 c, r = 0.1.
    With a step too small to move and no denoising the annealed Langevin draws are that
    start: at c = 2, 2000 draws have mean 4 within 4 standard errors (20 / sqrt(2000) =
    0.45; the overall mean, 0, is 9 standard errors away); the functions themselves give
    m(c) and sqrt(r^2 + sigma_max^2) to rounding."""
    fit, _, _, model = exact_fit(False)
    at = torch.tensor([[2.0]], dtype=torch.float64)
    s = fit.sample(2000, steps_per_level=1, step_size=1e-12, denoise=False, c=at[0], seed=2)
    assert abs(float(s.mean()) - 4.0) < 4 * SIGMA_MAX / math.sqrt(2000), s.mean()
    assert torch.allclose(prior_mean(fit.model, at), 4.0 * torch.ones(1, 1, dtype=at.dtype))
    assert torch.allclose(prior_sd(fit.model, SIGMA_MAX),
                          torch.tensor([math.hypot(NOISE, SIGMA_MAX)], dtype=at.dtype))


def test_the_prior_is_the_least_squares_prediction():
    """``linear_prediction`` against ``torch.linalg.lstsq`` with an intercept (intercept,
    slope and residual sd over N - 1 - K degrees of freedom), also with context columns
    in very different units (1e6 +- 3e5 beside 0 +- 1, and 5e3 +- 1e-3: a rank cut on the
    raw cross products called the small ones constant); for one-hot contexts (whose
    centered columns are collinear) each class's mean and the pooled within-class sd; a
    context that does not vary predicts nothing (slope 0, the columns' sd)."""
    with seeded(3):
        z = torch.randn(300, 3, dtype=torch.float64)
        noise = 0.3 * torch.randn(300, 2, dtype=z.dtype)
        labels = torch.randint(0, 4, (300,))
    for units in (torch.ones(3, dtype=z.dtype), torch.tensor([3e5, 1.0, 1e-3], dtype=z.dtype)):
        zu = z * units + torch.tensor([1e6, 0.0, 5e3], dtype=z.dtype) * (units != 1)
        y = 5 + z @ torch.tensor([[1.0, -2.0], [0.5, 3.0], [-1.0, 0.2]], dtype=z.dtype) + noise
        design = torch.cat([torch.ones(300, 1, dtype=z.dtype), zu], 1)
        solution = torch.linalg.lstsq(design, y, driver="gelsd").solution
        residual = y - design @ solution
        intercept, slope, sd = linear_prediction(y, zu)
        # a + z B adds terms near 5e6 (z ~ 1e6) to give values near 5: rounding of
        # ~eps 5e6 = 1e-9 each, a few hundred ulps in all within 1e-6
        assert torch.allclose(intercept + zu @ slope, design @ solution, rtol=0, atol=1e-6)
        assert torch.allclose(slope * units[:, None], solution[1:] * units[:, None],
                              rtol=1e-7)
        assert torch.allclose(sd, (residual.pow(2).sum(0) / (300 - 4)).sqrt(), rtol=1e-9)
    onehot = torch.nn.functional.one_hot(labels, 4).double()
    onehot = (onehot - onehot.mean(0)) / onehot.std(0)  # as a standardized context reads
    intercept, slope, sd = linear_prediction(y, onehot)
    predicted = intercept + onehot @ slope
    pooled = torch.cat([y[labels == k] - y[labels == k].mean(0) for k in range(4)])
    for k in range(4):
        assert torch.allclose(predicted[labels == k], y[labels == k].mean(0).expand(
            int((labels == k).sum()), 2))
    assert torch.allclose(sd, (pooled.pow(2).sum(0) / (300 - 4)).sqrt())
    intercept, slope, sd = linear_prediction(y, torch.full((300, 1), 0.1, dtype=z.dtype))
    assert torch.equal(slope, torch.zeros(1, 2, dtype=z.dtype))
    assert torch.allclose(intercept, y.mean(0)) and torch.allclose(sd, y.std(0))


def test_every_sampler_and_the_pyro_program_start_from_the_prior_given_c(monkeypatch):
    """The predictor-corrector, the ODE, both Langevin samplers, ``sample_given`` and the
    Pyro program's prior predictive all take their start's mean from ``prior_mean`` with
    the rows' contexts (with the exact score their draws do not show the start, so the
    calls are recorded)."""
    from pyro import poutine

    import pyro_genmodels.models.score_fit as score_fit

    fit, _, _, model = exact_fit(False)
    seen = []
    real = score_fit.prior_mean

    def spy(m, c):
        seen.append(None if c is None else c.shape)
        return real(m, c)
    monkeypatch.setattr(score_fit, "prior_mean", spy)
    at = torch.tensor([2.0], dtype=torch.float64)
    for sampler in ("pc", "ode", "annealed_langevin", "langevin"):
        options = {} if sampler == "ode" else {"steps_per_level": 1}
        fit.sample(3, sampler=sampler, c=at, seed=0, **options)
        assert seen.pop() == (3, 1), sampler
    fit.model.sample_given({}, 3, at.expand(3, 1))
    assert seen.pop() == (3, 1)
    poutine.trace(fit.model.model).get_trace(None, c=at.expand(4, 1), num_data=4)
    assert seen.pop() == (4, 1)


def test_a_streamed_fit_takes_the_prior_from_its_sample_of_rows():
    """20000 rows of x = 3 c + 10 + 0.1 e, standardized: a stream's prior comes from its
    fixed sample of 2048 rows, intercept included (the full data's mean with the sample's
    slope was three residual sds off at c = 5). Its mean at c = 5, on the data's scale,
    is the truth, 25, within 4 standard errors of a least-squares prediction from 2048
    rows, 0.1 sqrt(1 / 2048 + 5^2 / 2048) = 0.011; in memory within 4 of those from 20000
    rows (0.0036)."""
    with seeded(4):
        c = torch.randn(20000, 1, dtype=torch.float64)
        x = 3 * c + 10 + 0.1 * torch.randn(20000, 1, dtype=torch.float64)
    at = torch.tensor([[5.0]], dtype=torch.float64)
    for data, cc, se in ((x, c, 0.1 * math.sqrt(26 / 20000)),
                         (TensorDataset(x, c), None, 0.1 * math.sqrt(26 / 2048))):
        fit = pgm.ScoreModel(1, context_dim=1, hidden=(8,), sigma_max=SIGMA_MAX).double().fit(
            data, c=cc, method="dsm", num_steps=1, batch_size=100, seed=0, progress=False)
        mean = fit.model.from_unit(prior_mean(fit.model, at))
        assert abs(float(mean) - 25.0) < 4 * se, float(mean)


def test_a_save_from_before_the_conditional_prior_loads_with_the_old_prior(tmp_path):
    """A state without ``context_intercept`` / ``context_slope`` / ``residual_sd`` (saved
    before the prior depended on c) loads with the prior it was made with, N(unit_mean,
    unit_sd^2 + sigma_max^2) for every c; a save made now keeps them (bit for bit)."""
    fit, x, c, model = exact_fit(False)
    state = {k: v for k, v in fit.model.state_dict().items()
             if k not in ("context_intercept", "context_slope", "residual_sd")}
    model.load_state_dict(state)
    assert torch.equal(model.context_slope, torch.zeros(1, 1, dtype=torch.float64))
    assert torch.equal(model.residual_sd, fit.model.unit_sd)
    assert torch.equal(prior_mean(model, c[:5]), fit.model.unit_mean.expand(5, 1))
    fit.save(tmp_path / "cond")
    back = pgm.load(tmp_path / "cond", model=pgm.ScoreModel(
        1, context_dim=1, network=ConditionalGaussianScore(False), standardize=False,
        sigma_max=SIGMA_MAX).double())
    for name in ("context_intercept", "context_slope", "residual_sd"):
        assert torch.equal(getattr(back.model, name), getattr(fit.model, name))
    assert float(back.model.context_slope) == pytest.approx(SLOPE, rel=1e-12)


def test_a_streamed_fit_gets_the_prior_of_an_in_memory_fit():
    """A stream's prior comes from its fixed sample of rows, which for 2000 rows
    (below the 2048 of the sample) is every row: the same buffers as in memory."""
    x, c = exact_rows()
    kw = dict(context_dim=1, hidden=(8,), sigma_max=SIGMA_MAX)
    fits = [pgm.ScoreModel(1, **kw).double().fit(data, c=cc, method="dsm", num_steps=2,
                                                 batch_size=100, seed=0, progress=False)
            for data, cc in ((x, c), (TensorDataset(x, c), None))]
    for name in ("context_intercept", "context_slope", "residual_sd"):
        assert torch.allclose(getattr(fits[0].model, name), getattr(fits[1].model, name),
                              rtol=1e-12, atol=1e-14), name
    assert float(fits[0].model.residual_sd) > 0
