"""Model families, one file each."""

from .flow import Flow
from .gaussian import Gaussian

__all__ = ["Flow", "Gaussian"]
