"""What the demo's sections share: figures as PNG for the HTML report, and running a
section on one torch thread."""

from __future__ import annotations

import base64
import contextlib
import io
from typing import Iterator

import torch


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op torch thread inside, the caller's count restored after. The demo's
    networks are small: on a busy 2-core machine two threads made the GAN section 186 s
    instead of 22 s (measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def png_bytes(fig) -> bytes:
    """The figure as PNG bytes (80 dpi), closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def png(fig) -> str:
    """The figure as base64 PNG for an ``<img src='data:...'>``, closed."""
    return base64.b64encode(png_bytes(fig)).decode()


__all__ = ["one_thread", "png", "png_bytes"]
