"""The ``pyro-genmodels`` command.

::

    pyro-genmodels demo [--quick] [--out DIR] [--jobs N]
    pyro-genmodels list
    pyro-genmodels fit MODEL --data FILE.csv|FILE.npy|FILE.txt --method M --out RUN
                       [--arg key=value ...] [--option key=value ...] [--seed S]
                       [--distributed [--bind-cores]]
    pyro-genmodels sample RUN -n N --out FILE.csv|FILE.npy|FILE.txt [--seed S]
                          [--prefix P] [--temperature T] [--top-k K] [--max-length L]

Numeric models read and write ``(N, D)`` arrays (.csv or .npy). Text models (``ngram``,
``autoregressive``) read and write .txt files, one string per line (UTF-8; a blank line
is the empty string); a token-id model (``--arg vocab_size=K``) one sequence per line,
its integer ids separated by spaces (a blank line is the empty sequence), and the summary
after its fit is in nats per token. ``--prefix``, ``--temperature``, ``--top-k`` and
``--max-length`` are their sampling options (a token-id model's prefix: its ids separated
by spaces). What a data file may hold is in ``_readers``; a file that cannot be read
is one line on stderr, ``error: FILE, line L, column C (NAME): found ..., expected ...``,
status 1, and nothing is written. Warnings are ``warning: ...`` lines on stderr, but for
torch's own deprecations inside its compiler (``compile=True``), which no user can act on.
Ctrl-C during ``fit`` saves what the fit has, marked interrupted, and the status is 130
(the shell's for SIGINT), as it is when the fit had nothing yet to keep. Ctrl-C in any
other command is one line on stderr, ``interrupted``, and status 130 too (the file
``sample`` writes appears whole or not at all).

``fit --distributed`` trains data-parallel (``distributed=True``) on the workers that
``torchrun`` starts::

    torchrun --nproc_per_node=2 -m pyro_genmodels fit gaussian --data x.csv --method map \
        --out RUN --distributed --option batch_size=256

Every rank reads the data and fits; rank 0 alone writes the run directory and prints the
summary (the others wait until the fit is saved, then exit quietly). An error is printed
by rank 0 as ``error: ...`` and by the first worker of every other node as
``error: [rank r] ...``; every worker that meets it exits with status 1. With
``--bind-cores`` each worker first binds itself to its share of the node's cores
(:func:`~pyro_genmodels.infer.distributed.bind_to_cores`; on CPU, one rank per core is
faster bound).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np

from . import _cli_files as files


#: the shell's spellings of Python's True, False and None (``--arg standardize=false``)
def _check_model_args(cls: type, model: str, kwargs: Dict[str, Any], *,
                      given_dim: bool) -> None:
    """``--arg`` names against ``cls``'s constructor, before the data are read: an
    unknown name (with the closest known ones) or a missing required one (``dim``, when
    ``given_dim``, comes from the data's columns) is said in the command's terms. A
    constructor that takes ``**kwargs`` (a flow's, for zuko) checks its own extras."""
    import difflib
    import inspect

    signature = inspect.signature(cls).parameters.values()
    params = [p for p in signature if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    names = [p.name for p in params]
    free = any(p.kind is p.VAR_KEYWORD for p in signature)
    unknown = [] if free else sorted(set(kwargs) - set(names))
    if unknown:  # each named, with the known names closest to it
        said = []
        for key in unknown:
            close = difflib.get_close_matches(key, names, n=2)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            said.append(f"no argument {key!r} (--arg {key}=...).{hint}")
        raise SystemExit(f"error: {model} has {' It has '.join(said)} "
                         f"Its arguments: {', '.join(names)}")
    missing = [p.name for p in params if p.default is p.empty and p.name not in kwargs
               and not (given_dim and p.name == "dim")]
    if missing:
        given = " ".join(f"--arg {m}=..." for m in missing)
        others = ", ".join(n for n in names if n not in missing) or "none"
        raise SystemExit(f"error: {model} needs {given} (required; its other arguments: "
                         f"{others})")


def _check_flags(args, counts: Dict[str, str]) -> None:
    """The command's numeric flags, each refused by the name the user typed (the Python
    API's messages name its parameters): ``counts`` maps the ``args`` attributes that
    must be positive when given to their flags; ``--seed`` and ``--temperature`` are
    checked where the command has them."""
    for name, flag in counts.items():
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SystemExit(f"error: {flag} must be a positive integer, got {value}")
    seed = getattr(args, "seed", None)
    if seed is not None and not 0 <= seed < 2**32:
        raise SystemExit(f"error: --seed must be an integer in [0, 2**32 - 1], got {seed}")
    t = getattr(args, "temperature", None)
    if t is not None and not (math.isfinite(t) and t > 0):
        raise SystemExit(f"error: --temperature must be > 0 and finite, got {t}")


#: rows of the training data that the summary after a streamed fit scores
SUMMARY_ROWS = 10000


def _cmd_list(args) -> int:
    from .base import registry

    rows = [(name, cls.__name__, f"log_prob={cls.capabilities.log_prob}",
             f"sampling={cls.capabilities.sampling}",
             f"methods={','.join(cls.capabilities.methods)}")
            for name, cls in sorted(registry().items())]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:  # columns as wide as their widest cell, two spaces apart
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4])
    return 0


def _launch_rank() -> int:
    """This process's rank: the initialized process group's, else torchrun's ``RANK``."""
    from .infer import distributed

    group = distributed.current()
    if group is not None:
        return group.rank
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _cmd_fit(args) -> int:
    from .infer import distributed

    wanted = args.distributed
    try:
        wanted = wanted or files.parse_pairs(args.option, "--option").get("distributed") is True
    except SystemExit:
        pass  # _fit says it
    if args.bind_cores and not wanted:
        raise SystemExit("error: --bind-cores binds the workers of a distributed fit: add "
                         "--distributed (and start the command with torchrun)")
    if not wanted:
        return _fit(args, rank=0)
    if args.bind_cores:
        try:
            distributed.bind_to_cores()  # before the fit starts the group and its threads
        except ValueError as e:  # LOCAL_RANK / LOCAL_WORLD_SIZE not torchrun's
            raise SystemExit(f"error: --bind-cores: {e}") from None
    rank, ours = _launch_rank(), distributed.current() is None
    try:
        with warnings.catch_warnings():
            if rank != 0:  # rank 0 says them: every rank fits the same data alike
                warnings.simplefilter("ignore")
            code = _fit(args, rank=rank)
    except SystemExit as e:
        # rank 0 prints the error; so does the first worker of every other node (its
        # workers may have met an error of their own, e.g. a data file missing there),
        # saying which rank it is; the other workers leave with the status alone
        if rank == 0 or not isinstance(e.code, str):
            raise
        if os.environ.get("LOCAL_RANK", "0") != "0":
            raise SystemExit(1) from None
        raise SystemExit(e.code.replace("error: ", f"error: [rank {rank}] ", 1)) from None
    if ours and distributed.current() is not None:
        # the group fit() started for this command: down once saved (no warning at exit)
        import torch.distributed as dist

        dist.destroy_process_group()
    return code


def _fit(args, rank: int) -> int:
    """``fit`` on one process; with ``rank`` > 0 (a distributed fit's other workers) it
    fits and waits for rank 0's save, printing nothing."""
    from ._rng import seeded
    from .base import FitError, get_model_class
    from ._validation import first_line
    from .io import _check_target, _is_fit_dir
    from ._memory import out_of_memory
    from .infer.distributed import RankFailure

    _check_flags(args, {})
    try:
        cls = get_model_class(args.model)
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    text = files.is_text_model(cls)
    kwargs = files.parse_pairs(args.arg, "--arg")
    _check_model_args(cls, args.model, kwargs, given_dim=not text)
    cond = [k for k in ("context_dim", "num_classes") if kwargs.get(k) is not None]
    if cond:  # before the data are read or --out made
        raise SystemExit(f"error: --arg {cond[0]}={kwargs[cond[0]]!r} makes {args.model} "
                         f"conditional, but the command line takes no c (each row's "
                         f"condition): fit conditional models from Python, model.fit(x, "
                         f"c=...), or leave {cond[0]} unset")
    files.output_dir(args.out)  # and what save would refuse, before a long fit is lost to it
    try:
        _check_target(Path(args.out))
    except ValueError as e:
        raise SystemExit(f"error: --out: {e}") from None
    columns: Optional[List[str]] = None  # a .csv header's names, kept for `sample`
    ids = text and files.token_ids(kwargs)  # ids, as sample writes them
    x: Union[List[Any], np.ndarray]
    x, columns = ((files.read_lines(args.data, ids, kwargs.get("vocab_size")), None) if text
                  else files.read_table(args.data))
    if isinstance(x, np.ndarray):  # numeric rows (not a text model's lines)
        kwargs.setdefault("dim", int(x.shape[1]))
    options = files.parse_pairs(args.option, "--option", flags={
        "seed": "--seed N", "progress": "--quiet (progress bars are on without it)",
        "method": "--method", "data": "--data", "x": "--data"})
    if args.distributed:
        options["distributed"] = True
    ck, out = options.get("checkpoint"), Path(os.path.realpath(args.out))  # links, ".." resolved
    inside = isinstance(ck, str) and Path(os.path.realpath(ck)).is_relative_to(out)
    if inside and not _is_fit_dir(out):
        raise SystemExit(f"error: --option checkpoint={ck} is inside --out {args.out}, which "
                         f"must then hold the fit alone: put it beside (e.g. {args.out}-ck)")
    try:
        with seeded(args.seed):  # a network's initial weights too come from --seed
            model = cls(**kwargs)
        if columns:  # a DataFrame: the fit keeps the names, and its messages say them
            import pandas as pd

            data: Any = pd.DataFrame(x, columns=columns)
        else:
            data = x
        fit = model.fit(data, method=args.method, seed=args.seed,
                        progress=not args.quiet and rank == 0, **options)
    except (ValueError, TypeError, FitError, FileNotFoundError, RankFailure) as e:
        raise SystemExit(f"error: {files.row_said(e, args.data)}")
    except KeyboardInterrupt:  # a fit keeps what it has; this one had nothing yet
        print(f"interrupted before the fit had anything to keep (in an MCMC warmup, or "
              f"before its first step): nothing saved to {args.out}", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as e:  # e.g. --arg hidden=[100000,100000]
        if not out_of_memory(e):
            raise
        raise SystemExit(f"error: the {args.model} model or its fit does not fit in memory "
                         f"({first_line(e) or type(e).__name__})") from None
    try:
        fit.save(args.out)  # distributed: rank 0 writes, the others wait until it is there
    except (RankFailure, ValueError) as e:
        raise SystemExit(f"error: {e}")
    except OSError as e:
        raise SystemExit(f"error: cannot write the run directory {args.out} ({e.strerror})")
    # Ctrl-C: what the fit had is saved, and the status says it is not the fit asked for
    status = 130 if fit.interrupted else 0
    if rank != 0:
        return status
    print(f"{fit!r} saved to {args.out}")
    if fit.sample_stats and fit.posterior:
        from .arviz import chain_summary

        print(chain_summary(fit))
    if text:
        total = fit.log_prob(x).sum().item()
        chars = sum(len(s) + 1 for s in x)  # the end token counts as a character (token)
        print(f"training data: mean log p(x) {round(total / len(x), 4) + 0.0:.4f}, "
              f"{round(-total / chars, 4) + 0.0:.4f} nats per "
              f"{'token' if ids else 'character'} (end token included)")
        return status
    import torch

    # a streamed fit keeps no rows: score the first SUMMARY_ROWS of the file
    rows = fit.data if fit.data is not None else torch.as_tensor(
        np.array(x[:SUMMARY_ROWS]), dtype=fit.model._anchor.dtype)
    which = "the training data" if fit.data is not None else f"the first {len(rows)} rows"
    from . import metrics

    if fit.log_prob_kind == "none" and len(rows) < metrics.MIN_ROWS:  # saved: no traceback
        print(f"no density (log_prob: none); {which} ({len(rows)} row"
              f"{'s' * (len(rows) != 1)}) are too few to score draws against (MMD needs "
              f"{metrics.MIN_ROWS})")
    elif fit.log_prob_kind == "none":  # no density: score the draws against the data
        score = metrics.mmd(rows, fit.sample(min(len(rows), 5000), seed=0))
        print(f"no density (log_prob: none); MMD^2 of draws to {which}: "
              f"{score.estimate:.4g} +- {score.stderr:.2g}")
    else:
        said = {"bound": " (a lower bound)", "estimate": " (an estimate)"}.get(
            fit.log_prob_kind, "")  # the kind, or the number reads as exact
        print(f"mean log p(x) on {which}{said}: {fit.log_prob(rows).mean().item():.4f}")
    if fit.info.get("best_step") is not None:
        print(f"held-out loss {fit.info['best_heldout_loss']:.4f} per row at step "
              f"{fit.info['best_step']} (kept); stopped: {fit.info['stopped'] or 'num_steps'}")
    return status


#: torch's deprecation of a function its own compiler calls (Inductor, ``compile=True``)
_TORCH_OWN = r"`torch\._prims_common\.check` is deprecated"


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                  line: Any = None) -> None:
    """A warning as the command line says it: one ``warning:`` line on stderr, not the
    source line of the library that raised it."""
    print(f"warning: {message}", file=sys.stderr)


def _cmd_sample(args) -> int:
    from ._validation import first_line
    from ._memory import out_of_memory
    from .io import load

    _check_flags(args, {"n": "-n", "top_k": "--top-k", "max_length": "--max-length"})
    try:
        fit = load(args.run)
    except (OSError, ValueError) as e:  # OSError: e.g. a directory others may not read
        raise SystemExit(f"error: {e}")
    if fit.model.is_conditional:
        raise SystemExit(f"error: {args.run!r} holds a conditional {type(fit.model).__name__}, "
                         f"but the command line takes no c (each draw's condition): sample "
                         f"it from Python, pgm.load(run).sample(n, c=...)")
    seq = {"prefix": args.prefix, "temperature": args.temperature, "top_k": args.top_k,
           "max_length": args.max_length}
    seq = {k: v for k, v in seq.items() if v is not None}
    if args.prefix is not None and getattr(fit.model, "token_mode", False):
        # token ids on the command line as sample writes them: separated by spaces
        try:
            seq["prefix"] = [int(v) for v in args.prefix.split()]
        except ValueError:
            raise SystemExit(f"error: --prefix of a token-id model is its ids separated by "
                             f"spaces, as sample writes them (e.g. --prefix '3 1 4'), but got "
                             f"{args.prefix!r}") from None
    text, suffix = files.is_text_model(type(fit.model)), Path(args.out).suffix.lower()
    if text and suffix != ".txt":
        raise SystemExit(f"error: a text model writes a .txt file (one string per "
                         f"line), got --out {args.out!r}")
    if not text and suffix not in (".csv", ".npy"):
        raise SystemExit(f"error: --out must end in .csv or .npy, got {args.out!r}")
    if not text and seq:
        verb = "applies" if len(seq) == 1 else "apply"
        raise SystemExit(f"error: {', '.join('--' + k.replace('_', '-') for k in seq)} "
                         f"{verb} only to text models; {args.run!r} holds a "
                         f"{type(fit.model).__name__}")
    try:
        x = fit.sample(args.n, seed=args.seed, **seq)
    except (ValueError, TypeError) as e:
        raise SystemExit(f"error: {e}")
    except (MemoryError, RuntimeError) as e:
        if not out_of_memory(e):
            raise
        size = f" of up to {args.max_length} tokens" if args.max_length is not None else ""
        raise SystemExit(f"error: cannot draw -n {args.n} samples{size}: they do not fit in "
                         f"memory ({first_line(e) or type(e).__name__})") from None
    if text:
        lines = files.text_lines(x)
        files.write(args.out, lambda p: p.write_text("".join(line + "\n" for line in lines),
                                                encoding="utf-8"))
    else:
        rows = x.cpu().numpy()
        names = fit.info.get("columns")  # the training .csv's header, if it had one
        names = names if isinstance(names, list) and len(names) == rows.shape[1] else None
        files.write(args.out, lambda p: files.save_array(p, rows, names))
    print(f"{args.n} samples written to {args.out}")
    return 0


def _cmd_demo(args) -> int:
    from .demo import run

    _check_flags(args, {"jobs": "--jobs"})
    files.output_dir(args.out)
    try:
        index = run(args.out, quick=args.quick, progress=not args.quiet, jobs=args.jobs)
    except ValueError as e:  # refused before anything ran
        raise SystemExit(f"error: {e}") from None
    print(f"report written to {index}")
    return 0


def _cmd_report(args) -> int:
    from .report import from_runs

    heldout = None if args.heldout is None else _read_heldout(args.heldout, args.runs)
    files.output_dir(args.out)
    try:
        index = from_runs(args.runs, args.out, heldout=heldout)
    except (OSError, TypeError, ValueError) as e:  # OSError: e.g. a run others may not read
        said = e if args.heldout is None else files.row_said(e, f"--heldout {args.heldout}")
        raise SystemExit(f"error: {said}")
    print(f"report written to {index}")
    return 0


#: what each kind of run (:func:`_cli_files.run_kind`) scores
_KINDS = {"ids": ("token-id models", "ids"), "text": ("text models", "strings"),
          "rows": ("models of numeric rows", "a .csv or .npy file")}


def _read_heldout(path: str, runs: List[str]) -> Any:
    """``report --heldout``'s file, read as the runs' fits read their data: token ids or
    strings from a .txt file, rows from a .csv/.npy (a header names the columns, which
    each fit checks against its own). Runs of two kinds, or a file of the other kind, are
    refused here, naming the runs (each fit's own check names its Python argument)."""
    kinds: Dict[str, List[str]] = {}
    for run in runs:  # None: no fit to read, which load reports
        kinds.setdefault(files.run_kind(run) or "", []).append(run)
    kinds.pop("", None)
    if len(kinds) > 1:
        held = " and ".join(f"{_KINDS[k][0]} ({_KINDS[k][1]}: {', '.join(v)})"
                            for k, v in kinds.items())
        raise SystemExit(f"error: --heldout {path}: the runs hold {held}; expected one kind, "
                         f"as a held-out file is read one way: report them apart")
    kind, suffix = next(iter(kinds), None), Path(path).suffix.lower() or "suffix-less"
    if (kind == "rows") == (suffix == ".txt") and kind is not None:
        expected = ".csv or .npy file" if kind == "rows" else ".txt file, a sequence a line"
        raise SystemExit(f"error: --heldout {path}: the runs hold {_KINDS[kind][0]}, "
                         f"which score a {expected}; got a {suffix} file")
    if suffix == ".txt":
        return files.read_lines(path, kind == "ids")
    import pandas as pd

    rows, names = files.read_table(path)
    return rows if names is None else pd.DataFrame(rows, columns=names)


def build_parser() -> argparse.ArgumentParser:
    """The ``pyro-genmodels`` argument parser: one subcommand per command (``demo``,
    ``report``, ``list``, ``fit``, ``sample``)."""
    from ._version import __version__

    p = argparse.ArgumentParser(prog="pyro-genmodels",
                                description="Generative models as Pyro programs.")
    p.add_argument("--version", action="version", version=f"pyro-genmodels {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="fit the registered models on built-in data, write HTML")
    d.add_argument("--quick", action="store_true",
                   help="small budgets (about 1.5 minutes on 2 cores)")
    d.add_argument("--out", default="demo-out", help="output directory (default demo-out)")
    d.add_argument("--quiet", action="store_true", help="no progress lines or bars")
    d.add_argument("--jobs", type=int, default=None,
                   help="worker processes (default: one per CPU core; 1: all in this "
                        "process, with progress bars)")
    d.set_defaults(func=_cmd_demo)

    r = sub.add_parser("report", help="the demo's HTML report of saved fits (run directories)")
    r.add_argument("runs", nargs="+", metavar="RUN_DIR", help="directories written by fit.save")
    r.add_argument("--out", default="report-out", help="output directory (default report-out)")
    r.add_argument("--heldout", default=None,
                   help="held-out data to score every fit on (.csv/.npy; text: .txt)")
    r.set_defaults(func=_cmd_report)

    sub.add_parser("list", help="models, their capabilities and methods").set_defaults(
        func=_cmd_list)

    f = sub.add_parser("fit", help="fit a model to a .csv/.npy/.txt file and save the run")
    f.add_argument("model", help="registered model name (see `list`)")
    f.add_argument("--data", required=True,
                   help="(N, D) data, .csv or .npy; text models: .txt, one string per line "
                        "(token-id models: integer ids separated by spaces)")
    f.add_argument("--method", required=True, help="mle, map, vi, nuts, ...")
    f.add_argument("--out", required=True, help="run directory to write")
    f.add_argument("--seed", type=int, default=0,
                   help="seeds the whole run: the model's initial weights and the fit "
                        "(default 0)")
    f.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                   help="model constructor argument (repeatable), e.g. prior_scale=5; "
                        "values are Python literals (true/false/none also)")
    f.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="fit option (repeatable), e.g. num_steps=500")
    f.add_argument("--quiet", action="store_true", help="no progress bars")
    f.add_argument("--distributed", action="store_true",
                   help="data-parallel fit on the workers torchrun starts "
                        "(torchrun --nproc_per_node=N -m pyro_genmodels fit ...): "
                        "batch_size is the global batch; rank 0 saves and prints")
    f.add_argument("--bind-cores", action="store_true",
                   help="with --distributed: bind each worker to its share of the cores "
                        "(LOCAL_RANK of LOCAL_WORLD_SIZE), as taskset would")
    f.set_defaults(func=_cmd_fit)

    s = sub.add_parser("sample", help="draw samples from a saved run")
    s.add_argument("run", help="run directory written by `fit`")
    s.add_argument("-n", type=int, required=True, help="number of samples")
    s.add_argument("--out", required=True,
                   help="output file, .csv or .npy; text models: .txt")
    s.add_argument("--seed", type=int, default=None,
                   help="seeds the draws (default: a fresh seed each run)")
    s.add_argument("--prefix", default=None,
                   help="text models: a prompt every sample continues (token-id models: "
                        "ids separated by spaces)")
    s.add_argument("--temperature", type=float, default=None, help="text models: logits / T")
    s.add_argument("--top-k", type=int, default=None, help="text models: top-k sampling")
    s.add_argument("--max-length", type=int, default=None,
                   help="text models: most tokens per sample, prefix included")
    s.set_defaults(func=_cmd_sample)
    return p


def _one_line(msg: str) -> str:
    """An ``error: ...`` message as the one line the command promises: a C++ backtrace
    that torch appends to some errors is dropped, and line breaks (in a library's
    message, or a file name) become spaces."""
    msg = msg.split("\nException raised from ", 1)[0]
    head, rest = ("error: ", msg[7:]) if msg.startswith("error: ") else ("", msg)
    return head + " ".join(part.strip() for part in rest.splitlines() if part.strip())


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            warnings.filterwarnings("ignore", _TORCH_OWN, FutureWarning)
            return args.func(args)
    except KeyboardInterrupt:  # Ctrl-C outside a fit (which keeps what it has): no traceback
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:
        if isinstance(e.code, str):
            raise SystemExit(_one_line(e.code)) from None
        raise


if __name__ == "__main__":
    sys.exit(main())
