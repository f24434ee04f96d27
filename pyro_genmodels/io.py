"""Saving and loading fits without pickle: ``fit.json`` (metadata, JSON) plus
``tensors.safetensors`` (every tensor). Nothing on load can execute code: JSON is parsed,
safetensors is a flat header plus raw buffers, and the model class is looked up by name
in the registry, never imported from the file.

A model built with user-supplied networks (a VAE's ``encoder``/``decoder``, an
EnergyModel's ``energy``) is saved too, but only as weights: the modules' code is not
data. ``load(path, model=...)`` then takes a model built the same way, checks that its
configuration matches the saved one, and loads the weights into a copy of it.

**Saving is atomic.** ``fit.json`` records the SHA-256 of the tensors that belong to it.
:func:`save` writes the tensors under a temporary name, fsyncs them and renames them to
``tensors-<sha256>.safetensors``; then replaces ``fit.json`` (written and fsynced under a
temporary name: the one commit point); then renames the tensors to
``tensors.safetensors``; then removes what an earlier interrupted save left. :func:`load`
reads ``tensors-<sha256>.safetensors`` when it exists, else ``tensors.safetensors``, and
checks the digest. So at every instant the directory holds a readable fit: the previous
one until ``fit.json`` is replaced, the new one from then on.

**Loading refuses a damaged or hostile directory** with :class:`LoadError`, before any
tensor is allocated from a size the file does not hold: ``fit.json`` must be a bounded
JSON object of the documented types, format and version; names (model, tensors) carry no
path separators or ``..``; links that lead outside the directory are refused; the
tensors file's header is checked against its real size
(:mod:`~pyro_genmodels._file_checks`) and its digest against ``fit.json``; every
tensor's name is expected, its values finite, and its shape fits the model that the
configuration builds; the method is the family's, and makes what the tensors hold (draws
for ``vi``, ``nuts``, ``hmc``, ``chees``; a point for the others).
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Union, cast

import torch
from safetensors.torch import load_file, save_file

from ._file_checks import (_found, check_header, check_meta, check_method_groups, check_names,
                           parse_json, plain, sha256)
from ._rng import serialized

if TYPE_CHECKING:  # annotations only: Fit.save imports this module
    from .base import GenerativeModel
    from .fit import Fit
from ._validation import check_device

FORMAT = "pyro-genmodels/fit"
#: 2 marks a fit with user-supplied modules (``meta["code"]``); a reader of version 1
#: would rebuild the default networks and refuse it or, worse, load into them
FORMAT_VERSION = 2
META, TENSORS = "fit.json", "tensors.safetensors"
#: the largest ``fit.json`` read (a million-step loss trace is about 25 MB)
MAX_META_BYTES = 2**30
_DTYPES = {str(t).removeprefix("torch."): t
           for t in (torch.float16, torch.bfloat16, torch.float32, torch.float64)}
_GROUPS = ("point", "posterior", "sample_stats")
_PENDING = re.compile(r"tensors-([0-9a-f]{64})\.safetensors")
_TEMP = re.compile(r"\.(tensors|fit)-[0-9a-f]{16}\.tmp")


class LoadError(ValueError):
    """A saved fit that cannot be loaded: damaged, inconsistent or hostile files. The
    message names the file and what was expected and found."""


# ---------------------------------------------------------------------- saving
@serialized
def save(fit: Fit, path: Union[str, os.PathLike]) -> None:
    """Write ``fit`` to the directory ``path`` (created if needed), atomically: an
    interruption at any point leaves the previous save there readable (see the module).
    The attributes that the fit class's ``saved_settings`` names (what its ``using``
    set: a diffusion fit's ``estimator``) go to ``fit.json``'s ``settings``, and
    :func:`load` restores them through ``using``.

    Raises:
        ValueError: ``path`` is a file, or a non-empty directory that holds no
            pyro-genmodels fit (so that a save cannot clobber unrelated files); or a
            tensor name that could not be loaded back (path separators, ``..``).
    """
    from ._version import __version__

    path = Path(path)
    _check_target(path)
    tensors: Dict[str, torch.Tensor] = {}
    config: Dict[str, Any] = {}
    config_tensors = []
    code: Dict[str, Dict[str, str]] = {}  # user modules: their weights are in the state dict
    for key, value in fit.model.get_config().items():
        if isinstance(value, torch.nn.Module):
            code[key] = {"class": type(value).__name__, "repr": repr(value)}
        elif isinstance(value, torch.Tensor):
            tensors[f"config/{key}"] = value
            config_tensors.append(key)
        else:
            config[key] = value
    for key, value in fit.model.state_dict().items():
        tensors[f"state/{key}"] = value
    for group in _GROUPS:
        for key, value in (getattr(fit, group) or {}).items():
            tensors[f"{group}/{key}"] = value
    for key in ("data", "context"):
        if getattr(fit, key) is not None:
            tensors[key] = getattr(fit, key)
    for key in tensors:
        if key not in ("data", "context") and not plain(key.split("/", 1)[1]):
            raise ValueError(f"Cannot save tensor {key!r}: names must not contain path "
                             f"separators or '..'")
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    meta = {
        "format": FORMAT,
        "format_version": 2 if code else 1,
        "library_version": __version__,
        "model": fit.model.registry_name,
        "config": config,
        "config_tensors": config_tensors,
        "code": code,
        "dtype": str(fit.model._anchor.dtype).removeprefix("torch."),
        "method": fit.method,
        "losses": fit.losses,
        "seed": fit.seed,
        "options": fit.options,
        "interrupted": fit.interrupted,
        "info": fit.info,
        # what the fit class's ``using`` set (a diffusion fit's default estimator)
        "settings": {k: getattr(fit, k) for k in getattr(fit, "saved_settings", ())},
        "groups": [g for g in _GROUPS if getattr(fit, g) is not None],
        # the variables' order (safetensors stores them sorted by name): ArviZ's order
        "order": {g: list(getattr(fit, g)) for g in _GROUPS if getattr(fit, g) is not None},
    }
    path.mkdir(parents=True, exist_ok=True)
    _write(path, tensors, meta)


def _is_fit_dir(path: Path) -> bool:
    meta_file = path / META
    try:
        if not meta_file.is_file() or meta_file.stat().st_size > MAX_META_BYTES:
            return False
        meta = parse_json(meta_file.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def _check_target(path: Path) -> None:
    """Refuse to write into anything but a new or empty directory, a fit directory, or
    one holding only what an interrupted save left."""
    if not path.exists():
        return
    if not path.is_dir():
        raise ValueError(f"Cannot save a fit to {str(path)!r}: it exists and is not a "
                         f"directory")
    names = [p.name for p in path.iterdir()]
    if all(_PENDING.fullmatch(n) or _TEMP.fullmatch(n) for n in names) or _is_fit_dir(path):
        return
    raise ValueError(f"Refusing to save a fit to {str(path)!r}: the directory is not empty "
                     f"and is not a pyro-genmodels fit directory (expected no files, or a "
                     f"{META} of format {FORMAT!r}; found {sorted(names)[:5]}). Save to a "
                     f"new or empty directory")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # a platform that cannot open directories (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write(path: Path, tensors: Dict[str, torch.Tensor], meta: Dict[str, Any]) -> None:
    """The atomic protocol of the module docstring; both files get open()'s mode."""
    tmp = path / f".tensors-{secrets.token_hex(8)}.tmp"
    try:
        save_file(tensors, str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        meta["tensors_sha256"] = digest = sha256(tmp)
        pending = path / f"tensors-{digest}.safetensors"
        os.replace(tmp, pending)
        _fsync_dir(path)
    finally:
        tmp.unlink(missing_ok=True)
    tmp = path / f".fit-{secrets.token_hex(8)}.tmp"
    try:
        with open(tmp, "xb") as f:
            f.write(json.dumps(meta, indent=1).encode())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(pending, stat.S_IMODE(os.stat(tmp).st_mode))  # not save_file's 0600
        os.replace(tmp, path / META)  # the commit: from here on, the new fit is read
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path)
    os.replace(pending, path / TENSORS)
    _fsync_dir(path)
    for p in path.iterdir():  # what interrupted saves left: nothing reads it any more
        if _PENDING.fullmatch(p.name) or _TEMP.fullmatch(p.name):
            p.unlink(missing_ok=True)


# ---------------------------------------------------------------------- loading
def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and a.shape == b.shape and torch.equal(a.cpu().to(b.dtype), b.cpu()))
    return json.loads(json.dumps(a)) == b  # tuples saved as lists


def _check_template(model, meta: Dict[str, Any], config: Dict[str, Any]) -> None:
    """``model`` must be the saved fit's class with the same configuration."""
    if not hasattr(model, "registry_name") or not hasattr(model, "get_config"):
        raise TypeError(f"Expected model to be a pyro-genmodels model, but got "
                        f"{type(model).__name__}")
    if model.registry_name != meta["model"]:
        raise ValueError(f"The saved fit is of a {meta['model']!r} model, but model is a "
                         f"{model.registry_name!r} ({type(model).__name__})")
    given = model.get_config()
    saved_code = meta.get("code", {})
    for key in sorted(set(given) | set(config) | set(saved_code)):
        g = given.get(key)
        if key in saved_code or isinstance(g, torch.nn.Module):
            saved = saved_code.get(key) or {}
            name = type(g).__name__ if isinstance(g, torch.nn.Module) else None
            if name != saved.get("class"):
                raise ValueError(f"model's {key} is {name or g!r} but the saved fit's is "
                                 f"{saved.get('class') or config.get(key)!r}")
            if repr(g) != saved.get("repr"):  # e.g. another activation: no weights differ
                raise ValueError(f"model's {key} is built differently from the saved "
                                 f"fit's:\n{g!r}\nsaved:\n{saved.get('repr')}")
        elif not _same(g, config.get(key)):
            raise ValueError(f"model's {key}={g!r} differs from the saved fit's "
                             f"{key}={config.get(key)!r}: build the model as it was saved")


@serialized  # builds the model and traces its program: Pyro's stack is the process's
def load(path: Union[str, os.PathLike], *, model: Optional[GenerativeModel] = None,
         device: Union[str, torch.device] = "cpu") -> Fit:
    """Load a fit written by :meth:`Fit.save`, onto ``device`` (CPU by default, so a fit
    saved on a GPU loads anywhere). Every file is checked before use (see the module).

    Args:
        path: the directory ``Fit.save`` wrote.
        model: a model built as the saved one was (same class and configuration). Needed
            when the saved model has user-supplied networks, whose code is not saved;
            optional otherwise. The fit gets a copy of it with the saved weights; ``model``
            itself is left unchanged.
        device: where the loaded tensors live.

    Raises:
        FileNotFoundError: no saved fit at ``path`` (no ``fit.json`` there).
        LoadError: the files are damaged, inconsistent or not a pyro-genmodels fit (e.g.
            a pickle in disguise). A :class:`ValueError`.
        ValueError: the fit needs ``model=``, or ``model`` does not match it.
    """
    from ._rng import seeded
    from .infer.engines import ChEESEngine, MCMCEngine, PointEngine, VIEngine
    from .registry import registry

    draws = (VIEngine, MCMCEngine, ChEESEngine)  # other engines (EM, dsm, ...): unchecked
    path = Path(path)
    if not ((path / META).exists() or (path / META).is_symlink()):
        raise FileNotFoundError(f"No saved fit at {str(path)!r}: expected {META} and "
                                f"{TENSORS} in that directory")
    root = path.resolve()
    meta_file, size = _regular_file(root, path / META)
    if size > MAX_META_BYTES:
        raise LoadError(f"{meta_file} has {size} bytes, expected at most {MAX_META_BYTES}")
    try:
        meta = parse_json(meta_file.read_bytes())
    except OSError as e:  # e.g. another user's file, not readable by others
        raise LoadError(f"{meta_file} cannot be read: {e.strerror}") from None
    except ValueError as e:
        raise LoadError(f"{meta_file} is not valid JSON: {e}") from None
    try:
        check_meta(meta, meta_file, fmt=FORMAT, max_version=FORMAT_VERSION, dtypes=_DTYPES,
                   groups=_GROUPS)
    except ValueError as e:
        raise LoadError(str(e)) from None
    cls = registry().get(meta["model"])
    if cls is None:
        raise LoadError(f"{meta_file}: Unknown model {meta['model']!r}; expected one of "
                        f"{sorted(registry())}")
    settings = _settings(meta, cls.fit_class, meta_file)
    tensor_file, size = _tensor_file(root, path, meta)
    try:
        names = check_header(tensor_file, size)
        check_names(names, meta, tensor_file)
        engines = {m: cls.engine(m) for m in cls.capabilities.methods}
        check_method_groups(meta, meta_file, methods=cls.capabilities.methods,
                            model=cls.__name__, points=[m for m, e in engines.items()
                                                        if isinstance(e, PointEngine)],
                            draws=[m for m, e in engines.items() if isinstance(e, draws)])
    except OSError as e:  # e.g. another user's file, not readable by others
        raise LoadError(f"{tensor_file} cannot be read: {e.strerror}") from None
    except ValueError as e:
        raise LoadError(str(e)) from None
    digest = meta.get("tensors_sha256")
    found = None if digest is None else sha256(tensor_file)
    if found != digest:
        raise LoadError(f"{tensor_file} does not belong to {meta_file}: expected SHA-256 "
                        f"{digest}, found {found} (damaged, or another save's)")
    try:
        tensors = load_file(str(tensor_file))
    except Exception as e:  # a foreign parser on checked but untrusted bytes
        raise LoadError(f"{tensor_file} is not a valid safetensors file: {e}") from None
    _check_finite(tensors, tensor_file)
    config = cls.saved_config(dict(meta["config"]), set(meta.get("code", {})))
    for key in meta["config_tensors"]:
        config[key] = tensors[f"config/{key}"]
    code = meta.get("code", {})
    if model is not None:
        _check_template(model, meta, config)
        # a fresh model around copies of the template's modules: nothing else of the
        # template (buffers, cached runs) carries over, and the template is not changed
        config.update({k: copy.deepcopy(v) for k, v in model.get_config().items()
                       if isinstance(v, torch.nn.Module)})
    elif code:
        modules = ", ".join(f"{k}: {v['class']}" for k, v in code.items())
        raise ValueError(f"{path} holds a {meta['model']!r} model with user-supplied modules "
                         f"({modules}); only their weights are saved, not their code. Build "
                         f"the model the same way and pass it: load(path, model=...)")
    device = check_device(device)
    # on the device before the checks: a family's density hook mixes them with its buffers
    groups = {g: {k.split("/", 1)[1]: v.to(device) for k, v in tensors.items()
                  if k.startswith(g + "/")} for g in meta["groups"]}
    for g, listed in meta.get("order", {}).items():  # as saved (older saves: by name)
        first = [k for k in listed if k in groups[g]]  # what is missing or extra: below
        groups[g] = {k: groups[g][k] for k in first + sorted(set(groups[g]) - set(first))}
    with seeded(0):  # a family may draw initial weights; never from the caller's RNG
        try:
            model = cls(**config).to(device=device, dtype=_DTYPES[meta["dtype"]]).eval()
        except (TypeError, ValueError, RuntimeError) as e:
            raise LoadError(f"{meta_file}: its config does not build a {cls.__name__}: "
                            f"{e}") from None
        state = {k[6:]: v for k, v in tensors.items() if k.startswith("state/")}
        own = model.state_dict()
        for key, v in state.items():  # load_state_dict would cast: floats into a mask
            if key in own and v.dtype != own[key].dtype:
                raise LoadError(f"{tensor_file}: tensor 'state/{key}' has dtype {v.dtype}, "
                                f"expected {own[key].dtype} (the {cls.__name__}'s that "
                                f"{meta_file} configures)")
        x_scale = state.get("x_scale")  # base.py's standardization: x / x_scale
        if x_scale is not None and x_scale.is_floating_point() and not (x_scale > 0).all():
            raise LoadError(f"{tensor_file}: tensor 'state/x_scale' holds "
                            f"{int((~(x_scale > 0)).sum())} value(s) <= 0, expected the "
                            f"positive column scales that standardize the data")
        try:
            model.load_state_dict(state)
        except (RuntimeError, ValueError, TypeError) as e:  # names or shapes
            raise LoadError(f"{tensor_file}: the saved weights do not fit the "
                            f"{cls.__name__} that {meta_file} configures: {e}") from None
        _check_groups(model, groups, tensors, tensor_file)
    data, context = tensors.get("data"), tensors.get("context")
    try:
        fit = cls.fit_class.build(
            model, meta["method"], point=groups.get("point"), posterior=groups.get("posterior"),
            sample_stats=groups.get("sample_stats", {}), losses=meta["losses"],
            data=None if data is None else data.to(device),
            context=None if context is None else context.to(device), seed=meta["seed"],
            options=meta["options"], interrupted=meta["interrupted"], info=meta["info"])
    except (TypeError, ValueError) as e:
        raise LoadError(f"{path} does not make a fit: {e}") from None
    if not settings:
        return fit
    try:  # ``using`` checks each value (an unknown estimator)
        return cast(Any, fit).using(**settings)  # the classes with saved_settings have it
    except (TypeError, ValueError) as e:
        raise LoadError(f"{meta_file}: its settings {settings} do not apply to a "
                        f"{cls.fit_class.__name__}: {e}") from None


def _settings(meta: Dict[str, Any], fit_class: type, file: Path) -> Dict[str, Any]:
    """``fit.json``'s ``settings``: what the fit class's ``using`` sets and
    ``saved_settings`` names (a diffusion fit's ``estimator``); ``{}`` in saves older
    than the field, whose fits load with the class's defaults."""
    settings = meta.get("settings", {})
    allowed = tuple(getattr(fit_class, "saved_settings", ()))
    if not set(settings) <= set(allowed):  # an object: check_meta
        raise LoadError(f"{file}: expected 'settings' to be an object with keys among "
                        f"{list(allowed)} (the {fit_class.__name__}'s), found "
                        f"{_found(settings)}")
    return settings


def _check_finite(tensors: Dict[str, torch.Tensor], file: Path) -> None:
    """A save writes finite weights, estimates, draws and data (a fit that diverged
    raises FitError instead): NaN or inf there is damage, or a file crafted to make
    ``log_prob`` and ``sample`` fail or lie. (``sample_stats`` may hold anything.)"""
    for key, v in tensors.items():
        if v.is_floating_point() and not key.startswith("sample_stats/"):
            bad = ~torch.isfinite(v)
            if bad.any():
                raise LoadError(f"{file}: tensor {key!r} holds {int(bad.sum())} non-finite "
                                f"value(s) (NaN or inf), expected finite numbers (a saved "
                                f"fit's parameters and data are finite)")


def _regular_file(root: Path, file: Path):
    """``file`` resolved, and its size: a regular file inside ``root`` (a link that
    leads out of the directory could make a load read anything; a FIFO would block)."""
    try:
        real = file.resolve(strict=True)
        st = real.stat()
    except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop
        raise LoadError(f"{file} cannot be read: {e}") from None
    if not real.is_relative_to(root):
        raise LoadError(f"{file} is a link to {real}, outside {root}: expected the saved "
                        f"fit's files to lie in its directory")
    if not stat.S_ISREG(st.st_mode):
        raise LoadError(f"{file}: expected a regular file, found another kind "
                        f"(mode {stat.filemode(st.st_mode)})")
    return real, st.st_size


def _tensor_file(root: Path, path: Path, meta: Dict[str, Any]):
    """The tensors of ``fit.json``: a save interrupted after its commit left them under
    their digest's name; otherwise (and in saves that record no digest) ``TENSORS``."""
    digest = meta.get("tensors_sha256")
    pending = path / f"tensors-{digest}.safetensors"
    if digest is not None and (pending.exists() or pending.is_symlink()):
        return _regular_file(root, pending)
    file = path / TENSORS
    if not (file.exists() or file.is_symlink()):
        raise LoadError(f"{path / META} has no tensors: expected {file}, found none")
    return _regular_file(root, file)


def _check_groups(model, groups: Dict[str, Dict[str, torch.Tensor]],
                  tensors: Dict[str, torch.Tensor], file: Path) -> None:
    """The estimate (point or posterior) has every one of the model's global sites and
    no other; each of the site's dtype, with values in its support; point estimates of
    the site's shape, posterior draws ``(chains, draws, *shape)`` with one ``(chains,
    draws)`` (that ``sample_stats`` share); numeric data ``(N, dim)``, and ``context`` one
    row per data row."""
    name = type(model).__name__
    sites: Dict[str, tuple] = {}
    if model.global_sites or groups.get("point") or groups.get("posterior"):
        try:
            sites = _sites(model)
        except Exception as e:  # the configuration builds a model that cannot run
            raise LoadError(f"{file}: the {name} its fit.json configures cannot be traced "
                            f"to check the saved parameters' shapes: {e}") from None
    estimate = "point" if "point" in groups else "posterior"
    for key in [*groups.get("point", {}), *groups.get("posterior", {})]:
        if key not in sites:
            raise LoadError(f"{file}: unexpected tensor for the site {key!r}: expected "
                            f"one of the {name}'s global sites {sorted(sites)}")
    missing = sorted(set(sites) - set(groups.get(estimate, {})))
    if missing:
        raise LoadError(f"{file}: no tensor for the site(s) {missing} in the {estimate}: "
                        f"expected one '{estimate}/NAME' for each of the {name}'s global "
                        f"sites {sorted(sites)}")
    for key, v in groups.get("point", {}).items():
        if tuple(v.shape) != sites[key][0]:
            raise LoadError(f"{file}: tensor 'point/{key}' has shape {tuple(v.shape)}, "
                            f"expected {sites[key][0]} for the {name} that fit.json "
                            f"configures")
    draws = None
    for key, v in groups.get("posterior", {}).items():
        draws = draws or tuple(v.shape[:2])
        if v.dim() < 2 or tuple(v.shape[:2]) != draws or tuple(v.shape[2:]) != sites[key][0] \
                or 0 in v.shape[:2]:
            raise LoadError(f"{file}: tensor 'posterior/{key}' has shape {tuple(v.shape)}, "
                            f"expected (chains, draws, *{sites[key][0]}) with (chains, "
                            f"draws) = {draws}, at least one of each, for the {name} that "
                            f"fit.json configures")
    for key, v in groups.get(estimate, {}).items():
        shape, dtype, support = sites[key]
        if v.dtype != dtype:
            raise LoadError(f"{file}: tensor '{estimate}/{key}' has dtype {v.dtype}, "
                            f"expected {dtype} (the site's, in the {name} that fit.json "
                            f"configures)")
        try:
            ok = support.check(v)
        except NotImplementedError:  # a dependent support: nothing to check it against
            continue
        except RuntimeError as e:  # torch's own complaint about the values' layout
            raise LoadError(f"{file}: tensor '{estimate}/{key}' cannot be checked against "
                            f"the support of the site {key!r} ({support}): {e}") from None
        if not bool(torch.as_tensor(ok).all()):
            bad = int((~torch.as_tensor(ok)).sum())
            raise LoadError(f"{file}: tensor '{estimate}/{key}' holds values outside the "
                            f"support of the site {key!r} ({support}) in {bad} place(s), "
                            f"expected values that the {name}'s prior allows")
    _check_distribution(model, groups.get(estimate, {}), estimate == "posterior", file)
    for key, v in groups.get("sample_stats", {}).items():
        if draws is not None and tuple(v.shape[:2]) != draws:
            raise LoadError(f"{file}: tensor 'sample_stats/{key}' has shape "
                            f"{tuple(v.shape)}, expected (chains, draws) = {draws} first")
    data, context = tensors.get("data"), tensors.get("context")
    # rows of numbers, unless the family encodes its data (token ids) in its own way
    numeric = type(model).prepare_data.__qualname__ == "GenerativeModel.prepare_data"
    if data is not None and (data.is_floating_point() or numeric) and (
            data.dim() != 2 or data.shape[1] != model.dim or not data.is_floating_point()):
        raise LoadError(f"{file}: tensor 'data' is {data.dtype} of shape "
                        f"{tuple(data.shape)}, expected floating-point (N, {model.dim}) for "
                        f"the {name}")
    if context is not None and (data is None or context.shape[:1] != data.shape[:1]):
        raise LoadError(f"{file}: tensor 'context' has shape {tuple(context.shape)}, "
                        f"expected one row per data row (data: "
                        f"{None if data is None else tuple(data.shape)})")


def _check_distribution(model, values: Dict[str, torch.Tensor], draws: bool,
                        file: Path) -> None:
    """An unconditional family's density hook (:meth:`distribution`) accepts the loaded
    estimate and weights: torch checks every parameter of the distribution it builds (a
    scale of 0 that the prior's support allows, a flow's base scale <= 0), so a fit that
    would fail in ``log_prob`` or ``sample`` is refused here. Building it evaluates no
    network; a family without the hook is not checked."""
    if model.context_dim is not None:  # needs a c, of a kind only the family knows
        return
    if draws:  # (chains, draws, *shape) -> one batch of draws
        values = {k: v.reshape(-1, *v.shape[2:]) for k, v in values.items()}
    try:
        with torch.no_grad():
            model.distribution(values, None)
    except NotImplementedError:
        return
    except Exception as e:  # noqa: BLE001 - torch's checks of the parameters, or worse
        lines = str(e).strip().splitlines()  # torch's list the bad values below
        what = "draws" if draws else "parameters"
        raise LoadError(f"{file}: the saved {what} do not make a valid "
                        f"{type(model).__name__}: {lines[0] if lines else type(e).__name__}"
                        ) from None


def _sites(model) -> Dict[str, tuple]:
    """``{site: (shape, dtype, support)}`` of the model's global sites, from one trace of
    its prior (as ``num_params`` does), under the caller's lock and seed."""
    from pyro import poutine

    with torch.no_grad(), poutine.block():
        c = None if model.context_dim is None else torch.zeros(1, model.context_dim,
                                                               **model._factory)
        tr = poutine.trace(model.model).get_trace(None, c=c, num_data=1)
    return {n: (tuple(tr.nodes[n]["value"].shape), tr.nodes[n]["value"].dtype,
                tr.nodes[n]["fn"].support) for n in model.global_sites if n in tr.nodes}
