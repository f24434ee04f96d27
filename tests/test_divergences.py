"""Divergence oracles: closed forms within 4 Monte Carlo standard errors, and the bounds."""

import math
import random
import warnings

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

import pyro_genmodels as pgm
from pyro_genmodels import divergences as dv
from pyro_genmodels import mc
from pyro_genmodels._rng import seeded
from pyro_genmodels.base import Capabilities

P = MultivariateNormal(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64))
Q = MultivariateNormal(torch.tensor([1.0, 0.5], dtype=torch.float64),
                       torch.tensor([[2.0, 0.3], [0.3, 1.0]], dtype=torch.float64))


def within(res, truth, k=4.0):
    return abs(res.estimate - truth) < k * res.stderr


def bhattacharyya_hellinger2(p, q):
    """Squared Hellinger of two Gaussians: 1 - exp(-D_B)."""
    s = (p.covariance_matrix + q.covariance_matrix) / 2
    d = q.loc - p.loc
    db = d @ torch.linalg.solve(s, d) / 8 + 0.5 * torch.log(
        torch.linalg.det(s) / torch.sqrt(torch.linalg.det(p.covariance_matrix)
                                         * torch.linalg.det(q.covariance_matrix)))
    return 1 - math.exp(-db.item())


@pytest.mark.parametrize("f", ["kl", "reverse_kl"])
def test_kl_matches_the_closed_form(f):
    res = dv.f_divergence(P, Q, f=f, num_samples=20000, seed=0)
    assert res.exact is not None
    exact = torch.distributions.kl_divergence(*((P, Q) if f == "kl" else (Q, P))).item()
    assert res.exact == pytest.approx(exact)
    assert within(res, exact)


def test_kl_shortcut_and_mixture_proposal_agree_with_the_closed_form():
    exact = torch.distributions.kl_divergence(P, Q).item()
    assert within(dv.kl(P, Q, num_samples=20000, seed=1), exact)
    assert within(dv.f_divergence(P, Q, f="kl", proposal="mixture", num_samples=40000,
                                  seed=2), exact)


def test_squared_hellinger_matches_bhattacharyya():
    res = dv.f_divergence(P, Q, f="hellinger", num_samples=20000, seed=0)
    assert within(res, bhattacharyya_hellinger2(P, Q))
    # the upper bound 1 is reached by far-apart normals: 1 - exp(-50^2 / 8) = 1 - 1e-136
    far = dv.f_divergence(Normal(0.0, 1.0), Normal(50.0, 1.0), f="hellinger", seed=0)
    assert far.estimate == pytest.approx(1.0, abs=1e-9)


def test_tv_of_equal_variance_normals_and_far_apart_normals():
    p, q = Normal(0.0, 1.0), Normal(1.3, 1.0)
    exact = 2 * Normal(0.0, 1.0).cdf(torch.tensor(1.3 / 2)).item() - 1
    res = dv.f_divergence(p, q, f="tv", num_samples=20000, seed=0)
    assert within(res, exact)
    # the reported standard error is the true one of the stratified mixture estimate:
    # term t = |p - q| / (p + q), se = 0.5 sqrt((Var_p t + Var_q t) / half), and
    # Var_p t = Var_q t by the symmetry about 0.65 (quadrature on a fine grid)
    grid = torch.linspace(-12.0, 14.0, 200001, dtype=torch.float64)
    lp, lq = Normal(0.0, 1.0).log_prob(grid), Normal(1.3, 1.0).log_prob(grid)
    t = ((lp.exp() - lq.exp()) / (lp.exp() + lq.exp())).abs()
    dx = (grid[1] - grid[0]).item()
    mean_t = (t * lp.exp()).sum().item() * dx
    var_t = (t ** 2 * lp.exp()).sum().item() * dx - mean_t ** 2
    assert mean_t == pytest.approx(exact, abs=1e-6)  # TV = E_r t = E_p t: the oracle's check
    se = 0.5 * math.sqrt(2 * var_t / 10000)
    # the estimated se is off by the sample variances' error: relative sd
    # sqrt((kurtosis - 1) / (4 n)) with n = 20000 draws in all (about 0.3%); 4 of them
    kurtosis = ((t - mean_t) ** 4 * lp.exp()).sum().item() * dx / var_t ** 2
    assert res.stderr == pytest.approx(se, rel=4 * math.sqrt((kurtosis - 1) / (4 * 20000)))
    far_p, far_q = Normal(0.0, 1.0), Normal(50.0, 1.0)
    assert dv.f_divergence(far_p, far_q, f="tv", seed=0).estimate == pytest.approx(1.0, abs=1e-9)
    # the naive estimate from q's samples alone misses p's mass: the failure it avoids
    naive = dv.f_divergence(far_p, far_q, f="tv", proposal="q", seed=0).estimate
    assert naive == pytest.approx(0.5, abs=1e-9)


def test_js_is_bounded_by_log2_and_reaches_it():
    res = dv.f_divergence(P, Q, f="js", num_samples=10000, seed=0)
    assert 0 < res.estimate < math.log(2)
    far = dv.f_divergence(Normal(0.0, 1.0), Normal(80.0, 1.0), f="js", seed=0)
    assert far.estimate == pytest.approx(math.log(2), abs=1e-9)


def test_pearson_matches_the_closed_form():
    """chi^2(N(m1, s1) || N(m2, s2)) = s2^2 / (s1 sqrt(2 s2^2 - s1^2))
    * exp((m1 - m2)^2 / (2 s2^2 - s1^2)) - 1, finite for 2 s2^2 > s1^2."""
    m1, s1, m2, s2 = 0.0, 1.0, 0.5, 1.5
    exact = s2**2 / (s1 * math.sqrt(2 * s2**2 - s1**2)) * math.exp(
        (m1 - m2) ** 2 / (2 * s2**2 - s1**2)) - 1
    res = dv.f_divergence(Normal(m1, s1), Normal(m2, s2), f="pearson", num_samples=40000,
                          seed=0)
    assert within(res, exact)


@pytest.mark.parametrize("f", list(dv.F_DIVERGENCES))
def test_divergence_of_a_distribution_with_itself_is_zero(f):
    res = dv.f_divergence(P, P, f=f, num_samples=1000, seed=0)
    assert res.estimate == pytest.approx(0.0, abs=1e-12)


def test_callable_f_equals_the_named_one():
    named = dv.f_divergence(P, Q, f="kl", proposal="mixture", num_samples=5000, seed=3)
    custom = dv.f_divergence(P, Q, f=lambda t: t * torch.log(t), proposal="mixture",
                             num_samples=5000, seed=3)
    assert custom.estimate == pytest.approx(named.estimate, rel=1e-9)


def test_fits_as_sides():
    x = P.sample((400,))
    fit = pgm.Gaussian(2).fit(x, method="mle", seed=0, progress=False, num_steps=800)
    fitted = MultivariateNormal(fit.params["loc"], fit.params["covariance_matrix"])
    exact = torch.distributions.kl_divergence(P, fitted).item()
    res = dv.kl(P, fit, num_samples=20000, seed=0)
    assert within(res, exact)
    back = dv.f_divergence(fit, P, f="tv", num_samples=4000, seed=0)
    # the same divergence with the fitted Gaussian as a torch distribution, independent
    # draws: the two estimates agree within their standard errors
    ref = dv.f_divergence(fitted, P, f="tv", num_samples=40000, seed=1)
    assert abs(back.estimate - ref.estimate) < 4 * math.hypot(back.stderr, ref.stderr)


def test_a_one_column_fit_against_a_scalar_distribution_scores_each_draw_once():
    """A one-column fit's draws are (n, 1); a scalar q's log_prob broadcast them against
    its (n,) log p to (n, n): KL reported n**2 draws and a standard error 12x too small,
    TV was biased. Now n draws, an estimate within its standard error of the closed form,
    and q first or p first alike."""
    fit = pgm.Gaussian(1).fit(torch.randn(500, 1) * 2 + 1, method="mle", seed=0,
                              progress=False)
    fitted = Normal(fit.params["loc"][0].double(), fit.params["scale"][0].double())
    for a, b in ((fit, Normal(0.0, 1.0)), (Normal(0.0, 1.0), fit)):
        exact = torch.distributions.kl_divergence(
            fitted if a is fit else Normal(0.0, 1.0), fitted if b is fit else Normal(0.0, 1.0))
        res = dv.kl(a, b, num_samples=4000, seed=0)
        assert res.num_samples == 4000 and within(res, exact.item())
    # the standard error is the spread of the estimate: 40 seeds' estimates of TV
    # (200 draws each) spread as their reported standard errors say (a chi-square bound)
    runs = [dv.f_divergence(fit, Normal(0.0, 1.0), f="tv", num_samples=200, seed=s)
            for s in range(0, 80, 2)]
    spread = torch.tensor([r.estimate for r in runs]).std().item()
    reported = math.sqrt(sum(r.stderr ** 2 for r in runs) / len(runs))
    assert 0.6 < spread / reported < 1.5


def test_a_callable_f_where_q_has_no_mass_takes_its_limit_or_is_refused():
    """Where p/q overflows (q has no mass there in float64), q f(p/q) is p lim f(t)/t: the
    term was set to 0, so TV of two far-apart normals came out 0.5 +- 0 (the named f
    gives 1) and a KL-type f came out negative. The limit is read from f (0 for an f
    growing slower than t, as reverse KL's -log t; 1/2 for TV's); one that does not settle
    (t log t: an infinite KL) is refused."""
    far = Normal(50.0, 1.0)
    for f in ("tv", lambda t: 0.5 * (t - 1).abs()):
        assert dv.f_divergence(Normal(0.0, 1.0), far, f=f, num_samples=2000,
                               seed=0).estimate == pytest.approx(1.0)
    narrow = Normal(0.0, 0.05)
    exact = torch.distributions.kl_divergence(narrow, Normal(0.0, 1.0)).item()
    named = dv.f_divergence(Normal(0.0, 1.0), narrow, f="reverse_kl", proposal="mixture",
                            num_samples=4000, seed=0)
    custom = dv.f_divergence(Normal(0.0, 1.0), narrow, f=lambda t: -torch.log(t),
                             proposal="mixture", num_samples=4000, seed=0)
    assert custom.estimate == pytest.approx(named.estimate, rel=1e-9) and within(custom, exact)
    box = torch.distributions.Uniform(-1.0, 1.0, validate_args=False)
    with pytest.raises(ValueError, match=r"^q has no mass where p has at \d+ of \d+ "
                                         r"draws .*does not settle for this f"):
        dv.f_divergence(Normal(0.0, 1.0), box, f=lambda t: torch.special.xlogy(t, t),
                        num_samples=2000, seed=0)


class _BoundGaussian(pgm.Gaussian):
    capabilities = Capabilities(log_prob="bound", sampling="direct", methods=("mle",))


class _UnnormalizedGaussian(pgm.Gaussian):
    capabilities = Capabilities(log_prob="unnormalized", sampling="direct", methods=("mle",))


def test_inexact_densities_are_refused_unless_allowed():
    x = P.sample((100,))
    bound = _BoundGaussian(2).fit(x, method="mle", seed=0, progress=False, num_steps=50)
    with pytest.raises(ValueError, match=r"q.log_prob is a bound \(log_prob_kind 'bound'\), "
                                         r"not an exact log-density.*allow_inexact"):
        dv.kl(P, bound, num_samples=100)
    assert math.isfinite(dv.kl(P, bound, num_samples=100, allow_inexact=True).estimate)
    unnorm = _UnnormalizedGaussian(2).fit(x, method="mle", seed=0, progress=False,
                                          num_steps=50)
    with pytest.raises(ValueError, match="unnormalized"):
        dv.kl(P, unnorm, num_samples=100, allow_inexact=True)


def test_bad_arguments():
    with pytest.raises(ValueError, match="Unknown f-divergence"):
        dv.f_divergence(P, Q, f="renyi")
    with pytest.raises(ValueError, match="proposal"):
        dv.f_divergence(P, Q, proposal="r")
    with pytest.raises(TypeError, match="distribution or a Fit"):
        dv.kl(P, "q")
    with pytest.raises(ValueError, match="num_samples"):
        dv.kl(P, Q, num_samples=0)


def test_cross_entropy_with_samples_and_with_a_known_density():
    y = P.sample((3000,))
    ce = dv.cross_entropy(y, Q)
    assert ce.estimate == pytest.approx(-Q.log_prob(y).mean().item())
    assert ce.kl is None
    # rows are scored as they are: a draw count and a seed were accepted and ignored
    for kw, said in [({"num_samples": 5, "seed": 0}, "num_samples and seed are"),
                     ({"seed": 1}, "seed is")]:
        with pytest.raises(ValueError, match=rf"^{said} for draws of a distribution given "
                                             r"as data; data rows are scored as they are"):
            dv.cross_entropy(y, Q, **kw)
    known = dv.cross_entropy(P, Q, num_samples=20000, seed=0)
    exact_kl = torch.distributions.kl_divergence(P, Q).item()
    assert within(known.kl, exact_kl)
    assert within(known.entropy, P.entropy().item())
    # per sample -log q = (log p - log q) + (-log p), so the estimates add up exactly
    assert known.estimate == pytest.approx(known.kl.estimate + known.entropy.estimate)


def test_expectation_and_reproducibility():
    r = mc.expectation(lambda x: x**2, Normal(0.0, 2.0), 20000, seed=0)
    assert within(r, 4.0)
    assert r.stderr == pytest.approx(math.sqrt(2 * 16 / 20000), rel=0.05)  # sd(x^2) = sqrt(2) s^2
    torch.manual_seed(5)
    random.seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    a = dv.f_divergence(P, Q, f="js", num_samples=2000, seed=11)
    b = dv.f_divergence(P, Q, f="js", num_samples=2000, seed=11)
    assert a == b
    assert torch.equal(torch.rand(2), expected)
    with pytest.raises(ValueError, match="one value per draw"):
        mc.expectation(lambda x: x[:3], Normal(0.0, 1.0), 10, seed=0)


# ---------------------------------------------------------------------- sequence fits

def _bigrams():
    """Two bigram MAP fits; p's strings often outgrow twice its longest training string."""
    p = pgm.NGram(2, prior_concentration=2.0).fit(["aaaa", "b"], method="map", progress=False)
    q = pgm.NGram(2, prior_concentration=2.0).fit(["ab", "ba", "a", "bb"], method="map",
                                                  progress=False)
    return p, q


def _markov_kl(p, q):
    """Exact KL(p || q) of two bigram fits: the expected visits to each context under p
    (the Markov chain absorbed at the end token) times the KL of its next-token rows."""
    P, Q = p.params["probs"].double(), q.params["probs"].double()
    V = P.shape[0]
    end = V - 1  # the last context (and id) is the start/end token
    M = torch.zeros(V, V, dtype=torch.float64)
    M[:, :end] = P[:, :end]  # moves that do not end the string
    visits = torch.linalg.solve((torch.eye(V, dtype=torch.float64) - M).T,
                                torch.eye(V, dtype=torch.float64)[end])
    return float((visits * (P * (P.log() - Q.log())).sum(-1)).sum())


def test_sequence_kl_matches_the_markov_chain():
    """Draws cut at the sampler's default max_length (2 x 4 = 8 tokens: 3.7% of p's draws)
    were scored as finished strings: 0.549 +- 0.011 against the exact 0.6128."""
    p, q = _bigrams()
    exact = _markov_kl(p, q)
    assert exact == pytest.approx(0.61276, abs=1e-4)
    assert sum(len(s) >= 8 for s in p.sample(20000, seed=0)) > 500  # the case bites
    res = dv.kl(p, q, num_samples=20000, seed=0)
    assert within(res, exact)
    # the same draws as one uncut batch, extended from the same seed
    x = p.sample(20000, seed=0, max_length=1000)
    assert max(map(len, x)) < 1000
    assert res.estimate == pytest.approx((p.log_prob(x).double()
                                          - q.log_prob(x).double()).mean().item(), rel=1e-9)
    mix = dv.f_divergence(p, q, f="kl", proposal="mixture", num_samples=40000, seed=1)
    assert within(mix, exact)
    assert dv.kl(p, q, num_samples=20000, seed=0, max_length=1000) == res


def test_sequence_draws_cut_at_max_length_are_refused(monkeypatch):
    p, q = _bigrams()
    with pytest.raises(ValueError, match=r"\d+ of 2000 draws were cut at max_length=4 "):
        dv.kl(p, q, num_samples=2000, seed=0, max_length=4)
    with pytest.raises(ValueError, match=r"every draw of p .* cut at max_length=3 "):
        dv.f_divergence(p, q, f="tv", num_samples=2000, seed=0, max_length=3)  # mixture
    with pytest.raises(ValueError, match=r"every draw of q .* cut at max_length=2 "):
        dv.f_divergence(p, q, f="reverse_kl", num_samples=2000, seed=0, max_length=2)
    monkeypatch.setattr(dv, "MAX_LENGTH_LIMIT", 16)  # p's first cap: nothing to extend to
    with pytest.raises(ValueError, match=r"cut at max_length=16 tokens, the longest cap "
                                         r"tried by default .*MAX_LENGTH_LIMIT"):
        dv.kl(p, q, num_samples=20000, seed=0)
    # a first cap already beyond the limit is the only one: the message named the limit
    monkeypatch.setattr(dv, "MAX_LENGTH_LIMIT", 8)
    with pytest.raises(ValueError, match=r"cut at max_length=16 tokens, the default cap "
                                         r"\(twice the longest training sequence, beyond "
                                         r"divergences.MAX_LENGTH_LIMIT = 8\)"):
        dv.kl(p, q, num_samples=20000, seed=0)
    with pytest.raises(ValueError, match="max_length caps the draws of sequence fits"):
        dv.kl(P, Q, num_samples=10, max_length=10)
    with pytest.raises(ValueError, match="max_length"):
        dv.kl(p, q, num_samples=10, max_length=0)


def test_the_mixture_proposals_two_halves_of_seeds_s_and_s_plus_1_share_no_stream(monkeypatch):
    """The halves were drawn under seeds s and s + 1, so q's half of seed 0 was p's half of
    seed 1 (the same noise, so the same draws where p and q are one distribution): estimates at consecutive
    seeds were not independent. The halves' seeds are now spawned from s."""
    from pyro_genmodels import mc

    used = []
    real = mc.draw
    monkeypatch.setattr(dv, "draw", lambda obj, n, seed=None: used.append(seed) or
                        real(obj, n, seed=seed))
    p, q = Normal(0.0, 1.0), Normal(0.5, 1.0)
    a, b = (dv.f_divergence(p, q, f="tv", proposal="mixture", num_samples=200, seed=s)
            for s in (0, 1))
    assert len(used) == 4 and len(set(used)) == 4, used
    again = dv.f_divergence(p, q, f="tv", proposal="mixture", num_samples=200, seed=0)
    assert again.estimate == a.estimate and a.estimate != b.estimate


def test_draws_outside_the_other_sides_support_have_density_zero_there():
    """U(0, 1) against U(0, 2): the mixture's draws in (1, 2) lie outside p's support.
    torch's argument check raised there (when on) and an unchecked log_prob is log 1, a
    lie; they now score -inf. Closed forms: KL(p || q) = log 2, KL(q || p) = inf, TV =
    1/2, JS = (log(4/3) + (log(2/3) + log 2) / 2) / 2, each within 4 standard errors."""
    from torch.distributions import Exponential, Uniform

    p, q = Uniform(0.0, 1.0), Uniform(0.0, 2.0)
    est = {f: dv.f_divergence(p, q, f=f, num_samples=4000, seed=0)
           for f in ("kl", "reverse_kl", "tv", "js")}
    assert est["kl"].estimate == pytest.approx(math.log(2), rel=1e-6)  # float32 densities
    assert est["reverse_kl"].estimate == math.inf
    truth = {"tv": 0.5, "js": (math.log(4 / 3) + (math.log(2 / 3) + math.log(2)) / 2) / 2}
    for f, t in truth.items():
        assert abs(est[f].estimate - t) <= 4 * est[f].stderr, (f, est[f], t)
    # N(0, 1) against Exponential(1): half of p's draws are negative, outside q's support
    assert dv.f_divergence(Normal(0.0, 1.0), Exponential(1.0), f="kl", num_samples=200,
                           seed=0).estimate == math.inf


@pytest.mark.parametrize("k", [0.25, 0.5, 1.0])
def test_tail_shape_recovers_a_pareto_tail(k):
    """Pareto(1, 1/k) draws have tail shape k exactly; the GPD fit to the top
    M = 3 sqrt(n) = 425 of n = 20000 draws has sd about (1 + k) / sqrt(M) (the maximum
    likelihood estimate's asymptotic sd), so k within 4 of them. A constant, a bounded
    two-valued sample or fewer than 10 values have no tail to fit (None)."""
    with seeded(0):
        x = torch.distributions.Pareto(1.0, 1.0 / k).sample((20000,)).double()
    m = math.ceil(3 * math.sqrt(20000))
    got = mc.tail_shape(x)
    assert got is not None and abs(got - k) < 4 * (1 + k) / math.sqrt(m), got
    assert mc.tail_shape(torch.ones(100)) is None
    assert mc.tail_shape((torch.arange(100) % 2).double()) is None
    assert mc.tail_shape(x[:9]) is None


def test_an_infinite_divergence_is_flagged_not_reported_as_a_number():
    """chi^2(N(0, 2^2) || N(0, 1)) is infinite (it is finite only where 2 s_q^2 > s_p^2):
    the terms' tail has k = 3 (t = p/q = exp(3 x^2 / 8) / 2 under p), and the warning says
    the finite average of 10000 of them is unreliable; so is KL(Cauchy || N(0, 1)), whose
    log-ratio ~ x^2 / 2 under the Cauchy has k = 2. The finite chi^2 of the closed-form
    test above and KL between Gaussians have light tails (k < 0.5) and no warning. With
    fewer draws the threshold is lower: min(1 - 1 / log10(n), 0.7)."""
    with pytest.warns(UserWarning, match="Pareto k"):
        res = dv.f_divergence(Normal(0.0, 2.0), Normal(0.0, 1.0), f="pearson", seed=0)
    assert res.pareto_k is not None and res.pareto_k > 1
    with pytest.warns(UserWarning, match="Pareto k") as seen:
        res = dv.kl(torch.distributions.Cauchy(0.0, 1.0), Normal(0.0, 1.0), seed=0)
    assert res.pareto_k is not None and res.pareto_k > 1
    assert seen[0].filename == __file__  # the warning points at the caller's line
    with pytest.warns(UserWarning, match="cross-entropy's KL estimate"):
        ce = dv.cross_entropy(torch.distributions.Cauchy(0.0, 1.0), Normal(0.0, 1.0), seed=0)
    assert ce.kl is not None and ce.kl.pareto_k == res.pareto_k
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        finite = dv.f_divergence(Normal(0.0, 1.0), Normal(0.5, 1.5), f="pearson", seed=0)
        gaussian = dv.kl(P, Q, seed=0)
        # an estimate that is infinite already says so: no warning on top
        assert dv.kl(Normal(0.0, 1.0), torch.distributions.Exponential(1.0), num_samples=200,
                     seed=0).estimate == math.inf
    assert finite.pareto_k is not None and finite.pareto_k < 0.5
    assert gaussian.pareto_k is not None and gaussian.pareto_k < 0.5
    assert dv.f_divergence(P, P, f="tv", num_samples=1000, seed=0).pareto_k is None
    assert mc.tail_threshold(100) == pytest.approx(0.5)
    assert mc.tail_threshold(1000) == pytest.approx(2 / 3)
    assert mc.tail_threshold(10 ** 6) == 0.7
