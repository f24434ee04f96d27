"""Figures as PNG for the HTML report (the demo's sections share these)."""

from __future__ import annotations

import base64
import io


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


__all__ = ["png", "png_bytes"]
