"""GaussianMixture benchmark: time to reach scikit-learn's log-likelihood.

    python benchmarks/bench_mixture.py            # 10k x 8, K=4 and 100k x 32, K=16 (diag)
    python benchmarks/bench_mixture.py --small    # a quick smoke run

Data: ``pgm.datasets.clusters(..., diagonal=True)``, a diagonal mixture (so both fits aim
at the same optimum rather than at different local optima of a misspecified model).
Baseline: ``sklearn.mixture.GaussianMixture(K, covariance_type="diag")`` with its
defaults (k-means initialization, ``tol=1e-3``, one start), timed in this process; its
final log-likelihood is the target. The facade (``method="mle"``: EM from its default
``n_init=5`` k-means starts) runs until its log-likelihood is within 0.5% of that target
(a callback stops it, later starts included) and is timed the same way. Ratio = facade
seconds / scikit-learn seconds (goal <= 1.5), each the median of ``--repeats`` runs (the
range printed beside it), both libraries on ``--threads`` threads (default 1: torch's
intra-op threads and scikit-learn's OpenMP/BLAS pools through threadpoolctl). The last
line prints the worst ratio.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from sklearn.mixture import GaussianMixture as SkGMM
from threadpoolctl import threadpool_limits

import pyro_genmodels as pgm


def bench(n: int, dim: int, k: int, repeats: int, seed: int = 0) -> float:
    x, _, _ = pgm.datasets.clusters(n, k=k, dim=dim, seed=seed, diagonal=True)
    xn = x.numpy().astype("float64")
    sk_times, ours_times, reached = [], [], []
    for r in range(repeats):
        t = time.perf_counter()
        sk = SkGMM(k, covariance_type="diag", random_state=r).fit(xn)
        sk_times.append(time.perf_counter() - t)
        target = sk.score(xn) * n  # total log-likelihood
        goal = target - 0.005 * abs(target)
        model = pgm.GaussianMixture(dim, k, covariance_type="diag")
        t = time.perf_counter()
        fit = model.fit(x, method="mle", seed=r, progress=False, num_steps=1000,
                        callback=lambda step, loss: -loss >= goal)
        ours_times.append(time.perf_counter() - t)
        reached.append(-fit.losses[-1] >= goal)
        print(f"  run {r}: scikit-learn {sk_times[-1]:.3f}s (log-lik {target:.1f}, "
              f"{sk.n_iter_} iterations); facade {ours_times[-1]:.3f}s (log-lik "
              f"{-fit.losses[-1]:.1f}, {len(fit.losses)} iterations, "
              f"{'reached' if reached[-1] else 'did NOT reach'} target - 0.5%)")
    ours, sk_s = statistics.median(ours_times), statistics.median(sk_times)
    ratio = ours / sk_s if all(reached) else math.inf
    print(f"N={n} D={dim} K={k} diag: facade {ours:.3f}s ({min(ours_times):.3f}-"
          f"{max(ours_times):.3f}), scikit-learn {sk_s:.3f}s ({min(sk_times):.3f}-"
          f"{max(sk_times):.3f}), ratio of medians {ratio:.2f}")
    return ratio


def main(argv=None) -> float:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    configs = [(2000, 4, 3)] if args.small else [(10_000, 8, 4), (100_000, 32, 16)]
    with threadpool_limits(args.threads):
        ratios = [bench(n, d, k, 1 if args.small else args.repeats) for n, d, k in configs]
    worst = max(ratios)
    print(f"ratio (facade / scikit-learn time to scikit-learn's log-likelihood, worst "
          f"case; goal <= 1.5): {worst:.2f}")
    return worst


if __name__ == "__main__":
    main()
