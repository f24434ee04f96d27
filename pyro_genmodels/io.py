"""Saving and loading fits without pickle: ``fit.json`` (metadata, JSON) plus
``tensors.safetensors`` (every tensor). Nothing on load can execute code: JSON is parsed,
safetensors is a flat header plus raw buffers, and the model class is looked up by name
in the registry, never imported from the file.

A model built with user-supplied networks (a VAE's ``encoder``/``decoder``, an
EnergyModel's ``energy``) is saved too, but only as weights: the modules' code is not
data. ``load(path, model=...)`` then takes a model built the same way, checks that its
configuration matches the saved one, and loads the weights into a copy of it.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FORMAT = "pyro-genmodels/fit"
#: 2 marks a fit with user-supplied modules (``meta["code"]``): a reader of version 1
#: would rebuild the default networks and refuse it or, worse, load into them
FORMAT_VERSION = 2
_DTYPES = {str(t).removeprefix("torch."): t
           for t in (torch.float16, torch.bfloat16, torch.float32, torch.float64)}
_GROUPS = ("point", "posterior", "sample_stats")


def save(fit, path: Union[str, os.PathLike]) -> None:
    """Write ``fit`` to the directory ``path`` (created if needed; files overwritten)."""
    from ._version import __version__

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors: Dict[str, torch.Tensor] = {}
    config: Dict[str, Any] = {}
    config_tensors = []
    code: Dict[str, str] = {}  # user modules: their weights are in the state dict
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
    if fit.data is not None:
        tensors["data"] = fit.data
    if fit.context is not None:
        tensors["context"] = fit.context
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
        "groups": [g for g in _GROUPS if getattr(fit, g) is not None],
    }
    save_file(tensors, str(path / "tensors.safetensors"))
    (path / "fit.json").write_text(json.dumps(meta, indent=1))


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


def load(path: Union[str, os.PathLike], *, model: Optional[Any] = None,
         device: Union[str, torch.device] = "cpu"):
    """Load a fit written by :meth:`Fit.save`, onto ``device`` (CPU by default, so a fit
    saved on a GPU loads anywhere).

    Args:
        path: the directory ``Fit.save`` wrote.
        model: a model built as the saved one was (same class and configuration). Needed
            when the saved model has user-supplied networks, whose code is not saved;
            optional otherwise. The fit gets a copy of it with the saved weights; ``model``
            itself is left unchanged.
        device: where the loaded tensors live.

    Raises:
        FileNotFoundError: no saved fit at ``path``.
        ValueError: the files are not a pyro-genmodels fit (e.g. a pickle in disguise), or
            the fit needs ``model=`` or ``model`` does not match it.
    """
    from ._rng import seeded
    from .registry import get_model_class

    path = Path(path)
    meta_file, tensor_file = path / "fit.json", path / "tensors.safetensors"
    if not meta_file.is_file() or not tensor_file.is_file():
        raise FileNotFoundError(f"No saved fit at {str(path)!r}: expected fit.json and "
                                f"tensors.safetensors in that directory")
    try:
        meta = json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{meta_file} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{meta_file} is not a pyro-genmodels fit (format {FORMAT!r})")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer pyro-genmodels "
                         f"(format {meta['format_version']} > {FORMAT_VERSION})")
    device = torch.device(device)
    try:
        tensors = load_file(str(tensor_file), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{tensor_file} is not a valid safetensors file: {e}") from None
    if meta.get("dtype") not in _DTYPES:
        raise ValueError(f"Unsupported dtype {meta.get('dtype')!r} in {meta_file}")
    cls = get_model_class(meta["model"])
    config = dict(meta["config"])
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
    with seeded(0):  # a family may draw initial weights; never from the caller's RNG
        model = cls(**config)
    model = model.to(device=device, dtype=_DTYPES[meta["dtype"]])
    state = {k.removeprefix("state/"): v for k, v in tensors.items() if k.startswith("state/")}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:  # a user module built differently (names or shapes)
        raise ValueError(f"The saved weights do not fit model: {e}") from None
    groups = {g: {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith(g + "/")}
              for g in meta["groups"]}
    return cls.fit_class.build(model, meta["method"], point=groups.get("point"),
                    posterior=groups.get("posterior"), sample_stats=groups.get("sample_stats"),
                    losses=meta["losses"], data=tensors.get("data"),
                    context=tensors.get("context"), seed=meta["seed"],
                    options=meta["options"], interrupted=meta["interrupted"],
                    info=meta["info"])
