r"""Variational autoencoders: a deep latent-variable model trained by amortized SVI.

The generative model (the *decoder*) draws a code and decodes it,

.. math::

    z_i \sim \mathcal N(0, I_L), \qquad x_i \mid z_i \sim p_\phi(x_i \mid z_i[, c_i]),

and the *encoder* is an amortized guide :math:`q_\psi(z_i \mid x_i[, c_i]) =
\mathcal N(\mu_\psi(x_i), \operatorname{diag} \sigma^2_\psi(x_i))`. Both are trained
together on the evidence lower bound

.. math::

    \log p_\phi(x) \ge \mathrm{ELBO}(x) = \mathbb E_{q_\psi(z \mid x)}
        [\log p_\phi(x \mid z) + \log p(z) - \log q_\psi(z \mid x)],

and the likelihood is estimated by importance weighting with K draws (IWAE),

.. math::

    \widehat{\log p}_K(x) = \log \frac1K \sum_{k=1}^K
        \frac{p_\phi(x, z_k)}{q_\psi(z_k \mid x)}, \quad z_k \sim q_\psi(\cdot \mid x),

a stochastic lower bound whose expectation increases with K to :math:`\log p_\phi(x)`
(so ``log_prob_kind == "estimate"``; K = 1 is the ELBO's one-sample estimate).

The decoder weights are phi: ``mle`` trains them as point estimates; ``map`` adds an
isotropic Gaussian prior :math:`w \sim \mathcal N(0, s^2)` on every decoder weight as
the factor site ``weight_prior`` (exactly L2 weight decay :math:`\|w\|^2 / (2 s^2)`).
The encoder weights are variational parameters (of the guide, not of the model) and
carry no prior.

References:
    Kingma & Welling (2014), *Auto-Encoding Variational Bayes*, ICLR.
    Rezende, Mohamed & Wierstra (2014), *Stochastic Backpropagation and Approximate
    Inference in Deep Generative Models*, ICML.
    Burda, Grosse & Salakhutdinov (2016), *Importance Weighted Autoencoders*, ICLR.
    Loaiza-Ganem & Cunningham (2019), *The continuous Bernoulli: fixing a pervasive error
    in variational autoencoders*, NeurIPS.
    Sohn, Lee & Yan (2015), *Learning Structured Output Representation using Deep
    Conditional Generative Models*, NeurIPS.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from .._rng import seeded
from .._validation import (as_data, check_bool, check_choice, check_column_names,
                           positive_float, positive_int)
from ..base import (Capabilities, GenerativeModel, cached_parameters,
                    gaussian_weight_log_prior, register)
from ..infer.objectives import data_plate, plate_rows, prior_factor
from ..fit import Fit, _chunk_rows, _rows_of, chunked, draw_count
from .vae_engine import VAEEngine
from ._checks import check_network, hidden_widths
from .vae_parts import (StandardNormal, _Generative, check_dequantizable, check_support, mlp,
                         one_hot_labels)

LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "gaussian", "categorical")

#: default number of importance samples of :meth:`VAEFit.log_prob`
NUM_PARTICLES = 100

#: hidden widths of the default encoder and decoder (``hidden=None``)
HIDDEN = (256,)


class VAEFit(Fit):
    """A fitted :class:`VAE`: ``log_prob`` is the IWAE estimate, plus ``elbo``,
    ``encode``, ``decode`` and ``reconstruct``. Estimates are drawn under ``seed``
    (default 0), so they are reproducible and never touch the caller's RNG."""

    model: VAE

    @torch.no_grad()
    def log_prob(self, x: Any, *, c: Any = None, num_particles: int = NUM_PARTICLES,
                 seed: Optional[int] = 0) -> torch.Tensor:
        r"""IWAE estimate of ``log p(x_i[ | c_i])`` per row, shape ``(N,)``:
        :math:`\log \frac1K \sum_k p(x, z_k) / q(z_k \mid x)` with K = ``num_particles``.
        A lower bound in expectation, tightening to ``log p(x)`` as K grows."""
        x = self._as_input(x)
        return self.model.iwae(x, self._as_context(c, x.shape[0]),
                               num_particles=num_particles, seed=seed)

    def _check_grid(self, dequantize: bool = False) -> None:
        if dequantize and self.model.likelihood in ("bernoulli", "categorical"):
            raise ValueError(f"VAE(likelihood={self.model.likelihood!r}) scores the grid "
                             f"values themselves: uniform noise added to them leaves its "
                             f"support; pass dequantize=False (bits per dimension "
                             f"-log2 p(x) / D with bin_width=1)")

    @torch.no_grad()
    def bits_per_dim(self, x: Any, *, c: Any = None, bin_width: float = 1.0,
                     dequantize: bool = True, seed: Optional[int] = 0,
                     **log_prob_options: Any) -> float:
        """:meth:`Fit.bits_per_dim`. Dequantizing adds U[0, ``bin_width``) to each value:
        rows it would push out of a bounded support (the continuous Bernoulli's [0, 1]:
        the largest value plus ``bin_width`` must stay at most 1) are refused first."""
        if dequantize:
            self._check_grid(dequantize)
            x = self._as_input(x)  # Fit.bits_per_dim takes the checked tensor as it is
            check_dequantizable(self.model.likelihood, x, positive_float(bin_width,
                                                                         "bin_width"))
        return super().bits_per_dim(x, c=c, bin_width=bin_width, dequantize=dequantize,
                                    seed=seed, **log_prob_options)

    @torch.no_grad()
    def elbo(self, x: Any, *, c: Any = None, num_particles: int = 1,
             seed: Optional[int] = 0) -> torch.Tensor:
        """The ELBO per row ``(N,)``, averaged over ``num_particles`` draws of z."""
        x = self._as_input(x)
        return self.model.elbo_estimate(x, self._as_context(c, x.shape[0]),
                                        num_particles=num_particles, seed=seed)

    @torch.no_grad()
    def encode(self, x: Any, *, c: Any = None) -> torch.Tensor:
        """Posterior mean of the code, E_q[z | x[, c]]: ``(N, L)``."""
        x = self._as_input(x)
        return self.model.posterior(x, self._as_context(c, x.shape[0]))[0]

    @torch.no_grad()
    def decode(self, z: Any, *, c: Any = None) -> torch.Tensor:
        """E[x | z[, c]], the mean of the observation model, for codes ``z`` ``(N, L)``:
        ``(N, D)`` (Bernoulli: probabilities; categorical: the expected category)."""
        z = as_data(z, dim=self.model.latent_dim, name="z", device=self._device,
                    dtype=self.model._anchor.dtype)
        ctx = self._as_context(c, z.shape[0], rows="codes (rows of z)")
        return self.model.observation_mean(self.model.decoder_output(z, ctx))

    @torch.no_grad()
    def reconstruct(self, x: Any, *, c: Any = None) -> torch.Tensor:
        """``decode(encode(x))``: ``(N, D)``."""
        x = self._as_input(x)
        ctx = self._as_context(c, x.shape[0])
        z = self.model.posterior(x, ctx)[0]
        return self.model.observation_mean(self.model.decoder_output(z, ctx))

    @torch.no_grad()
    def sample(self, n: int, *, c: Any = None, seed: Optional[int] = None,
               mean: bool = False) -> torch.Tensor:
        """``n`` ancestral draws ``z ~ N(0, I)``, ``x ~ p(x | z[, c])``: ``(n, D)``.
        ``mean=True`` returns the decoded means E[x | z] instead of draws of x. ``c``:
        one ``int`` label for all rows, or ``(n,)`` labels. Drawn chunk after chunk of
        rows from one stream under ``seed``, as ``Fit.sample`` draws."""
        n, mean = draw_count(n), check_bool(mean, "mean")
        ctx = self._as_context(c, n, rows="draws")
        with seeded(seed):
            return chunked(n, self._rows(), lambda a, b: self.model.sample_given(
                {}, b - a, _rows_of(ctx, a, b), mean=mean))

    def _as_context(self, c: Any, num_rows: int, rows: str = "data rows"
                    ) -> Optional[torch.Tensor]:
        """:meth:`Fit._as_context`; a wrong number of labels is said against ``rows``."""
        check_column_names(c, self.info.get("context_columns"), "c", "context_columns")
        return self.model.validate_context(c, num_rows, device=self._device,
                                           dtype=self.model._anchor.dtype, rows=rows)


@register
class VAE(GenerativeModel):
    r"""A variational autoencoder ``p(x)`` or, with ``num_classes``, ``p(x | c)`` (CVAE).

    Args:
        dim: D, the number of columns of the data.
        latent_dim: L, the width of the code z.
        likelihood: the observation model ``p(x | z)``, a factorized distribution over
            the D columns whose parameters the decoder outputs:

            * ``"bernoulli"`` (default): data in {0, 1}; the decoder outputs D logits.
            * ``"continuous_bernoulli"``: data in [0, 1] (e.g. grey levels / 17); D
              logits of the continuous Bernoulli, a normalized density on [0, 1].
            * ``"gaussian"``: real data; the decoder outputs the D means, and the scale is
              one learned scalar s (or ``obs_scale`` fixed): ``N(x; mean, s^2 I)``.
            * ``"categorical"``: each column an integer category in 0..K-1 (e.g. digits'
              grey levels 0..16 with ``num_categories=17``); the decoder outputs D * K
              logits, read as ``(D, K)``. The encoder sees ``x / (K - 1)``.
        hidden: hidden widths of the default encoder and decoder MLPs (ReLU); ``None``
            (default) is ``(256,)``, ``()`` makes both linear (with ``"gaussian"``:
            PPCA). It shapes only the default networks: another than the default, given
            with a custom encoder *and* decoder, is refused (with one of them custom, it
            shapes the other).
        encoder: a custom ``nn.Module`` mapping ``(N, D + C)`` to ``(N, 2 L)``; the input
            is the data (categorical: divided by K - 1) concatenated with the one-hot
            label (C = ``num_classes``, 0 when unconditional); the output's first L
            columns are the posterior mean, the last L pass through
            ``softplus(.) + 1e-5`` to give the posterior sd.
        decoder: a custom ``nn.Module`` mapping ``(N, L + C)`` (code, one-hot label) to
            ``(N, D)`` (``(N, D * K)`` for ``"categorical"``): logits, or the Gaussian
            mean. A linear decoder with ``likelihood="gaussian"`` makes the model PPCA.
            ``Fit.save`` stores custom networks' weights, not their code: load with
            ``pgm.load(path, model=...)``, a model built the same way.
        num_classes: C, the number of classes of a conditional VAE ``p(x | c)``; ``c`` is
            then integer labels in 0..C-1, shape ``(N,)`` (or one ``int`` for all rows),
            one-hot encoded and fed to both the encoder and the decoder.
        num_categories: K, for ``likelihood="categorical"`` (at least 2).
        obs_scale: ``"gaussian"`` only: a fixed observation sd; ``None`` learns it.
            In the data's units, unless ``standardize=True`` is passed with it (then in
            standardized units).
        prior_scale: s, sd of the Gaussian prior on every decoder weight (``map``).
        standardize: ``"gaussian"`` only (its default there, unless ``obs_scale`` is
            given): the networks work on standardized columns ``u = (x - m) / sd`` (m,
            sd the training rows' column means and sds, fixed when the fit starts): the
            encoder sees u, the decoder's output is the mean of u, and the observation
            model is the exact image in x's units, ``N(x; m + sd * out, (sd * s)^2)``,
            so ``log_prob`` is the density of the raw data, Jacobian included. Raw
            columns (wine's proline in the hundreds, its hue near 1) then fit as well as
            standardized ones. ``False`` (the textbook model, e.g. for the PPCA identity
            below) decodes x itself.

    Sample sites: the factor ``weight_prior`` (log N(w; 0, s^2) over the decoder
    weights, masked by ``mle``), and in the plate ``data`` the local latent ``z``
    ``(N, L)`` and the observed ``x`` ``(N, D)``. The guide :meth:`local_guide` is the
    encoder. ``fit`` returns a :class:`VAEFit` (``log_prob`` by IWAE, ``elbo``,
    ``encode``, ``decode``, ``reconstruct``).

    Example:
        >>> import torch, pyro_genmodels as pgm
        >>> from pyro_genmodels.models.vae import VAE
        >>> x, labels = pgm.datasets.load_digits(binarize=True)
        >>> fit = VAE(64, 4, hidden=(32,)).fit(x[:256], method="mle", num_steps=20,
        ...                                    seed=0, progress=False)
        >>> fit.log_prob(x[:5], num_particles=10).shape, fit.sample(3, seed=0).shape
        (torch.Size([5]), torch.Size([3, 64]))
        >>> fit.encode(x[:5]).shape, fit.reconstruct(x[:5]).shape
        (torch.Size([5, 4]), torch.Size([5, 64]))
    """

    registry_name = "vae"
    capabilities = Capabilities(log_prob="estimate", sampling="ancestral",
                                methods=("mle", "map"), conditional=True)
    global_sites = ()
    engines = {m: VAEEngine(m) for m in ("mle", "map")}
    fit_class = VAEFit

    def __init__(self, dim: int, latent_dim: int, *, likelihood: str = "bernoulli",
                 hidden: Union[int, Sequence[int], None] = None,
                 encoder: Optional[nn.Module] = None,
                 decoder: Optional[nn.Module] = None, num_classes: Optional[int] = None,
                 num_categories: Optional[int] = None, obs_scale: Optional[float] = None,
                 prior_scale: float = 1.0, standardize: Optional[bool] = None) -> None:
        super().__init__(dim)
        self.latent_dim = positive_int(latent_dim, "latent_dim")
        self.likelihood = check_choice(likelihood, LIKELIHOODS, "likelihood")
        self.hidden = hidden_widths(HIDDEN if hidden is None else hidden)
        if self.hidden != HIDDEN and encoder is not None and decoder is not None:
            # the default is taken: every such fit saved records it, and loads
            raise ValueError(f"hidden shapes the default encoder and decoder only, and both are "
                             f"custom here: expected no hidden (or the default {HIDDEN}) with "
                             f"encoder= and decoder=, but got hidden={hidden!r}. Drop it, or "
                             f"leave out encoder or decoder to build that one from hidden")
        self.num_classes = None if num_classes is None else positive_int(num_classes,
                                                                          "num_classes")
        self.context_dim = self.num_classes
        if likelihood == "categorical":
            if num_categories is None:
                raise ValueError("likelihood='categorical' needs num_categories=K (data are "
                                 "integers 0..K-1 in every column)")
            self.num_categories: Optional[int] = positive_int(num_categories, "num_categories")
            if self.num_categories < 2:
                raise ValueError(f"Expected num_categories >= 2, but got {num_categories}")
        elif num_categories is not None:
            raise ValueError(f"num_categories is for likelihood='categorical', not "
                             f"{likelihood!r}")
        else:
            self.num_categories = None
        if obs_scale is not None and likelihood != "gaussian":
            raise ValueError(f"obs_scale is for likelihood='gaussian', not {likelihood!r}")
        self.obs_scale = None if obs_scale is None else positive_float(obs_scale, "obs_scale")
        self.prior_scale = positive_float(prior_scale, "prior_scale")
        if standardize is None:
            standardize = likelihood == "gaussian" and obs_scale is None
        if not isinstance(standardize, bool):
            raise TypeError(f"Expected standardize to be a bool or None, but got "
                            f"{standardize!r}")
        if standardize and likelihood != "gaussian":
            raise ValueError(f"standardize=True is for likelihood='gaussian' (real columns), "
                             f"not {likelihood!r}")
        self.standardize = standardize
        # the training rows' column means and sds (set when a fit starts; see working_copy);
        # saved only when used, so fits saved before this option still load
        self.register_buffer("shift", torch.zeros(self.dim), persistent=standardize)
        self.register_buffer("x_scale", torch.ones(self.dim), persistent=standardize)
        for name, net in (("encoder", encoder), ("decoder", decoder)):
            if net is not None and not isinstance(net, nn.Module):
                raise TypeError(f"Expected {name} to be a torch.nn.Module, but got "
                                f"{type(net).__name__}")
        self.custom = {"encoder": encoder is not None, "decoder": decoder is not None}
        cdim = self.num_classes or 0
        out = self.dim * (self.num_categories or 1)
        self.encoder = encoder if encoder is not None else mlp(
            (self.dim + cdim, *self.hidden, 2 * self.latent_dim))
        decoder = decoder if decoder is not None else mlp(
            (self.latent_dim + cdim, *self.hidden, out))
        learned = likelihood == "gaussian" and obs_scale is None
        self.generative = _Generative(decoder, torch.zeros(()) if learned else None)
        self._check_networks()

    @property
    def decoder(self) -> nn.Module:
        """The decoder network, from z ``(N, latent_dim)`` (with the label) to the likelihood's
        parameters."""
        return self.generative.decoder

    @property
    def prior_sites(self) -> Tuple[str, ...]:
        return ("weight_prior",)

    def _check_networks(self) -> None:
        """Run both networks once (:func:`~pyro_genmodels.models._checks.check_network`):
        a shape mismatch fails here, not mid-fit."""
        cdim = self.num_classes or 0
        check_network(self.encoder, "encoder", [("x", self.dim + cdim, 0.0)],
                      [2 * self.latent_dim])
        check_network(self.decoder, "decoder", [("z", self.latent_dim + cdim, 0.0)],
                      [self.dim * (self.num_categories or 1)])

    # ------------------------------------------------------------------ the networks
    def _encoder_input(self, x: torch.Tensor, c: Optional[torch.Tensor]) -> torch.Tensor:
        x = self.to_unit(x)
        if self.num_categories is not None:
            x = x / (self.num_categories - 1)
        return x if c is None else torch.cat([x, c], -1)

    def posterior(self, x: torch.Tensor, c: Optional[torch.Tensor] = None
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The encoder's ``(mean, sd)`` of q(z | x[, c]), each ``(N, L)``."""
        h = self.encoder(self._encoder_input(x, c))
        loc, raw = h[..., :self.latent_dim], h[..., self.latent_dim:]
        return loc, F.softplus(raw) + 1e-5

    def decoder_output(self, z: torch.Tensor, c: Optional[torch.Tensor] = None
                       ) -> torch.Tensor:
        """The decoder's raw output for codes ``z`` ``(..., L)`` (and one-hot ``c``), the
        leading dimensions flattened into the ``(N, L + C)`` rows the network takes."""
        if c is not None:
            c = c.expand(z.shape[:-1] + c.shape[-1:])
            z = torch.cat([z, c], -1)
        return self.decoder(z.reshape(-1, z.shape[-1])).reshape(*z.shape[:-1], -1)

    def observation(self, out: torch.Tensor) -> dist.TorchDistribution:
        """``p(x | z)`` from the decoder output: a distribution with event shape ``(D,)``."""
        lik = self.likelihood
        if lik == "bernoulli":
            return dist.Bernoulli(logits=out).to_event(1)
        if lik == "continuous_bernoulli":
            return dist.ContinuousBernoulli(logits=out).to_event(1)
        if lik == "gaussian":  # standardized: u ~ N(out, s^2) is x ~ N(m + sd out, (sd s)^2)
            scale = self.scale.expand(out.shape)
            if self.standardize:
                return dist.Normal(self.from_unit(out), self.x_scale * scale).to_event(1)
            return dist.Normal(out, scale).to_event(1)
        k = self.num_categories
        assert k is not None  # set with likelihood="categorical"
        logits = out.reshape(out.shape[:-1] + (self.dim, k))
        return dist.Categorical(logits=logits).to_event(1)

    def log_likelihood(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``log p(x | z)`` per row from the decoder output ``out``: :meth:`observation`'s
        ``log_prob(x)``, shape ``out.shape[:-1]``; for the Bernoulli by the fused
        ``binary_cross_entropy_with_logits`` (the same value, half the time of building
        the distribution: it sits in every training step)."""
        if self.likelihood == "bernoulli":
            return -F.binary_cross_entropy_with_logits(
                out, x.expand(out.shape), reduction="none").sum(-1)
        return self.observation(out).log_prob(x)

    def observation_mean(self, out: torch.Tensor) -> torch.Tensor:
        """E[x | z] from the decoder output: ``(..., D)`` (categorical: the expected
        category index, sum_k k p_k)."""
        if self.likelihood != "categorical":
            return self.observation(out).mean
        num = self.num_categories
        assert num is not None  # set with likelihood="categorical"
        logits = out.reshape(out.shape[:-1] + (self.dim, num))
        k = torch.arange(num, dtype=out.dtype, device=out.device)
        return (logits.softmax(-1) * k).sum(-1)

    @property
    def scale(self) -> torch.Tensor:
        """The Gaussian observation sd s (a 0-d tensor)."""
        if self.likelihood != "gaussian":
            raise AttributeError(f"scale is for likelihood='gaussian', not {self.likelihood!r}")
        if self.generative.log_scale is not None:
            return self.generative.log_scale.exp()
        return torch.tensor(self.obs_scale, **self._factory)

    def _weights(self):
        return cached_parameters(self, self.decoder)

    def weight_log_prior(self) -> torch.Tensor:
        """``sum_w log N(w; 0, prior_scale^2)`` over every decoder weight."""
        return gaussian_weight_log_prior(self._weights(), self.prior_scale)

    # ------------------------------------------------------------------ the Pyro program
    def model(self, x: Optional[torch.Tensor] = None, *, c: Optional[torch.Tensor] = None,
              num_data: Optional[int] = None, subsample_size: Optional[int] = None,
              subsample: Optional[torch.Tensor] = None) -> torch.Tensor:
        r"""The decoder as a Pyro program.

        Args:
            x: ``(N, D)`` observations or ``None`` (draw from the prior predictive).
            c: ``(N, C)`` one-hot labels (conditional models).
            num_data: with ``x``: the size of the data set that ``x`` is a uniformly drawn
                minibatch of (the likelihood is scaled by ``num_data / N``); without:
                how many points to draw.
            subsample_size, subsample: subsample the plate (``x`` is then the whole
                data set): a random subset of that size, or these row indices.
        """
        pyro.module("decoder", self.generative)
        prior_factor("weight_prior", self.weight_log_prior)
        plate = data_plate(x, c, num_data, subsample_size, subsample)
        with plate as idx:
            assert idx is not None  # a vectorized plate yields its indices
            ctx = plate_rows(c, idx, plate.size)
            obs = plate_rows(x, idx, plate.size, "x")
            like = self._anchor if obs is None else obs
            z = pyro.sample("z", StandardNormal(self.latent_dim, idx.shape[:1],
                                                dtype=like.dtype, device=like.device))
            return pyro.sample("x", self.observation(self.decoder_output(z, ctx)), obs=obs)

    def local_guide(self, x: Optional[torch.Tensor] = None, *,
                    c: Optional[torch.Tensor] = None, num_data: Optional[int] = None,
                    subsample_size: Optional[int] = None,
                    subsample: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The encoder q(z | x[, c]) as a Pyro guide (same signature as :meth:`model`)."""
        if x is None:
            raise ValueError("The VAE guide needs data x to encode")
        pyro.module("encoder", self.encoder)
        plate = data_plate(x, c, num_data, subsample_size, subsample)
        with plate as idx:
            assert idx is not None  # a vectorized plate yields its indices
            ctx = plate_rows(c, idx, plate.size)
            obs = plate_rows(x, idx, plate.size, "x")
            loc, scale = self.posterior(obs, ctx)
            return pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    # ------------------------------------------------------------------ estimates
    def log_weights(self, x: torch.Tensor, c: Optional[torch.Tensor] = None, *,
                    num_particles: int = 1, z: Optional[torch.Tensor] = None) -> torch.Tensor:
        r"""Importance log-weights :math:`\log p(x, z_k) - \log q(z_k \mid x)` with
        :math:`z_k \sim q(\cdot \mid x)`: shape ``(K, N)``. Pass ``z`` ``(K, N, L)`` to
        evaluate given codes instead of drawing them."""
        loc, scale = self.posterior(x, c)
        q = dist.Normal(loc, scale).to_event(1)
        if z is None:
            z = q.rsample((num_particles,))
        prior = StandardNormal(self.latent_dim, loc.shape[:-1], dtype=loc.dtype,
                               device=loc.device)
        lik = self.log_likelihood(self.decoder_output(z, c), x)
        return lik + prior.log_prob(z) - q.log_prob(z)

    def _chunked(self, fn: Callable, x: torch.Tensor, c: Optional[torch.Tensor],
                 num_particles: int) -> torch.Tensor:
        width = self.dim * (self.num_categories or 1) + max(self.hidden or (1,))
        return chunked(x.shape[0], _chunk_rows(num_particles * width), lambda a, b: fn(
            self.log_weights(x[a:b], _rows_of(c, a, b), num_particles=num_particles)))

    @torch.no_grad()
    def iwae(self, x: torch.Tensor, c: Optional[torch.Tensor] = None, *,
             num_particles: int = NUM_PARTICLES, seed: Optional[int] = 0) -> torch.Tensor:
        r"""The IWAE estimate :math:`\log \frac1K \sum_k w_k` of :math:`\log p(x_i)`, per
        row: ``(N,)``. Drawn under ``seed`` (the caller's RNG is untouched)."""
        k = positive_int(num_particles, "num_particles")
        with seeded(seed):
            return self._chunked(lambda lw: lw.logsumexp(0) - math.log(k), x, c, k)

    @torch.no_grad()
    def elbo_estimate(self, x: torch.Tensor, c: Optional[torch.Tensor] = None, *,
                      num_particles: int = 1, seed: Optional[int] = 0) -> torch.Tensor:
        """The ELBO per row, averaged over ``num_particles`` draws of z: ``(N,)``."""
        k = positive_int(num_particles, "num_particles")
        with seeded(seed):
            return self._chunked(lambda lw: lw.mean(0), x, c, k)

    # ------------------------------------------------------------------ engine hooks
    def validate_data(self, data: Any, *, name: str = "data",
                      device: torch.device | str | None = None,
                      dtype: torch.dtype | None = None) -> torch.Tensor:
        """Check ``data`` as :meth:`GenerativeModel.validate_data` does, and that its values
        suit the likelihood (0/1 for ``bernoulli``, [0, 1] for ``continuous_bernoulli``,
        categories for ``categorical``)."""
        x = as_data(data, dim=self.dim, name=name, device=device, dtype=dtype)
        check_support(self.likelihood, x, name, self.num_categories)
        return x

    def validate_context(self, c: Any, num_rows: int, *,
                         device: torch.device | str | None = None,
                         dtype: torch.dtype | None = None,
                         rows: str = "data rows") -> Optional[torch.Tensor]:
        """Integer labels ``c`` (``(N,)``, or one ``int`` / one label for all rows; a
        one-hot ``(N, C)`` array is accepted too) -> one-hot ``(N, C)`` of ``dtype``.
        ``rows``: what the ``num_rows`` rows are, for the message of a wrong count."""
        k = self.num_classes
        if k is None:
            if c is not None:
                raise ValueError("This VAE is unconditional (num_classes=None), so c must be "
                                 "None; build VAE(..., num_classes=C) to model p(x | c)")
            return None
        if c is None:
            raise ValueError(f"This VAE is conditional (num_classes={k}): pass c, integer "
                             f"class labels in 0..{k - 1} of shape (N,) or one int")
        return one_hot_labels(c, k, num_rows, rows=rows, device=device, dtype=dtype)

    def init_values(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {}

    def log_prob_given(self, params: Dict[str, torch.Tensor], x: torch.Tensor,
                       c: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The IWAE estimate with :data:`NUM_PARTICLES` draws under seed 0."""
        return self.iwae(x, c)

    def sample_given(self, params: Dict[str, torch.Tensor], n: int,
                     c: Optional[torch.Tensor] = None, *, mean: bool = False) -> torch.Tensor:
        z = torch.randn(n, self.latent_dim, **self._factory)
        out = self.decoder_output(z, c)
        return self.observation_mean(out) if mean else self.observation(out).sample()

    @classmethod
    def saved_config(cls, config: Dict[str, Any], modules: Any) -> Dict[str, Any]:
        both = {"encoder", "decoder"} <= set(modules)  # hidden, unused, was saved as given
        return {**config, "hidden": list(HIDDEN)} if both else config

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments; a custom encoder or decoder is the module itself, which
        ``Fit.save`` stores as weights only (``load(path, model=...)`` reads it back)."""
        config = {"dim": self.dim, "latent_dim": self.latent_dim,
                  "likelihood": self.likelihood,
                  "hidden": list(self.hidden),
                  "num_classes": self.num_classes, "num_categories": self.num_categories,
                  "obs_scale": self.obs_scale, "prior_scale": self.prior_scale,
                  "standardize": self.standardize}
        for name, custom in self.custom.items():
            if custom:
                config[name] = getattr(self, name)
        return config

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, latent_dim={self.latent_dim}, likelihood={self.likelihood!r}"
                f", num_classes={self.num_classes}")


