"""The rank check of ``_checks.correlation_spectrum``: each eigenvalue is judged against
the rounding its own eigenvector can carry, so one float32 column with a large offset
no longer refuses valid data, while exactly dependent float32 columns still are."""

import math

import numpy as np
import pytest
import torch

import pyro_genmodels as pgm
from pyro_genmodels.models._checks import correlation_spectrum, dependent_columns, rank_of


def _breast_cancer() -> np.ndarray:
    from sklearn.datasets import load_breast_cancer
    return load_breast_cancer().data


def test_one_offset_float32_column_does_not_refuse_full_rank_data():
    """Breast cancer in float32 with column 9 (sd 0.007) shifted by 1000: its rounding is
    0.017 sd, which the single worst-column level spread over every direction (level
    0.46, rank 8), refusing Flow and Gaussian fits that pass in float64. The smallest
    eigenvector weighs column 9 by 0.005: its level is 3.6e-7 against 1.3e-4."""
    b = _breast_cancer().astype(np.float32)
    b[:, 9] += 1000
    x = torch.tensor(b)
    assert rank_of(x) == 30
    assert dependent_columns(x) is None
    eig, level = correlation_spectrum(x)
    assert level.shape == eig.shape == (30,)  # one level per eigenvalue
    assert bool((eig > level).all())
    pgm.Gaussian(30).check_data_for("mle", x)  # raised "covariance singular"
    pgm.Flow(30).check_data_for("mle", x)  # raised "rows lie on a hyperplane"


def test_offset_everywhere_float32_leaves_ppca_enough_rank():
    """Every column + 1000 in float32: the old level counted 2 dimensions and PPCA(30, 5)
    refused; per eigenvector the worst case still doubts a few directions (columns with
    sd 0.003 carry 1% of an sd of rounding), but far more than 5 remain."""
    x = torch.tensor((_breast_cancer() + 1e3).astype(np.float32))
    assert 5 < rank_of(x) <= 30
    pgm.PPCA(30, 5).check_data_for("mle", x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exact_dependence_is_refused_beside_an_offset_column(dtype):
    """A column that is an exact combination of others, stored in ``dtype``, is refused
    whether or not an unrelated column (or one in the combination) carries an offset of
    1000: the offset column's rounding must not hide it."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(1000, 4, generator=g, dtype=torch.float64) * torch.tensor(
        [1.0, 100.0, 1e-3, 0.01], dtype=torch.float64)
    a[:, 3] += 1000
    a = a.to(dtype)
    for col in (a[:, 0] + a[:, 1],  # computed in dtype: one rounding
                (a[:, 0].double() - 3 * a[:, 2].double()).to(dtype),  # rounded once
                3 * a[:, 0] - 0.5 * a[:, 1],  # two roundings, one larger than the result
                a[:, 3] + a[:, 2],  # through the offset column itself
                a[:, 3].clone()):  # a copy of it
        x = torch.cat([a, col[:, None]], 1)
        assert rank_of(x) == 4, dtype
        assert dependent_columns(x) is not None, dtype
        with pytest.raises(ValueError, match="linearly dependent"):
            pgm.Gaussian(5).check_data_for("mle", x)


def test_a_dependent_column_added_to_offset_breast_cancer_is_refused():
    """The data of the first test, accepted with 30 columns, is refused once a 31st is the
    float32 sum of two of them: the smallest level follows the dependence's own columns,
    not column 9's."""
    b = _breast_cancer().astype(np.float32)
    b[:, 9] += 1000
    x = torch.tensor(b)
    for col in (x[:, 0] + x[:, 1], x[:, 9] - x[:, 2], x[:, 5] * 2 - x[:, 7]):
        y = torch.cat([x, col[:, None]], 1)
        assert rank_of(y) == 30
        assert dependent_columns(y) is not None


def test_several_and_spread_dependences_are_counted():
    """Two dependences lower the rank by two; a column that is the (once rounded) sum of
    40 weakly correlated float32 columns, a dependence spread over all of them where the
    largest eigenvalue is small, is caught too."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(2000, 5, generator=g, dtype=torch.float64).float()
    a[:, 4] += 1000
    x = torch.cat([a, (a[:, 0] + a[:, 1])[:, None], (a[:, 2] - a[:, 4])[:, None]], 1)
    assert rank_of(x) == 5
    many = torch.randn(3000, 40, generator=g, dtype=torch.float64).float()
    total = many.double().sum(1, keepdim=True).float()
    y = torch.cat([many, total], 1)
    assert rank_of(y) == 40
    assert rank_of(many) == 40


def test_constant_columns_and_too_few_rows_keep_their_rank():
    """A constant column is a zero column (rank D - 1), N <= D rows span at most N - 1
    dimensions, and all-constant data has rank 0."""
    g = torch.Generator().manual_seed(2)
    a = torch.randn(50, 4, generator=g)
    a[:, 2] = 7.0
    assert rank_of(a) == 3
    assert rank_of(torch.randn(4, 6, generator=g)) == 3
    assert rank_of(torch.full((10, 3), 2.0)) == 0
    assert dependent_columns(torch.randn(4, 6, generator=g)) is not None


def test_a_refusal_within_float32s_rounding_says_so_and_an_exact_one_does_not():
    """Every breast-cancer column shifted by 1e3 in float32 leaves some directions within
    the rounding (rank 27 of 30): Gaussian's refusal says it may be float32's and what to
    do; a dependence without offsets (a column the sum of two others) gets no such
    sentence."""
    from pyro_genmodels.models._checks import precision_said

    x = torch.as_tensor(_breast_cancer() + 1e3, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"Drop the redundant columns\. It is within "
                                         r"float32's rounding, though"):
        pgm.Gaussian(30).fit(x, method="mle")
    assert precision_said(x.double()) == ""
    g = torch.Generator().manual_seed(0)
    y = torch.randn(100, 3, generator=g)
    y = torch.cat([y, y[:, :1] + y[:, 1:2]], 1)
    assert precision_said(y) == ""
    with pytest.raises(ValueError, match=r"Drop the redundant columns\.$"):
        pgm.Gaussian(4).fit(y, method="mle")


def test_columns_near_float64s_limit_keep_their_spectrum_and_prior_warning():
    """Values up to 1.3e154 pass the data check (their squares fit in float64), but 50
    squares summed did not: the correlation came out nan (a mixture's refusal said
    "smallest eigenvalue nan") and the prior warning raised OverflowError. Both are
    invariant under a change of units, so they now compute in units of a power of two near
    the data's peak: exactly the values of the same data 2^-500 times as large."""
    import warnings

    from pyro_genmodels.models._checks import warn_if_prior_is_strong

    gen = torch.Generator().manual_seed(0)
    small = torch.rand(50, 3, generator=gen, dtype=torch.float64) * 2 - 1
    small[:, 2] = small[:, 0] - 0.5 * small[:, 1]  # dependent: refused at any scale
    big = small * 2.0 ** 511  # about 6.7e153
    for a, b in zip(correlation_spectrum(small), correlation_spectrum(big)):
        assert torch.isfinite(b).all() and torch.equal(a, b)
    assert dependent_columns(big) is not None and rank_of(big[:, :2]) == 2

    def flagged(x, prior_scale):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            warn_if_prior_is_strong(x, prior_scale, "Gaussian", "map")
        return [str(w.message) for w in seen]

    def columns(said):
        return [m.split("column(s) ")[1].split("]")[0] + "]" for m in said]

    x = small[:, :2] + torch.tensor([5.0, 0.0], dtype=torch.float64)
    said = flagged(x * 2.0 ** 511, 0.4 * 2.0 ** 511)  # raised OverflowError
    assert len(said) == 1 and "prior_scale=1e+156" in said[0], said  # a finite suggestion
    assert columns(said) == columns(flagged(x, 0.4)) == ["[0]"]
    # the largest value the data check passes: log2 rounded it up to 512, and the unit's
    # square overflowed with a known covariance (frexp takes the exponent exactly)
    top = math.nextafter(2.0 ** 512, 0)
    edge = torch.tensor([[top, -top], [-top, top], [top / 2, top / 4]], dtype=torch.float64)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        warn_if_prior_is_strong(edge, 10.0, "Gaussian", "map",
                                covariance=torch.eye(2, dtype=torch.float64))
    assert torch.isfinite(correlation_spectrum(edge)[0]).all()


@pytest.mark.parametrize("name, args", [
    ("gaussian", {}), ("gaussian_mixture", {"n_components": 2}), ("ppca", {"latent_dim": 1}),
    ("flow", {}), ("gan", {}), ("diffusion", {}), ("score", {})])
def test_columns_whose_squared_deviations_overflow_when_summed_are_refused(name, args):
    """Values near float64's limit pass the data check one by one, but 200 squared
    deviations of 1.7e153 summed overflow: the standardizing sd came out inf and was taken
    as 1, and the mixture died in torch.multinomial, PPCA in a Cholesky, the Gaussian in
    a distribution's argument check. column_moments, the one place the families take
    their columns' sds, now refuses such columns by name; 2^-8 times the same data fit."""
    from pyro_genmodels.base import get_model_class

    cls = get_model_class(name)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 3, generator=gen, dtype=torch.float64)
    x[:, 2] *= 2.0 ** 509  # sd about 1.7e153: its 200 squared deviations sum above 1.8e308
    method = cls.capabilities.methods[0]
    steps = {} if name in ("gaussian", "gaussian_mixture", "ppca") else {"num_steps": 2}
    with pytest.raises(ValueError, match=r"^column\(s\) \[2\] vary by so much that the sum "
                                         r"of their squared deviations overflows "
                                         r"torch.float64 \(n x sd\^2 above 1.8e\+308\): "
                                         r"rescale the data$"):
        cls(3, **args).fit(x, method=method, seed=0, progress=False, **steps)
    x[:, 2] /= 2.0 ** 8
    fit = cls(3, **args).fit(x, method=method, seed=0, progress=False, **steps)
    assert fit.model.dim == 3


@pytest.mark.parametrize("value", [1e17, 1e19])
def test_a_row_of_huge_values_gets_the_singular_covariance_refusal(value):
    """One row of 1e17-1e19 among raw wine rows (float64) made the prior warning's solve
    fail inside torch ("the input matrix is singular") before the data check could say
    what is wrong: the columns are dependent at float64's precision."""
    from sklearn.datasets import load_wine

    x = load_wine().data[:60, :3].copy()
    x[0, :] = value
    with pytest.raises(ValueError, match=r"^The map covariance is singular: the data's "
                                         r"columns are linearly dependent"):
        pgm.Gaussian(3).fit(x, method="map", seed=0, num_steps=20, progress=False)


def test_a_condition_column_that_overflows_is_said_as_cs_not_xs():
    """column_moments of c named its column by x's names ("[0] (height)")."""
    import pandas as pd

    gen = torch.Generator().manual_seed(0)
    x = pd.DataFrame(torch.randn(200, 2, generator=gen, dtype=torch.float64).numpy(),
                     columns=["height", "weight"])
    c = torch.randn(200, 1, generator=gen, dtype=torch.float64) * 2.0 ** 509
    with pytest.raises(ValueError, match=r"^c's column\(s\) \[0\] vary by so much that the "
                                         r"sum of their squared deviations overflows"):
        pgm.Flow(2, context_dim=1).fit(x, c=c, method="mle", num_steps=2, progress=False)
