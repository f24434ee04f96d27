"""pyro-genmodels: generative models as real Pyro programs behind one fit/sample API.

>>> import pyro_genmodels as pgm
>>> sorted(pgm.registry())
['autoregressive', 'diffusion', 'energy', 'flow', 'gan', 'gaussian', 'gaussian_mixture', 'ngram', 'ppca', 'score', 'vae']
"""

from . import datasets, diagnostics, divergences, mc, metrics
from ._rng import seeded
from ._version import __version__
from .base import Capabilities, Fit, FitError, GenerativeModel, registry
from .compare import compare, prior_sweep
from .io import LoadError, load
from .models import (GAN, PPCA, VAE, AutoregressiveModel, Diffusion, EnergyModel, Flow,
                     Gaussian, GaussianMixture, NGram, ScoreModel)

__all__ = ["GAN", "PPCA", "VAE", "AutoregressiveModel", "Capabilities", "Diffusion",
           "EnergyModel", "Fit",
           "FitError", "Flow", "Gaussian", "GaussianMixture", "GenerativeModel", "LoadError",
           "NGram",
           "__version__", "compare", "datasets", "diagnostics", "divergences", "load", "mc", "metrics",
           "prior_sweep", "registry", "ScoreModel", "seeded"]
