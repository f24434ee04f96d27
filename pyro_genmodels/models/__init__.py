"""Model families, one file each."""

from .flow import Flow
from .gaussian import Gaussian
from .mixture import GaussianMixture
from .ppca import PPCA

__all__ = ["Flow", "Gaussian", "GaussianMixture", "PPCA"]
