"""Saving and loading fits without pickle: ``fit.json`` (metadata, JSON) plus
``tensors.safetensors`` (every tensor). Nothing on load can execute code: JSON is parsed,
safetensors is a flat header plus raw buffers, and the model class is looked up by name
in the registry, never imported from the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FORMAT = "pyro-genmodels/fit"
FORMAT_VERSION = 1
_DTYPES = {str(t).removeprefix("torch."): t
           for t in (torch.float16, torch.bfloat16, torch.float32, torch.float64)}
_GROUPS = ("point", "posterior", "sample_stats")


def save(fit, path: Union[str, os.PathLike]) -> None:
    """Write ``fit`` to the directory ``path`` (created if needed; files overwritten)."""
    from . import __version__

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors: Dict[str, torch.Tensor] = {}
    config: Dict[str, Any] = {}
    config_tensors = []
    for key, value in fit.model.get_config().items():
        if isinstance(value, torch.Tensor):
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
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "model": fit.model.registry_name,
        "config": config,
        "config_tensors": config_tensors,
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


def load(path: Union[str, os.PathLike], *, device: Union[str, torch.device] = "cpu"):
    """Load a fit written by :meth:`Fit.save`, onto ``device`` (CPU by default, so a fit
    saved on a GPU loads anywhere).

    Raises:
        FileNotFoundError: no saved fit at ``path``.
        ValueError: the files are not a pyro-genmodels fit (e.g. a pickle in disguise).
    """
    from ._rng import seeded
    from .base import get_model_class, make_fit

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
    with seeded(0):  # a family may draw initial weights; never from the caller's RNG
        model = cls(**config)
    model = model.to(device=device, dtype=_DTYPES[meta["dtype"]])
    state = {k.removeprefix("state/"): v for k, v in tensors.items() if k.startswith("state/")}
    model.load_state_dict(state)
    groups = {g: {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith(g + "/")}
              for g in meta["groups"]}
    return make_fit(model, meta["method"], point=groups.get("point"),
                    posterior=groups.get("posterior"), sample_stats=groups.get("sample_stats"),
                    losses=meta["losses"], data=tensors.get("data"),
                    context=tensors.get("context"), seed=meta["seed"],
                    options=meta["options"], interrupted=meta["interrupted"],
                    info=meta["info"])
