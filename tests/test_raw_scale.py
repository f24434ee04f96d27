"""Every family works on raw columns: scikit-learn's wine as it comes (13 columns from
about 0.1 to 1,680) against its standardized copy.

For u = (x - m) / sd (m, sd the training rows' column moments), a density family that is
equivariant to that affine map gives log p_raw(x) = log p_std(u) - sum_d log sd_d exactly.
The neural families standardize inside (an affine map fitted to the training rows, its
log-determinant included), Gaussian and the mixture are affine-equivariant by their math
(the mixture's k-means start runs on standardized columns), PPCA's isotropic noise is
not, so it takes ``standardize=True`` here. Both fits run the same seed on the same rows
in float64, so the two held-out means agree to rounding: the tolerance, 1e-6 nats, is
far above the float64 rounding of a few hundred optimizer steps (measured differences
0 to 1.3e-8) and far below any real difference (the unstandardized Flow or VAE on raw
wine are tens to thousands of nats off). The GAN has no density: its samples must be the
same affine image.
"""

import math

import pandas as pd
import pytest
import torch
from sklearn.datasets import load_wine

import pyro_genmodels as pgm
from pyro_genmodels._rng import seeded
from pyro_genmodels._moments import column_moments

#: the families whose data are not real-valued columns (token sequences): not applicable
TEXT_FAMILIES = {"ngram", "autoregressive"}

#: family -> (build, method, fit options); small networks and budgets
FAMILIES = {
    "gaussian": (lambda: pgm.Gaussian(13), "mle", {"num_steps": 300}),
    "gaussian_mixture": (lambda: pgm.GaussianMixture(13, 3, n_init=2), "mle",
                         {"reg_covar": 1e-12}),
    "ppca": (lambda: pgm.PPCA(13, 4, standardize=True), "mle", {"num_steps": 300}),
    "flow": (lambda: pgm.Flow(13, hidden=(32, 32), num_transforms=2), "mle",
             {"num_steps": 100}),
    "vae": (lambda: pgm.VAE(13, 4, likelihood="gaussian", hidden=(32,)), "mle",
            {"num_steps": 100}),
    "diffusion": (lambda: pgm.Diffusion(13, timesteps=50, hidden=(32, 32)), "mle",
                  {"num_steps": 100}),
    "score": (lambda: pgm.ScoreModel(13, hidden=(32, 32), num_levels=5), "dsm",
              {"num_steps": 100}),
    "energy": (lambda: pgm.EnergyModel(13, hidden=(32, 32), eval_sigma=0.3), "mle",
               {"num_steps": 100}),
    "gan": (lambda: pgm.GAN(13, hidden=(32, 32)), "adversarial", {"num_steps": 50}),
}


@pytest.fixture(scope="module")
def wine():
    x = torch.tensor(load_wine().data, dtype=torch.float64)
    perm = torch.randperm(178, generator=torch.Generator().manual_seed(0))
    train, test = x[perm[:140]], x[perm[140:]]
    m, sd = train.mean(0), train.std(0)
    return train, test, m, sd


def test_every_family_with_real_columns_is_covered():
    assert set(pgm.registry()) - TEXT_FAMILIES == set(FAMILIES)


def _fit(name, x):
    build, method, options = FAMILIES[name]
    with seeded(0):
        model = build().double()
    return model.fit(x, method=method, seed=0, progress=False, **options)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_raw_and_standardized_columns_give_the_same_density(name, wine):
    train, test, m, sd = wine
    raw, std = _fit(name, train), _fit(name, (train - m) / sd)
    if raw.log_prob_kind == "none":  # no density: the samples are the affine image
        torch.testing.assert_close(raw.sample(50, seed=1), m + sd * std.sample(50, seed=1),
                                   rtol=1e-6, atol=1e-6 * sd.max().item())
        return
    lp_raw = raw.log_prob(test).mean().item()
    lp_std = std.log_prob((test - m) / sd).mean().item() - sd.log().sum().item()
    assert abs(lp_raw - lp_std) < 1e-6, (lp_raw, lp_std)
    assert lp_raw > -60  # finite and sensible: a Gaussian reaches about -21 here


def test_ppca_without_standardizing_is_the_textbook_model_and_depends_on_units(wine):
    """PPCA's default fits x itself (Tipping & Bishop): on wine's raw columns the fit is
    the model's exact MLE (the closed form, to 1e-6 relative), yet its isotropic noise is
    dominated by proline, so the held-out density is below the standardized model's
    (measured: -23.98 against -21.02 nats per row; asserted: by more than one nat)."""
    from pyro_genmodels.models.ppca import closed_form

    train, test, m, sd = wine
    with seeded(0):
        textbook = pgm.PPCA(13, 4).double().fit(train, method="mle", seed=0, progress=False,
                                                num_steps=300)
    best = textbook.model.log_prob_given(closed_form(train, 4), train).mean()
    got = textbook.log_prob(train).mean()
    assert got <= best + 1e-9 and abs(got - best) < 1e-6 * abs(best)
    standardized = _fit("ppca", train)
    assert textbook.log_prob(test).mean() < standardized.log_prob(test).mean() - 1


@pytest.mark.parametrize("unit", [1e-4, 1e3])
@pytest.mark.parametrize("name,method", [("gaussian", "map"), ("gaussian", "vi"),
                                         ("gaussian_mixture", "map"),
                                         ("gaussian_mixture", "vi"), ("ppca", "map"),
                                         ("ppca", "vi")])
def test_map_and_vi_are_equivariant_under_a_change_of_units(name, method, unit, wine):
    """Measuring the columns in another unit a, with the priors' scales times a, is the
    same problem: the fit's locations and scales are a times the first fit's, its
    correlations and weights the same. Exactly so in exact arithmetic, because the
    optimizers work in column sds (``param_units``) and the mixture's start runs EM on
    the columns in sds; before, at a = 1e-4 a Gaussian ``vi`` ended 17 sds from the
    data mean and the mixture's EM start differed by 0.8 sds, and PPCA's ``map`` ended
    30 nats per row below the closed form. Asserted to 1e-9 sds (measured 1e-13 to
    1e-15: float64 rounding)."""
    train = wine[0][:, :4]
    sd = train.std(0)
    fits = []
    for a in (1.0, unit):
        build = {"gaussian": lambda s: pgm.Gaussian(4, prior_scale=s),
                 "gaussian_mixture": lambda s: pgm.GaussianMixture(
                     4, 2, covariance_type="diag", prior_scale=s),
                 "ppca": lambda s: pgm.PPCA(4, 2, prior_scale=s)}[name]
        fits.append(build(1000.0 * a).double().fit(train * a, method=method, seed=0,
                                                   progress=False, num_steps=100))
    one, other = (f.params for f in fits)
    for key in one:
        if key in ("loc", "locs", "scale", "scales"):
            assert ((other[key] / unit - one[key]).abs() / sd).max() < 1e-9, key
        elif key == "W":  # identified up to a rotation R (W R has the same density and
            # prior): W W^T, entry (i, j) in units of sd_i sd_j
            gram = [w @ w.T for w in (other[key] / unit, one[key])]
            assert ((gram[0] - gram[1]).abs() / (sd[:, None] * sd)).max() < 1e-9
        elif key == "sigma":  # one noise sd for every column
            assert abs(other[key] / unit / one[key] - 1) < 1e-9
        elif key in ("weights", "corr_cholesky"):
            assert (other[key] - one[key]).abs().max() < 1e-9, key


def test_pandas_frames_in_every_numeric_dtype_and_clear_refusals():
    """pandas' nullable dtypes (Float64, Int64, boolean: NumPy reads them as object) fit
    as their NumPy twins do, and a sparse column as its dense values; a missing value is
    a NaN refused with its row and column; a categorical or text column is refused by
    name."""
    import pandas as pd

    raw = load_wine(as_frame=True).data.iloc[:, :3]
    nullable = raw.astype("Float64")
    a = pgm.Gaussian(3).fit(raw, method="mle", seed=0, num_steps=50, progress=False)
    b = pgm.Gaussian(3).fit(nullable, method="mle", seed=0, num_steps=50, progress=False)
    assert b.data.dtype == torch.float64 and torch.equal(a.data, b.data)
    assert torch.equal(a.log_prob(raw), b.log_prob(nullable))
    ints = pd.DataFrame({"n": pd.array([1, 2, 4, 3], dtype="Int64"),
                         "flag": pd.array([True, False, True, True], dtype="boolean")})
    assert torch.equal(pgm.Gaussian(2).validate_data(ints),
                       torch.tensor([[1.0, 1.0], [2.0, 0.0], [4.0, 1.0], [3.0, 1.0]]))
    # a sparse column (pd.get_dummies(..., sparse=True)) is read as its dense values
    sparse = raw.assign(ash=pd.arrays.SparseArray(raw["ash"].round(0), fill_value=2.0))
    dense = raw.assign(ash=raw["ash"].round(0))
    assert isinstance(sparse.dtypes["ash"], pd.SparseDtype)
    assert torch.equal(pgm.Gaussian(3).validate_data(sparse),
                       pgm.Gaussian(3).validate_data(dense))
    gaps = pd.DataFrame({"a": pd.arrays.SparseArray([1.0, float("nan")] * 3), "b": [0.0] * 6})
    with pytest.raises(ValueError, match=r"must be finite: found nan at row 1, column 0"):
        pgm.Gaussian(2).validate_data(gaps)
    holed = nullable.copy()
    holed.iloc[5, 2] = pd.NA
    with pytest.raises(ValueError, match=r"must be finite: found nan at row 5, column 2"):
        pgm.Gaussian(3).fit(holed, method="mle", progress=False)
    # a sorted frame: its index label is not the position, and both are named
    with pytest.raises(ValueError, match=r"found nan at row 0, column 2 \(index label 5, "
                                         r"column 'ash'\)"):
        pgm.Gaussian(3).fit(holed.sort_values("ash", na_position="first"), method="mle",
                            progress=False)
    with pytest.raises(ValueError, match=r"found nan at row 0, column 0 \(index label 5, "
                                         r"column 'ash'\)"):
        pgm.Gaussian(1).fit(holed["ash"].sort_values(na_position="first"), method="mle",
                            progress=False)
    # a Series read as one row (one condition for every row): its index names columns
    from pyro_genmodels._validation import as_data
    with pytest.raises(ValueError, match=r"found nan at row 0, column 1 \(1 non-finite"):
        as_data(pd.Series([1.0, float("nan")], index=["a", "b"], name="c"), dim=2, one_row=True)
    with pytest.raises(ValueError, match=r"repeated column names \['alcohol'\]"):
        pgm.Gaussian(3).fit(raw.set_axis(["alcohol", "malic_acid", "alcohol"], axis=1),
                            method="mle", progress=False)
    # told apart as the fit records them, strings: 1 and "1" were both saved as "1", a
    # fit that load then refused
    with pytest.raises(ValueError, match=r"repeated column names \['1'\]"):
        pgm.Gaussian(3).fit(raw.set_axis([1, "1", "ash"], axis=1), method="mle",
                            progress=False)
    labelled = raw.assign(kind=pd.Categorical(["a", "b"] * 89)).iloc[:, 1:]
    with pytest.raises(TypeError, match="column 'kind' is categorical; expected numbers"):
        pgm.Gaussian(3).fit(labelled, method="mle", progress=False)
    texts = raw.assign(name="x").iloc[:, 1:]
    with pytest.raises(TypeError, match="column 'name' has dtype .*; expected numbers"):
        pgm.Gaussian(3).fit(texts, method="mle", progress=False)


@pytest.mark.parametrize("method,extra", [("nuts", {}), ("nuts", {"sampler": "fused"}),
                                          ("chees", {})])
def test_posterior_sampling_is_equivariant_under_a_change_of_units(method, extra, wine):
    """The samplers take their coordinates from the program in ``param_units`` (column
    sds), so wine's columns in units of 1e-4 (priors scaled alike) are the same chains:
    draws a times the unit-1 draws, to 1e-6 sds (rounding only). Before, the chains
    started 0.5 absolute units apart and adapted from a unit mass matrix: at 1e-4,
    200 + 200 NUTS steps took 558 s (not 5.8) and ended with R-hat 2.8."""
    train = wine[0][:, :3]
    draws = []
    for a in (1.0, 1e-4):
        fit = pgm.Gaussian(3, prior_scale=1000.0 * a).double().fit(
            train * a, method=method, num_samples=20, warmup_steps=20, num_chains=2,
            seed=0, progress=False, **extra)
        draws.append(fit.posterior["loc"] / a)
    sd = train.std(0)
    assert ((draws[1] - draws[0]).abs() / sd).max() < 1e-6


def test_a_frame_is_scored_only_with_the_training_columns_in_their_order(wine, tmp_path):
    """A density reads columns by position: a DataFrame with the training columns in
    another order (scored -450,762 per row instead of -10.47 before), or other columns,
    is refused by name, in ``log_prob``, ``compare`` and the CLI's ``report --heldout``;
    an array has no names to check."""
    from sklearn.datasets import load_wine

    from pyro_genmodels import cli

    frame = load_wine(as_frame=True).frame.iloc[:, :3]
    fit = pgm.Gaussian(3).fit(frame, method="mle", seed=0, progress=False, num_steps=5)
    assert fit.info["columns"] == list(frame.columns)
    swapped = frame[["malic_acid", "alcohol", "ash"]]
    assert torch.equal(fit.log_prob(frame), fit.log_prob(frame.to_numpy()))
    with pytest.raises(ValueError, match=r"training columns in another order: expected "
                                         r"\['alcohol', 'malic_acid', 'ash'\]"):
        fit.log_prob(swapped)
    with pytest.raises(ValueError, match=r"missing \['ash'\], unexpected \['hue'\]"):
        fit.log_prob(load_wine(as_frame=True).frame[["alcohol", "malic_acid", "hue"]])
    # one side only: the other is not said as an empty list
    with pytest.raises(ValueError, match=r"not the training columns: unexpected \['hue'\] "
                                         r"\(expected"):
        fit.log_prob(load_wine(as_frame=True).frame[["alcohol", "malic_acid", "ash", "hue"]])
    with pytest.raises(ValueError, match=r"not the training columns: missing \['ash'\] "
                                         r"\(expected"):
        fit.log_prob(frame[["alcohol", "malic_acid"]])
    with pytest.raises(ValueError, match="cannot score heldout: x's columns are the "
                                         "training columns in another order"):
        pgm.compare({"mle": fit}, swapped)
    assert torch.equal(fit.log_prob(swapped.to_numpy()), fit.log_prob(swapped.to_numpy()))
    fit.save(tmp_path / "run")
    swapped.to_csv(tmp_path / "held.csv", index=False)
    with pytest.raises(SystemExit, match="in another order"):
        cli.main(["report", str(tmp_path / "run"), "--heldout", str(tmp_path / "held.csv"),
                  "--out", str(tmp_path / "rep")])
    assert not (tmp_path / "rep").exists()
    frame.to_csv(tmp_path / "held.csv", index=False)
    assert cli.main(["report", str(tmp_path / "run"), "--heldout",
                     str(tmp_path / "held.csv"), "--out", str(tmp_path / "rep")]) == 0
    assert "held-out log p" in (tmp_path / "rep" / "index.html").read_text()
    # a named Series is one named column
    one = pgm.Gaussian(1).fit(frame["ash"], method="mle", seed=0, progress=False,
                              num_steps=5)
    assert one.info["columns"] == ["ash"] and one.log_prob(frame["ash"]).shape == (178,)
    with pytest.raises(ValueError, match=r"missing \['ash'\], unexpected \['alcohol'\]"):
        one.log_prob(frame["alcohol"])
    # a row as df.iloc[0] gives it (a Series indexed by the columns) was called a column
    # named 0 ("missing ['alcohol', 'malic_acid', 'ash'], unexpected ['0']")
    with pytest.raises(ValueError, match=r"a Series indexed by the training columns: one "
                                         r"row, as df.iloc\[i\] gives.*df.iloc\[\[i\]\]"):
        fit.log_prob(frame.iloc[0])
    with pytest.raises(ValueError, match=r"one row as \(1, 3\): x.reshape\(1, -1\)\), got "
                                         r"shape \(3,\)$"):
        fit.log_prob(frame.iloc[0].to_numpy())
    assert fit.log_prob(frame.iloc[[0]]).shape == (1,)


def test_messages_name_the_columns_of_a_dataframe_and_a_csv_header(tmp_path, capsys):
    """A fit of a DataFrame (or, at the command line, a .csv with a header) says the
    columns by index and name: the prior's warning, a constant column's refusal (they
    said indices alone, though the names were known)."""
    import pandas as pd

    from pyro_genmodels import cli

    data = load_wine(as_frame=True).data
    with pytest.warns(UserWarning, match=r"moves the map fit of column\(s\) \[0, 1, 2, 3, "
                                         r"4, 5, 6, 7, 8, 9, 10, 11, 12\] \(alcohol, "
                                         r"malic_acid, ash, .*, proline\) by more than"):
        pgm.Gaussian(13).fit(data, method="map", num_steps=2, progress=False, seed=0)
    flat = pd.DataFrame({"a": [1.0, 2.0, 4.0], "level": [3.0, 3.0, 3.0]})
    with pytest.raises(ValueError, match=r"column\(s\) \[1\] \(level\) are constant"):
        pgm.Gaussian(2).fit(flat, method="map", progress=False)
    with pytest.raises(ValueError, match=r"column\(s\) \[1\] are constant"):
        pgm.Gaussian(2).fit(flat.to_numpy(), method="map", progress=False)
    data.to_csv(tmp_path / "wine.csv", index=False)
    assert cli.main(["fit", "gaussian", "--data", str(tmp_path / "wine.csv"), "--method",
                     "map", "--out", str(tmp_path / "run"), "--quiet", "--option",
                     "num_steps=2"]) == 0
    assert "column(s) [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12] (alcohol, malic_acid, " \
        in capsys.readouterr().err
    assert pgm.load(tmp_path / "run").info["columns"] == list(data.columns)


def test_a_prior_that_moves_raw_columns_by_a_standard_error_is_said(wine):
    """The default prior N(0, 10^2) on a location is strong for wine's proline (mean
    747): ``map`` and the posteriors are pulled by many standard errors (proline's MAP:
    129), and every column correlated with it along (5-17 se), so the fit warns, naming
    the columns and a prior_scale of their size; not for ``mle``, standardized columns,
    or a prior of the data's scale. Criterion: the conjugate shift of the location,
    (N I + S / s0^2)^-1 S m / s0^2, above a column's standard error sqrt(S_jj / N) (or
    the scale's); per column where the components' covariances are diagonal."""
    import warnings

    train = wine[0]
    standardized = (train - train.mean(0)) / train.std(0)
    every = ", ".join(str(j) for j in range(13))
    for model in (pgm.Gaussian(13), pgm.GaussianMixture(13, 2), pgm.PPCA(13, 2),
                  pgm.GaussianMixture(13, 2, covariance_type="diag")):
        named = "4, 12" if getattr(model, "covariance_type", "") == "diag" else every
        with pytest.warns(UserWarning, match=rf"moves the map fit of column\(s\) \[{named}\] "
                                             r"by more than a standard error .* reaches "
                                             r"7\d\d\.\d.* prior_scale=10000") as record:
            model.fit(train, method="map", num_steps=2, progress=False, seed=0)
        assert record[0].filename == __file__  # said where the user called fit
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            model.fit(train, method="mle", num_steps=2, progress=False, seed=0)
            model.fit(standardized, method="map", num_steps=2, progress=False, seed=0)
            type(model)(**{**model.get_config(), "prior_scale": 1e4}).fit(
                train, method="map", num_steps=2, progress=False, seed=0)
    # the threshold: a column whose conjugate shift is just above / below one se
    n, s0 = 100, 10.0
    x = torch.randn(n, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = (x - x.mean()) / x.std(correction=0) * 5.0  # sd 5: v = 0.25, se 0.5
    for m, warns in ((199.0, False), (202.0, True)):  # shift m * 0.25 / 100.25 vs 0.5
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            pgm.Gaussian(1, prior_scale=s0).fit(x + m, method="map", num_steps=1,
                                                progress=False)
        assert any("prior_scale=10" in str(w.message) for w in seen) == warns, m


@pytest.mark.parametrize("unit", [1e-9, 1e9])
def test_standardizing_is_equivariant_in_units_of_any_size(unit):
    """A standardizing flow fits wine in units of 1e-9 (and 1e9) as it fits wine itself:
    the same standardized rows, so the same fit, its log-density less D log(unit), to
    rounding. Before, a column sd below an absolute 1e-8 counted as constant and was left
    unscaled (wine x 1e-9: columns of about 1e-8 under a unit-variance base). Rows
    streamed from a Dataset get the same moments as rows in memory."""
    from pyro_genmodels._moments import ColumnMoments, column_moments

    x = torch.tensor(load_wine().data, dtype=torch.float64)[:, :4]
    scores = []
    for k in (1.0, unit):
        with seeded(0):
            model = pgm.Flow(4, hidden=(16,), num_transforms=2).double()
        fit = model.fit(k * x, method="mle", num_steps=30, seed=0, progress=False)
        scores.append(fit.log_prob(k * x) + 4 * math.log(k))
    assert torch.allclose(scores[1], scores[0], rtol=0, atol=1e-9)
    acc = ColumnMoments()
    for block in (unit * x).split(50):
        acc.add(block)
    for a, b in zip(acc.result(), column_moments(unit * x)):
        assert torch.allclose(a, b, rtol=1e-12, atol=0)
    # a constant column, of any size, still gets sd 1 (u = x - mean); a float32 column
    # that varies by a few steps of its precision (1e8 + 8 k: steps of 8) gets its sd
    for c in (3e-12, 7.0, 5e20):
        assert column_moments(torch.full((10, 1), c))[1].item() == 1.0
    steps = 1e8 + 8 * torch.arange(-2.0, 3.0)[:, None]
    assert column_moments(steps)[1].item() == pytest.approx(8 * math.sqrt(2.5), rel=1e-6)


def test_column_moments_of_rows_in_memory_go_block_by_block(monkeypatch):
    """Rows in memory are folded in blocks (a float32 array is never copied whole to
    float64): over many blocks, wine's moments are the two-pass ones to 1e-12, and float32
    rows get float32 moments."""
    import pyro_genmodels._moments as v

    x = torch.tensor(load_wine().data, dtype=torch.float64)
    monkeypatch.setattr(v, "MOMENT_BLOCK_ROWS", 7)  # 26 blocks of wine's 178 rows
    mean, sd = v.column_moments(x)
    assert torch.allclose(mean, x.mean(0), rtol=1e-12, atol=0)
    assert torch.allclose(sd, x.std(0), rtol=1e-12, atol=0)
    assert all(m.dtype == torch.float32 for m in v.column_moments(x.float()))


def test_column_moments_of_wide_rows_take_fewer_rows_per_block(monkeypatch):
    """A block holds at most MOMENT_BLOCK_ELEMENTS numbers, whatever the rows' width: a
    cap on rows alone copied 60,000 x 784 float32 rows whole to float64 (peak +1079 MiB
    in a fresh process; +7 MiB with blocks of 2**18 numbers). Wine's 13 columns at 130
    numbers per block: blocks of 10 rows, the moments still the two-pass ones."""
    import pyro_genmodels._moments as v

    x = torch.tensor(load_wine().data, dtype=torch.float64)
    monkeypatch.setattr(v, "MOMENT_BLOCK_ELEMENTS", 13 * 10)
    blocks = []
    add = v.ColumnMoments.add

    def spy(self, rows):
        blocks.append(tuple(rows.shape))
        return add(self, rows)

    monkeypatch.setattr(v.ColumnMoments, "add", spy)
    mean, sd = v.column_moments(x)
    assert blocks[:-1] == [(10, 13)] * 17 and blocks[-1] == (8, 13)
    assert torch.allclose(mean, x.mean(0), rtol=1e-12, atol=0)
    assert torch.allclose(sd, x.std(0), rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_columns_whose_variance_underflows_are_refused_clearly(name, wine):
    """Wine in units of 1e-170 (float64): each column varies, but its variance (about
    1e-336 and below) underflows float64, so there is no unit to standardize by. Every
    family refuses it with one message before any step: a sd of 0 made the standardizing
    families' first loss NaN ("Non-finite loss at step 0, try a smaller lr"), the VAE
    raised torch's "Expected parameter loc ... found invalid values", and the flow and
    PPCA called the rows a hyperplane. The streamed moments pass refuses it the same
    way. In units of 1e-150 (variances near 1e-296, normal numbers) the moments are
    taken."""
    build, method, options = FAMILIES[name]
    train = wine[0] * 1e-170
    refused = r"vary, but by so little that their variance underflows torch.float64"
    with pytest.raises(ValueError, match=refused + r".*rescale the data"):
        build().fit(train, method=method, seed=0, progress=False, **options)
    if name == "flow":
        from torch.utils.data import TensorDataset

        with pytest.raises(ValueError, match=refused):
            build().fit(TensorDataset(train), method=method, seed=0, progress=False,
                        **options)
        mean, sd = column_moments(wine[0] * 1e-150)
        assert torch.allclose(sd, column_moments(wine[0])[1] * 1e-150, rtol=1e-12)


def test_a_conditions_frame_is_read_only_with_the_training_columns_in_their_order(tmp_path):
    """The conditions ``c`` are columns read by position too: a frame of them in another
    order was taken silently (a conditional Diffusion scored -3,049,118 per row instead of
    -5.38, a GAN drew alcohol near 53). Their names are recorded
    (``fit.info["context_columns"]``), kept by save/load, and checked by ``log_prob`` and
    ``sample`` as ``x``'s are; an array has no names to check."""
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    x, c = frame[["alcohol", "malic_acid"]], frame[["hue", "proline"]]
    with seeded(0):
        model = pgm.Flow(2, context_dim=2, num_transforms=1, hidden=(8,))
    fit = model.fit(x, c=c, method="mle", seed=0, progress=False, num_steps=3)
    assert fit.info["columns"] == ["alcohol", "malic_acid"]
    assert fit.info["context_columns"] == ["hue", "proline"]
    swapped = c[["proline", "hue"]]
    assert torch.equal(fit.log_prob(x, c=c), fit.log_prob(x, c=c.to_numpy()))
    for again in (fit, pgm.load(_saved(fit, tmp_path / "run"))):
        with pytest.raises(ValueError, match=r"c's columns are the training columns in "
                                             r"another order: expected \['hue', 'proline'\], "
                                             r"got \['proline', 'hue'\]\. Select them in the "
                                             r"training order: c\[fit.info\['context_columns'"):
            again.log_prob(x, c=swapped)
        with pytest.raises(ValueError, match=r"c's columns are not the training columns: "
                                             r"missing \['proline'\], unexpected \['ash'\]"):
            again.sample(3, c=frame[["hue", "ash"]].iloc[:3], seed=0)
        assert again.sample(3, c=c.iloc[:3], seed=0).shape == (3, 2)
        assert torch.equal(again.sample(3, c=swapped.to_numpy()[:3], seed=0),
                           again.sample(3, c=swapped.to_numpy()[:3], seed=0))
        # one row (a Series, as df.iloc[i] gives) is the condition of every draw
        assert torch.equal(again.sample(3, c=c.iloc[0], seed=0),
                           again.sample(3, c=c.iloc[[0, 0, 0]], seed=0))
    # class labels are not columns: a VAE fitted on one-hot frames takes a labels Series
    labels = pd.Series(load_wine().target, name="cultivar")
    vae = pgm.VAE(2, 1, hidden=(4,), likelihood="gaussian", num_classes=3).fit(
        x, c=pd.get_dummies(labels, dtype=float), method="mle", seed=0, progress=False,
        num_steps=3)
    assert "context_columns" not in vae.info
    assert torch.equal(vae.log_prob(x, c=labels, seed=0),
                       vae.log_prob(x, c=labels.to_numpy(), seed=0))


def _saved(fit, path):
    fit.save(path)
    return path


def test_held_out_frames_are_read_only_with_the_training_columns_in_their_order():
    """``validation=`` frames are columns read by position too: held-out rows, or their
    conditions, in another order were taken silently (a Flow's held-out loss on swapped
    wine columns: 163.7 per row, and early stopping chose by it). They are refused as
    ``log_prob`` refuses them, before any step; arrays and matching frames are taken."""
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    x, c = frame[["alcohol", "malic_acid", "ash"]], frame[["proline", "magnesium"]]
    flow = pgm.Flow(3, num_transforms=1, hidden=(8,))
    kw = dict(method="mle", seed=0, progress=False, num_steps=2)
    steps = []
    with pytest.raises(ValueError, match=r"^validation's columns are the training columns in "
                                         r"another order: expected \['alcohol', 'malic_acid', "
                                         r"'ash'\], got \['ash', 'alcohol', 'malic_acid'\]\. "
                                         r"Select them in the training order: "
                                         r"validation\[x\.columns\]$"):
        flow.fit(x[:140], validation=x[140:][["ash", "alcohol", "malic_acid"]],
                 callback=lambda *a: steps.append(a), **kw)
    with pytest.raises(ValueError, match=r"^validation's columns are not the training "
                                         r"columns: missing \['ash'\], unexpected \['hue'\]"):
        flow.fit(x[:140], validation=frame[["alcohol", "malic_acid", "hue"]][140:], **kw)
    assert steps == []
    for held in (x[140:], x[140:].to_numpy()):
        assert flow.fit(x[:140], validation=held, **kw).info["heldout_losses"]
    cflow = pgm.Flow(3, context_dim=2, num_transforms=1, hidden=(8,))
    with pytest.raises(ValueError, match=r"^c_val's columns are the training columns in "
                                         r"another order: .* Select them in the training "
                                         r"order: c_val\[c\.columns\]$"):
        cflow.fit(x[:140], c=c[:140], validation=(x[140:], c[140:][["magnesium", "proline"]]),
                  **kw)
    with pytest.raises(ValueError, match=r"^x_val's columns are the training columns in "
                                         r"another order"):
        cflow.fit(x[:140], c=c[:140], validation=(x[140:][["ash", "alcohol", "malic_acid"]],
                                                  c[140:]), **kw)
    assert cflow.fit(x[:140], c=c[:140], validation=(x[140:], c[140:]),
                     **kw).info["heldout_losses"]


def test_the_prior_warning_names_the_columns_whose_map_the_prior_moves():
    """Oracle: the MAP itself. On raw wine's alcohol, malic acid, colour intensity and
    proline the default prior moves every location's MAP by 5-27 standard errors (the
    pull on proline drags the correlated columns), and the warning named proline alone,
    judging each column by itself. A column uncorrelated with the rest (in the sample: its
    covariance with them is 0) stays within a standard error and is not named."""
    import warnings

    cols = ["alcohol", "malic_acid", "color_intensity", "proline"]
    raw = torch.tensor(load_wine(as_frame=True).frame[cols].to_numpy())
    gen = torch.Generator().manual_seed(0)
    free = torch.randn(raw.shape[0], 1, generator=gen, dtype=torch.float64)
    centred = raw - raw.mean(0)
    free = free - free.mean() - centred @ torch.linalg.lstsq(centred, free - free.mean()
                                                             ).solution
    x = torch.cat([raw, 3.0 + free / free.std()], 1)  # mean 3, sd 1, covariance 0 with raw
    se = x.std(0, correction=0) / x.shape[0] ** 0.5
    mle = x.mean(0)  # the Gaussian's MLE of the location
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fit = pgm.Gaussian(5).fit(x, method="map", seed=0, progress=False)
    moved = ((fit.params["loc"] - mle) / se).abs()
    assert (moved[:4] > 4).all() and moved[4] < 0.5, moved
    said = [str(w.message) for w in seen if "prior_scale=10" in str(w.message)]
    assert len(said) == 1 and "column(s) [0, 1, 2, 3] by more than" in said[0], said


def test_the_prior_warning_also_judges_each_column_where_the_covariance_is_fitted():
    """Two columns of mean 3e5, sd 1 and correlation -0.999: judged jointly with their
    sample covariance the prior moves them by less than a standard error, but the map
    fits the covariance too, and moved them by 451 se after 2000 steps (the per-column
    shift flags them). The suggested prior_scale, of the largest column's size, silences
    the warning (it was taken from the named columns only, and could be smaller than the
    prior given)."""
    import warnings

    z = torch.randn(200, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pair = -0.999 * z[:, 1] + (1 - 0.999 ** 2) ** 0.5 * z[:, 2]
    x = torch.stack([0.05 * z[:, 0], 3e5 + z[:, 1], 3e5 + pair], 1)
    with pytest.warns(UserWarning, match=r"column\(s\) \[1, 2\] by more than a standard error "
                                         r"\(the columns' \|mean\| or sd reaches 3e\+05\).* "
                                         r"prior_scale=1e\+07\)") as record:
        pgm.Gaussian(3).fit(x, method="map", num_steps=2, progress=False, seed=0)
    assert len(record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        pgm.Gaussian(3, prior_scale=1e7).fit(x, method="map", num_steps=2, progress=False,
                                             seed=0)
