"""Files replaced whole: written beside their place, then renamed over it.

``os.replace`` is atomic within one file system, so a reader sees the old file or the
new one, and an error or a Ctrl-C while writing leaves the old one (a killed process may
leave the temporary file, never a torn target). Saved fits (:mod:`pyro_genmodels.io`)
add fsyncs and a two-file commit on top of the same rename, in their own protocol.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Callable, Optional


def replace_with(path: Path, writer: Callable[[Path], Any], *,
                 tmp: Optional[Path] = None) -> Path:
    """``writer(tmp)`` on a temporary file beside ``path``, then ``tmp`` renamed over
    ``path``; the temporary file is removed when writing fails. ``tmp`` defaults to a
    name of its own per call (``.tmp-<random>-<name>``: it ends as ``path`` does, since
    ``numpy.save`` appends ``.npy`` to a name without it, and two writers never share
    it); a single writer that may be killed passes a fixed one, which the next write
    then replaces rather than leaving one more behind. Returns ``path``."""
    if tmp is None:
        tmp = path.with_name(f".tmp-{secrets.token_hex(8)}-{path.name}")
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
