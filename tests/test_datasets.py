"""Built-in data: known densities integrate to one and agree with their samplers."""

import math

import pytest
import torch

from pyro_genmodels import datasets


def grid_integral(dist, lo, hi, step):
    xs = torch.arange(lo[0], hi[0], step, dtype=torch.float64) + step / 2
    ys = torch.arange(lo[1], hi[1], step, dtype=torch.float64) + step / 2
    gx, gy = torch.meshgrid(xs, ys, indexing="ij")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], -1).float()
    return dist.log_prob(pts).double().exp().sum().item() * step**2


@pytest.mark.parametrize("name,lo,hi,step", [
    ("eight_gaussians", (-3.5, -3.5), (3.5, 3.5), 0.01),
    ("grid25", (-4.5, -4.5), (4.5, 4.5), 0.01),
    ("checkerboard", (-2.5, -2.5), (2.5, 2.5), 0.01),
    ("banana", (-9.0, -3.5), (9.0, 40.0), 0.02),
])
def test_toy_densities_integrate_to_one(name, lo, hi, step):
    assert grid_integral(datasets.toy(name), lo, hi, step) == pytest.approx(1.0, abs=2e-3)


def test_toy_samples_follow_their_density():
    torch.manual_seed(0)
    n = 8000
    eg = datasets.toy("eight_gaussians")
    x = eg.sample((n,))
    d = torch.cdist(x, eg.centers)
    assert (d.min(1).values < 5 * eg.scale).all()
    counts = torch.bincount(d.argmin(1), minlength=8).double()
    chi2 = ((counts - n / 8) ** 2 / (n / 8)).sum().item()
    assert chi2 < 24.3  # chi-square(7) 0.999 quantile
    cb = datasets.toy("checkerboard")
    y = cb.sample((n,))
    assert torch.isfinite(cb.log_prob(y)).all()
    assert cb.log_prob(torch.tensor([[0.5, -0.5], [3.0, 0.0]])).isinf().all()
    banana = datasets.toy("banana")
    z = banana.sample((n,))
    resid = z[:, 1] - banana.b * z[:, 0] ** 2 - banana.c
    assert abs(resid.mean().item()) < 4 * banana.sigma2 / math.sqrt(n)
    assert abs(z[:, 0].std().item() / banana.sigma1 - 1) < 4 / math.sqrt(2 * n)


def test_grid25_has_its_modes_and_the_exact_density():
    grid = datasets.toy("grid25")
    ticks = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    assert grid.centers.shape == (25, 2) and grid.scale == 0.05
    assert torch.equal(grid.centers[7], torch.stack([ticks[1], ticks[2]]))  # row 5 i + j
    assert set(map(tuple, grid.centers.tolist())) == {(a, b) for a in ticks.tolist()
                                                      for b in ticks.tolist()}
    # at a centre the other 24 modes are >= 40 sd away: log p = log(1/25 N(0; 0, s^2 I))
    peak = -math.log(25) - math.log(2 * math.pi * 0.05**2)
    assert grid.log_prob(grid.centers).double() == pytest.approx(torch.full((25,), peak),
                                                                  abs=1e-5)
    torch.manual_seed(0)
    n = 10000
    x = grid.sample((n,))
    d = torch.cdist(x, grid.centers)
    assert (d.min(1).values < 5 * grid.scale).all()
    counts = torch.bincount(d.argmin(1), minlength=25).double()
    chi2 = ((counts - n / 25) ** 2 / (n / 25)).sum().item()
    assert chi2 < 51.2  # chi-square(24) 0.999 quantile
    r = (x - grid.centers[d.argmin(1)]) / grid.scale  # standardized: N(0, I) per mode
    assert abs(r.mean().item()) < 4 / math.sqrt(2 * n)
    assert abs(r.pow(2).mean().item() - 1) < 4 * math.sqrt(2 / (2 * n))


def test_eight_gaussians_exposes_its_modes():
    eg = datasets.toy("eight_gaussians")
    assert eg.centers.shape == (8, 2) and eg.scale == 0.2
    assert eg.centers.norm(dim=1) == pytest.approx(torch.full((8,), 2.0), abs=1e-6)


def test_unknown_toy_is_a_clear_error():
    with pytest.raises(ValueError, match="eight_gaussians.*grid25"):
        datasets.toy("moons")


def test_correlated_gaussian_train_and_heldout_share_the_truth():
    x, p = datasets.correlated_gaussian(100, dim=3, seed=0)
    y, q = datasets.correlated_gaussian(100, dim=3, seed=1)
    assert torch.equal(p.loc, q.loc) and not torch.equal(x, y)
    assert torch.equal(x, datasets.correlated_gaussian(100, dim=3, seed=0)[0])


def test_digit_grid_places_each_digit_in_its_cell():
    x, _ = datasets.load_digits()
    grid = datasets.digit_grid(x[:10] / 16, 4)  # 3 rows of 4 cells, 1-pixel gaps
    assert grid.shape == (3 * 9 - 1, 4 * 9 - 1)
    for i in range(10):
        r, c = divmod(i, 4)
        assert torch.equal(grid[r * 9:r * 9 + 8, c * 9:c * 9 + 8], x[i].reshape(8, 8) / 16)
    assert (grid[8, :] == 0.15).all() and (grid[:, 8] == 0.15).all()  # the gaps
