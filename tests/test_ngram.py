"""NGram against its oracles: the closed-form MLE / MAP from hand-counted transitions,
normalization over every sequence up to a length, the conjugate Dirichlet posterior
(vi, nuts), and the Pyro program's own log joint."""

import itertools
import math
import re
from collections import Counter

import numpy as np
import pytest
import torch
from pyro import poutine

from pyro_genmodels.datasets import load_names
from pyro_genmodels.infer import FlatPriors
from pyro_genmodels.models.sequence import NGram, SequenceFit

DATA = ["abba", "ab", "ba", "b", "aab", "", "bbb", "abab"]


def _hand_counts(data, order, vocab):
    """Transition counts by a plain Python loop: context tuple -> Counter of next symbols."""
    counts = {}
    for s in data:
        seq = ["^"] * (order - 1) + list(s) + ["$"]
        for i in range(order - 1, len(seq)):
            ctx = tuple(seq[i - order + 1:i])
            counts.setdefault(ctx, Counter())[seq[i]] += 1
    return counts


def _hand_prob(counts, ctx, sym, V, alpha, method):
    row = counts.get(ctx, Counter())
    n = sum(row.values())
    if method == "mle":
        return row[sym] / n if n else 1 / V
    den = n + V * (alpha - 1)
    return (row[sym] + alpha - 1) / den if den else 1 / V


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("method,alpha", [("mle", 1.0), ("map", 1.0), ("map", 2.0),
                                          ("map", 3.5)])
def test_mle_and_map_equal_the_closed_forms(order, method, alpha, float64):
    fit = NGram(order, prior_concentration=alpha).fit(DATA, method=method)
    assert isinstance(fit, SequenceFit) and fit.vocab == "ab"
    counts = _hand_counts(DATA, order, "ab")
    V = 3
    for s in ["ab", "", "bba", "aaaa"]:
        seq = ["^"] * (order - 1) + list(s) + ["$"]
        expect = sum(math.log(_hand_prob(counts, tuple(seq[i - order + 1:i]), seq[i], V,
                                         alpha, method)) if _hand_prob(
            counts, tuple(seq[i - order + 1:i]), seq[i], V, alpha, method) > 0 else -math.inf
            for i in range(order - 1, len(seq)))
        got = fit.log_prob([s]).item()
        assert got == pytest.approx(expect, abs=1e-12) or (got == expect == -math.inf), s
    probs = fit.params["probs"]
    assert probs.shape == (V ** (order - 1), V)
    assert torch.allclose(probs.sum(-1), torch.ones(V ** (order - 1), dtype=torch.float64))


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_num_params_counts_the_contexts_that_can_occur(order):
    """AIC and BIC count V - 1 free probabilities per context that can occur: by brute
    force, the contexts that the strings up to length ``order`` visit (every string's
    contexts are those of its prefixes). The start symbol shares the end's id, so the
    table's rows "a token, then <start>" never occur (a 3-gram on 'ab': 7 of 9)."""
    strings = ["".join(s) for k in range(order + 1) for s in itertools.product("ab", repeat=k)]
    model = NGram(order, vocab="ab")
    fit = model.fit(strings, method="mle", progress=False)
    visited = int((fit.model.counts(fit.data).sum(-1) > 0).sum())
    assert model.num_params() == visited * (model.num_outcomes - 1)
    assert visited < model.num_contexts or order < 3


def test_add_one_smoothing_and_unseen_transitions():
    mle = NGram(2).fit(["ab", "ab"], method="mle")
    add1 = NGram(2, prior_concentration=2.0).fit(["ab", "ab"], method="map")
    # "ba" uses b -> a, never seen: probability 0 under the MLE, reported as -inf
    lp = mle.log_prob(["ab", "ba"])
    assert lp[0].item() == pytest.approx(0.0, abs=1e-6) and lp[1].item() == -math.inf
    # add-one: p(a|^) = (2+1)/(2+3), p(b|a) = 3/5, p($|b) = 3/5
    assert add1.log_prob(["ab"]).item() == pytest.approx(3 * math.log(3 / 5), abs=1e-6)
    assert torch.isfinite(add1.log_prob(["ba", "bbbb"])).all()


def _total_probability(fit, chars, max_len):
    """sum_{|s| < L} p(s, end) + sum_{|s| = L} p(s is a prefix): exactly 1."""
    ended = [("".join(t)) for n in range(max_len) for t in itertools.product(chars, repeat=n)]
    cut = ["".join(t) for t in itertools.product(chars, repeat=max_len)]
    return (fit.log_prob(ended).exp().sum()
            + fit.log_prob(cut, include_end=False).exp().sum()).item()


@pytest.mark.parametrize("order,method", [(1, "map"), (2, "mle"), (2, "map"), (3, "map")])
def test_normalization_over_all_sequences(order, method, float64):
    fit = NGram(order, prior_concentration=2.0).fit(DATA, method=method)
    for max_len in (1, 3, 6):
        assert _total_probability(fit, "ab", max_len) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("method", ["mle", "map"])
def test_closed_form_maximizes_the_pyro_log_joint(method, float64):
    """The closed form is the argmax of the model's own log joint (priors masked for
    mle): random perturbations on the simplex never do better."""
    model = NGram(2, prior_concentration=2.0, vocab="ab").double()
    fit = model.fit(DATA, method=method)
    x = fit.data
    program = FlatPriors(model.prior_sites)(model.model) if method == "mle" else model.model

    def log_joint(probs):
        cond = poutine.condition(program, data={"probs": probs})
        return poutine.trace(cond).get_trace(x).log_prob_sum().item()

    best = log_joint(fit.params["probs"])
    assert best == pytest.approx(-fit.losses[0], rel=1e-12)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        noise = torch.rand(3, 3, generator=g, dtype=torch.float64)
        other = 0.8 * fit.params["probs"] + 0.2 * noise / noise.sum(-1, keepdim=True)
        assert log_joint(other) < best


def test_posterior_concentration_and_token_data_agree_with_text(float64):
    text = NGram(2, prior_concentration=1.5).fit(DATA, method="map")
    ids = [[text.vocab.index(ch) for ch in s] for s in DATA]
    L = max(map(len, ids))
    padded = torch.tensor([s + [0] * (L - len(s)) for s in ids])
    lengths = torch.tensor([len(s) for s in ids])
    tok = NGram(2, prior_concentration=1.5, vocab_size=2).fit(padded, lengths=lengths,
                                                              method="map")
    assert torch.equal(tok.params["probs"], text.params["probs"])
    assert torch.equal(tok.log_prob(ids), text.log_prob(DATA))
    conc = text.model.posterior_concentration(text.data)
    assert conc.sum().item() == pytest.approx(sum(len(s) + 1 for s in DATA) + 9 * 1.5)


def test_vi_matches_the_dirichlet_posterior():
    data = ["ab", "abb", "ba", "a", "bab", "aab", ""] * 5  # every count >= 5
    fit = NGram(2, prior_concentration=1.0).fit(data, method="vi", seed=0, num_steps=400,
                                                lr=0.05, num_posterior_samples=2000,
                                                progress=False)
    conc = fit.model.posterior_concentration(fit.data)
    a0 = conc.sum(-1, keepdim=True)
    mean, sd = conc / a0, (conc * (a0 - conc) / (a0**2 * (a0 + 1))).sqrt()
    draws = fit.posterior_samples()["probs"]
    S = draws.shape[0]
    # a Gaussian q in the stick-breaking space is close to but not exactly a Dirichlet:
    # 0.3 sd of approximation bias plus 4 Monte Carlo standard errors
    assert ((draws.mean(0) - mean).abs() <= 0.3 * sd + 4 * sd / math.sqrt(S)).all()
    ratio = draws.std(0) / sd
    assert ((ratio > 0.7) & (ratio < 1.3)).all(), ratio


@pytest.mark.parametrize("method,chains,extra", [("nuts", 1, {}),
                                                 ("nuts", 1, {"sampler": "fused"}),
                                                 ("chees", 2, {})])
def test_mcmc_matches_the_dirichlet_posterior(method, chains, extra):
    data = ["ab", "abb", "ba", "a", "bab", ""]
    n = 300
    fit = NGram(1, prior_concentration=1.0).fit(data, method=method, seed=0,
                                                num_samples=n // chains, warmup_steps=200,
                                                num_chains=chains, progress=False, **extra)
    conc = fit.model.posterior_concentration(fit.data)[0]
    a0 = conc.sum()
    mean, sd = conc / a0, (conc * (a0 - conc) / (a0**2 * (a0 + 1))).sqrt()
    draws = fit.posterior_samples()["probs"][:, 0]
    # 4 Monte Carlo standard errors with an effective sample size of at least n / 4
    assert ((draws.mean(0) - mean).abs() <= 4 * sd / math.sqrt(n / 4)).all()
    assert ((draws.std(0) / sd - 1).abs() < 0.3).all()
    # the posterior predictive of one string (Polya urn): E[prod theta] under Dirichlet
    lp = fit.log_prob(["a"]).item()
    exact = math.log(conc[0] / a0 * (conc[2]) / (a0 + 1))
    assert lp == pytest.approx(exact, abs=0.05)


def test_a_posterior_fit_continues_a_prefix_as_its_predictive_does():
    """A prompt is data about phi: a posterior fit's continuation of ``"aaaa"`` follows
    the predictive's own conditional, ``sum_s p(prefix, t | phi_s) / sum_s p(prefix |
    phi_s)``, which ``fit.log_prob`` gives (for the exact posterior, Polya's urn after
    ``"ab"``: a 0.6, b 0.2, end 0.2; chees gave 0.615). The draws were picked uniformly,
    ignoring the prefix: a came a third of the time (z = -80 against the fit's own
    conditional)."""
    fit = NGram(1, prior_concentration=1.0).fit(["ab"], method="chees", seed=0,
                                                progress=False)  # vi's draws take this path too
    prefix, n = "aaaa", 20000
    nexts = Counter(s[len(prefix):len(prefix) + 1] for s in fit.sample(n, prefix=prefix,
                                                                      max_length=5, seed=0))
    before = fit.log_prob([prefix], include_end=False)
    for t in ("a", "b", ""):
        p = float((fit.log_prob([prefix + t], include_end=t == "") - before).exp())
        assert abs(nexts[t] / n - p) < 4 * math.sqrt(p * (1 - p) / n), (t, nexts[t] / n, p)


def test_samples_follow_the_fitted_probabilities():
    fit = NGram(2).fit(DATA, method="mle")
    samples = fit.sample(4000, seed=0)
    p_first = fit.params["probs"][-1]  # the start context is the last one
    freq_a = sum(s[:1] == "a" for s in samples) / 4000
    freq_end = sum(s == "" for s in samples) / 4000
    for freq, p in ((freq_a, p_first[0].item()), (freq_end, p_first[2].item())):
        assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / 4000)


def test_the_inverse_cdf_draw_follows_the_probabilities_and_never_draws_a_zero(monkeypatch):
    """``categorical``, the sequence samplers' draw: each count within 4 binomial standard
    errors of n p, a token of probability 0 never drawn, and a uniform that rounds up to
    the row's total takes the last token of positive probability."""
    from pyro_genmodels.models.sequence.sampling import categorical

    probs = torch.tensor([[0.0, 0.2, 0.0, 0.5, 0.3, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]])
    n = 20000
    torch.manual_seed(0)
    draws = categorical(probs.repeat(n, 1)).reshape(n, 2)
    for row in range(2):
        counts = torch.bincount(draws[:, row], minlength=6).double()
        p = probs[row].double()
        assert torch.all(counts[p == 0] == 0)
        assert torch.all((counts - n * p).abs() <= 4 * (n * p * (1 - p)).sqrt())
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.ones(*a, **k))  # u = total
    assert categorical(probs).tolist() == [4, 2]
    # rows that are not a distribution are refused, as torch.multinomial refused them
    for bad in (torch.zeros(1, 3), torch.tensor([[0.5, math.nan, 0.5]]),
                torch.tensor([[0.5, math.inf, 0.0]])):
        with pytest.raises(ValueError, match="finite and not all 0, but 1 of 1 rows"):
            categorical(bad)


def test_cached_and_recomputed_sampling_draw_the_same_tokens():
    fit = NGram(3, prior_concentration=2.0).fit(DATA, method="map")
    a = fit.sample(50, seed=3, prefix="b", max_length=12)
    b = fit.sample(50, seed=3, prefix="b", max_length=12, use_cache=False)
    assert a == b and all(s.startswith("b") for s in a)


def test_vocabulary_is_built_from_the_training_strings_and_kept():
    model = NGram(2)
    assert not model.known
    fit = model.fit(["hello", "world"], method="map")
    assert fit.vocab == "dehlorw" and fit.model.num_outcomes == 8
    assert model.vocab is None  # the model itself is unchanged
    with pytest.raises(ValueError, match="'z'"):
        fit.log_prob(["hez"])


def test_refusals():
    with pytest.raises(ValueError, match="prior_concentration >= 1"):
        NGram(2, prior_concentration=0.5).fit(DATA, method="map")
    with pytest.raises(ValueError, match="positive integer"):
        NGram(0)
    fit = NGram(2).fit(DATA, method="mle")
    with pytest.raises(ValueError, match="'c'"):
        fit.log_prob(["abc"])
    with pytest.raises(ValueError, match="'z'"):
        fit.sample(2, prefix="az")
    with pytest.raises(ValueError, match="unconditional"):
        fit.sample(2, c=[0, 1])
    with pytest.raises(ValueError, match="Unknown option"):
        NGram(2).fit(DATA, method="mle", num_steps=10)
    # a closed form takes no options: it says so (it listed "expected some of []")
    with pytest.raises(ValueError, match=r"^Unknown option\(s\) \['num_steps'\] for method "
                                         r"'map': it takes no options$"):
        NGram(2).fit(DATA, method="map", num_steps=3)
    # a prompt is one string: a list was blamed on "item 0", a wrapper the caller never wrote
    for bad in (["a", "b"], 3, b"ab"):
        with pytest.raises(TypeError, match=r"^prefix must be one prompt that every sample "
                                            r"continues, a string, but got "
                                            + type(bad).__name__):
            fit.sample(2, prefix=bad)
    ids = NGram(2, vocab_size=3).fit([[0, 1], [2]], method="mle")
    assert [s.tolist()[:2] for s in ids.sample(3, prefix=torch.tensor([0, 1]), seed=0)] \
        == [[0, 1]] * 3
    for bad, got in ((torch.tensor(1), "a tensor of shape ()"),
                     (torch.zeros(2, 2, dtype=torch.long), "a tensor of shape (2, 2)"),
                     (np.zeros((1, 2), dtype=int), "an array of shape (1, 2)"),
                     ("ab", "str ('ab')"), ([[0]], "list ([[0]])"), (3, "int (3)")):
        with pytest.raises(TypeError, match=r"^prefix must be one prompt that every sample "
                                            r"continues, a 1-D tensor or array, or a list of "
                                            r"token ids, but got " + re.escape(got)):
            ids.sample(2, prefix=bad)
    # NumPy arrays of ids, as prompts and as sequences (refused: "got array([0, 1])")
    assert [s.tolist()[:2] for s in ids.sample(3, prefix=np.array([0, 1]), seed=0)] \
        == [[0, 1]] * 3
    assert torch.equal(ids.log_prob([np.array([0, 1]), np.array([2])]),
                       ids.log_prob([[0, 1], [2]]))


def test_what_a_sequence_fit_has_no_number_for_is_refused_in_words():
    """Bits per dimension (of rows on a grid) and a distribution of event shape (dim,)
    do not exist for sequences: bits_per_dim crashed in torch ("check_uniform_bounds"
    not implemented for 'Long'), compare(bin_width=) printed a number, and distribution()
    said "no tractable density (log_prob: exact)"."""
    import pyro_genmodels as pgm

    fit = NGram(2, prior_concentration=2.0).fit(DATA, method="map")
    with pytest.raises(TypeError, match=r"^bits per dimension are for numeric rows "
                                        r"dequantized on a grid of bin_width, but NGram "
                                        r"scores sequences"):
        fit.bits_per_dim(DATA)
    with pytest.raises(TypeError, match=r"^bin_width does not apply to fits\['ng'\] "
                                        r"\(NGram, 'map'\): bits per dimension"):
        pgm.compare({"ng": fit}, DATA, bin_width=0.5)
    assert math.isfinite(pgm.compare({"ng": fit}, DATA)["heldout_log_prob"].item())
    with pytest.raises(NotImplementedError, match=r"^NGram has no distribution\(\): its "
                                                  r"exact log_prob is of sequences of "
                                                  r"varying length"):
        fit.distribution()


def test_a_pandas_series_or_numpy_array_of_strings_is_a_list_of_strings():
    """Text read with pandas comes as a Series (a column of a CSV), or as a NumPy array of
    str or object: the same strings, so the same fit and the same log densities."""
    import numpy as np
    import pandas as pd

    reference = NGram(2).fit(DATA, method="mle")
    expected = reference.log_prob(DATA)
    for data in (pd.Series(DATA, name="word"), np.array(DATA), np.array(DATA, dtype=object)):
        fit = NGram(2).fit(data, method="mle")
        assert fit.vocab == reference.vocab
        assert torch.equal(fit.log_prob(data), expected)
    with pytest.raises(TypeError, match="item 1 is float"):
        NGram(2).fit(pd.Series(["ab", None, "ba"]), method="mle")
    with pytest.raises(TypeError, match=r"list of strings .* shape \(1, 2\)"):
        NGram(2).fit(np.array([["ab", "ba"]]), method="mle")  # 2-D: not a list of strings
    with pytest.raises(TypeError, match="decode bytes first"):
        NGram(2).fit(np.array([b"ab", b"ba"]), method="mle")


def _log_evidence(model, x) -> float:
    """log p(x) of the Dirichlet-categorical n-gram, exactly: per context h,
    lgamma(V a) - lgamma(V a + n_h) + sum_v lgamma(a + n_hv) - lgamma(a)."""
    n, a = model.counts(x).double(), model.prior_concentration
    V = n.shape[-1]
    return float((math.lgamma(V * a) - torch.lgamma(V * a + n.sum(-1))
                  + (torch.lgamma(a + n) - math.lgamma(a)).sum(-1)).sum())


@pytest.mark.parametrize("guide,num_steps", [(None, None), ("mvn", 300)])
def test_vi_on_the_names_is_a_bound_on_the_exact_evidence(guide, num_steps):
    """The negative ELBO is at least -log p(x) (exact, above). With 702 unconstrained
    coordinates the full-covariance guide's log q(u) used to be computed by a triangular
    solve whose error grows like (1 + lr)^d: the losses ran to -1e26 and the fit failed
    with a NaN (MultivariateNormalGuide). The default (mean field) ends near -log p(x):
    measured 35 nats above it (0.12 per name); bounded here at 0.2 per name."""
    names = load_names()[:300]
    opts = {k: v for k, v in (("guide", guide), ("num_steps", num_steps)) if v is not None}
    fit = NGram(2).fit(names, method="vi", seed=0, progress=False, **opts)
    assert fit.info["guide"] == (guide or "normal")
    bound = -_log_evidence(fit.model, fit.data)
    last = torch.tensor(fit.losses[-100:], dtype=torch.float64)
    assert last.mean() >= bound - 4 * last.std() / 10, (last.mean(), bound)
    if guide is None:
        assert last.mean() <= bound + 0.2 * len(names), (last.mean(), bound)


def test_a_switch_given_a_string_is_refused_not_read_as_true():
    """``use_cache="no"`` used the cache and ``include_end="no"`` included the end token
    (any non-empty string is truthy); both are refused, True and False work."""
    fit = NGram(2).fit(["ab", "ba", "abb"], method="map", progress=False)
    with pytest.raises(TypeError, match=r"^Expected include_end to be True or False, but "
                                        r"got 'no'$"):
        fit.log_prob(["ab"], include_end="no")
    with pytest.raises(TypeError, match=r"^Expected use_cache to be True or False, but got "
                                        r"'no'$"):
        fit.sample(2, seed=0, use_cache="no")
    assert fit.sample(5, seed=0, use_cache=False) == fit.sample(5, seed=0)
    assert (fit.log_prob(["ab"], include_end=False) > fit.log_prob(["ab"])).all()


def test_a_huge_max_length_is_no_cap_and_allocates_nothing_for_it():
    """max_length=10**9 held (n, 10**9) ids up front (10**12: "do not fit in memory");
    the sampler now grows with the rows drawn, so it draws what max_length=300 does."""
    fit = NGram(2, prior_concentration=2.0).fit(load_names()[:100], method="map",
                                                progress=False)
    draws = fit.sample(20, seed=0, max_length=300)
    assert max(map(len, draws)) < 300
    assert fit.sample(20, seed=0, max_length=10 ** 12) == draws


def test_the_default_max_length_leaves_room_to_continue_a_prompt(tmp_path):
    """The default max_length was twice the longest training sequence, prefix included:
    a prompt that long came back as it was (cut, not continued) and a longer one was
    refused naming a max_length=4 the caller never passed, also from the command line.
    Now it is the prefix's length plus that (draws without a prefix are unchanged); a
    given max_length that leaves no room says it was given and what to pass."""
    from pyro_genmodels import cli

    fit = NGram(2, prior_concentration=2.0).fit(["ab", "ba", "a"], method="map")
    assert fit.sample(20, seed=0) == fit.sample(20, seed=0, max_length=4)  # as it was
    for prefix in ("abab", "ababa", "a" * 30):
        s = fit.sample(200, prefix=prefix, seed=0)
        assert s == fit.sample(200, prefix=prefix, seed=0, max_length=len(prefix) + 4)
        assert all(w.startswith(prefix) for w in s)
        assert any(len(w) > len(prefix) for w in s)  # continued, not returned as it was
    for prefix, given in (("abab", 4), ("ababa", 3), ("ab", 1)):
        with pytest.raises(ValueError, match=rf"^max_length={given} was given, but the "
                                             rf"prefix already has {len(prefix)} tokens .*"
                                             rf"pass max_length > {len(prefix)} to continue "
                                             rf"it, or leave max_length=None"):
            fit.sample(2, prefix=prefix, max_length=given)
    assert all(w.startswith("abab") for w in fit.sample(5, prefix="abab", max_length=5))
    # the command line's sample --prefix without --max-length
    fit.save(tmp_path / "run")
    out = tmp_path / "s.txt"
    assert cli.main(["sample", str(tmp_path / "run"), "-n", "20", "--out", str(out),
                     "--seed", "1", "--prefix", "ababab"]) == 0
    assert out.read_text(encoding="utf-8").splitlines() == fit.sample(20, seed=1,
                                                                      prefix="ababab")
    with pytest.raises(SystemExit, match="max_length=6 was given, but the prefix already "
                                         "has 6 tokens"):
        cli.main(["sample", str(tmp_path / "run"), "-n", "2", "--out", str(out),
                  "--prefix", "ababab", "--max-length", "6"])


def test_a_bad_token_id_is_named_with_its_row_and_position():
    """``sample(prefix=[2, 9])`` said "prefix[0] has the token id 9" (the id is at
    position 1 of the one prompt), and rows of x were named without the position."""
    fit = NGram(2, vocab_size=5).fit([[1, 2], [3]], method="mle")
    with pytest.raises(ValueError, match=r"^prefix position 1 has the token id 9, which is "
                                         r"not in the vocabulary \[0, 5\)$"):
        fit.sample(2, prefix=[2, 9])
    with pytest.raises(ValueError, match=r"^prefix position 0 has the token id -1, "):
        fit.sample(2, prefix=torch.tensor([-1, 2]))
    rows = [[1, 2], [3], [1, 1], [0, 0, 0, 0, 0, 0, 0, 7]]
    expected = (r"^x\[3\] has the token id 7, which is not in the vocabulary \[0, 5\) "
                r"\(at position 7 of x\[3\], counting from 0\)$")
    with pytest.raises(ValueError, match=expected):
        fit.log_prob(rows)
    padded = torch.tensor([r + [0] * (8 - len(r)) for r in rows])
    with pytest.raises(ValueError, match=expected):
        fit.log_prob(padded, lengths=torch.tensor([len(r) for r in rows]))
    text = NGram(2).fit(["ab", "ba"], method="mle")
    with pytest.raises(ValueError, match=r"^prefix 'abz' has the character 'z', which is "
                                         r"not in the vocabulary 'ab' \(at position 2, "
                                         r"counting from 0\)$"):
        text.sample(2, prefix="abz")
    with pytest.raises(ValueError, match=r"^x\[1\] = 'bz' has the character 'z', which is "
                                         r"not in the vocabulary 'ab'$"):
        text.log_prob(["ab", "bz"])


def test_a_unigrams_one_context_has_a_readable_label():
    """NGram(1)'s one context (no previous token) was labelled '', so az.summary and the
    report showed ``probs[, a]``."""
    import arviz as az

    fit = NGram(1).fit(["ab", "a"], method="vi", num_steps=20, num_posterior_samples=20,
                       seed=0, progress=False)
    assert fit.model.arviz_coords()["context"] == ["()"]
    idata = fit.to_arviz(posterior_predictive=False)
    assert list(idata.posterior["probs"].coords["context"].values) == ["()"]
    assert az.summary(idata, var_names=["probs"], kind="stats").index.tolist() == [
        "probs[(), a]", "probs[(), b]", "probs[(), <end>]"]
    assert NGram(2).fit(["ab"], method="mle").model.arviz_coords()["context"] == [
        "a", "b", "<start>"]


def test_top_k_keeps_exactly_k_tokens_when_probabilities_tie():
    """top_k kept every token tied with the k-th: after "ab" and "ba" the first letter is
    a tie, so top_k=1 drew "a" or "b" at random, and top_k=2 of four tied tokens drew
    from all four. Ties now go to the lower index: top_k=1 is one sequence whatever the
    seed, and top_k=2 draws from two tokens."""
    from pyro_genmodels.models.sequence import NGram

    fit = NGram(2).fit(["ab", "ba"], method="mle")
    assert len({s for seed in range(4) for s in fit.sample(20, top_k=1, seed=seed)}) == 1
    unigram = NGram(1).fit(["abc"], method="mle")  # a, b, c and the end: 1/4 each
    firsts = {s[:1] for s in unigram.sample(400, top_k=2, seed=0, max_length=1)}
    assert len(firsts) == 2, firsts


def test_a_lone_surrogate_in_a_training_string_is_refused_by_position():
    """A string holding a lone surrogate fit, and its vocabulary then broke every UTF-8
    writer: the report died in "'utf-8' codec can't encode", leaving a half-made
    folder. Other non-ASCII characters, astral ones too, are characters as any other."""
    with pytest.raises(ValueError, match=r"^data\[1\] = 'a\\ud800b' holds '\\ud800' at "
                                         r"position 1, a lone surrogate \(half of a UTF-16 "
                                         r"pair\), which UTF-8 cannot encode$"):
        NGram(2).fit(["ab", "a\ud800b"], method="mle")
    with pytest.raises(ValueError, match=r"^vocab 'ab\\ud800' holds '\\ud800', a lone "
                                         r"surrogate"):
        NGram(2, vocab="ab\ud800")
    assert NGram(2).fit(["ab", "ä€😀"], method="mle").vocab == "abä€😀"
