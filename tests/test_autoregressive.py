"""AutoregressiveModel against its oracles: causality of the network, normalization over
every sequence up to a length, cached steps equal to the full teacher-forced pass, MAP =
MLE + L2, conditional generation, and the names example and benchmark at tiny sizes."""

import itertools
import math
import re
from pathlib import Path

import pytest
import torch
from pyro import poutine

import pyro_genmodels as pgm
from pyro_genmodels._rng import seeded
from pyro_genmodels.infer import FlatPriors
from pyro_genmodels.models.sequence import AutoregressiveModel, NGram, generate
from tests.oracles import check_names_table
from tests.printed import agrees, bounds, grab, load_script, positive_finite, quotient, scaled

ROOT = Path(__file__).resolve().parent.parent
#: "transformer-w3": sliding-window attention over the last 3 positions
NETWORKS = ["gru", "transformer", "transformer-w3"]
WORDS = ["ab", "abc", "ba", "cab", "", "bca", "aacb", "c"] * 4


def _kw(network):
    """The network's options (2 heads for the Transformer: a GRU has none)."""
    if network == "transformer-w3":
        return {"network": "transformer", "num_heads": 2, "attention_window": 3}
    return {"network": network, **({"num_heads": 2} if network == "transformer" else {})}


def _net(network, dtype=torch.float64, **kw):
    with seeded(0):
        m = AutoregressiveModel(embedding_dim=8, hidden_size=16, num_layers=2, vocab="abc",
                                **_kw(network), **kw)
    return m.to(dtype)


@pytest.mark.parametrize("network", NETWORKS)
def test_causality(network):
    """Changing token i changes no logit at positions <= i, and changes position i + 1."""
    model = _net(network, num_classes=2)
    x = model.encode(["abcabca", "cbacba"])
    c = torch.tensor([0, 1])
    base = model.logits_given({}, x, c)
    for i in range(x.shape[1] - 1):
        y = x.clone()
        y[:, i] = (y[:, i] + 1) % 4
        out = model.logits_given({}, y, c)
        assert torch.equal(out[:, :i + 1], base[:, :i + 1]), i
        assert not torch.allclose(out[:, i + 1], base[:, i + 1]), i


def _total_probability(fit, chars, max_len, c=None):
    ended = ["".join(t) for n in range(max_len) for t in itertools.product(chars, repeat=n)]
    cut = ["".join(t) for t in itertools.product(chars, repeat=max_len)]
    return (fit.log_prob(ended, c=c).exp().sum()
            + fit.log_prob(cut, c=c, include_end=False).exp().sum()).item()


@pytest.mark.parametrize("network", NETWORKS)
def test_normalization_over_all_sequences(network):
    model = AutoregressiveModel(embedding_dim=8, hidden_size=16, num_classes=2,
                                **_kw(network)).double()
    fit = model.fit(["ab", "ba", "aab"], c=[0, 1, 1], method="mle", num_steps=5, seed=0,
                    progress=False)
    assert fit.vocab == "ab"
    for max_len in (1, 4, 7):
        for c in (0, 1):
            assert _total_probability(fit, "ab", max_len, c=c) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("network", NETWORKS)
def test_cached_steps_equal_the_full_pass(network):
    """The logits of step t with the cached state equal position t of one causal pass."""
    model = _net(network, dtype=torch.float32, num_classes=3)
    x = model.encode(["abcabcabca", "cab"])
    c = torch.tensor([2, 0])
    full = model.logits_given({}, x, c)
    with torch.no_grad():
        logits, state = model.start({}, 2, c, x.shape[1])
        for t in range(x.shape[1]):
            assert torch.allclose(logits, full[:, t], atol=1e-5), t
            logits, state = model.advance({}, state, x[:, t], c)


@pytest.mark.parametrize("network", NETWORKS)
def test_cached_and_recomputed_sampling_draw_the_same_tokens(network):
    model = _net(network)
    with seeded(5):
        a = generate(model, {}, 40, None, prefix=[1, 2], max_length=20)
    with seeded(5):
        b = generate(model, {}, 40, None, prefix=[1, 2], max_length=20, use_cache=False)
    assert torch.equal(a, b)
    assert (a[:, :2] == torch.tensor([1, 2])).all()


@pytest.mark.parametrize("network", NETWORKS)
def test_sampling_memory_follows_the_tokens_drawn_not_max_length(network):
    """The sampler held (n, max_length) ids and a Transformer cache of max_length
    positions from the start: max_length=10**9 as "no cap" took the process down. It
    now starts with FIRST_WIDTH positions and doubles them as rows grow: the same draws
    as a max_length that fits, cached and recomputed alike past several doublings (a
    prompt of 150 tokens), and a max_length of 10**12 draws what 400 does."""
    from pyro_genmodels.models.sequence.sampling import FIRST_WIDTH

    model = _net(network)
    prompt = [0, 1, 2] * 50
    assert len(prompt) > 2 * FIRST_WIDTH
    with seeded(3):
        a = generate(model, {}, 6, None, prefix=prompt, max_length=400)
    with seeded(3):
        b = generate(model, {}, 6, None, prefix=prompt, max_length=400, use_cache=False)
    assert torch.equal(a, b) and a.shape == (6, 400)
    fit = model.fit(WORDS, method="mle", num_steps=2, seed=0, progress=False)
    many = fit.sample(6, seed=1, prefix="abc" * 50, max_length=10 ** 12)
    capped = fit.sample(6, seed=1, prefix="abc" * 50, max_length=400)
    assert max(map(len, capped)) < 400 and many == capped  # all ended before the cap
    assert all(s.startswith("abc" * 50) for s in many)


@pytest.mark.parametrize("network", NETWORKS)
def test_map_is_mle_plus_l2_term_by_term(network):
    model = _net(network, prior_scale=0.7)
    x = model.encode(WORDS)
    mle_tr = poutine.trace(FlatPriors(model.prior_sites)(model.model)).get_trace(x)
    map_tr = poutine.trace(model.model).get_trace(x)
    w = [p.detach() for p in model.net.parameters()]
    n = sum(p.numel() for p in w)
    l2 = sum((p ** 2).sum() for p in w).item()
    expect = -l2 / (2 * 0.7**2) - n * (0.5 * math.log(2 * math.pi) + math.log(0.7))
    assert map_tr.log_prob_sum().item() - mle_tr.log_prob_sum().item() == pytest.approx(
        expect, rel=1e-10)
    # the likelihood terms agree exactly, and equal the family's own log_prob
    assert torch.equal(map_tr.nodes["x"]["log_prob_sum"], mle_tr.nodes["x"]["log_prob_sum"])
    assert mle_tr.nodes["x"]["log_prob_sum"].item() == pytest.approx(
        model.log_prob_given({}, x).sum().item(), rel=1e-10)
    # MAP shrinks the weights relative to MLE (same seed, same steps)
    kw = dict(num_steps=60, seed=0, progress=False, batch_size=16)
    small = AutoregressiveModel(embedding_dim=8, hidden_size=16, prior_scale=0.05,
                                **_kw(network))
    norm = lambda f: sum((p ** 2).sum() for p in f.model.net.parameters()).item()  # noqa
    assert norm(small.fit(WORDS, method="map", **kw)) < norm(small.fit(WORDS, method="mle",
                                                                           **kw))


def test_attention_window():
    """A window at least the sequence length is full causal attention (same weights);
    a window w makes the logits at position p depend only on the last L (w - 1) + 1
    tokens (L layers), and the cached ring buffer reproduces the full pass."""
    x = _net("transformer").encode(["abcabcabcab", "cab"])  # 12 positions
    full, wide = _net("transformer"), _net("transformer", attention_window=12)
    assert torch.equal(wide.logits_given({}, x), full.logits_given({}, x))
    model = _net("transformer-w3")  # L = 2 layers: a position reads 2 * 2 + 1 = 5 tokens
    assert not torch.allclose(model.logits_given({}, x), full.logits_given({}, x))
    base = model.logits_given({}, x)
    for i in range(x.shape[1] - 1):
        y = x.clone()
        y[:, i] = (y[:, i] + 1) % 4
        out = model.logits_given({}, y)
        # token i is the input of position i + 1, seen up to position i + 1 + 4
        assert torch.equal(out[:, :i + 1], base[:, :i + 1]), i
        assert not torch.allclose(out[:, i + 1:i + 6], base[:, i + 1:i + 6]), i
        assert torch.equal(out[:, i + 6:], base[:, i + 6:]), i
    # the ring buffer holds 3 entries whatever the length, and a short cache grows to it
    for capacity in (1, 40):
        with torch.no_grad():
            logits, state = model.start({}, 2, None, capacity)
            for t in range(x.shape[1]):
                assert torch.allclose(logits, base[:, t], atol=1e-10), (capacity, t)
                logits, state = model.advance({}, state, x[:, t], None)
        assert state["cache"][0][0].shape[2] == 3
    with pytest.raises(ValueError, match="attention_window applies to network='transformer'"):
        AutoregressiveModel(attention_window=4)
    with pytest.raises(ValueError, match="attention_window to be a positive integer"):
        AutoregressiveModel(network="transformer", attention_window=0)


def test_vocabulary_is_built_from_the_training_strings_and_kept():
    model = AutoregressiveModel(embedding_dim=8, hidden_size=16)
    assert not model.known
    with seeded(0):
        fit = model.fit(["hello", "world"], method="mle", num_steps=2, progress=False)
    assert fit.vocab == "dehlorw" and fit.model.num_outcomes == 8
    assert model.vocab is None  # the model itself is unchanged
    with pytest.raises(ValueError, match="'z'"):
        fit.log_prob(["hez"])


def test_conditional_generation_and_label_errors():
    data = ["aab", "aba", "abb", "aaa"] * 8 + ["bba", "bab", "baa", "bbb"] * 8
    c = [0] * 32 + [1] * 32
    model = AutoregressiveModel(embedding_dim=8, hidden_size=32, num_classes=2)
    fit = model.fit(data, c=c, method="mle", num_steps=150, lr=0.02, seed=0,
                    progress=False)
    s0, s1 = fit.sample(100, c=0, seed=1), fit.sample(100, c=torch.ones(100, dtype=int),
                                                       seed=1)
    assert sum(s[:1] == "a" for s in s0) >= 90 and sum(s[:1] == "b" for s in s1) >= 90
    lp = fit.log_prob(["aab", "aab"], c=[0, 1])
    assert lp[0] > lp[1] + 2
    with pytest.raises(ValueError, match="conditional"):
        fit.sample(3)
    with pytest.raises(ValueError, match="2 labels but there are 3"):
        fit.log_prob(["a", "b", "ab"], c=[0, 1])
    with pytest.raises(ValueError, match=r"c\[1\] = 2 is not a class label"):
        fit.sample(2, c=[0, 2])
    with pytest.raises(ValueError, match="integer"):
        model.fit(data, c=[0.5] * 64, method="mle", progress=False)
    with pytest.raises(ValueError, match="unconditional"):
        AutoregressiveModel().fit(data, c=c, method="mle", progress=False)


def test_whole_number_float_labels_are_labels():
    """``c=np.array([0., 1., 1.])`` is taken by the VAE; the sequence models refused it
    ("c must hold integer class labels, got dtype torch.float64"). Whole numbers are
    labels now, with the same fit; a fractional or non-finite one is refused by its
    value and position, as the VAE refuses it."""
    import numpy as np

    data = ["aab", "aba", "bba", "bab"] * 4
    labels = [0, 0, 1, 1] * 4
    model = AutoregressiveModel(embedding_dim=8, hidden_size=16, num_classes=2)
    ints = model.fit(data, c=labels, method="mle", num_steps=5, seed=0, progress=False)
    for c in (np.array(labels, dtype=float), torch.tensor(labels, dtype=torch.float32),
              [float(v) for v in labels]):
        fit = model.fit(data, c=c, method="mle", num_steps=5, seed=0, progress=False)
        assert fit.losses == ints.losses and torch.equal(fit.context, ints.context)
    assert torch.equal(ints.log_prob(["ab", "ba"], c=np.array([0.0, 1.0])),
                       ints.log_prob(["ab", "ba"], c=[0, 1]))
    assert ints.sample(4, c=1.0, seed=0) == ints.sample(4, c=1, seed=0)
    for c, found in (([0.0, 0.5], "0.5 at position 1"), ([1.0, math.nan], "nan at position 1"),
                     (np.array([1.25, 0.0]), "1.25 at position 0")):
        with pytest.raises(ValueError, match=rf"^c must be finite integer class labels; "
                                             rf"found {found}$"):
            ints.log_prob(["ab", "ba"], c=c)
    with pytest.raises(ValueError, match=r"c\[1\] = 2 is not a class label"):
        ints.log_prob(["ab", "ba"], c=[0.0, 2.0])
    with pytest.raises(TypeError, match="integer class labels, got dtype torch.bool"):
        ints.log_prob(["ab", "ba"], c=[True, False])


def test_transformer_only_options_are_refused_with_a_gru():
    """``num_heads=3`` with the GRU was taken silently (``attention_window`` was refused);
    both are refused when given, and the defaults work for both networks. A GRU takes
    ``num_heads=4``, the default its config records."""
    with pytest.raises(ValueError, match=r"^num_heads applies to network='transformer', got "
                                         r"network='gru' with num_heads=3: leave num_heads "
                                         r"out for a GRU$"):
        AutoregressiveModel(network="gru", num_heads=3)
    with pytest.raises(ValueError, match=r"^attention_window applies to "
                                         r"network='transformer', got network='gru' with "
                                         r"attention_window=4"):
        AutoregressiveModel(attention_window=4)
    with pytest.raises(ValueError, match="num_heads to be a positive integer"):
        AutoregressiveModel(network="gru", num_heads=0)
    gru, tf = AutoregressiveModel(), AutoregressiveModel(network="transformer")
    assert gru.num_heads == tf.num_heads == 4 and tf.get_config()["num_heads"] == 4
    for m in (gru, tf, AutoregressiveModel(network="transformer", num_heads=2,
                                           hidden_size=16, attention_window=3)):
        assert type(m)(**m.get_config()).get_config() == m.get_config()  # save, load
    with pytest.raises(ValueError, match="Expected num_heads to divide hidden_size, but got "
                                         "hidden_size=6, num_heads=4"):
        AutoregressiveModel(network="transformer", hidden_size=6)


def test_a_gru_fit_saved_with_an_unused_num_heads_still_loads(tmp_path):
    """Before ``num_heads`` with a GRU was refused, a GRU fit saved it as given (the
    contract cases used ``num_heads=2``): such a save loads, and draws what it drew."""
    import json

    fit = AutoregressiveModel(embedding_dim=8, hidden_size=16).fit(
        WORDS, method="mle", num_steps=5, seed=0, progress=False)
    fit.save(tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "fit.json").read_text())
    assert meta["config"]["num_heads"] == 4
    meta["config"]["num_heads"] = 2  # as the older version saved num_heads=2
    (tmp_path / "run" / "fit.json").write_text(json.dumps(meta))
    again = pgm.load(tmp_path / "run")
    assert again.model.num_heads == 4
    assert again.sample(5, seed=0) == fit.sample(5, seed=0)


@pytest.mark.parametrize("network", NETWORKS)
def test_prefix_temperature_top_k_max_length(network):
    fit = AutoregressiveModel(embedding_dim=8, hidden_size=16,
                              **_kw(network)).fit(WORDS, method="mle", num_steps=40, seed=0,
                                                  progress=False)
    s = fit.sample(30, prefix="ca", seed=0, max_length=6)
    assert len(s) == 30 and all(w.startswith("ca") and len(w) <= 6 for w in s)
    assert fit.sample(5, seed=2) == fit.sample(5, seed=2)
    greedy = fit.sample(20, seed=0, top_k=1)
    assert len(set(greedy)) == 1  # one choice per step: every sample is the argmax path
    assert fit.sample(20, seed=0, temperature=1e-4) == greedy
    assert all(set(w) <= set("abc") for w in fit.sample(50, seed=0, temperature=3.0))
    with pytest.raises(ValueError, match="temperature"):
        fit.sample(2, temperature=0)
    with pytest.raises(ValueError, match="top_k"):
        fit.sample(2, top_k=0)
    with pytest.raises(ValueError, match="max_length=3 was given, but the prefix already "
                                         "has 5 tokens"):
        fit.sample(2, prefix="abcab", max_length=3)
    with pytest.raises(ValueError, match="'d'"):
        fit.sample(2, prefix="ad")


def test_token_ids_in_and_out():
    x = torch.tensor([[0, 1, 2, 0], [3, 3, 0, 0], [1, 0, 0, 0]])
    lengths = torch.tensor([4, 2, 1])
    model = AutoregressiveModel(vocab_size=4, embedding_dim=8, hidden_size=16)
    fit = model.fit(x, lengths=lengths, method="mle", num_steps=5, seed=0, progress=False)
    out = fit.sample(6, seed=0, prefix=[3], max_length=5)
    assert all(isinstance(t, torch.Tensor) and t.dtype == torch.long and t[0] == 3
               and len(t) <= 5 and ((t >= 0) & (t < 4)).all() for t in out)
    lp = fit.log_prob(x, lengths=lengths)
    assert torch.equal(lp, fit.log_prob([[0, 1, 2, 0], [3, 3], [1]]))
    # a padding mask in place of the lengths
    mask = torch.arange(4) < lengths[:, None]
    assert torch.equal(fit.log_prob(x, mask=mask), lp)
    masked = model.fit(x, mask=mask, method="mle", num_steps=5, seed=0, progress=False)
    assert torch.equal(masked.data, fit.data) and masked.losses == fit.losses
    with pytest.raises(ValueError, match=r"mask row 1 is not tokens-then-padding .* "
                                         r"\[1, 0, 1, 0\]"):
        fit.log_prob(x, mask=torch.tensor([[True] * 4, [True, False, True, False],
                                           [True, False, False, False]]))
    with pytest.raises(ValueError, match=r"shape of the tokens \(3, 4\), got \(3, 2\)"):
        fit.log_prob(x, mask=mask[:, :2])
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        fit.log_prob(x, mask=mask.long())
    with pytest.raises(ValueError, match="lengths or mask, not both"):
        fit.log_prob(x, mask=mask, lengths=lengths)
    with pytest.raises(ValueError, match="all False: True marks the tokens"):
        fit.log_prob(x, mask=~torch.ones_like(mask))
    with pytest.raises(ValueError, match="token id 4"):
        fit.log_prob([[0, 4]])
    with pytest.raises(TypeError, match="not strings"):
        fit.log_prob(["ab"])


# The device= path must run on a GPU to mean anything; CI and this machine have none,
# so it runs wherever CUDA is present (the CPU path is covered by every other test).
@pytest.mark.skipif(not torch.cuda.is_available(),  # justified in the comment above
                    reason="the device= path needs CUDA; CI has no GPU")
@pytest.mark.parametrize("network", NETWORKS)
def test_cuda(network):
    fit = AutoregressiveModel(embedding_dim=8, hidden_size=16,
                              **_kw(network)).fit(WORDS, method="mle", num_steps=20, seed=0,
                                                  progress=False, device="cuda")
    assert fit.data.is_cuda and fit.log_prob(["ab"]).is_cuda
    assert len(fit.sample(4, seed=0, prefix="a")) == 4
    cpu = fit.to("cpu")
    assert torch.allclose(cpu.log_prob(WORDS), fit.log_prob(WORDS).cpu(), atol=1e-4)
    ng = NGram(2).fit(WORDS, method="map", device="cuda")
    assert ng.log_prob(["ab"]).is_cuda



def test_example_names_smoke():
    mod = load_script(ROOT / "examples" / "names.py")
    table, samples = mod.main(mod.parse_args(["--num-steps", "20", "--hidden-size", "16",
                                              "--num-samples", "5", "--prefix", "ma",
                                              "--attention-window", "4"]))
    assert {"bigram (add-one)", "gru", "transformer"} <= set(table.index)
    check_names_table(table)
    assert len(samples) == 5 and all(s.startswith("ma") for s in samples)


def test_benchmark_smoke(capsys):
    """The last line's ratio is a finite positive float, the training line's, and every
    printed ratio is the ratio of the printed figures it is made of."""
    mod = load_script(ROOT / "benchmarks" / "bench_autoregressive.py")
    returned = mod.main(["--small"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5
    last = grab(r"^ratio \(facade / hand-written PyTorch GRU training step; goal <= 1\.2\): "
                r"{N}$", lines[-1])
    positive_finite(last)
    assert last == f"{returned:.2f}"
    facade, facade_ms, loop, loop_ms, ratio = grab(
        r"^training, GRU 16, batch 32, 5 steps: facade {N}s \({N} ms/step\), hand-written "
        r"loop {N}s \({N} ms/step\), ratio {N} \(goal <= 1\.2\)$", lines[0])
    assert ratio == last
    assert agrees(facade_ms, scaled(bounds(facade), 1000 / 5))
    assert agrees(loop_ms, scaled(bounds(loop), 1000 / 5))
    assert agrees(ratio, quotient(bounds(facade), bounds(loop)))
    assert agrees(ratio, quotient(bounds(facade_ms), bounds(loop_ms)))
    for line, name in zip(lines[1:4], ["gru", "transformer", "transformer (window 4)"]):
        short_ms, long_ms, per, recomputed, cached, speed = grab(
            r"^sampling, " + re.escape(name) + r" 16 x 2 layers, 4 sequences: {N} ms/token "
            r"at 4, {N} ms/token at 16 \(ratio {N}, goal <= 1\.3\); recomputing the prefix "
            r"{N}s vs cached {N}s at 16 \({N}x, goal >= 10\)$", line)
        assert agrees(per, quotient(bounds(long_ms), bounds(short_ms)))
        assert agrees(cached, scaled(bounds(long_ms), 16 / 1000))  # 16 tokens
        assert agrees(speed, quotient(bounds(recomputed), bounds(cached)))


@pytest.mark.slow
def test_gru_beats_the_add_one_bigram_on_names():
    names = pgm.datasets.load_names()
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(names), generator=g).tolist()
    cut = int(0.9 * len(names))
    train, test = [names[i] for i in perm[:cut]], [names[i] for i in perm[cut:]]
    chars = sum(len(s) + 1 for s in test)
    bigram = NGram(2, prior_concentration=2.0).fit(train, method="map")
    # 2.3k training names: MAP (weight decay, prior_scale 0.3) and 800 steps of batch
    # 128 (the default 1500 steps of mle overfit a list this small)
    gru = AutoregressiveModel(hidden_size=128, prior_scale=0.3).fit(
        train, method="map", num_steps=800, seed=0, progress=False)
    b = -bigram.log_prob(test).sum().item() / chars
    r = -gru.log_prob(test).sum().item() / chars
    print(f"held-out nats/char: add-one bigram {b:.3f}, GRU {r:.3f}")
    assert r < b - 0.05



@pytest.mark.parametrize("make", [lambda: NGram(2, vocab="abc"),
                                  lambda: _net("gru", num_classes=2),
                                  lambda: _net("transformer")])
def test_prior_predictive_program(make):
    """model(x=None) draws sequences ancestrally and records them as the site x."""
    model = make()
    c = None if model.num_classes is None else torch.tensor([0, 1, 1])
    with seeded(0):
        tr = poutine.trace(model.model).get_trace(None, c=c, num_data=3)
    x = tr.nodes["x"]["value"]
    assert x.shape[0] == 3 and x.dtype == torch.long
    assert ((x >= 0) & (x <= model.end_id)).all()
    assert model.num_params() > 0


def test_guide_code_blocks_run(capsys):
    import re

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "autoregressive.md").read_text(),
                        re.S)
    assert len(blocks) >= 4
    namespace = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"autoregressive.md[block {i}]", "exec"), namespace)
    out = capsys.readouterr().out
    assert "tensor([0., -inf])" in out  # the MLE's unseen transition, as the guide says


def test_a_numpy_array_of_ids_is_taken_as_the_tensor_with_lengths_or_a_mask():
    """A padded (N, L) NumPy array of ids with lengths (or a mask) was refused as "a list
    of sequences"; it gives what the tensor gives."""
    ids = torch.randint(0, 5, (20, 6), generator=torch.Generator().manual_seed(0))
    lengths = torch.randint(0, 7, (20,), generator=torch.Generator().manual_seed(1))
    with seeded(0):
        model = AutoregressiveModel(vocab_size=5, hidden_size=4)
    fit = model.fit(ids, lengths=lengths, method="mle", num_steps=2, progress=False)
    want = fit.log_prob(ids, lengths=lengths)
    assert torch.equal(fit.log_prob(ids.numpy(), lengths=lengths.numpy()), want)
    mask = (torch.arange(6) < lengths[:, None]).numpy()
    assert torch.equal(fit.log_prob(ids.numpy(), mask=mask), want)
    # as .npy files give them: big-endian, read-only (a memory map), narrower integers
    read_only = ids.numpy().copy()
    read_only.setflags(write=False)
    for a in (ids.numpy().astype(">i8"), read_only, ids.numpy().astype("uint8")):
        assert torch.equal(fit.log_prob(a, lengths=lengths.numpy()), want)
