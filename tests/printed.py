"""Checks on the figures a script prints: a printed number stands for every value that
rounds to it, so a printed ratio agrees with its printed parts when the interval of the
ratio of their intervals meets its own. No tolerance to choose: the bounds come from the
digits printed."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path
from typing import Tuple

Interval = Tuple[float, float]

NUMBER = r"[-+]?\d+(?:\.\d+)?"


def bounds(text: str) -> Interval:
    """The values that print as ``text`` (half a unit of its last digit either side)."""
    value = float(text)
    decimals = len(text.split(".")[1]) if "." in text else 0
    half = 0.5 * 10.0 ** -decimals
    return value - half, value + half


def quotient(a: Interval, b: Interval) -> Interval:
    """``a / b`` for positive intervals (an upper bound of inf when b may be 0)."""
    lo = a[0] / b[1] if b[1] > 0 else 0.0
    hi = a[1] / b[0] if b[0] > 0 else math.inf
    return max(lo, 0.0), hi


def scaled(a: Interval, factor: float) -> Interval:
    return a[0] * factor, a[1] * factor


def agrees(printed: str, expected: Interval, rel: float = 1e-9) -> bool:
    """Whether the value printed as ``printed`` can lie in ``expected``."""
    lo, hi = bounds(printed)
    slack = rel * max(abs(lo), abs(hi), 1.0)
    return lo <= expected[1] + slack and expected[0] - slack <= hi


def positive_finite(text: str) -> float:
    value = float(text)
    assert math.isfinite(value) and value > 0, text
    return value


def grab(pattern: str, line: str):
    """The groups of ``pattern`` in ``line`` (``{N}`` stands for a number), or fail."""
    m = re.search(pattern.replace("{N}", f"({NUMBER})"), line)
    assert m is not None, f"{pattern!r} not in {line!r}"
    return m.groups() if len(m.groups()) > 1 else m.group(1)


def load_script(path: Path, name: str | None = None):
    """The example or benchmark script at ``path`` as a module (its ``main`` not run)."""
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
