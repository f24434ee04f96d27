"""Support of tests/test_fuzz.py: which case stands for each registered family, the tiny
fit budgets, snapshots of models and fits, and the one judge of every fuzzed call.

The judge (:func:`judge`) says what a public entry point may do with any input: return a
valid result, or raise ``ValueError`` / ``TypeError`` (a few documented exceptions: a
:class:`~pyro_genmodels.FitError` from ``fit``, ``NotImplementedError`` from the density
of a family without one) whose message names an argument of the call and says what was
expected, raised by the library itself (or by Python's own argument binding), never by
torch, Pyro or NumPy from deep inside. A call must not change the model or the fit it
was given: :func:`snapshot` before, :func:`assert_unchanged` after, bit for bit.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import re
import signal
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch

import pyro_genmodels as pgm
from tests.cases import CASES

PACKAGE_DIR = os.path.dirname(os.path.abspath(pgm.__file__))
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------------- families and cases
def family_of(case_name: str) -> str:
    return CASES[case_name].make_model().registry_name


def family_cases() -> Dict[str, List[str]]:
    """``{registered family: [its case names]}`` for every family of ``pgm.registry()``
    (a family without a case maps to ``[]``, which the tests refuse)."""
    out: Dict[str, List[str]] = {name: [] for name in sorted(pgm.registry())}
    for case_name in CASES:
        out.setdefault(family_of(case_name), []).append(case_name)
    return out


FAMILY_CASES = family_cases()
#: the case that stands for each family in the default run (its first case)
FAMILY_CASE = {f: cases[0] for f, cases in FAMILY_CASES.items() if cases}

#: option -> the most it may be in a fuzzed fit (tiny budgets: every fit takes < 1 s)
_TINY = {"num_steps": 3, "num_samples": 4, "warmup_steps": 3, "num_posterior_samples": 5,
         "num_chains": 2, "mcmc_steps": 3, "buffer_size": 64, "max_tree_depth": 3}


def tiny_options(case_name: str, method: str) -> Dict[str, Any]:
    """The case's fast options of ``method`` with every budget cut to :data:`_TINY`."""
    opts = dict(CASES[case_name].fast_options[method])
    names = set(type(CASES[case_name].make_model()).engine(method).option_names())
    for k, most in _TINY.items():
        if k in opts:
            opts[k] = min(opts[k], most)
        elif k == "max_tree_depth" and k in names:
            opts[k] = most
        elif k in names and k in ("num_steps", "num_samples", "warmup_steps",
                                  "num_posterior_samples"):
            opts[k] = most
    return opts


def data_kind(case_name: str) -> str:
    """``"numeric"`` rows, ``"text"`` strings, ``"tokens"`` id lists, ``"padded"`` ids
    with ``lengths=`` / ``mask=``."""
    d = CASES[case_name].make_data(0)
    if isinstance(d.x, torch.Tensor) and d.x.is_floating_point():
        return "numeric"
    if isinstance(d.x, torch.Tensor):
        return "padded"
    return "text" if isinstance(d.x[0], str) else "tokens"


def make_fit(case_name: str, method: str, seed: int = 0):
    case = CASES[case_name]
    d = case.make_data(0)
    return case.make_model().fit(d.x, method=method, seed=seed, progress=False, **d.kw,
                                 **tiny_options(case_name, method))


# ---------------------------------------------------------------------- snapshots
def _freeze(v: Any) -> Any:
    """A deep, comparable copy: tensors as (dtype, shape, raw bytes), so NaN == NaN."""
    if isinstance(v, torch.Tensor):
        t = v.detach().cpu().contiguous().reshape(-1)
        raw = t.view(torch.uint8) if t.dtype != torch.bool and t.numel() else t
        return ("tensor", str(t.dtype), tuple(v.shape), raw.numpy().tobytes())
    if isinstance(v, dict):
        return ("dict", tuple((k, _freeze(u)) for k, u in v.items()))
    if isinstance(v, (list, tuple)):
        return (type(v).__name__, tuple(_freeze(u) for u in v))
    if isinstance(v, float) and math.isnan(v):
        return ("nan",)
    if isinstance(v, torch.nn.Module):
        return ("module", _freeze(v.state_dict()))
    try:
        return copy.deepcopy(v)
    except Exception:  # noqa: BLE001 - an object without deepcopy: compare by identity
        return ("id", id(v))


def snapshot(obj: Any) -> Dict[str, Any]:
    """What must not change: a model's weights, buffers and configuration; a fit's
    estimate, posterior draws, losses, data, options, and its model's state."""
    if isinstance(obj, pgm.Fit):
        return {"point": _freeze(obj.point), "posterior": _freeze(obj.posterior),
                "losses": _freeze(obj.losses), "data": _freeze(obj.data),
                "context": _freeze(obj.context), "options": _freeze(obj.options),
                "method": obj.method, "seed": obj.seed,
                "sample_stats": _freeze(obj.sample_stats), "model": snapshot(obj.model)}
    return {"state": _freeze(obj.state_dict()), "config": _freeze(obj.get_config()),
            "dtype": str(obj._anchor.dtype)}


def assert_unchanged(before: Dict[str, Any], obj: Any, what: str) -> None:
    after = snapshot(obj)
    changed = [k for k in before if before[k] != after[k]]
    if "model" in before and before["model"] != after["model"]:
        changed += [f"model.{k}" for k in before["model"] if before["model"][k] != after["model"][k]]
        changed.remove("model")
    assert not changed, f"the call changed {what}: {changed}"


# ---------------------------------------------------------------------- the judge
@dataclasses.dataclass
class Outcome:
    result: Any = None
    error: Optional[BaseException] = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _innermost(err: BaseException) -> Tuple[str, int, str]:
    tb = err.__traceback__
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    if last is None:
        return "?", 0, "?"
    code = last.tb_frame.f_code
    return os.path.abspath(code.co_filename), last.tb_lineno, code.co_name


def _where(path: str) -> str:
    for root, label in ((PACKAGE_DIR, "pyro_genmodels"), (TESTS_DIR, "tests")):
        if path.startswith(root + os.sep):
            return label + path[len(root):]
    return path


def _mentions(message: str, name: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", message,
                     re.IGNORECASE) is not None


class FuzzFailure(AssertionError):
    """A property broke; the message says which call, what came back, and from where."""


_BINDING = re.compile(r"^[\w.]+\(\) got an unexpected keyword argument '(\w+)'$")


def _binding_error(err: BaseException, names: Iterable[str]) -> bool:
    """Python's own refusal of a keyword the user passed (also where a decorator such as
    ``torch.no_grad()`` wraps the method, or ``**options`` are passed on)."""
    m = _BINDING.match(str(err)) if isinstance(err, TypeError) else None
    return m is not None and m.group(1) in set(names)


#: CPU seconds that one fuzzed call may take: more is a hang (the default run's calls
#: take well under a second each)
CALL_CPU_LIMIT = 20.0


class _Hang(BaseException):
    """Raised into a call that ran past :data:`CALL_CPU_LIMIT` (a BaseException, so that
    neither the library's ``except Exception`` nor its Ctrl-C handling swallows it)."""


def _on_hang(signum, frame):
    raise _Hang()


@contextlib.contextmanager
def cpu_limit(seconds: float):
    """Interrupt the body after ``seconds`` of this process's CPU time (``SIGVTALRM``:
    pytest-timeout's ``SIGALRM`` is left alone). Only in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGVTALRM, _on_hang)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, old)


def judge(call: Callable[[], Any], *, what: str, names: Iterable[str],
          allowed: Tuple[type, ...] = (ValueError, TypeError),
          unnamed: Tuple[type, ...] = (NotImplementedError, pgm.FitError)) -> Outcome:
    """Run ``call``: its result, or a clean refusal (an ``allowed`` exception raised by
    the library or by argument binding, whose message names one of ``names``; an
    ``unnamed`` one, such as a family's "no density" or a diverged fit, need not name an
    argument). Anything else fails the test with the call's description ``what``."""
    try:
        with cpu_limit(CALL_CPU_LIMIT):
            return Outcome(result=call())
    except _Hang:
        raise FuzzFailure(f"{what}\n  did not return within {CALL_CPU_LIMIT:g} s of CPU "
                          f"time: a hang") from None
    except (KeyboardInterrupt, SystemExit, FuzzFailure):
        raise
    except BaseException as err:  # noqa: BLE001 - the point is to look at any error
        path, line, func = _innermost(err)
        where = f"{_where(path)}:{line} in {func}"
        msg = str(err)
        head = f"{what}\n  raised {type(err).__module__}.{type(err).__name__}: {msg[:600]}" \
               f"\n  innermost frame: {where}"
        if not isinstance(err, allowed):
            raise FuzzFailure(f"{head}\n  expected a result or one of "
                              f"{[e.__name__ for e in allowed]}") from err
        if _binding_error(err, names):
            return Outcome(error=err)
        if not (path.startswith(PACKAGE_DIR + os.sep) or path.startswith(TESTS_DIR + os.sep)):
            raise FuzzFailure(f"{head}\n  a bare error from inside {_where(path)}, not a "
                              f"check of the library's own") from err
        names = sorted(set(names))
        if not isinstance(err, unnamed) and not any(_mentions(msg, n) for n in names):
            raise FuzzFailure(f"{head}\n  the message names none of the arguments "
                              f"{names}") from err
        return Outcome(error=err)


# ---------------------------------------------------------------------- result checks
def check_log_prob(lp: Any, n: int, *, finite: bool, below: float, what: str) -> None:
    assert isinstance(lp, torch.Tensor), f"{what}: log_prob returned {type(lp).__name__}"
    assert lp.shape == (n,), f"{what}: log_prob has shape {tuple(lp.shape)}, expected ({n},)"
    assert lp.is_floating_point(), f"{what}: log_prob has dtype {lp.dtype}"
    assert not torch.isnan(lp).any(), f"{what}: log_prob has NaN at rows " \
        f"{torch.isnan(lp).nonzero().flatten().tolist()[:10]}"
    assert not (lp == math.inf).any(), f"{what}: log_prob is +inf"
    if finite:
        assert torch.isfinite(lp).all(), f"{what}: log_prob not finite at rows " \
            f"{(~torch.isfinite(lp)).nonzero().flatten().tolist()[:10]}: " \
            f"{lp[~torch.isfinite(lp)][:5].tolist()}"
    assert (lp <= below).all(), f"{what}: log_prob above {below}: {lp.max().item()}"


def check_draws(s: Any, n: int, kind: str, *, dim: Optional[int], vocab_size: Optional[int],
                what: str) -> None:
    """``n`` well-formed draws: finite rows ``(n, dim)``, strings, or 1-D id tensors."""
    if kind == "numeric":
        assert isinstance(s, torch.Tensor), f"{what}: sample returned {type(s).__name__}"
        assert s.shape == (n, dim), f"{what}: sample shape {tuple(s.shape)}, expected ({n}, {dim})"
        assert torch.isfinite(s).all(), f"{what}: sample has non-finite values " \
            f"{s[~torch.isfinite(s)][:5].tolist()}"
        return
    assert isinstance(s, list) and len(s) == n, f"{what}: sample returned " \
        f"{type(s).__name__} of length {len(s) if hasattr(s, '__len__') else '?'}, expected {n}"
    for seq in s:
        if kind == "text":
            assert isinstance(seq, str), f"{what}: a draw is {type(seq).__name__}"
        else:
            assert isinstance(seq, torch.Tensor) and seq.dtype == torch.long and seq.dim() == 1, \
                f"{what}: a draw is {seq!r}"
            if vocab_size is not None and seq.numel():
                assert int(seq.min()) >= 0 and int(seq.max()) < vocab_size, \
                    f"{what}: token ids outside [0, {vocab_size}): {seq.tolist()}"


def vocab_size_of(model) -> Optional[int]:
    return getattr(model, "vocab_size", None)


def finite_params(fit, what: str) -> None:
    for k, v in fit.params.items():
        assert torch.isfinite(v).all(), f"{what}: fit.params[{k!r}] is not finite"
    for k, v in fit.model.state_dict().items():
        if v.is_floating_point():
            assert torch.isfinite(v).all(), f"{what}: the fit's model state {k!r} is not finite"


def short(v: Any, limit: int = 120) -> str:
    """A readable one-line description of an input (tensors by dtype and shape)."""
    if isinstance(v, torch.Tensor):
        return f"tensor({tuple(v.shape)}, {v.dtype})"
    if isinstance(v, np.ndarray):
        return f"ndarray({v.shape}, {v.dtype})"
    if hasattr(v, "shape") and hasattr(v, "dtypes"):
        return f"DataFrame({v.shape})"
    r = repr(v)
    return r if len(r) <= limit else r[:limit] + "..."
