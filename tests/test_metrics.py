"""Sample-based metrics against brute-force double loops, geomloss / scikit-learn, closed
forms for Gaussians, and the spread of repeated estimates."""

import doctest
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import chi2, norm
from sklearn.linear_model import LinearRegression

from pyro_genmodels import datasets, metrics

F64 = torch.float64
DOCS = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"


def normal(n, d=1, shift=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=F64) + shift


def brute_u(x, y, k):
    """The U-statistic E k(X,X') + E k(Y,Y') - 2 E k(X,Y) by plain double loops."""
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def brute_v(x, y, k):
    """The same with the diagonal terms kept (the biased V-statistic)."""
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m)) / m**2
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n)) / n**2
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def gauss(s):
    return lambda u, v: sum(math.exp(-float(((u - v) ** 2).sum()) / (2 * b * b)) for b in s)


def dist(u, v):
    return -float(((u - v) ** 2).sum().sqrt())


# ---------------------------------------------------------------------- exact answers
@pytest.mark.parametrize("bandwidth", [0.7, [0.5, 2.0]])
def test_mmd_and_energy_equal_double_loops(bandwidth, monkeypatch):
    x, y = normal(7, 3, seed=1), normal(9, 3, shift=0.4, seed=2)
    s = [bandwidth] if isinstance(bandwidth, float) else bandwidth
    r, e = metrics.mmd(x, y, bandwidth=bandwidth), metrics.energy_distance(x, y)
    assert r.estimate == pytest.approx(brute_u(x, y, gauss(s)), rel=1e-12)
    assert r.biased == pytest.approx(brute_v(x, y, gauss(s)), rel=1e-12)
    assert r.bandwidths == tuple(s) and r.num_samples == 16 and float(r) == r.estimate
    assert e.estimate == pytest.approx(brute_u(x, y, dist), rel=1e-12)
    assert e.biased == pytest.approx(brute_v(x, y, dist), rel=1e-12)
    # chunked (a few entries at a time) gives the same numbers, standard errors included
    monkeypatch.setattr(metrics, "CHUNK_ELEMENTS", 5)
    for f, ref in ((lambda: metrics.mmd(x, y, bandwidth=bandwidth), r),
                   (lambda: metrics.energy_distance(x, y), e)):
        out = f()
        assert out.estimate == pytest.approx(ref.estimate, rel=1e-12)
        assert out.stderr == pytest.approx(ref.stderr, rel=1e-9)


def test_kernel_part_agrees_with_geomloss_and_sklearn():
    import geomloss  # a test dependency (pyproject extra "test"): an oracle, not a runtime one
    from sklearn.metrics.pairwise import rbf_kernel

    x, y = normal(40, 2, seed=3), normal(30, 2, shift=0.3, seed=4)
    s = 0.8
    r, e = metrics.mmd(x, y, bandwidth=s), metrics.energy_distance(x, y)
    # geomloss reports half the V-statistic (its "energy" smooths |x - y| near 0 slightly)
    assert geomloss.SamplesLoss("gaussian", blur=s)(x, y).item() == pytest.approx(
        r.biased / 2, rel=1e-10)
    assert geomloss.SamplesLoss("energy")(x, y).item() == pytest.approx(e.biased / 2, rel=1e-4)
    g = 1 / (2 * s * s)
    kxx, kyy = rbf_kernel(x.numpy(), gamma=g), rbf_kernel(y.numpy(), gamma=g)
    kxy = rbf_kernel(x.numpy(), y.numpy(), gamma=g)
    m, n = len(x), len(y)
    u = ((kxx.sum() - m) / (m * (m - 1)) + (kyy.sum() - n) / (n * (n - 1))
         - 2 * kxy.mean())
    assert r.estimate == pytest.approx(u, rel=1e-10)


def test_median_heuristic_is_the_median_pairwise_distance():
    from scipy.spatial.distance import pdist

    x, y = normal(60, 2, seed=5), normal(50, 2, shift=1.0, seed=6)
    d = np.sort(pdist(np.concatenate([x.numpy(), y.numpy()])))
    lower_median = d[(len(d) - 1) // 2]
    assert metrics.median_bandwidth(torch.cat([x, y])) == pytest.approx(lower_median)
    assert metrics.mmd(x, y).bandwidths == pytest.approx((lower_median,))
    assert metrics.median_bandwidth(torch.ones(5, 2)) == 1.0  # all rows equal


# ---------------------------------------------------------------------- closed forms
def mmd2_normals(mu, s):
    """Population MMD^2 of N(0,1), N(mu,1), kernel exp(-(x-y)^2/2s^2): X - X' ~ N(0, 2) and
    E exp(-Z^2/2s^2) = s/sqrt(s^2+v) exp(-m^2/2(s^2+v)) for Z ~ N(m, v)."""
    return 2 * s / math.sqrt(s * s + 2) * (1 - math.exp(-mu * mu / (2 * (s * s + 2))))


def energy_normals(mu):
    """2E|Z| - E|X-X'| - E|Y-Y'|, Z ~ N(mu, 2) (folded normal mean), E|X-X'| = 2/sqrt(pi)."""
    sd = math.sqrt(2)
    folded = sd * math.sqrt(2 / math.pi) * math.exp(-mu * mu / 4) + mu * (1 - 2 * norm.cdf(-mu / sd))
    return 2 * folded - 4 / math.sqrt(math.pi)


def test_closed_forms_are_right():
    # the MMD^2 closed form against 1-D quadrature of the three expectations
    s, mu = 1.3, 0.8
    z = np.linspace(-12, 12, 200001)

    def e_exp(m, v):
        dens = np.exp(-(z - m) ** 2 / (2 * v)) / math.sqrt(2 * math.pi * v)
        return np.trapezoid(np.exp(-z * z / (2 * s * s)) * dens, z)

    assert mmd2_normals(mu, s) == pytest.approx(2 * e_exp(0, 2) - 2 * e_exp(mu, 2), rel=1e-8)
    dens = np.exp(-(z - mu) ** 2 / 4) / math.sqrt(4 * math.pi)
    e_abs = np.trapezoid(np.abs(z) * dens, z)
    assert energy_normals(mu) == pytest.approx(2 * e_abs - 4 / math.sqrt(math.pi), rel=1e-8)
    assert energy_normals(0.0) == pytest.approx(0.0, abs=1e-14)


@pytest.mark.parametrize("mu", [0.0, 0.5, 1.5])
def test_estimates_cover_the_population_values(mu):
    x, y = normal(800, seed=7), normal(600, shift=mu, seed=8)
    r = metrics.mmd(x, y, bandwidth=1.0)
    assert abs(r.estimate - mmd2_normals(mu, 1.0)) < 4 * r.stderr
    e = metrics.energy_distance(x, y)
    assert abs(e.estimate - energy_normals(mu)) < 4 * e.stderr


def test_same_distribution_is_within_noise_in_2d():
    x, y = normal(500, 2, seed=9), normal(500, 2, seed=10)
    for r in (metrics.mmd(x, y), metrics.mmd(x, y, bandwidth=[0.3, 3.0]),
              metrics.energy_distance(x, y)):
        assert r.stderr > 0 and abs(r.estimate) < 4 * r.stderr


@pytest.mark.parametrize("mu", [0.0, 0.7])
def test_standard_error_matches_the_spread_of_repeated_estimates(mu):
    """R = 200 replications: the empirical sd has relative se 1/sqrt(2(R-1)) = 5%, so when
    P != Q (first-order term, estimated without bias) the rms standard error must be
    within 4 x 5% of it. When P = Q it is conservative by design (the first-order part,
    truly 0, is estimated with noise and clipped at 0): between 0.8x and 1.7x."""
    reps, n = 200, 100
    out = {"mmd": [], "energy": []}
    for i in range(reps):
        x, y = normal(n, seed=100 + i), normal(n, shift=mu, seed=1000 + i)
        out["mmd"].append(metrics.mmd(x, y, bandwidth=1.0))
        out["energy"].append(metrics.energy_distance(x, y))
    for name, rs in out.items():
        est = np.array([r.estimate for r in rs])
        rms_se = math.sqrt(np.mean([r.stderr ** 2 for r in rs]))
        ratio = rms_se / est.std(ddof=1)
        lo, hi = (0.8, 1.2) if mu else (0.8, 1.7)
        assert lo < ratio < hi, (name, ratio)


# ---------------------------------------------------------------------- C2ST
def test_c2st_near_half_for_one_distribution_and_near_one_when_separated():
    x, y = normal(1000, 2, seed=11), normal(1000, 2, seed=12)
    same = metrics.c2st(x, y, seed=0)
    assert same.num_samples == 1000 and same.classifier == "KNeighborsClassifier"
    assert abs(same.estimate - 0.5) < 4 * math.sqrt(0.25 / same.num_samples)
    assert same.stderr == pytest.approx(math.sqrt(same.estimate * (1 - same.estimate) / 1000))
    assert same.p_value > 1e-4
    far = metrics.c2st(x, normal(1000, 2, shift=4.0, seed=13), seed=0)
    assert far.estimate > 0.97 and far.p_value < 1e-12


def test_c2st_default_sees_what_a_linear_classifier_cannot():
    """Same mean, three times the spread: k-NN separates them, logistic regression not."""
    from sklearn.linear_model import LogisticRegression

    x, y = normal(1000, 2, seed=14), 3 * normal(1000, 2, seed=15)
    knn = metrics.c2st(x, y)
    linear = metrics.c2st(x, y, classifier=LogisticRegression())
    assert knn.estimate > 0.7
    assert abs(linear.estimate - 0.5) < 4 * math.sqrt(0.25 / linear.num_samples)


def test_c2st_is_seeded_balanced_and_leaves_the_callers_state_alone():
    from sklearn.tree import DecisionTreeClassifier

    x, y = normal(300, 2, seed=16), normal(1000, 2, shift=0.5, seed=17)
    torch.manual_seed(123)
    np.random.seed(123)
    t0, n0 = torch.get_rng_state(), np.random.get_state()[1].copy()
    tree = DecisionTreeClassifier(max_depth=3)
    a = metrics.c2st(x, y, seed=3, classifier=tree)
    assert torch.equal(torch.get_rng_state(), t0)
    assert np.array_equal(np.random.get_state()[1], n0)
    assert tree.get_params()["random_state"] is None  # the caller's estimator untouched
    assert a == metrics.c2st(x, y, seed=3, classifier=tree)
    assert a.num_samples == 300  # 150 test rows per class: the larger set was subsampled
    assert metrics.c2st(x.numpy(), y.tolist(), seed=3, classifier=tree) == a


# ---------------------------------------------------------------------- mode coverage
def test_mode_coverage_on_hand_built_samples():
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    samples = torch.tensor([[0.0, 0.0]] * 4                # 4 at mode 0
                           + [[10.0, 2.9], [7.1, 0.0]]     # 2 at mode 1, within 3
                           + [[10.0, 3.1]]                 # nearest mode 1, beyond 3
                           + [[5.0, 5.0]])                 # far from all
    r = metrics.mode_coverage(samples, centers, 1.0)
    assert r.counts == (4, 2, 0) and r.modes_covered == 2 and r.num_modes == 3
    assert r.num_samples == 8 and r.high_quality == 6 / 8
    assert r.high_quality_se == pytest.approx(math.sqrt(0.75 * 0.25 / 8))
    p = np.array([4, 2]) / 6
    assert r.reverse_kl == pytest.approx(float((p * np.log(p * 3)).sum()))
    assert metrics.mode_coverage(samples, centers, 1.0, min_count=3).modes_covered == 1
    # per-mode scales: mode 1 twice as wide now takes the sample 3.1 away (1.55 scales)
    assert metrics.mode_coverage(samples, centers, [1.0, 2.0, 1.0]).counts == (4, 3, 0)
    assert metrics.mode_coverage(samples, centers, 1.0, threshold=0.5).counts == (4, 0, 0)
    w = metrics.mode_coverage(samples, centers, 1.0, weights=[2, 1, 1])
    assert w.reverse_kl == pytest.approx(float((p * np.log(p / np.array([0.5, 0.25]))).sum()))
    assert metrics.mode_coverage(samples, centers, 1.0, weights=[0, 1, 1]).reverse_kl == math.inf
    none = metrics.mode_coverage(samples + 100, centers, 1.0)
    assert none.modes_covered == 0 and none.high_quality == 0 and math.isnan(none.reverse_kl)


def test_grid25_data_cover_every_mode():
    """The data themselves: 25/25 modes, P(|z| < 3) = P(chi2_2 < 9) = 1 - exp(-4.5) of the
    points high quality, and a mode histogram whose KL to uniform is only multinomial
    noise (2 N KL is about chi2_24)."""
    grid = datasets.toy("grid25")
    torch.manual_seed(0)
    x = grid.sample((20000,))
    r = metrics.mode_coverage(x, grid.centers, grid.scale)
    assert r.modes_covered == r.num_modes == 25
    assert abs(r.high_quality - (1 - math.exp(-4.5))) < 4 * r.high_quality_se
    good = sum(r.counts)
    assert 0 <= r.reverse_kl < chi2.ppf(1 - 1e-4, 24) / (2 * good)
    collapsed = metrics.mode_coverage(torch.zeros(100, 2), grid.centers, grid.scale)
    assert collapsed.modes_covered == 1 and collapsed.reverse_kl == pytest.approx(math.log(25))


# ---------------------------------------------------------------------- bad input
GOOD = np.zeros((5, 2)) + np.arange(5)[:, None]


@pytest.mark.parametrize("x,y,err,match", [
    (np.array([[0.0, np.nan]] * 5), GOOD, ValueError, "x must be finite.*nan"),
    (GOOD, np.array([[np.inf, 0.0]] * 5), ValueError, "y must be finite.*inf"),
    (np.zeros(5), GOOD, ValueError, r"x must be 2-D of shape \(N, D\), got shape \(5,\)"),
    (np.zeros((5, 2, 1)), GOOD, ValueError, "x must be 2-D"),
    (np.zeros((0, 2)), GOOD, ValueError, "x is empty"),
    (GOOD, np.zeros((5, 3)), ValueError, "same number of columns: x has 2, y has 3"),
    (GOOD[:3], GOOD, ValueError, "x has 3 row.*expected at least 4"),
    (["ab", "cd"], GOOD, TypeError, "x must have a numeric dtype"),
])
@pytest.mark.parametrize("fn", [metrics.mmd, metrics.energy_distance, metrics.c2st])
def test_bad_samples_are_clear_errors(fn, x, y, err, match):
    with pytest.raises(err, match=match):
        fn(x, y)


@pytest.mark.parametrize("call,err,match", [
    (lambda: metrics.mmd(GOOD, GOOD, bandwidth=0.0), ValueError, "bandwidth > 0"),
    (lambda: metrics.mmd(GOOD, GOOD, bandwidth=[]), ValueError, "empty sequence"),
    (lambda: metrics.mmd(GOOD, GOOD, bandwidth="1"), TypeError, "bandwidth"),
    (lambda: metrics.c2st(GOOD, GOOD, test_fraction=1.0), ValueError, "0 < test_fraction < 1"),
    (lambda: metrics.c2st(GOOD, GOOD, test_fraction=0.05), ValueError, "leaves 0 test"),
    (lambda: metrics.c2st(GOOD, GOOD, classifier="knn"), TypeError,
     "classifier to be None or a scikit-learn classifier .* got 'knn' \\(str\\)"),
    (lambda: metrics.c2st(GOOD, GOOD, classifier=LinearRegression()), TypeError,
     "scikit-learn classifier .* got LinearRegression\\(\\)"),
    (lambda: metrics.c2st(GOOD, GOOD, seed=-1), ValueError,
     "Expected seed to be None or an integer"),
    (lambda: metrics.mode_coverage(GOOD, GOOD[:2], [1.0, 2.0, 3.0]), ValueError,
     "scale must have one value per mode: expected 2, got 3"),
    (lambda: metrics.mode_coverage(GOOD, GOOD[:2], -1.0), ValueError, "scale must be finite"),
    (lambda: metrics.mode_coverage(GOOD, GOOD[:2], 1.0, weights=[0, 0]), ValueError,
     "not all zero"),
    (lambda: metrics.mode_coverage(GOOD, np.zeros((2, 3)), 1.0), ValueError,
     "samples has 2, centers has 3"),
    (lambda: metrics.mode_coverage(GOOD, GOOD, 1.0, min_count=0), ValueError, "min_count"),
])
def test_bad_options_are_clear_errors(call, err, match):
    with pytest.raises(err, match=match):
        call()


# ---------------------------------------------------------------------- docs
def test_docstring_examples_run():
    result = doctest.testmod(metrics, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_metrics_page_code_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.DOTALL)
    assert blocks
    namespace = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"metrics.md[block {i}]", "exec"), namespace)  # noqa: S102
    assert "modes covered" in capsys.readouterr().out


@pytest.mark.parametrize("spread", [3.0, 100.0])
def test_c2st_default_is_blind_to_a_wide_spread_in_many_columns_as_documented(spread):
    """c2st's docstring and docs/metrics.md: in 64 columns k-NN calls every row of a too
    spread sample the other's (accuracy 0.5 within 3 binomial standard errors), which a
    random forest separates fully and MMD sees."""
    from sklearn.ensemble import RandomForestClassifier

    g = torch.Generator().manual_seed(0)
    y = torch.randn(500, 64, generator=g)
    x = torch.randn(500, 64, generator=g) * spread
    default = metrics.c2st(x, y)
    assert abs(default.estimate - 0.5) <= 3 * 0.5 / 250 ** 0.5, default
    assert metrics.c2st(x, y, classifier=RandomForestClassifier()).estimate == 1.0
    score = metrics.mmd(x, y)
    assert score.estimate > 5 * score.stderr, score
