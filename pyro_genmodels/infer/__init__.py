"""Inference engines shared by every model family, keyed by ``method``.

Each engine is ``engine(model, x, *, progress, **options) -> dict`` of :class:`~pyro_genmodels.Fit`
fields; its keyword-only arguments are exactly the options it accepts, and its
``validate_options(model, x, **options)`` checks them before any work starts.
"""

from .mcmc import fit_hmc, fit_nuts
from .point import FlatPriors, fit_map, fit_mle
from .svi import SVIResult, run_svi
from .variational import fit_vi

ENGINES = {"mle": fit_mle, "map": fit_map, "vi": fit_vi, "nuts": fit_nuts, "hmc": fit_hmc}

__all__ = ["ENGINES", "FlatPriors", "SVIResult", "fit_hmc", "fit_map", "fit_mle", "fit_nuts",
           "fit_vi", "run_svi"]
