"""The ``pyro-genmodels`` command.

::

    pyro-genmodels demo [--quick] [--out DIR]
    pyro-genmodels list
    pyro-genmodels fit MODEL --data FILE.csv|FILE.npy --method M --out RUN
                       [--arg key=value ...] [--option key=value ...] [--seed S]
    pyro-genmodels sample RUN -n N --out FILE.csv|FILE.npy [--seed S]
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np


def _parse_pairs(pairs: List[str], what: str) -> Dict[str, Any]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: {what} must look like key=value, got {pair!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _read_data(path: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise SystemExit(f"error: no data file {path!r}")
    if p.suffix == ".npy":
        return np.load(p, allow_pickle=False)
    if p.suffix == ".csv":
        try:
            return np.loadtxt(p, delimiter=",", ndmin=2)
        except ValueError:  # a header row
            return np.loadtxt(p, delimiter=",", ndmin=2, skiprows=1)
    raise SystemExit(f"error: data must be a .csv or .npy file, got {path!r}")


def _write_data(path: str, x: np.ndarray) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix == ".npy":
        np.save(p, x)
    elif p.suffix == ".csv":
        np.savetxt(p, x, delimiter=",")
    else:
        raise SystemExit(f"error: --out must end in .csv or .npy, got {path!r}")


def _cmd_list(args) -> int:
    from .base import registry

    for name, cls in sorted(registry().items()):
        caps = cls.capabilities
        print(f"{name:18s} {cls.__name__:22s} log_prob={caps.log_prob:13s} "
              f"sampling={caps.sampling:10s} methods={','.join(caps.methods)}")
    return 0


def _cmd_fit(args) -> int:
    from .base import FitError, get_model_class

    try:
        cls = get_model_class(args.model)
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    x = _read_data(args.data)
    kwargs = _parse_pairs(args.arg, "--arg")
    kwargs.setdefault("dim", int(x.shape[1]) if x.ndim == 2 else 1)
    options = _parse_pairs(args.option, "--option")
    try:
        model = cls(**kwargs)
        fit = model.fit(x, method=args.method, seed=args.seed, progress=not args.quiet,
                        **options)
    except (ValueError, TypeError, FitError) as e:
        raise SystemExit(f"error: {e}")
    fit.save(args.out)
    print(f"{fit!r} saved to {args.out}")
    print(f"mean log p(x) on the training data: {fit.log_prob(fit.data).mean().item():.4f}")
    return 0


def _cmd_sample(args) -> int:
    from .io import load

    try:
        fit = load(args.run)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}")
    x = fit.sample(args.n, seed=args.seed)
    _write_data(args.out, x.cpu().numpy())
    print(f"{args.n} samples written to {args.out}")
    return 0


def _cmd_demo(args) -> int:
    from .demo import run

    index = run(args.out, quick=args.quick, progress=not args.quiet)
    print(f"report written to {index}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyro-genmodels",
                                description="Generative models as Pyro programs.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="fit the registered models on built-in data, write HTML")
    d.add_argument("--quick", action="store_true", help="small budgets (under a minute)")
    d.add_argument("--out", default="demo-out", help="output directory (default demo-out)")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=_cmd_demo)

    sub.add_parser("list", help="models, their capabilities and methods").set_defaults(
        func=_cmd_list)

    f = sub.add_parser("fit", help="fit a model to a .csv/.npy file and save the run")
    f.add_argument("model", help="registered model name (see `list`)")
    f.add_argument("--data", required=True, help="(N, D) data, .csv or .npy")
    f.add_argument("--method", required=True, help="mle, map, vi, nuts, ...")
    f.add_argument("--out", required=True, help="run directory to write")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                   help="model constructor argument (repeatable), e.g. prior_scale=5")
    f.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="fit option (repeatable), e.g. num_steps=500")
    f.add_argument("--quiet", action="store_true", help="no progress bars")
    f.set_defaults(func=_cmd_fit)

    s = sub.add_parser("sample", help="draw samples from a saved run")
    s.add_argument("run", help="run directory written by `fit`")
    s.add_argument("-n", type=int, required=True, help="number of samples")
    s.add_argument("--out", required=True, help="output file, .csv or .npy")
    s.add_argument("--seed", type=int, default=None)
    s.set_defaults(func=_cmd_sample)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
