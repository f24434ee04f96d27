"""Saved fits that fail safely (issue #18): ``pgm.load`` on a damaged or hostile
directory raises ``pgm.LoadError`` (a ValueError) naming the file, and runs no code;
``save`` is atomic (an interruption at any instant leaves a readable fit) and will not
write into a directory that is not a fit's."""

import importlib
import json
import os
import pickle
import shutil
import zipfile

import pytest
import torch
from safetensors.torch import load_file, save_file

import pyro_genmodels as pgm
from pyro_genmodels import io
from pyro_genmodels._file_checks import FIELDS, sha256


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


_X = pgm.datasets.correlated_gaussian(80, dim=2, seed=0)[0]


def _fit(method="map", steps=30, seed=0):
    opts = {"num_steps": steps}
    if method == "vi":
        opts["num_posterior_samples"] = 20
    return pgm.Gaussian(2).fit(_X, method=method, seed=seed, progress=False, **opts)


@pytest.fixture(scope="module")
def map_fit():
    return _fit("map")


@pytest.fixture
def run(tmp_path, map_fit):
    """A saved MAP fit of a Gaussian."""
    map_fit.save(tmp_path / "run")
    return tmp_path / "run"


def _meta(run):
    return json.loads((run / "fit.json").read_text())


def _set_meta(run, **changes):
    meta = _meta(run)
    meta.update(changes)
    (run / "fit.json").write_text(json.dumps(meta))


def _drop_meta(run, key):
    meta = _meta(run)
    del meta[key]
    (run / "fit.json").write_text(json.dumps(meta))


def _set_tensors(run, tensors):
    """Replace the tensors and record their digest, so that the check under test (and
    not the digest) is what refuses them."""
    save_file(tensors, str(run / "tensors.safetensors"))
    _set_meta(run, tensors_sha256=sha256(run / "tensors.safetensors"))


def _set_raw(run, raw: bytes):
    (run / "tensors.safetensors").write_bytes(raw)
    _set_meta(run, tensors_sha256=sha256(run / "tensors.safetensors"))


def _crafted(header: dict, data: bytes = b"") -> bytes:
    """A safetensors file by hand: 8-byte little-endian header length, JSON, data."""
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + data


def _refused(run, match, monkeypatch=None):
    """Load must raise LoadError; with ``monkeypatch``, safetensors must never be asked."""
    if monkeypatch is not None:
        def never(*a, **k):
            raise AssertionError("safetensors was called on a file the checks refuse")
        monkeypatch.setattr(io, "load_file", never)
    with pytest.raises(pgm.LoadError, match=match) as info:
        pgm.load(run)
    return str(info.value)


def test_load_error_is_exported_and_a_value_error():
    assert pgm.LoadError is io.LoadError and issubclass(pgm.LoadError, ValueError)
    assert "LoadError" in pgm.__all__


# ---------------------------------------------------------------- damaged tensors file
def test_zero_byte_tensors_file(run, monkeypatch):
    (run / "tensors.safetensors").write_bytes(b"")
    msg = _refused(run, "has 0 bytes, expected at least 8", monkeypatch)
    assert "tensors.safetensors" in msg


def test_truncated_tensors_file(run, monkeypatch):
    raw = (run / "tensors.safetensors").read_bytes()
    (run / "tensors.safetensors").write_bytes(raw[:-5])
    _refused(run, r"tensors.safetensors is truncated or corrupt", monkeypatch)


def test_tensors_file_cut_inside_its_header(run, monkeypatch):
    raw = (run / "tensors.safetensors").read_bytes()
    (run / "tensors.safetensors").write_bytes(raw[:20])
    _refused(run, r"header declares \d+ bytes, expected at most 12", monkeypatch)


def test_tensors_file_missing(run):
    (run / "tensors.safetensors").unlink()
    _refused(run, "has no tensors: expected .*tensors.safetensors")


def test_tensors_file_of_another_save(run, tmp_path):
    _fit("map", steps=5).save(tmp_path / "other")
    shutil.copy(tmp_path / "other" / "tensors.safetensors", run / "tensors.safetensors")
    _refused(run, "does not belong to .*fit.json: expected SHA-256")


def test_flipped_byte_in_the_data(run):
    raw = bytearray((run / "tensors.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (run / "tensors.safetensors").write_bytes(bytes(raw))
    _refused(run, "does not belong to")


# ---------------------------------------------------------------- fit.json
def test_fit_json_truncated(run):
    text = (run / "fit.json").read_text()
    (run / "fit.json").write_text(text[: len(text) // 2])
    _refused(run, "fit.json is not valid JSON")


def test_fit_json_zero_bytes(run):
    (run / "fit.json").write_bytes(b"")
    _refused(run, "fit.json is not valid JSON")


def test_fit_json_not_an_object(run):
    (run / "fit.json").write_text("[1, 2]")
    _refused(run, "fit.json is not a pyro-genmodels fit: expected a JSON object")


def test_fit_json_with_a_repeated_key(run):
    text = (run / "fit.json").read_text()
    (run / "fit.json").write_text(text.replace('"model":', '"model": "flow", "model":', 1))
    _refused(run, "the key 'model' appears twice")


def test_fit_json_of_another_format(run):
    _set_meta(run, format="someone-else/fit")
    _refused(run, "not a pyro-genmodels fit: .* found a string 'someone-else/fit'")


def test_config_that_is_a_list(run):
    _set_meta(run, config=[2])
    _refused(run, r"expected 'config' to be an object, found an array \[2\]")


def test_losses_that_are_a_string(run):
    _set_meta(run, losses="1.0, 2.0")
    _refused(run, "expected 'losses' to be an array, found a string")


def test_losses_that_hold_a_string(run):
    _set_meta(run, losses=[1.0, "2.0"])
    _refused(run, "expected 'losses' to be an array of numbers")


def test_groups_with_an_unknown_name(run):
    _set_meta(run, groups=["point", "../secrets"])
    _refused(run, "expected 'groups' to be distinct names among")


def test_groups_with_neither_point_nor_posterior(run):
    _set_meta(run, groups=["sample_stats"])
    _refused(run, "exactly one of 'point' and 'posterior'")


@pytest.mark.parametrize("saved, edited", [("mle", "nuts"), ("map", "chees"),
                                            ("vi", "map"), ("vi", "mle")])
def test_a_method_that_contradicts_the_saved_tensors(tmp_path, saved, edited):
    """fit.json's "method" edited by hand (the digest covers the tensors only): a point
    estimate loaded as a 'nuts' fit, a point that claimed to be posterior draws. The
    method must make what the tensors hold: draws for vi, nuts, hmc, chees, a point for
    mle and map. Unedited, each loads."""
    run = tmp_path / "run"
    _fit(saved).save(run)
    assert pgm.load(run).method == saved
    _set_meta(run, method=edited)
    draws = saved == "vi"
    held = "posterior draws (the group 'posterior')" if draws else \
        "a point estimate (the group 'point')"
    msg = _refused(run, rf"fit.json: its method '{edited}' makes ")
    assert msg == (f"{run.resolve() / 'fit.json'}: its method {edited!r} makes "
                   f"{'a point estimate' if draws else 'posterior draws'} (the group "
                   f"{'point' if draws else 'posterior'!r}), but the saved tensors hold "
                   f"{held}: fit.json's 'method' does not match the saved fit")


def test_a_method_of_the_familys_own_loads_whatever_its_engine_makes(tmp_path, monkeypatch):
    """A family may add methods with engines of its own (ScoreModel's dsm, GAN's
    adversarial); one whose engine draws a posterior was refused at load as a point
    method. Only the library's method names are checked against the groups."""
    registry_module = importlib.import_module("pyro_genmodels.registry")  # not the function
    from pyro_genmodels.base import Capabilities
    from pyro_genmodels.infer.engines import VIEngine

    class QuickGaussian(pgm.Gaussian):
        registry_name = "quick_gaussian"
        capabilities = Capabilities(log_prob="exact", sampling="direct",
                                    methods=("mle", "map", "quick_vi"))
        engines = {**pgm.Gaussian.engines, "quick_vi": VIEngine(num_steps=20,
                                                                  num_posterior_samples=10)}

    monkeypatch.setitem(registry_module._REGISTRY, "quick_gaussian", QuickGaussian)
    x = torch.randn(30, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fit = QuickGaussian(2).fit(x, method="quick_vi", seed=0, progress=False)
    assert fit.posterior
    fit.save(tmp_path / "run")
    again = pgm.load(tmp_path / "run")
    assert again.method == "quick_vi" and torch.equal(again.log_prob(x), fit.log_prob(x))


def test_a_method_the_family_does_not_have(run):
    _set_meta(run, method="dsm")
    _refused(run, r"fit.json: expected 'method' to be one of the Gaussian's methods "
                  r"\['mle', 'map', 'vi', 'nuts', 'hmc', 'chees'\], found a string 'dsm'")


def test_variables_come_back_in_their_order_and_a_wrong_order_is_refused(run, map_fit):
    """safetensors stores tensors sorted by name; ``order`` in fit.json keeps the
    variables' own order (ArviZ's), and must list exactly a saved group's tensors."""
    assert list(map_fit.point) == ["loc", "scale", "corr_cholesky"]
    assert list(pgm.load(run).point) == list(map_fit.point)
    good = _meta(run)["order"]
    _drop_meta(run, "order")  # a save from before the key: by name, as before
    assert list(pgm.load(run).point) == sorted(map_fit.point)
    # names it lacks follow by name; names without a tensor are the site checks' matter
    _set_meta(run, order={"point": ["scale", "nope"]})
    assert list(pgm.load(run).point) == ["scale", "corr_cholesky", "loc"]
    for order, match in (({"point": ["loc", "loc"]}, r"expected 'order.point' to be "
                                                     r"distinct names"),
                         ({"posterior": []}, "'order.posterior'"),
                         ({"point": "loc"}, "'order.point'"),
                         ({"point": [1]}, "'order.point'"),
                         ([], "expected 'order' to be an object")):
        _set_meta(run, order=order)
        _refused(run, match)
    _set_meta(run, order=good)
    assert list(pgm.load(run).point) == list(map_fit.point)


def test_seed_that_is_a_string(run):
    _set_meta(run, seed="0")
    _refused(run, "expected 'seed' to be an integer or null, found a string '0'")


def test_seed_that_is_a_boolean(run):
    _set_meta(run, seed=True)
    _refused(run, "expected 'seed' to be an integer or null, found true")


def test_seed_beyond_what_fit_takes(run):
    """A seed of 2**40 loaded, and a vi fit's to_arviz() then refused it as if the user
    had passed it."""
    _set_meta(run, seed=2 ** 40)
    _refused(run, r"expected 'seed' to be an integer in \[0, 2\*\*32 - 1\] or null, found "
                  r"an integer 1099511627776")


@pytest.mark.parametrize("columns", [["a"], ["a", "a"], [1, 2], "ab"])
def test_column_names_that_do_not_name_the_columns(run, columns):
    """info.columns of the wrong length loaded, and every DataFrame was then refused;
    repeated names labelled ArviZ's columns alike, though fit refuses them."""
    meta = _meta(run)
    meta["info"]["columns"] = columns
    (run / "fit.json").write_text(json.dumps(meta))
    _refused(run, r"expected 'info.columns' to be null or 2 distinct column names "
                  r"\(config's dim: 2\), found")
    meta["info"]["columns"] = ["a", "b"]
    (run / "fit.json").write_text(json.dumps(meta))
    assert pgm.load(run).info["columns"] == ["a", "b"]


def test_info_that_is_not_an_object(run):
    _set_meta(run, info=["stopped"])
    _refused(run, "expected 'info' to be an object, found an array")


def test_interrupted_that_is_not_a_boolean(run):
    _set_meta(run, interrupted="no")
    _refused(run, "expected 'interrupted' to be true or false")


def test_unknown_dtype(run):
    _set_meta(run, dtype="complex64")
    _refused(run, "expected 'dtype' to be one of")


def test_code_entry_that_is_not_an_object(run):
    _set_meta(run, code={"encoder": "os.system"})
    _refused(run, r"expected 'code.encoder' to be an object")


@pytest.mark.parametrize("key", sorted(FIELDS))
def test_missing_key(run, key):
    _drop_meta(run, key)
    _refused(run, f"expected the key '{key}', found it missing" if key != "format"
             else "not a pyro-genmodels fit")


def test_config_that_does_not_build_the_model(run):
    _set_meta(run, config={"dim": -3, "covariance": None, "prior_scale": 10.0})
    _refused(run, "fit.json: its config does not build a Gaussian")


def test_config_with_an_unknown_argument(run):
    _set_meta(run, config={"dim": 2, "covariance": None, "prior_scale": 10.0, "evil": 1})
    _refused(run, "fit.json: its config does not build a Gaussian")


def test_unknown_model_name(run):
    _set_meta(run, model="no_such_model")
    _refused(run, r"fit.json: Unknown model 'no_such_model'; expected one of \[")


def test_newer_format_version(run):
    _set_meta(run, format_version=io.FORMAT_VERSION + 1, losses="a newer layout")
    _refused(run, f"written by a newer pyro-genmodels: format version "
                  f"{io.FORMAT_VERSION + 1}, expected at most {io.FORMAT_VERSION}")


def test_format_version_that_is_not_an_integer(run):
    _set_meta(run, format_version="1")
    _refused(run, "expected 'format_version' to be a positive integer")


# ---------------------------------------------------------------- names that walk paths
@pytest.mark.parametrize("name", ["../gaussian", "models/gaussian", "..", "a\\b"])
def test_model_name_with_a_path(run, name):
    _set_meta(run, model=name)
    _refused(run, "expected 'model' to be a model's name")


@pytest.mark.parametrize("key", ["point/../loc", "point/a/b", "point/..", "../data"])
def test_tensor_name_with_a_path(run, key):
    tensors = load_file(str(run / "tensors.safetensors"))
    tensors[key] = torch.zeros(2)
    _set_tensors(run, tensors)
    _refused(run, f"unexpected tensor '{key}'")


@pytest.mark.parametrize("digest", ["../../../etc/passwd", "a" * 63 + "/", "A" * 64])
def test_file_name_that_fit_json_names_with_a_path(run, digest):
    _set_meta(run, tensors_sha256=digest)
    _refused(run, "expected 'tensors_sha256' to be 64 lowercase hex digits")


def test_config_tensor_name_with_a_path(run):
    _set_meta(run, config_tensors=["../covariance"])
    _refused(run, "expected 'config_tensors' to be distinct names")


def test_unexpected_tensor(run):
    tensors = load_file(str(run / "tensors.safetensors"))
    tensors["weights"] = torch.zeros(2)
    _set_tensors(run, tensors)
    _refused(run, "unexpected tensor 'weights'")


def test_config_tensor_that_fit_json_does_not_name(run):
    tensors = load_file(str(run / "tensors.safetensors"))
    tensors["config/covariance"] = torch.eye(2)
    _set_tensors(run, tensors)
    _refused(run, r"expected the config tensors \[\] that fit.json names, found "
                  r"\['covariance'\]")


# ---------------------------------------------------------------- shapes vs the config
def test_state_tensor_of_the_wrong_shape(tmp_path):
    fit = pgm.Flow(2, hidden=[8], num_transforms=1).fit(_X, method="mle", seed=0,
                                                         progress=False, num_steps=2)
    fit.save(tmp_path / "run")
    tensors = load_file(str(tmp_path / "run" / "tensors.safetensors"))
    tensors["state/shift"] = torch.zeros(3)
    _set_tensors(tmp_path / "run", tensors)
    msg = _refused(tmp_path / "run", "the saved weights do not fit the Flow that .*fit.json "
                                     "configures")
    assert "shift" in msg


def test_state_tensor_missing(tmp_path):
    fit = pgm.Flow(2, hidden=[8], num_transforms=1).fit(_X, method="mle", seed=0,
                                                         progress=False, num_steps=2)
    fit.save(tmp_path / "run")
    tensors = load_file(str(tmp_path / "run" / "tensors.safetensors"))
    del tensors["state/x_scale"]
    _set_tensors(tmp_path / "run", tensors)
    _refused(tmp_path / "run", "the saved weights do not fit")


def test_point_tensor_of_the_wrong_shape(run):
    tensors = load_file(str(run / "tensors.safetensors"))
    tensors["point/loc"] = torch.zeros(3)
    _set_tensors(run, tensors)
    _refused(run, r"tensor 'point/loc' has shape \(3,\), expected \(2,\) for the Gaussian")


def test_point_tensor_for_no_site(run):
    tensors = load_file(str(run / "tensors.safetensors"))
    tensors["point/weights"] = torch.zeros(2)
    _set_tensors(run, tensors)
    _refused(run, "unexpected tensor for the site 'weights': expected one of the Gaussian's "
                  "global sites")


def test_posterior_tensor_with_the_wrong_dims(tmp_path):
    _fit("vi").save(tmp_path / "run")
    tensors = load_file(str(tmp_path / "run" / "tensors.safetensors"))
    tensors["posterior/loc"] = tensors["posterior/loc"][..., None]
    _set_tensors(tmp_path / "run", tensors)
    _refused(tmp_path / "run", r"'posterior/loc' has shape \(1, 20, 2, 1\), expected "
                               r"\(chains, draws, \*\(2,\)\)")


def test_posterior_tensors_with_different_draws(tmp_path):
    _fit("vi").save(tmp_path / "run")
    tensors = load_file(str(tmp_path / "run" / "tensors.safetensors"))
    tensors["posterior/scale"] = tensors["posterior/scale"][:, :10]
    _set_tensors(tmp_path / "run", tensors)
    _refused(tmp_path / "run", r"'posterior/scale' has shape \(1, 10, 2\)")


def test_data_of_the_wrong_width(run):
    tensors = load_file(str(run / "tensors.safetensors"))
    tensors["data"] = torch.zeros(5, 3)
    _set_tensors(run, tensors)
    _refused(run, r"tensor 'data' is torch.float32 of shape \(5, 3\), expected floating-point \(N, 2\)")


def test_context_without_matching_rows(run):
    tensors = load_file(str(run / "tensors.safetensors"))
    tensors["context"] = torch.zeros(3, 1)
    _set_tensors(run, tensors)
    _refused(run, "tensor 'context' has shape .*one row per data row")


# ---------------------------------------------------------------- not safetensors at all
def test_tensors_file_that_is_a_pickle_runs_nothing(run, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    (run / "tensors.safetensors").write_bytes(pickle.dumps({"w": _Exploit(marker)}))
    _refused(run, "is not a safetensors file: it is a Python pickle", monkeypatch)
    assert not marker.exists()


def test_tensors_file_that_is_torch_save_runs_nothing(run, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    torch.save({"w": _Exploit(marker)}, run / "tensors.safetensors")
    _refused(run, "is not a safetensors file: it is a zip archive", monkeypatch)
    assert not marker.exists()


def test_tensors_file_that_is_a_zip(run, monkeypatch):
    with zipfile.ZipFile(run / "tensors.safetensors", "w") as z:
        z.writestr("data.pkl", b"anything")
    _refused(run, "it is a zip archive", monkeypatch)


def test_fit_json_that_is_a_pickle_runs_nothing(run, tmp_path):
    marker = tmp_path / "pwned"
    (run / "fit.json").write_bytes(pickle.dumps(_Exploit(marker)))
    _refused(run, "fit.json is not valid JSON")
    assert not marker.exists()


# ---------------------------------------------------------------- headers that lie
def test_header_length_of_many_gigabytes(run, monkeypatch):
    (run / "tensors.safetensors").write_bytes((50 * 2**30).to_bytes(8, "little") + b"{}")
    _refused(run, r"header declares 53687091200 bytes, expected at most 2 ", monkeypatch)


def test_tensor_of_many_gigabytes_in_a_small_file(run, monkeypatch):
    huge = 16 * 2**30
    raw = _crafted({"data": {"dtype": "F32", "shape": [huge // 4],
                             "data_offsets": [0, huge]}}, b"\0" * 16)
    (run / "tensors.safetensors").write_bytes(raw)
    _refused(run, r"tensor 'data' lies at bytes \[0, 17179869184\] of the data, expected "
                  r"it to start at 0 and end by 16", monkeypatch)


def test_shape_that_disagrees_with_the_offsets(run, monkeypatch):
    raw = _crafted({"data": {"dtype": "F32", "shape": [2**40, 2**20],
                             "data_offsets": [0, 16]}}, b"\0" * 16)
    (run / "tensors.safetensors").write_bytes(raw)
    _refused(run, r"tensor 'data' \(F32, shape \[1099511627776, 1048576\]\) needs "
                  r"\d+ bytes, but its data_offsets \[0, 16\] span 16", monkeypatch)


def test_overlapping_tensors(run, monkeypatch):
    raw = _crafted({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                    "b": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
                   b"\0" * 16)
    (run / "tensors.safetensors").write_bytes(raw)
    _refused(run, "expected it to start at 16", monkeypatch)


def test_header_with_a_foreign_dtype(run, monkeypatch):
    raw = _crafted({"data": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}},
                   b"\0" * 8)
    (run / "tensors.safetensors").write_bytes(raw)
    _refused(run, r"tensor 'data': expected a dtype among", monkeypatch)


def test_header_that_is_not_an_object(run, monkeypatch):
    _set_raw(run, _crafted([1, 2]))
    _refused(run, "expected its header to be a JSON object, found list", monkeypatch)


def test_header_that_is_not_json(run, monkeypatch):
    (run / "tensors.safetensors").write_bytes((4).to_bytes(8, "little") + b"{{{{")
    _refused(run, "its header is not JSON", monkeypatch)


def test_header_with_negative_offsets(run, monkeypatch):
    raw = _crafted({"data": {"dtype": "F32", "shape": [0], "data_offsets": [8, -8]}})
    (run / "tensors.safetensors").write_bytes(raw)
    _refused(run, "expected data_offsets", monkeypatch)


# ---------------------------------------------------------------- links and odd files
_links = pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")


@_links
def test_fit_json_linked_outside_the_directory(run, tmp_path):
    outside = tmp_path / "elsewhere.json"
    shutil.move(run / "fit.json", outside)
    (run / "fit.json").symlink_to(outside)
    _refused(run, "fit.json is a link to .*elsewhere.json, outside")


@_links
def test_tensors_file_linked_outside_the_directory(run, tmp_path, monkeypatch):
    outside = tmp_path / "elsewhere.safetensors"
    shutil.move(run / "tensors.safetensors", outside)
    (run / "tensors.safetensors").symlink_to(outside)
    _refused(run, "tensors.safetensors is a link to .*elsewhere.safetensors, outside",
             monkeypatch)


@_links
def test_links_inside_the_directory_load(run, map_fit):
    (run / "real.safetensors").write_bytes((run / "tensors.safetensors").read_bytes())
    (run / "tensors.safetensors").unlink()
    (run / "tensors.safetensors").symlink_to("real.safetensors")
    assert torch.equal(pgm.load(run).params["loc"], map_fit.params["loc"])


@_links
def test_link_loop(run):
    (run / "tensors.safetensors").unlink()
    (run / "tensors.safetensors").symlink_to("tensors.safetensors")
    _refused(run, "tensors.safetensors cannot be read")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX named pipes")
def test_tensors_file_that_is_a_pipe(run):
    (run / "tensors.safetensors").unlink()
    os.mkfifo(run / "tensors.safetensors")  # opening it would block forever
    _refused(run, "expected a regular file")


def test_missing_directory_is_still_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="No saved fit"):
        pgm.load(tmp_path / "nothing")


# ---------------------------------------------------------------- atomic save
def _losses(path):
    return pgm.load(path).losses


def test_every_instant_of_a_save_leaves_a_readable_fit(run, tmp_path, map_fit, monkeypatch):
    """A copy of the directory taken around each rename (what a kill -9 there leaves)
    loads as the previous fit or as the new one, never fails."""
    new = _fit("map", steps=7)
    real_replace, snapshots = os.replace, []

    def snapshot():
        to = tmp_path / f"snap{len(snapshots)}"
        shutil.copytree(run, to, symlinks=True)
        snapshots.append(to)

    def replace(src, dst):
        snapshot()
        real_replace(src, dst)
        snapshot()

    monkeypatch.setattr(os, "replace", replace)
    new.save(run)
    monkeypatch.undo()
    seen = [_losses(s) for s in snapshots]
    assert len(seen) == 6  # tensors to their digest name, fit.json, tensors to final
    assert seen[0] == map_fit.losses and seen[-1] == new.losses
    assert all(s in (map_fit.losses, new.losses) for s in seen)
    assert sorted(p.name for p in run.iterdir()) == ["fit.json", "tensors.safetensors"]


def test_crash_before_the_commit_keeps_the_previous_save(run, map_fit, monkeypatch):
    real_replace = os.replace

    def replace(src, dst):
        if os.path.basename(dst) == "fit.json":
            raise OSError("simulated crash")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="simulated crash"):
        _fit("map", steps=7).save(run)
    monkeypatch.undo()
    back = pgm.load(run)
    assert back.losses == map_fit.losses
    assert torch.equal(back.params["loc"], map_fit.params["loc"])


def test_crash_after_the_commit_reads_the_new_save_and_the_next_save_tidies(
        run, monkeypatch):
    new = _fit("map", steps=7)
    real_replace = os.replace

    def replace(src, dst):
        if os.path.basename(dst) == "tensors.safetensors":
            raise OSError("simulated crash")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="simulated crash"):
        new.save(run)
    monkeypatch.undo()
    assert pgm.load(run).losses == new.losses
    assert len(list(run.glob("tensors-*.safetensors"))) == 1  # the committed tensors
    new.save(run)
    assert sorted(p.name for p in run.iterdir()) == ["fit.json", "tensors.safetensors"]
    assert pgm.load(run).losses == new.losses


def test_crash_while_writing_the_tensors_keeps_the_previous_save(run, map_fit,
                                                                  monkeypatch):
    def half_written(tensors, filename, *a, **k):
        with open(filename, "wb") as f:
            f.write(b"\x10\x00")
        raise OSError("simulated crash: disk full")

    monkeypatch.setattr(io, "save_file", half_written)
    with pytest.raises(OSError, match="disk full"):
        _fit("map", steps=7).save(run)
    monkeypatch.undo()
    assert pgm.load(run).losses == map_fit.losses
    assert sorted(p.name for p in run.iterdir()) == ["fit.json", "tensors.safetensors"]


def test_a_save_without_a_digest_still_loads(run, map_fit):
    _drop_meta(run, "tensors_sha256")  # as every save before issue #18 wrote it
    assert pgm.load(run).losses == map_fit.losses


# ---------------------------------------------------------------- where a save may write
def test_save_refuses_a_directory_that_is_not_a_fit(tmp_path, map_fit):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    with pytest.raises(ValueError, match=f"Refusing to save a fit to '{home}': the "
                                         f"directory is not empty"):
        map_fit.save(home)
    assert [p.name for p in home.iterdir()] == ["thesis.tex"]
    (home / "fit.json").write_text('{"format": "someone-else"}')
    with pytest.raises(ValueError, match="not a pyro-genmodels fit directory"):
        map_fit.save(home)
    assert (home / "fit.json").read_text() == '{"format": "someone-else"}'


def test_save_refuses_a_file(tmp_path, map_fit):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        map_fit.save(tmp_path / "f")


def test_save_into_an_empty_directory_or_over_a_fit(tmp_path, map_fit):
    (tmp_path / "empty").mkdir()
    map_fit.save(tmp_path / "empty")
    new = _fit("map", steps=7)
    new.save(tmp_path / "empty")  # over a fit: replaced
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == [
        "fit.json", "tensors.safetensors"]
    assert pgm.load(tmp_path / "empty").losses == new.losses


def test_a_posterior_of_no_draws_and_integer_data_are_load_errors(tmp_path):
    """A posterior of zero chains or draws was a RuntimeError of torch's (reshaping 0
    elements) and integer data of any shape loaded, to fail in ``to_arviz``."""
    fit = _fit("vi")
    cases = {
        "no draws": lambda t: {k: v[:, :0].contiguous() if k.startswith("posterior/") else v
                               for k, v in t.items()},
        "no chains": lambda t: {k: v[:0].contiguous() if k.startswith("posterior/") else v
                                for k, v in t.items()},
        "long data": lambda t: {**t, "data": torch.zeros(5, 4, dtype=torch.long)},
        "long rows": lambda t: {**t, "data": torch.zeros(5, 2, dtype=torch.long)},
    }
    for name, change in cases.items():
        run = tmp_path / name.replace(" ", "_")
        fit.save(run)
        _set_tensors(run, change(load_file(str(run / "tensors.safetensors"))))
        match = "at least one of each" if name.startswith("no") else \
            r"tensor 'data' is torch.int64 of shape \(5, \d\), expected floating-point \(N, 2\)"
        with pytest.raises(io.LoadError, match=match):
            pgm.load(run)
