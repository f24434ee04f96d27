import math

import pandas as pd
import pytest
import torch

import pyro_genmodels as pgm


def test_compare_table():
    x, truth = pgm.datasets.correlated_gaussian(200, dim=2, seed=0)
    heldout, _ = pgm.datasets.correlated_gaussian(300, dim=2, seed=1)
    model = pgm.Gaussian(2)
    fits = {
        "mle": model.fit(x, method="mle", seed=0, progress=False, num_steps=500),
        "map": model.fit(x, method="map", seed=0, progress=False, num_steps=500),
        "nuts": model.fit(x, method="nuts", seed=0, progress=False, num_samples=100,
                          warmup_steps=100, num_chains=2),
    }
    table = pgm.compare(fits, heldout)
    assert isinstance(table, pd.DataFrame)
    assert list(table.index) == ["mle", "map", "nuts"]
    for col in ("method", "heldout_log_prob", "log_prob_kind", "elpd_loo", "num_params"):
        assert col in table.columns
    for name, fit in fits.items():
        assert table.loc[name, "heldout_log_prob"] == pytest.approx(
            fit.log_prob(heldout).mean().item(), rel=1e-6)
    assert table.loc["nuts", "log_prob_kind"] == "exact"
    assert math.isnan(table.loc["mle", "elpd_loo"])
    assert math.isfinite(table.loc["nuts", "elpd_loo"])
    assert table.loc["mle", "num_params"] == 5  # 2 loc + 2 scales + 1 correlation
    # every fit is close to the truth's own held-out log-likelihood (within 4 se + 0.05)
    best = truth.log_prob(heldout).mean().item()
    for name in fits:
        assert abs(table.loc[name, "heldout_log_prob"] - best) < \
            4 * table.loc[name, "heldout_log_prob_se"] + 0.05


def test_compare_refuses_bad_input():
    with pytest.raises(TypeError):
        pgm.compare({}, torch.zeros(3, 2))
    with pytest.raises(TypeError, match="Fit"):
        pgm.compare({"a": object()}, torch.zeros(3, 2))
