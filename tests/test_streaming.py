"""Streamed data (a Dataset, a DataLoader, a memory-mapped .npy): the oracle is the same
fit on the same rows as a tensor. The loop draws the same minibatch indices either way
and a streamed block enters the same computation, so parameters and loss traces agree to
rounding (the standardization's moments are summed in another order: ~1e-16), as long as
the numbers a fit takes from a 2,048-row sample when streamed (starting values, scales)
are the tensor fit's: at most 2,048 training rows, or a family whose only numbers from
the data are the moments of all rows."""

import re

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

import pyro_genmodels as pgm
from pyro_genmodels.infer import streaming


class Rows(Dataset):
    """A plain map-style dataset of rows (or (x, c) pairs), one item at a time."""

    def __init__(self, x, c=None):
        self.x, self.c = x, c

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i] if self.c is None else (self.x[i], self.c[i])


def _data(n=512):
    torch.manual_seed(0)
    return pgm.datasets.toy("eight_gaussians").sample((n,)).double()


CASES = {
    "flow-mle": (lambda: pgm.Flow(2, num_transforms=1, hidden=(16,)), "mle", {}),
    "gaussian-map": (lambda: pgm.Gaussian(2), "map", {}),
    "gaussian-vi": (lambda: pgm.Gaussian(2), "vi", {"num_posterior_samples": 5}),
    "ppca-map": (lambda: pgm.PPCA(2, 1), "map", {}),
    "vae-mle": (lambda: pgm.VAE(2, 1, likelihood="gaussian", hidden=(16,)), "mle", {}),
    "diffusion-mle": (lambda: pgm.Diffusion(2, timesteps=20, hidden=(16,)), "mle", {}),
    "score-dsm": (lambda: pgm.ScoreModel(2, hidden=(16,)), "dsm", {}),
    "gan": (lambda: pgm.GAN(2, hidden=(16,)), "adversarial", {}),
    "energy-dsm": (lambda: pgm.EnergyModel(2, hidden=(16,)), "mle",
                   {"objective": "score_matching"}),
    "energy-contrastive": (lambda: pgm.EnergyModel(2, hidden=(16,), noise_conditional=False),
                           "mle", {}),
    "energy-multilevel": (lambda: pgm.EnergyModel(2, hidden=(16,)), "mle", {}),
}


def _same(a, b, tol=1e-12):
    assert len(a.losses) == len(b.losses)
    np.testing.assert_allclose(a.losses, b.losses, rtol=tol, atol=tol)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    for k in sa:
        if sa[k].is_floating_point():
            torch.testing.assert_close(sa[k], sb[k], rtol=tol, atol=tol)
    for group in ("point", "posterior"):
        pa, pb = getattr(a, group), getattr(b, group)
        if pa:
            for k in pa:
                torch.testing.assert_close(pa[k], pb[k], rtol=tol, atol=tol)


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_dataset_fit_equals_the_tensor_fit(case):
    make, method, kw = CASES[case]
    x = _data()
    opts = dict(method=method, seed=1, num_steps=12, batch_size=64, progress=False, **kw)
    model = make()  # one model: fits never change it
    a = model.fit(x, **opts)
    b = model.fit(Rows(x), **opts)
    _same(a, b)
    held = b.options.get("validation")  # a family may hold out rows by default
    held = int(round(held * 512)) if isinstance(held, float) else 0
    assert b.info["streamed_rows"] == 512 - held and b.data is None


@pytest.mark.parametrize("case", ["flow-mle", "gan"])
def test_beyond_the_sample_a_family_that_takes_only_moments_fits_the_same(case):
    """3,000 rows (more than the 2,048-row sample): a family whose only numbers from the
    data are the column moments, computed over all rows, still equals the tensor fit."""
    make, method, kw = CASES[case]
    x = _data(3000)
    opts = dict(method=method, seed=1, num_steps=8, batch_size=64, progress=False, **kw)
    model = make()
    _same(model.fit(x, **opts), model.fit(Rows(x), **opts))


def test_a_conditional_dataset_gives_x_c_pairs():
    x = _data()
    c = (x[:, :1] > 0).double()
    opts = dict(method="mle", seed=2, num_steps=10, batch_size=32, progress=False)
    model = pgm.Flow(2, num_transforms=1, hidden=(16,), context_dim=1)
    a, b = model.fit(x, c=c, **opts), model.fit(Rows(x, c), **opts)
    _same(a, b)
    # an item of rows alone says what it is ("an item is a tuple" did not: a pair is one)
    with pytest.raises(ValueError, match=r"must give \(x, c\) pairs, but an item is a "
                                         r"tuple of length 1$"):
        model.fit(TensorDataset(x), **opts)
    # triples were read as rows: "must be 2-D of shape (N, 2), got shape (32, 3, 2)"
    with pytest.raises(ValueError, match=r"^the dataset's items are tuples of length 3: "
                                         r"expected rows x"):
        pgm.Flow(2, num_transforms=1, hidden=(16,)).fit(TensorDataset(x, x, x), **opts)
    # a row given as a list of its numbers (0-d tensors) is a row, not a triple or a pair
    x3 = torch.cat([x, x[:, :1] * x[:, 1:]], 1)  # a third column, not a linear one

    class Listed(Dataset):
        def __len__(self):
            return len(x3)

        def __getitem__(self, i):
            return list(x3[i])

    flow = pgm.Flow(3, num_transforms=1, hidden=(16,))
    assert len(flow.fit(Listed(), **{**opts, "num_steps": 2}).losses) == 2


def test_a_memory_mapped_npy_with_a_validation_fraction(tmp_path):
    """float32 file; the held-out share is drawn as for a tensor, so the fits agree."""
    x = _data(600).float()
    path = tmp_path / "x.npy"
    np.save(path, x.numpy())
    data = np.load(path, mmap_mode="r")
    opts = dict(method="mle", seed=3, num_steps=20, batch_size=50, validation=0.2,
                validate_every=5, progress=False)
    model = pgm.Flow(2, num_transforms=1, hidden=(16,))
    a, b = model.fit(x, **opts), model.fit(data, **opts)
    _same(a, b, tol=1e-6)  # float32
    np.testing.assert_allclose(a.info["heldout_losses"], b.info["heldout_losses"], rtol=1e-6)
    assert b.info["streamed_rows"] == 480


def test_the_array_reader_reads_rows_by_position(tmp_path):
    x = np.arange(40, dtype=np.float64).reshape(10, 4)
    np.save(tmp_path / "a.npy", x)
    rows = streaming._ArrayRows(np.load(tmp_path / "a.npy", mmap_mode="r"))
    assert rows.file is not None  # positioned reads, not the mapping
    np.testing.assert_array_equal(rows.__getitems__([7, 2, 2, 9]), x[[7, 2, 2, 9]])
    np.testing.assert_array_equal(rows.__getitems__([3, 4, 5]), x[3:6])
    np.testing.assert_array_equal(rows[0], x[0])


def test_streamed_moments_match_the_tensor_moments():
    x = _data(1000) * torch.tensor([1e3, 1e-3], dtype=torch.float64) + 7
    stream = streaming.Stream(Rows(x), check=lambda a, c: (torch.as_tensor(a), c),
                              conditional=False)
    mean, sd = stream.moments()
    stream_small = streaming.Stream(Rows(x), check=lambda a, c: (torch.as_tensor(a), c),
                                    conditional=False)
    parts = list(stream_small.chunks(size=333))  # uneven chunks exercise the update
    assert sum(p[0].shape[0] for p in parts) == 1000
    torch.testing.assert_close(mean, x.mean(0), rtol=1e-12, atol=0)
    torch.testing.assert_close(sd, x.std(0), rtol=1e-12, atol=0)


def test_a_dataloader_gives_its_dataset_and_batch_size():
    x = _data().float()
    loader = DataLoader(TensorDataset(x), batch_size=32, shuffle=True)
    model = pgm.Flow(2, num_transforms=1, hidden=(16,))
    fit = model.fit(loader, method="mle", seed=0, num_steps=5, progress=False)
    assert fit.options["batch_size"] == 32
    ref = model.fit(x, method="mle", seed=0, num_steps=5, batch_size=32, progress=False)
    _same(fit, ref, tol=1e-6)


def test_a_bad_row_is_named_by_its_row_in_the_data():
    """A NaN that the standardizing pass reads fails before training; one that only a
    minibatch reads fails there, naming the data row, and leaves the model untouched.
    The message numbers rows as the check of a tensor does (the data's, 0-based), and
    claims no count of non-finite values: a Dataset's other rows were not read.

    The steps before that minibatch are kept, as at a non-finite loss: the fit ends
    with a ``FitError`` whose ``err.fit`` is the fit after the last good step, equal to
    the same seeded fit run to that step (they were lost with a bare ``ValueError``)."""
    x = _data(5000)
    x[4302, 1] = float("nan")  # not in the 2,048-row sample of seed 0
    with pytest.raises(ValueError) as flow_err:
        pgm.Flow(2, num_transforms=1, hidden=(16,)).fit(Rows(x), method="mle", seed=0,
                                                       num_steps=5, progress=False)
    assert str(flow_err.value) == "data must be finite: found nan at row 4302, column 1"
    model = pgm.Gaussian(2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kw = dict(method="map", seed=0, batch_size=500, progress=False)
    with pytest.raises(pgm.FitError) as batch_err:
        model.fit(Rows(x), num_steps=200, **kw)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    step = batch_err.value.step
    assert 0 < step < 10  # one epoch is 10 batches of 500: row 4302 is in one of them
    assert str(batch_err.value) == (
        f"data must be finite: found nan at row 4302, column 1 (in a minibatch of step "
        f"{step}: the fit stops there, and err.fit keeps what the steps before it trained)")
    kept = batch_err.value.fit
    assert kept.info["stopped"] == "bad_row" and len(kept.losses) == step
    # the oracle: the same fit of the same rows with the NaN row's minibatch never drawn
    # (lr_decay=1, so the schedule does not depend on num_steps)
    kw["lr_decay"] = 1.0
    with pytest.raises(pgm.FitError) as again:
        model.fit(Rows(x), num_steps=200, **kw)
    upto = model.fit(Rows(x), num_steps=step, **kw)
    assert again.value.fit.losses == upto.losses
    for k, v in upto.point.items():
        assert torch.equal(again.value.fit.point[k], v), k
    # with held-out data err.fit is the best evaluation's fit, as after Ctrl-C (at lr 0.3
    # the held-out loss turns up after 3 steps of the 5 before the bad row)
    held = dict(kw, lr=0.3, validation=0.1, validate_every=1)
    with pytest.raises(pgm.FitError) as err:
        model.fit(Rows(x), num_steps=200, **held)
    best = err.value.fit.info["best_step"]
    assert best < err.value.step - 1 and err.value.fit.info["stopped"] == "bad_row"
    upto = model.fit(Rows(x), num_steps=best, **held)
    assert all(torch.equal(err.value.fit.point[k], v) for k, v in upto.point.items())
    kw["batch_size"] = None  # every row at the first step: nothing to keep, a ValueError
    with pytest.raises(ValueError, match="^data must be finite: found nan at row 4302, "
                                        "column 1$"):
        model.fit(Rows(x), num_steps=5, **kw)


def test_a_bad_row_keeps_every_player_as_it_was_after_the_last_step():
    """A GAN's players update in turn: the critic had made its update of step s when the
    generator's minibatch met the bad row, so err.fit was neither step s - 1's fit nor
    step s's (critic weights 1e-3 to 5e-3 off). The round's minibatches are now read
    before any update: err.fit is the same seeded fit run to step s - 1, bit for bit."""
    x = _data(20000)
    x[19000, 1] = float("nan")
    model = pgm.GAN(2, hidden=(8,), latent_dim=2, standardize=False,
                    divergence="wasserstein").double()
    kw = dict(method="adversarial", seed=0, batch_size=100, progress=False, lr_decay=1.0)
    with pytest.raises(pgm.FitError) as err:
        model.fit(Rows(x), num_steps=60, **kw)
    step = err.value.step
    upto = model.fit(Rows(x), num_steps=step, **kw)
    assert step > 0 and err.value.fit.losses == upto.losses
    got, want = err.value.fit.model.state_dict(), upto.model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in want.items())


def test_streamed_data_that_cannot_work_say_why():
    x = _data(100)
    with pytest.raises(ValueError, match="needs every row in memory"):
        pgm.GaussianMixture(2, 2).fit(Rows(x), method="mle", seed=0, progress=False)
    with pytest.raises(ValueError, match="needs every row in memory"):
        pgm.Gaussian(2).fit(Rows(x), method="nuts", seed=0, progress=False)
    with pytest.raises(TypeError, match="pass the data whole"):
        pgm.NGram(2).fit(Rows(["ab", "ba"]), method="mle", progress=False)
    with pytest.raises(ValueError, match="c comes from the dataset"):
        pgm.Flow(2, context_dim=1).fit(Rows(x), c=torch.zeros(100, 1), method="mle",
                                       progress=False)
    with pytest.raises(ValueError, match=r"\(x, c\) pairs"):
        pgm.Flow(2, context_dim=1).fit(Rows(x), method="mle", progress=False)
    with pytest.raises(ValueError, match="unconditional"):
        pgm.Flow(2).fit(Rows(x, x[:, :1]), method="mle", progress=False)
    with pytest.raises(ValueError, match="empty"):
        pgm.Flow(2).fit(Rows(x[:0]), method="mle", progress=False)
    with pytest.raises(ValueError, match="wrong number of columns"):
        pgm.Flow(3).fit(Rows(x), method="mle", progress=False)
    copied = _data(3000)[:, [0, 0]]  # a refusal read from a sample says it was a sample
    with pytest.raises(ValueError, match="^a random sample of 2,048 of the 3,000 streamed "
                                        "rows: data cannot be fitted by a Flow: the 2048 rows"):
        pgm.Flow(2).fit(Rows(copied), method="mle", progress=False)


def test_rows_of_differing_shapes_name_their_row_in_the_data_and_the_shape_expected():
    """Items of differing widths gave torch's stack message, which counts positions in
    the batch ("got [2] at entry 0 and [3] at entry 6") and expects no width. The message
    names the odd row of the data, its shape and the shape expected: that of the rows
    read before, or else of most rows read with it."""
    rows = [torch.randn(3, dtype=torch.float64) for _ in range(10)]
    rows[6] = torch.randn(2, dtype=torch.float64)
    with pytest.raises(ValueError, match=re.escape(
            "the dataset's x rows differ in shape: row 6 of the data has shape (2,), "
            "expected (3,) (that of 9 of the 10 rows read with it, e.g. row 0)")):
        pgm.Gaussian(3).fit(Rows(rows), method="map", seed=0, num_steps=3, progress=False)
    # a block of two: the shape of the rows read before decides which one is odd
    stream = streaming.Stream(Rows(rows), check=lambda x, c: (torch.as_tensor(x), c),
                              conditional=False)
    assert stream.fetch(torch.tensor([0, 1]))[0].shape == (2, 3)
    with pytest.raises(ValueError, match=re.escape(
            "row 6 of the data has shape (2,), expected (3,) (that of the rows read "
            "before)")):
        stream.fetch(torch.tensor([6, 7]))
    # and of a conditional model's c
    x = _data(40)
    c = [np.zeros(1) for _ in range(40)]
    c[33] = np.zeros(2)
    model = pgm.Flow(2, num_transforms=1, hidden=(8,), context_dim=1)
    with pytest.raises(ValueError, match=r"^the dataset's c rows differ in shape: row 33 of "
                                         r"the data has shape \(2,\), expected \(1,\)"):
        model.fit(Rows(x, c), method="mle", seed=0, num_steps=3, progress=False)
    ragged = [[1.0, 2.0, 3.0]] * 4 + [[[1.0], [2.0, 3.0]]]
    with pytest.raises(ValueError, match=r"^the dataset's x of row 4 of the data is not an "
                                         r"array of one shape"):
        pgm.Gaussian(3).fit(Rows(ragged), method="map", seed=0, num_steps=3, progress=False)


@pytest.mark.slow  # two eigendecompositions of 2,050 x 2,050: 8 s
def test_wide_streamed_rows_are_checked_on_a_sample_wider_than_the_columns(tmp_path):
    """A Flow refuses rows on a hyperplane (N <= D). The check read the 2,048-row sample,
    so every streamed fit with D >= 2,048 was refused, however many rows the data had;
    it now reads 2 D rows. The same check still refuses a file whose rows do lie on one
    (a copied column)."""
    d = 2050
    x = np.random.default_rng(0).normal(size=(2 * d + 50, d)).astype(np.float32)
    np.save(tmp_path / "wide.npy", x)
    flow = pgm.Flow(d, transform="maf", num_transforms=1, hidden=(4,))
    kw = dict(method="mle", seed=0, num_steps=1, batch_size=32, progress=False)
    fit = flow.fit(np.load(tmp_path / "wide.npy", mmap_mode="r"), **kw)
    assert fit.info["streamed_rows"] == 2 * d + 50
    x[:, 1] = x[:, 0]
    np.save(tmp_path / "copied.npy", x)
    with pytest.raises(ValueError, match=f"^a random sample of 4,100 of the 4,150 streamed "
                                         f"rows: .* the {2 * d} rows lie on a hyperplane"):
        flow.fit(np.load(tmp_path / "copied.npy", mmap_mode="r"), **kw)


def test_checks_that_no_sample_within_the_budget_can_decide_are_skipped_and_said(monkeypatch):
    """From D = 8,192 the 512 MiB budget allows no more than D rows, and on any sample of D
    rows or fewer a Flow's "rows on a hyperplane" holds: every such fit was refused, the
    message blaming the sample. The checks are now skipped, with a warning. Here the
    budget is shrunk to D^2 numbers for D = 40 (and the sample to 16 rows)."""
    monkeypatch.setattr(streaming, "SAMPLE_ROWS", 16)
    monkeypatch.setattr(streaming, "CHECK_BYTES", 8 * 40 * 40)
    x = torch.randn(300, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    flow = pgm.Flow(40, transform="maf", num_transforms=1, hidden=(4,)).double()
    with pytest.warns(UserWarning, match=r"need a sample of more than D = 40 rows, more "
                                         r"than 0 MiB in memory: they were skipped for these "
                                         r"300 streamed rows") as seen:
        fit = flow.fit(Rows(x), method="mle", seed=0, num_steps=2, batch_size=32,
                       progress=False)
    assert fit.info["streamed_rows"] == 300
    assert seen[0].filename == __file__  # the user's line


# ------------------------------------------------------- views of a memory-mapped file
def _id_file(path, n=2000, d=4, order="C"):
    """An (n, d) float64 .npy whose column 0 is the row's number (its id)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d))
    x[:, 0] = np.arange(n)
    np.save(path, np.asfortranarray(x) if order == "F" else x)
    return x


VIEWS = {  # name -> (order of the file, the view of it, the file's columns it shows)
    "rows": ("C", lambda m: m[100:1100], [0, 1, 2, 3]),
    "last-rows": ("C", lambda m: m[-700:], [0, 1, 2, 3]),
    "every-other-row": ("C", lambda m: m[::2], [0, 1, 2, 3]),
    "every-third-from-5": ("C", lambda m: m[5:1900:3], [0, 1, 2, 3]),
    "columns": ("C", lambda m: m[:, :3], [0, 1, 2]),
    "rows-and-columns": ("C", lambda m: m[300:1500, :2], [0, 1]),
    "rows-of-every-other-column": ("C", lambda m: m[:, 0:4:2][250:1250], [0, 2]),
    "view-of-a-view": ("C", lambda m: m[50:1950][100:][::3], [0, 1, 2, 3]),
    "one-column": ("C", lambda m: m[:, 0], [0]),
    "reversed": ("C", lambda m: m[::-1][:1500], [0, 1, 2, 3]),
    "fortran": ("F", lambda m: m[200:1800], [0, 1, 2, 3]),
}


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_a_view_of_a_memmap_reads_the_rows_numpy_shows(name, tmp_path):
    """Any view (row slices, negative starts, steps, column slices, Fortran order) reads
    exactly the rows NumPy shows: the id column names each row read. A fit on the view
    (held-out rows included) equals the fit on the same rows as a tensor."""
    order, view, columns = VIEWS[name]
    x = _id_file(tmp_path / "x.npy", order=order)
    v = view(np.load(tmp_path / "x.npy", mmap_mode="r"))
    assert isinstance(v, np.memmap)
    want = np.asarray(v).reshape(len(v), -1)  # what NumPy shows
    ids = want[:, 0].astype(int)
    np.testing.assert_array_equal(want, x[ids][:, columns])  # (the view is what we think)
    reader = streaming._ArrayRows(v)
    rng = np.random.default_rng(1)
    idx = np.concatenate([[0, len(v) - 1, -1, 3, 3], rng.integers(0, len(v), 300),
                          np.arange(10, 60), np.sort(rng.choice(len(v), 200, replace=False))])
    got = reader.__getitems__(idx).reshape(len(idx), -1)
    np.testing.assert_array_equal(got[:, 0], ids[idx])  # row by row: the right rows
    np.testing.assert_array_equal(got, want[idx])
    np.testing.assert_array_equal(reader.__getitems__(np.arange(len(v))).reshape(want.shape),
                                  want)
    # read from the file by position (not through the mapping) where the layout allows
    assert (reader.file is not None) == (name not in ("reversed", "fortran"))
    # the same view of the file divided by 1000, fitted streamed and as a tensor
    np.save(tmp_path / "s.npy", np.load(tmp_path / "x.npy") / 1000)
    scaled = view(np.load(tmp_path / "s.npy", mmap_mode="r"))
    opts = dict(method="map", seed=0, num_steps=6, batch_size=64, progress=False,
                validation=0.25)
    a = pgm.Gaussian(len(columns)).fit(torch.as_tensor(np.array(scaled)), **opts)
    b = pgm.Gaussian(len(columns)).fit(scaled, **opts)
    _same(a, b)
    np.testing.assert_allclose(a.info["heldout_losses"], b.info["heldout_losses"],
                               rtol=1e-12)


def test_a_written_view_and_a_copy_on_write_map_read_what_numpy_shows(tmp_path):
    """A copy-on-write map shows changes the file does not hold: it is read through NumPy;
    a shared ("r+") map's writes are in the file's pages: read from the file."""
    _id_file(tmp_path / "x.npy")
    cow = np.load(tmp_path / "x.npy", mmap_mode="c")
    cow[10, 0] = -1.0
    reader = streaming._ArrayRows(cow[5:])
    np.testing.assert_array_equal(reader.__getitems__([4, 5, 6])[:, 0], [9.0, -1.0, 11.0])
    assert reader.file is None
    shared = np.load(tmp_path / "x.npy", mmap_mode="r+")
    shared[10, 0] = -2.0
    reader = streaming._ArrayRows(shared[5:])
    assert reader.file is not None
    np.testing.assert_array_equal(reader.__getitems__([4, 5, 6])[:, 0], [9.0, -2.0, 11.0])


# ---------------------------------------------------- a memory-mapped array is checked
def _nan_file(path, n=20000, row=15003, col=1, d=3):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d))
    x[row, col] = np.nan
    np.save(path, x)
    return np.load(path, mmap_mode="r")


@pytest.mark.parametrize("validation", [None, 0.1])
def test_a_nan_deep_in_a_memmap_fails_before_training(validation, tmp_path):
    """One pass over every row before the first step: a NaN no minibatch would meet in a
    few steps fails the fit before any step, naming its row and column in the data (with
    validation= too, whichever share the row falls in), as the check of a tensor would."""
    mm = _nan_file(tmp_path / "x.npy")
    steps = []
    model = pgm.Gaussian(3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as err:
        model.fit(mm, method="map", seed=0, num_steps=3, batch_size=64, progress=False,
                  validation=validation, callback=lambda step, loss: steps.append(step))
    assert str(err.value) == "data must be finite: found nan at row 15003, column 1"
    assert steps == []
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError) as tensor_err:  # the same message as for a tensor,
        model.fit(np.array(mm), method="map", seed=0, progress=False)  # less the count
    assert str(tensor_err.value).startswith(str(err.value) + " (1 non-finite")


def test_the_first_bad_row_of_a_memmap_is_the_one_named(tmp_path):
    """Two NaNs, the later one in the fit's 2,048-row sample: the error names the first,
    as for a tensor (the sample's error gives way to the pass in order)."""
    mm = _nan_file(tmp_path / "x.npy", n=5000, row=4000)
    sample = np.sort(np.random.default_rng(0).choice(5000, 2048, replace=False))
    first = int(np.setdiff1d(np.arange(10, 4000), sample)[0])
    np.save(tmp_path / "y.npy", np.asarray(mm))
    y = np.load(tmp_path / "y.npy", mmap_mode="r+")
    y[first, 2] = np.inf
    y[int(sample[-1]), 0] = np.nan
    y.flush()
    with pytest.raises(ValueError, match=rf"^data must be finite: found inf at row {first}, "
                                         rf"column 2$"):
        pgm.Gaussian(3).fit(np.load(tmp_path / "y.npy", mmap_mode="r"), method="map",
                            seed=0, num_steps=3, batch_size=64, progress=False)


def test_a_dataset_with_validation_names_the_data_row(tmp_path):
    """A Dataset is checked per minibatch only; with validation= the batch's rows are
    training rows, and the error still names the row of the data the user passed."""
    x = _data(600)
    x[433, 0] = float("inf")
    perm = torch.randperm(600, generator=torch.Generator().manual_seed(0))
    assert 433 in perm[60:].tolist()  # a training row (seed 0 draws the held-out share)
    with pytest.raises(ValueError) as err:
        pgm.Gaussian(2).fit(Rows(x), method="map", seed=0, num_steps=50, batch_size=500,
                            validation=0.1, progress=False)
    assert str(err.value) == "data must be finite: found inf at row 433, column 0"
    x[433, 0] = 1e200  # finite, but its square overflows float64
    with pytest.raises(ValueError) as err:
        pgm.Gaussian(2).fit(Rows(x), method="map", seed=0, num_steps=50, batch_size=500,
                            validation=0.1, progress=False)
    assert re.findall(r"row (\d+)", str(err.value)) == ["433"]
    assert "too large" in str(err.value) and "column 0" in str(err.value)


def test_a_standardizing_family_reads_a_memmap_once_before_training(tmp_path, monkeypatch):
    """The check of every row and the column moments of a Flow come from one pass; the
    reads before training are that pass and the 2,048-row sample."""
    x = np.random.default_rng(0).normal(size=(30000, 2)) * [3.0, 0.1] + [1.0, -2.0]
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    read, rows_read = streaming._ArrayRows.__getitems__, []

    def counting(self, index):
        rows_read.append(len(np.asarray(index).reshape(-1)))
        return read(self, index)

    monkeypatch.setattr(streaming._ArrayRows, "__getitems__", counting)
    seen, working_copy = {}, pgm.Flow.working_copy

    def spy(self, x, moments=None):  # the moments the fit standardizes with
        seen["moments"] = moments
        return working_copy(self, x, moments)

    monkeypatch.setattr(pgm.Flow, "working_copy", spy)
    steps, batch = 2, 100
    pgm.Flow(2, num_transforms=1, hidden=(8,)).fit(mm, method="mle", seed=0, progress=False,
                                                   num_steps=steps, batch_size=batch)
    assert sum(rows_read) <= 30000 + 2048 + (steps + 1) * batch, sum(rows_read)
    mean, sd = seen["moments"]
    torch.testing.assert_close(mean, torch.as_tensor(x.mean(0)), rtol=1e-12, atol=0)
    torch.testing.assert_close(sd, torch.as_tensor(x.std(0, ddof=1)), rtol=1e-12, atol=0)


def test_the_pass_over_a_memmap_holds_a_chunk_at_a_time(tmp_path, monkeypatch):
    """The pass reads blocks of at most ``fit.CHUNK_ELEMENTS`` numbers (the package's
    chunk, which tests/test_memory.py bounds), whatever N."""
    from pyro_genmodels import fit as fit_module

    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(5000, 3)))
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    monkeypatch.setattr(fit_module, "CHUNK_ELEMENTS", 3 * 700)
    stream = streaming.Stream(mm, check=lambda a, c: (torch.as_tensor(a), c),
                              conditional=False)
    read, blocks = streaming._ArrayRows.__getitems__, []

    def spying(self, index):
        blocks.append(len(np.asarray(index).reshape(-1)))
        return read(self, index)

    monkeypatch.setattr(streaming._ArrayRows, "__getitems__", spying)
    stream.scan()
    assert blocks == [700] * 7 + [100]


def test_the_cli_refuses_a_large_npy_with_a_nan_before_writing_anything(tmp_path, capsys,
                                                                        monkeypatch):
    """The CLI streams a large .npy: a NaN deep in it is an error before training, and
    no run directory is written."""
    from pyro_genmodels import _cli_files, cli

    _nan_file(tmp_path / "x.npy")
    monkeypatch.setattr(_cli_files, "STREAM_BYTES", 0)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as err:
        cli.main(["fit", "gaussian", "--data", str(tmp_path / "x.npy"), "--method", "map",
                  "--out", str(out), "--quiet", "--option", "num_steps=3",
                  "--option", "batch_size=64"])
    assert str(err.value.code) == "error: data must be finite: found nan at row 15003, column 1"
    assert not out.exists()


def test_a_dataset_is_not_read_ahead():
    """A Dataset (arbitrary code, perhaps costly per item) is read only for the sample and
    the minibatches: its rows are checked as the batches read them, not in a pass."""
    reads = []

    class Counted(Rows):
        def __getitem__(self, i):
            reads.append(i)
            return super().__getitem__(i)

    x = _data(5000)
    pgm.Gaussian(2).fit(Counted(x), method="map", seed=0, num_steps=3, batch_size=64,
                        progress=False)
    assert len(reads) == 2048 + 3 * 64
