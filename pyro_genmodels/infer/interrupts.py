"""What counts as a Ctrl-C: a ``KeyboardInterrupt``, and one that TorchScript wrapped.

Every path that keeps what it has at a Ctrl-C (the optimization loop, Pyro's MCMC, the
energy samplers) catches ``KeyboardInterrupt``. A traced graph that calls back into
Python (Pyro's traced potentials and ELBOs do, through ``pyro.ops.special.safe_log``, an
autograd Function) turns a Ctrl-C landing there into TorchScript's ``RuntimeError``,
which those paths would take for a failure: :func:`script_interrupt` recognizes it, and
they raise ``KeyboardInterrupt`` in its place.
"""

from __future__ import annotations

import re

_WRAPPED = re.compile(r"^RuntimeError: KeyboardInterrupt\b", re.MULTILINE)


def script_interrupt(error: BaseException) -> bool:
    """Whether ``error`` is a Ctrl-C that TorchScript's interpreter wrapped: a
    ``RuntimeError`` whose message has the line ``RuntimeError: KeyboardInterrupt: ...``."""
    return isinstance(error, RuntimeError) and _WRAPPED.search(str(error)) is not None


__all__ = ["script_interrupt"]
