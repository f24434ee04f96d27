"""The registry of model families, by name: what the CLI, ``load`` and the contract
tests iterate over. It imports nothing of the package, so anything may use it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Type, TypeVar

if TYPE_CHECKING:  # annotations only: base imports this module
    from .base import GenerativeModel

_REGISTRY: Dict[str, Type[GenerativeModel]] = {}
_M = TypeVar("_M", bound="Type[GenerativeModel]")


def register(cls: _M) -> _M:
    """Class decorator: make a model family known to the CLI, ``load`` and the tests."""
    name = cls.registry_name
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"A model is already registered as {name!r}")
    _REGISTRY[name] = cls
    return cls


def registry() -> Dict[str, Type[GenerativeModel]]:
    """The registered model families, by name (a copy)."""
    return dict(_REGISTRY)


def get_model_class(name: str) -> Type[GenerativeModel]:
    """The family registered as ``name``; an unknown name raises a ``ValueError`` listing
    the registered ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown model {name!r}; expected one of {sorted(_REGISTRY)}") from None
