"""Model families, one file each."""

from .energy import EnergyModel
from .flow import Flow
from .gaussian import Gaussian
from .mixture import GaussianMixture
from .ppca import PPCA
from .vae import VAE

__all__ = ["EnergyModel", "Flow", "Gaussian", "GaussianMixture", "PPCA", "VAE"]
