"""Model families, one file each."""

from .autoregressive import AutoregressiveModel, NGram
from .energy import EnergyModel
from .flow import Flow
from .gaussian import Gaussian
from .mixture import GaussianMixture
from .ppca import PPCA
from .vae import VAE

__all__ = ["AutoregressiveModel", "EnergyModel", "Flow", "Gaussian", "GaussianMixture", "NGram", "PPCA", "VAE"]
