"""The model is a plain Pyro program: use it with stock Pyro, then compare with the facade.

``pgm.Gaussian(...).model`` is an ordinary Pyro model, so any Pyro inference runs on it:
here stock ``SVI`` with an ``AutoMultivariateNormal`` guide and stock ``MCMC(NUTS)``,
next to the facade's ``fit(method="vi")``, which does the same with seeds, a NaN guard
and an owned, saveable result.

    python examples/pyro_program.py
"""

from __future__ import annotations

import argparse

import pyro
from pyro.infer import MCMC, NUTS, SVI, Trace_ELBO
from pyro.infer.autoguide import AutoMultivariateNormal

import pyro_genmodels as pgm


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--num-steps", type=int, default=2000)
    p.add_argument("--num-samples", type=int, default=500)
    return p.parse_args(argv)


def main(args):
    x, truth = pgm.datasets.correlated_gaussian(args.n, dim=2, seed=0)
    model = pgm.Gaussian(2, covariance=truth.covariance_matrix)

    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    guide = AutoMultivariateNormal(model.model)
    svi = SVI(model.model, guide, pyro.optim.Adam({"lr": 0.02}), Trace_ELBO())
    for _ in range(args.num_steps):
        svi.step(x)
    stock_vi = guide.median(x)["loc"]

    mcmc = MCMC(NUTS(model.model), num_samples=args.num_samples,
                warmup_steps=args.num_samples, disable_progbar=True)
    mcmc.run(x)
    stock_nuts = mcmc.get_samples()["loc"].mean(0)

    facade = model.fit(x, method="vi", seed=0, num_steps=args.num_steps, progress=False)
    print(f"true loc           {truth.loc.numpy()}")
    print(f"stock SVI median   {stock_vi.detach().numpy()}")
    print(f"stock NUTS mean    {stock_nuts.numpy()}")
    print(f"facade vi mean     {facade.params['loc'].numpy()}")
    return stock_vi.detach(), stock_nuts, facade.params["loc"], x.mean(0)


if __name__ == "__main__":
    main(parse_args())
