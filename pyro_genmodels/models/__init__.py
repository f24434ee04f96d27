"""Model families: one file each, or a small subpackage (``sequence/``) or a few files
(``vae*.py``, ``energy*.py``) where a family grew: the model apart from its engine."""

from . import autoregressive  # noqa: F401  (the old path of .sequence, kept importable)
from .diffusion import Diffusion
from .energy import EnergyModel
from .flow import Flow
from .gan import GAN
from .gaussian import Gaussian
from .mixture import GaussianMixture
from .ppca import PPCA
from .score import ScoreModel
from .sequence import AutoregressiveModel, NGram
from .vae import VAE

__all__ = ["GAN", "PPCA", "VAE", "AutoregressiveModel", "Diffusion", "EnergyModel", "Flow", "Gaussian",
           "GaussianMixture", "NGram", "ScoreModel"]
