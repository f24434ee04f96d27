"""Streamed data (a Dataset, a DataLoader, a memory-mapped .npy): the oracle is the same
fit on the same rows as a tensor. The loop draws the same minibatch indices either way
and a streamed block enters the same computation, so parameters and loss traces agree to
rounding (the standardization's moments are summed in another order: ~1e-16)."""

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


def test_a_conditional_dataset_gives_x_c_pairs():
    x = _data()
    c = (x[:, :1] > 0).double()
    opts = dict(method="mle", seed=2, num_steps=10, batch_size=32, progress=False)
    model = pgm.Flow(2, num_transforms=1, hidden=(16,), context_dim=1)
    a, b = model.fit(x, c=c, **opts), model.fit(Rows(x, c), **opts)
    _same(a, b)


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
    minibatch reads fails there, naming the data row, and leaves the model untouched."""
    x = _data(5000)
    x[4321, 1] = float("nan")
    with pytest.raises(ValueError, match=r"must be finite.*row 4321 of the data"):
        pgm.Flow(2, num_transforms=1, hidden=(16,)).fit(Rows(x), method="mle", seed=0,
                                                       num_steps=5, progress=False)
    model = pgm.Gaussian(2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"must be finite.*row 4321 of the data"):
        model.fit(Rows(x), method="map", seed=0, num_steps=200, batch_size=500,
                  progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


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
