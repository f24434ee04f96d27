"""save/load: exact round trips, and no code ever runs on load."""

import hashlib
import json
import os
import pickle

import pytest
import torch

import pyro_genmodels as pgm


def _fit(method="map", **kw):
    x, _ = pgm.datasets.correlated_gaussian(80, dim=2, seed=0)
    opts = {"num_steps": 30} if method in ("mle", "map", "vi") else {
        "num_samples": 20, "warmup_steps": 20, "num_chains": 2}
    return pgm.Gaussian(2, **kw).fit(x, method=method, seed=0, progress=False, **opts), x


def test_round_trip_keeps_everything(tmp_path):
    fit, x = _fit("nuts", covariance=torch.eye(2) * 0.5, prior_scale=3.0)
    fit.save(tmp_path / "run")
    back = pgm.load(tmp_path / "run")
    assert torch.equal(back.model.covariance, fit.model.covariance)
    assert back.model.prior_scale == 3.0
    assert back.seed == fit.seed and back.options == fit.options
    for k in fit.posterior:
        assert torch.equal(back.posterior[k], fit.posterior[k])
    for k in fit.sample_stats:
        assert torch.equal(back.sample_stats[k], fit.sample_stats[k])
    assert torch.equal(back.data, fit.data)
    assert torch.equal(back.log_prob(x), fit.log_prob(x))
    assert back.to_arviz().posterior["loc"].shape == fit.to_arviz().posterior["loc"].shape


def test_load_into_a_given_model_checks_it(tmp_path):
    fit, x = _fit("map", prior_scale=3.0)
    fit.save(tmp_path / "run")
    template = pgm.Gaussian(2, prior_scale=3.0)
    back = pgm.load(tmp_path / "run", model=template)
    assert torch.equal(back.log_prob(x), fit.log_prob(x))
    assert back.model is not template
    with pytest.raises(ValueError, match="prior_scale=10.0 differs from the saved fit's "
                                         "prior_scale=3.0"):
        pgm.load(tmp_path / "run", model=pgm.Gaussian(2))
    with pytest.raises(ValueError, match="saved fit is of a 'gaussian' model, but model is "
                                         "a 'flow'"):
        pgm.load(tmp_path / "run", model=pgm.Flow(2))
    with pytest.raises(TypeError, match="pyro-genmodels model"):
        pgm.load(tmp_path / "run", model=torch.nn.Linear(2, 2))
    meta = json.loads((tmp_path / "run" / "fit.json").read_text())
    assert meta["format_version"] == 1 and meta["code"] == {}  # no user modules
    # the two files, tied by the tensors' digest (an atomic save's consistency check)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["fit.json",
                                                                      "tensors.safetensors"]
    assert meta["tensors_sha256"] == hashlib.sha256(
        (tmp_path / "run" / "tensors.safetensors").read_bytes()).hexdigest()


def test_float64_fit_round_trips_in_float64(tmp_path):
    x, _ = pgm.datasets.correlated_gaussian(50, dim=2, seed=0, dtype=torch.float64)
    fit = pgm.Gaussian(2).fit(x, method="mle", seed=0, progress=False, num_steps=20)
    fit.save(tmp_path / "r")
    back = pgm.load(tmp_path / "r")
    assert back.params["loc"].dtype == torch.float64
    assert torch.equal(back.log_prob(x), fit.log_prob(x))


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_bomb_fails_to_load_and_runs_nothing(tmp_path):
    fit, _ = _fit()
    run = tmp_path / "run"
    fit.save(run)
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"w": _Exploit(marker)})
    # the tensors file replaced by a pickle, and a torch.save'd pickle beside it
    (run / "tensors.safetensors").write_bytes(payload)
    with pytest.raises(pgm.LoadError, match="safetensors"):
        pgm.load(run)
    torch.save({"w": _Exploit(marker)}, run / "tensors.safetensors")
    with pytest.raises(pgm.LoadError, match="safetensors"):
        pgm.load(run)
    assert not marker.exists()


def test_metadata_cannot_name_arbitrary_classes(tmp_path):
    fit, _ = _fit()
    fit.save(tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "fit.json").read_text())
    meta["model"] = "os.system"
    (tmp_path / "run" / "fit.json").write_text(json.dumps(meta))
    with pytest.raises(pgm.LoadError, match="Unknown model"):
        pgm.load(tmp_path / "run")
    (tmp_path / "run" / "fit.json").write_text("not json")
    with pytest.raises(pgm.LoadError, match="JSON"):
        pgm.load(tmp_path / "run")


def test_missing_run_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="fit.json"):
        pgm.load(tmp_path / "nothing")


def test_fit_to_device_and_back(tmp_path):
    fit, x = _fit("vi")
    moved = fit.to("cpu")
    assert torch.equal(moved.log_prob(x), fit.log_prob(x))
    fit.save(tmp_path / "r")
    assert pgm.load(tmp_path / "r", device="cpu").params["loc"].device.type == "cpu"


# A GPU is never present in CI; this runs where one is (the device check) and is skipped
# elsewhere, because there is nothing to move the fit to.
@pytest.mark.skipif(not torch.cuda.is_available(),  # justified in the comment above
                    reason="the device= path needs CUDA; CI has no GPU")
def test_fit_on_cuda_loads_on_cpu(tmp_path):
    x, _ = pgm.datasets.correlated_gaussian(80, dim=2, seed=0)
    fit = pgm.Gaussian(2).fit(x, method="map", seed=0, progress=False, num_steps=30,
                              device="cuda")
    assert fit.params["loc"].device.type == "cuda"
    assert fit.sample(5, seed=0).device.type == "cuda"
    fit.save(tmp_path / "r")
    back = pgm.load(tmp_path / "r")
    assert back.params["loc"].device.type == "cpu"
    assert torch.allclose(back.log_prob(x), fit.log_prob(x.cuda()).cpu(), rtol=1e-5)


def test_a_diffusion_fits_estimator_survives_save_and_load(tmp_path):
    """``fit.using(estimator="ode")`` is saved in fit.json's ``settings`` and restored
    (checked) on load; a save without the field (older) loads with the bound, and a bad
    value or an unknown setting is a LoadError naming it."""
    x, _ = pgm.datasets.correlated_gaussian(40, dim=2, seed=0)
    torch.manual_seed(0)
    fit = pgm.Diffusion(2, timesteps=5, hidden=(8,)).fit(x, method="mle", num_steps=3,
                                                         seed=0, progress=False)
    ode = fit.using(estimator="ode")
    ode.save(tmp_path / "run")
    back = pgm.load(tmp_path / "run")
    assert back.estimator == "ode" and back.log_prob_kind == "estimate"
    assert torch.equal(back.log_prob(x[:4]), ode.log_prob(x[:4]))
    fit.save(tmp_path / "bound")
    assert pgm.load(tmp_path / "bound").estimator == "bound"
    file = tmp_path / "run" / "fit.json"
    meta = json.loads(file.read_text())
    assert meta["settings"] == {"estimator": "ode"}
    del meta["settings"]  # as saved before the field
    file.write_text(json.dumps(meta))
    assert pgm.load(tmp_path / "run").log_prob_kind == "bound"
    for settings, match in [({"estimator": "exact"}, "Unknown estimator 'exact'"),
                            ({"estimatr": "ode"}, r"keys among \['estimator'\]"),
                            (["ode"], "expected 'settings' to be an object")]:
        file.write_text(json.dumps({**meta, "settings": settings}))
        with pytest.raises(pgm.LoadError, match=match):
            pgm.load(tmp_path / "run")
    g, _ = _fit("map")  # a family without settings refuses any
    g.save(tmp_path / "g")
    file = tmp_path / "g" / "fit.json"
    meta = json.loads(file.read_text())
    assert meta["settings"] == {}
    file.write_text(json.dumps({**meta, "settings": {"estimator": "ode"}}))
    with pytest.raises(pgm.LoadError, match=r"keys among \[\] "):
        pgm.load(tmp_path / "g")


def test_numpy_number_options_are_recorded_and_saved_as_the_numbers_they_are(tmp_path):
    """``lr=np.float32(0.01)`` ran but was left out of ``fit.options`` (and the save), which
    kept only Python numbers."""
    import numpy as np

    x, _ = pgm.datasets.correlated_gaussian(60, dim=3, seed=0)
    fit = pgm.Gaussian(3).fit(x, method="map", seed=0, progress=False,
                              num_steps=np.int64(10), lr=np.float32(0.01),
                              lr_decay=np.array(0.5))  # a 0-d array: the number too
    assert fit.options["lr_decay"] == 0.5 and type(fit.options["lr_decay"]) is float
    assert fit.options["lr"] == float(np.float32(0.01)) and type(fit.options["lr"]) is float
    assert fit.options["num_steps"] == 10 and type(fit.options["num_steps"]) is int
    fit.save(tmp_path / "fit")
    assert pgm.load(tmp_path / "fit").options == fit.options


def test_both_saved_files_get_the_mode_open_gives_under_the_umask(tmp_path):
    """safetensors' ``save_file`` makes its files 0600: in a shared runs/ directory the
    others could read fit.json (0644 under umask 022) but not the tensors, and ``load``
    died with a raw PermissionError. Both files get what a plain ``open`` gives."""
    fit, _ = _fit("map")
    for mask in (0o022, 0o027, 0o002):
        old = os.umask(mask)
        try:
            fit.save(tmp_path / str(mask))
        finally:
            os.umask(old)
        modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / str(mask)).iterdir()}
        assert modes == {"fit.json": 0o666 & ~mask, "tensors.safetensors": 0o666 & ~mask}


@pytest.mark.parametrize("name", ["fit.json", "tensors.safetensors"])
def test_an_unreadable_file_is_a_load_error_naming_it_and_the_reason(tmp_path, monkeypatch,
                                                                       name):
    """Another user's file that this one may not read (root reads anything, so the
    refusal is the operating system's, made here by ``open``): a LoadError that names
    the file and the reason, which the command line prints as one ``error:`` line."""
    import builtins
    import io

    fit, _ = _fit("map")
    fit.save(tmp_path / "run")
    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):
        if os.path.basename(os.fspath(file)) == name:
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    monkeypatch.setattr(io, "open", refusing_open)
    with pytest.raises(pgm.LoadError) as e:
        pgm.load(tmp_path / "run")
    file = (tmp_path / "run" / name).resolve()
    assert str(e.value) == f"{file} cannot be read: Permission denied"
