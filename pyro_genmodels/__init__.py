"""pyro-genmodels: generative models as real Pyro programs behind one fit/sample API.

>>> import pyro_genmodels as pgm
>>> sorted(pgm.registry())
['energy', 'flow', 'gaussian', 'gaussian_mixture', 'ppca', 'vae']
"""

from . import datasets, divergences, mc
from .base import Capabilities, Fit, FitError, GenerativeModel, registry
from .compare import compare, prior_sweep
from .io import load
from .models import PPCA, VAE, EnergyModel, Flow, Gaussian, GaussianMixture

__version__ = "0.1.0"

__all__ = ["PPCA", "VAE", "Capabilities", "EnergyModel", "Fit", "FitError", "Flow", "Gaussian", "GaussianMixture",
           "GenerativeModel", "__version__", "compare", "datasets", "divergences", "load", "mc",
           "prior_sweep", "registry"]
