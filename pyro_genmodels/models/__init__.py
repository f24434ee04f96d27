"""Model families, one file each."""

from .gaussian import Gaussian

__all__ = ["Gaussian"]
