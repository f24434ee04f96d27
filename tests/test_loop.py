"""The one optimization loop: minibatches, guards, two players, validation with early
stopping, and checkpoints that resume bit for bit (also after a SIGKILL)."""

import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyro.optim
import pytest
import torch

import pyro_genmodels as pgm
from pyro_genmodels._rng import seeded
from pyro_genmodels.infer import checkpoint as ckpt
from pyro_genmodels.infer.loop import LoopOptions, Minibatches, Player, optimize


def quadratic(target):
    """A player minimizing ||w - target||^2 over one parameter, counting its calls."""
    w = torch.zeros_like(target, requires_grad=True)
    calls = []

    def loss(batch):
        calls.append(batch.index)
        return (w - target).pow(2).sum()

    return w, Player(loss, [w]), calls


# ---------------------------------------------------------------------- minibatches
def test_each_epoch_is_a_fresh_permutation_cut_into_equal_batches():
    x = torch.arange(10.0).unsqueeze(-1)
    mb = Minibatches(x, None, 3)
    with seeded(0):
        epochs = [[mb.next() for _ in range(mb.steps_per_epoch)] for _ in range(4)]
    orders = []
    for epoch in epochs:
        idx = torch.cat([b.index for b in epoch])
        assert all(b.x.shape == (3, 1) and torch.equal(b.x[:, 0], b.index.float())
                   for b in epoch)
        assert idx.unique().numel() == 9  # 3 batches of 3, no row twice, one left out
        orders.append(idx.tolist())
    assert len({tuple(o) for o in orders}) == 4  # a new permutation every epoch
    full = Minibatches(x, None, None).next()
    assert full.index is None and full.x is x and full.num_rows == 10


# ---------------------------------------------------------------------- guards
def test_a_non_finite_loss_keeps_the_last_finite_parameters():
    w = torch.zeros(2, requires_grad=True)
    seen = []

    def loss(batch):
        if len(seen) == 5:
            return (w * float("nan")).sum()
        seen.append(w.detach().clone())
        return (w - 1).pow(2).sum()

    opts = LoopOptions(num_steps=20, lr=0.1, lr_decay=1.0, optimizer="sgd")
    out = optimize([Player(loss, [w])], torch.zeros(4, 1), None, opts, progress=False)
    assert out.error is not None and out.error.step == 5 and len(out.losses) == 5
    # the parameters are put back to those of step 4, the last finite loss (they were
    # left one SGD step past it, where the loss was not finite)
    assert torch.equal(w.detach(), seen[-1])
    assert (f"put back to their values before the last update, where the loss was finite "
            f"({out.losses[-1]:.6g})") in str(out.error)
    assert out.info["stopped"] == "non_finite"


def test_a_parameter_infinite_only_as_the_model_reads_it_is_put_back(tmp_path):
    """PPCA by SGD at lr 0.01 on correlated_gaussian: log sigma stays finite while sigma =
    exp(log sigma) overflows, so the next loss is not finite; FitError's fit had sigma =
    inf (its log_prob -inf, its samples inf, its save unloadable). It is now the fit of
    the last finite loss, and it saves and loads."""
    x, _ = pgm.datasets.correlated_gaussian(200, dim=3, seed=0)
    with pytest.raises(pgm.FitError) as err:
        pgm.PPCA(3, 1).fit(x, method="map", seed=0, num_steps=200, optimizer="sgd",
                           lr=0.01, lr_decay=1.0, progress=False)
    fit = err.value.fit
    assert fit is not None and "where the loss was finite" in str(err.value)
    assert all(torch.isfinite(v).all() for v in fit.params.values()), fit.params
    assert torch.isfinite(fit.log_prob(x)).all() and torch.isfinite(fit.sample(5)).all()
    fit.save(tmp_path / "ppca")
    assert torch.equal(pgm.load(tmp_path / "ppca").log_prob(x), fit.log_prob(x))
    # resumed at the failing step (its checkpoint after step 7), the run has no earlier
    # parameters to put back: err.fit is None rather than a fit of infinite sigma
    kw = dict(method="map", seed=0, num_steps=200, optimizer="sgd", lr=0.01, lr_decay=1.0,
              progress=False, checkpoint=tmp_path / "ck", checkpoint_every=8)
    with pytest.raises(pgm.FitError, match="step 8") as first:
        pgm.PPCA(3, 1).fit(x, **kw)
    assert first.value.fit is not None
    with pytest.raises(pgm.FitError, match=r"The parameters there are not finite \(.*sigma"
                                           r".*\): there is no finite state to keep \(err.fit "
                                           r"is None\)") as resumed:
        pgm.PPCA(3, 1).fit(x, **kw, resume=tmp_path / "ck")
    assert resumed.value.fit is None


@pytest.mark.parametrize("num_steps", [3, 1])
def test_an_update_that_overflows_a_parameter_is_undone(num_steps):
    """Finite loss 1e38 * w[0] and gradient 1e38, but SGD at lr 1e10 moves w[0] to -inf
    (float32): the update is undone (seen at the next loss, or after the last step) and
    reported with its step; the parameters are those it started from."""
    w = torch.zeros(2, requires_grad=True)

    def loss(batch):
        return 1e38 * w[0] + (w[1] - 1).pow(2)

    opts = LoopOptions(num_steps=num_steps, lr=1e10, lr_decay=1.0, optimizer="sgd")
    out = optimize([Player(loss, [w])], torch.zeros(4, 1), None, opts, progress=False)
    assert out.error is not None and out.error.step == 0, out.error
    assert "Non-finite parameter update at step 0" in str(out.error)
    assert torch.equal(w.detach(), torch.zeros(2)) and out.losses == [0.0 + 1.0]


def test_gradient_clipping_bounds_the_step():
    target = torch.tensor([30.0, 40.0])  # gradient norm 100 at w = 0
    w, player, _ = quadratic(target)
    opts = LoopOptions(num_steps=1, lr=1.0, lr_decay=1.0, optimizer="sgd", grad_clip=2.0)
    optimize([player], torch.zeros(1, 1), None, opts, progress=False)
    assert torch.allclose(w.detach(), target / target.norm() * 2.0, atol=1e-6)  # along -g
    assert torch.allclose(w.detach().norm(), torch.tensor(2.0))


def test_callback_stops_and_the_progress_bar_shows_the_loss(capsys):
    w, player, _ = quadratic(torch.ones(1))

    def slow(batch):  # slower than tqdm's refresh interval, so the bar is drawn
        time.sleep(0.03)
        return player.loss(batch)

    opts = LoopOptions(num_steps=50, callback=lambda step, loss: step == 9)
    out = optimize([Player(slow, [w])], torch.zeros(2, 1), None, opts, progress=True,
                   desc="toy")
    assert len(out.losses) == 10 and out.info["stopped"] == "callback"
    err = capsys.readouterr().err
    assert "toy" in err and "loss=" in err


def test_two_players_alternate_k_to_one_with_no_second_loop():
    order = []
    a = torch.zeros(1, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)

    def critic(batch):
        order.append("c")
        return (a - 1).pow(2).sum()

    def generator(batch):
        order.append("g")
        return (b + a.detach()).pow(2).sum()

    opts = LoopOptions(num_steps=4, lr=0.1)
    out = optimize([Player(critic, [a], steps=3, name="critic"),
                    Player(generator, [b], name="generator")],
                   torch.zeros(8, 1), None, opts, progress=False)
    assert "".join(order) == "cccg" * 4 and len(out.losses) == 4


# ---------------------------------------------------------------------- validation
def test_early_stopping_keeps_the_best_parameters():
    w, player, _ = quadratic(torch.ones(1))
    values = iter([5.0, 4.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    snapshots = []

    def heldout():
        snapshots.append(w.detach().clone())
        return next(values)

    opts = LoopOptions(num_steps=100, lr=0.05, validation=0.1, patience=3, validate_every=2)
    out = optimize([player], torch.zeros(4, 1), None, opts, heldout=heldout, progress=False)
    assert out.info["stopped"] == "early_stopping" and len(out.losses) == 12
    assert out.info["best_step"] == 6 and out.info["best_heldout_loss"] == 1.0
    assert torch.equal(w.detach(), snapshots[2])  # the parameters at the best evaluation


def test_ctrl_c_keeps_the_best_parameters_too():
    """Interrupted after the fifth evaluation, the third being the best: the parameters
    are those of the third, as fit.info says (as when the fit runs to its end)."""
    w, player, _ = quadratic(torch.ones(1))
    values = iter([5.0, 4.0, 1.0, 2.0, 3.0])
    snapshots = []

    def heldout():
        snapshots.append(w.detach().clone())
        return next(values)

    def interrupt(step, loss):
        if step == 9:
            raise KeyboardInterrupt

    opts = LoopOptions(num_steps=100, lr=0.05, validation=0.1, validate_every=2,
                       callback=interrupt)
    out = optimize([player], torch.zeros(4, 1), None, opts, heldout=heldout, progress=False)
    assert out.interrupted and out.info["stopped"] == "interrupted" and len(out.losses) == 10
    assert out.info["best_step"] == 6 and out.info["best_heldout_loss"] == 1.0
    assert torch.equal(w.detach(), snapshots[2]) and not torch.equal(w.detach(), snapshots[4])


def test_a_kept_weight_average_is_what_is_evaluated_and_kept():
    """A player whose fit keeps the moving average of its weights: each held-out loss is
    measured at the average, and early stopping keeps the best average (before, the
    evaluation saw the last weights and the engine then put the last average back)."""
    from pyro_genmodels.infer.averaging import WeightAverage

    net = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(net.weight)
    avg = WeightAverage(net, 0.9)
    player = Player(lambda batch: (net.weight - 1.0).pow(2).sum(), net.parameters(),
                    after_step=lambda: avg.update(net), average=avg)
    values = iter([5.0, 4.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    seen, averages, raw = [], [], []

    def heldout():
        seen.append(net.weight.detach().clone())
        averages.append(avg.average[0].clone())
        return next(values)

    def own(step, loss):  # the weights the optimizer steps, between evaluations
        raw.append(net.weight.detach().clone())

    opts = LoopOptions(num_steps=100, lr=0.05, validation=0.1, patience=3, validate_every=2,
                       callback=own)
    out = optimize([player], torch.zeros(4, 1), None, opts, heldout=heldout, progress=False)
    assert out.info["stopped"] == "early_stopping" and out.info["best_step"] == 6
    assert all(torch.equal(s, a) for s, a in zip(seen, averages)) and len(seen) == 6
    assert not torch.equal(seen[2], raw[5])  # the average is not the last weights
    assert torch.equal(net.weight.detach(), seen[2]) and torch.equal(avg.average[0], seen[2])


@pytest.mark.parametrize("family", ["diffusion", "gan"])
def test_early_stopping_with_ema_returns_the_fit_stopped_at_its_best_step(family):
    """Diffusion (ema by default) and a GAN with ema: the fit that stopped early on held-out
    rows is, weight for weight, the same seeded fit run to ``best_step`` (before, the
    network was the average at the last step, whatever ``best_step`` said)."""
    from sklearn.datasets import load_breast_cancer

    x = torch.tensor(load_breast_cancer().data)
    train, held = x[:400], x[400:]
    if family == "diffusion":
        kw = dict(method="mle", lr=0.3, grad_clip=1.0, ema=0.99)
    else:
        kw = dict(method="adversarial", lr=0.01, ema=0.9)

    def run(num_steps, **more):
        with seeded(0):  # the initial weights
            model = (pgm.Diffusion(30, timesteps=20, hidden=(32,)) if family == "diffusion"
                     else pgm.GAN(30, hidden=(32,)))
        fit = model.fit(train, seed=0, progress=False, lr_decay=1.0, num_steps=num_steps,
                        **kw, **more)
        net = fit.model.network if family == "diffusion" else fit.model.generator
        return fit, torch.cat([p.detach().flatten() for p in net.parameters()])

    fit, kept = run(40, validation=held, validate_every=5, patience=2)
    k = fit.info["best_step"]
    assert fit.info["stopped"] == "early_stopping" and 0 < k < 30, fit.info["heldout_losses"]
    assert torch.equal(kept, run(k)[1])


def test_an_interrupted_fit_has_the_held_out_loss_its_info_reports():
    """Held-out rows off the training distribution: their loss turns up after a few steps,
    before the Ctrl-C at step 9; the fit returned is the best one, not the last."""
    x = pgm.datasets.correlated_gaussian(60, dim=2, seed=0)[0]
    train, held = x[20:], x[:20] * 3 + 2

    def interrupt(step, loss):
        if step == 9:
            raise KeyboardInterrupt

    fit = pgm.Gaussian(2).fit(train, method="map", seed=0, progress=False, num_steps=40,
                              lr=0.3, validation=held, callback=interrupt)
    assert fit.interrupted and len(fit.losses) == 10 and fit.info["best_step"] < 10
    assert -fit.log_prob(held).mean().item() == pytest.approx(fit.info["best_heldout_loss"],
                                                               rel=1e-6)
    # the ArviZ record says so too, in a form NetCDF keeps (it has no booleans)
    idata = fit.to_arviz()
    assert idata.attrs["interrupted"] == 1
    assert "interrupted" not in pgm.Gaussian(2).fit(train, method="map", seed=0, progress=False,
                                                    num_steps=5).to_arviz().attrs


def test_validation_options_are_checked_before_any_work():
    x = torch.randn(20, 2)
    model = pgm.Gaussian(2)
    with pytest.raises(ValueError, match="patience needs held-out data"):
        model.fit(x, method="map", patience=3)
    # accepted and recorded in fit.options, but nothing was evaluated
    with pytest.raises(ValueError, match=r"^validate_every needs held-out data: pass "
                                         r"validation=0.1"):
        model.fit(x, method="map", validate_every=7)
    with pytest.raises(ValueError, match=r"fraction in \(0, 1\)"):
        model.fit(x, method="map", validation=1.5)
    with pytest.raises(ValueError, match="leaves 0 held-out"):
        model.fit(x, method="map", validation=0.01)
    with pytest.raises(ValueError, match="validation"):
        model.fit(x, method="map", validation=torch.randn(5, 3))
    with pytest.raises(ValueError, match="Unknown option"):
        model.fit(x, method="nuts", validation=0.1)


def test_a_conditional_models_validation_rows_need_their_conditions():
    """A conditional model's held-out data are the pair (x_val, c_val), as ``prior_sweep``'s
    ``heldout=`` takes them (one helper says so for both); rows alone were refused only
    at their missing c, and missing or bad conditions of the pair, in words about c= (two
    reviews)."""
    x, c = torch.randn(30, 2), torch.randn(30, 1)
    model = pgm.Flow(2, context_dim=1, num_transforms=1, hidden=(4,))
    with pytest.raises(ValueError, match=r"Flow is conditional: expected validation to "
                                         r"be the pair \(x_val, c_val\).*got Tensor"):
        model.fit(x, c=c, method="mle", validation=torch.randn(5, 2))
    # the pair's conditions are named as its c_val, not as the c= the caller passed right
    with pytest.raises(ValueError, match=r"^Flow is conditional: expected validation=\(x_val, "
                                         r"c_val\) with c_val the conditions of the held-out "
                                         r"rows, but c_val is None$"):
        model.fit(x, c=c, method="mle", validation=(x[:5], None))
    with pytest.raises(ValueError, match=r"^validation=\(x_val, c_val\): c_val: c has 3 rows, "
                                         r"expected 5 \(one per data row"):
        model.fit(x, c=c, method="mle", validation=(x[:5], c[:3]))
    fit = model.fit(x, c=c, method="mle", num_steps=4, progress=False,
                    validation=(torch.randn(5, 2), torch.randn(5, 1)))
    assert len(fit.losses) == 4


def test_an_unconditional_models_validation_is_rows_not_a_pair():
    """A pair (x_val, c_val) given to an unconditional model was read as rows: "could not
    be read as a numeric array ... inhomogeneous shape". It is refused in words, by
    ``fit`` and ``prior_sweep`` alike, before any fit."""
    x = torch.randn(30, 2)
    pair = (x[:5], torch.zeros(5, 1))
    want = (r"^Gaussian is unconditional: expected {} to be the held-out rows alone, but "
            r"got a pair \(x_val, c_val\)")
    with pytest.raises(ValueError, match=want.format("validation")):
        pgm.Gaussian(2).fit(x, method="map", validation=pair)
    with pytest.raises(ValueError, match=want.format("heldout")):
        pgm.prior_sweep(pgm.Gaussian(2), x, prior_scales=[1.0], heldout=pair)
    fit = pgm.Gaussian(2).fit(x, method="map", num_steps=3, progress=False, validation=x[:5])
    assert len(fit.losses) == 3


def test_a_validation_fraction_is_a_fraction_whatever_number_type_it_comes_in():
    """0, 1, np.float32(0.2) and torch.tensor(0.2) were read as one row of held-out
    data ("must be 2-D"); every real number is a fraction, checked as one."""
    x = torch.randn(50, 2, dtype=torch.float64)
    model = pgm.Gaussian(2)
    for bad in (0, 1, np.int64(1), torch.tensor(1.5)):
        with pytest.raises(ValueError, match=r"fraction in \(0, 1\) or held-out data, but "
                                             r"got " + re.escape(repr(bad))):
            model.fit(x, method="map", validation=bad)
    want = model.fit(x, method="map", seed=3, progress=False, num_steps=5, validation=0.2)
    for same in (np.float32(0.2), np.float64(0.2), torch.tensor(0.2)):
        got = model.fit(x, method="map", seed=3, progress=False, num_steps=5,
                        validation=same)
        assert torch.equal(got.data, want.data) and got.losses == want.losses


def test_a_validation_fraction_holds_rows_out_of_training():
    x = torch.randn(50, 2, dtype=torch.float64)
    fit = pgm.Gaussian(2).fit(x, method="map", seed=3, progress=False, num_steps=20,
                              validation=0.2)
    assert fit.data.shape == (40, 2)
    train = {tuple(r) for r in fit.data.tolist()}
    assert len(train) == 40 and train < {tuple(r) for r in x.tolist()}
    assert len(fit.info["heldout_losses"]) == 20 and fit.info["best_step"] is not None
    again = pgm.Gaussian(2).fit(x, method="map", seed=3, progress=False, num_steps=20,
                                validation=0.2)
    assert torch.equal(again.data, fit.data)  # the split is drawn under the fit's seed


# ---------------------------------------------------------------------- checkpoints
def _flow_fit(x, **kw):
    with seeded(0):  # the same initial weights every time
        model = pgm.Flow(2, hidden=(8, 8), num_transforms=2)
    return model.fit(x, method="mle", seed=7, progress=False, batch_size=32, lr=3e-3,
                     num_steps=40, **kw)


def test_a_stopped_fit_resumes_bit_for_bit(tmp_path):
    with seeded(0):
        x = pgm.datasets.toy("banana").sample((200,))
    whole = _flow_fit(x)
    part = _flow_fit(x, checkpoint=tmp_path, checkpoint_every=10,
                     callback=lambda step, loss: step == 16)
    assert len(part.losses) == 17
    state, _ = ckpt.read(tmp_path)
    assert state["step"] == 17
    resumed = _flow_fit(x, resume=tmp_path)
    assert resumed.losses == whole.losses
    for a, b in zip(resumed.model.parameters(), whole.model.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="another fit"):
        _flow_fit(x[:100], resume=tmp_path)
    # what differs is named leaf by leaf (it printed both whole options dicts)
    with pytest.raises(ValueError, match=r"another fit \(saved vs now: options\.grad_clip "
                                         r"None vs 1\.0\); resume with the same") as err:
        _flow_fit(x, resume=tmp_path, grad_clip=1.0)
    assert "batch_size" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        _flow_fit(x, resume=tmp_path / "nowhere")


def test_a_refused_resume_says_why_of_validation_and_num_steps(tmp_path):
    """Another validation= is said as such (it was reported as other data, whose digest
    the split changes), and a larger num_steps says that a fit resumes to the steps it
    started with; the same call resumes."""
    x, _ = pgm.datasets.correlated_gaussian(100, dim=2, seed=0)

    def fit(**kw):
        return pgm.Gaussian(2).fit(x, method="map", progress=False, seed=0, **kw)

    fit(num_steps=20, validation=0.15, checkpoint=tmp_path)
    with pytest.raises(ValueError, match=r"was made with held-out data, and this fit has "
                                         r"none: resume with the validation= of the fit"):
        fit(num_steps=20, resume=tmp_path)
    with pytest.raises(ValueError, match=r"saved vs now: data '[0-9a-f]+' vs '[0-9a-f]+' "
                                         r"\(the training and held-out rows: another "
                                         r"validation= split differs too\)\)"):
        fit(num_steps=20, validation=0.2, resume=tmp_path)
    with pytest.raises(ValueError, match=r"saved vs now: options\.num_steps 20 vs 40 \(a fit "
                                         r"resumes to the num_steps it started with"):
        fit(num_steps=40, validation=0.15, resume=tmp_path)
    assert len(fit(num_steps=20, validation=0.15, resume=tmp_path).losses) == 20


def test_a_killed_fit_loses_at_most_k_steps_and_resumes_exactly(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal, torch
        import pyro_genmodels as pgm
        from pyro_genmodels._rng import seeded
        with seeded(0):
            x = pgm.datasets.toy("banana").sample((200,))
        def die(step, loss):
            if step == 23:
                os.kill(os.getpid(), signal.SIGKILL)
        with seeded(0):
            model = pgm.Flow(2, hidden=(8, 8), num_transforms=2)
        model.fit(
            x, method="mle", seed=7, progress=False, batch_size=32, lr=3e-3, num_steps=40,
            checkpoint={str(tmp_path)!r}, checkpoint_every=5, callback=die)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    state, _ = ckpt.read(tmp_path)  # never a torn file: the last one written is whole
    assert state["step"] == 20 and len(state["losses"]) == 20
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    with seeded(0):
        x = pgm.datasets.toy("banana").sample((200,))
    resumed = _flow_fit(x, resume=tmp_path)
    assert resumed.losses == _flow_fit(x).losses


def test_a_pyro_program_with_a_replay_buffer_resumes_bit_for_bit(tmp_path):
    """The ELBO objective (Pyro params, AutoDelta) and an objective with state of its
    own (the energy model's replay buffer) both come back exactly."""
    x = pgm.datasets.correlated_gaussian(60, dim=2, seed=1)[0]
    kw = dict(seed=2, progress=False, num_steps=30, batch_size=16)
    g_whole = pgm.Gaussian(2).fit(x, method="map", **kw)
    pgm.Gaussian(2).fit(x, method="map", checkpoint=tmp_path / "g", checkpoint_every=4,
                        callback=lambda s, v: s == 9, **kw)
    g = pgm.Gaussian(2).fit(x, method="map", resume=tmp_path / "g", **kw)
    assert g.losses == g_whole.losses
    assert all(torch.equal(g.point[k], g_whole.point[k]) for k in g.point)

    def energy():
        with seeded(0):
            return pgm.EnergyModel(2, hidden=(8,), noise_conditional=False)

    ekw = dict(kw, buffer_size=50, mcmc_steps=2)
    e_whole = energy().fit(x, method="mle", **ekw)
    energy().fit(x, method="mle", checkpoint=tmp_path / "e", checkpoint_every=5,
                 callback=lambda s, v: s == 11, **ekw)
    e = energy().fit(x, method="mle", resume=tmp_path / "e", **ekw)
    assert e.losses == e_whole.losses
    for a, b in zip(e.model.parameters(), e_whole.model.parameters()):
        assert torch.equal(a, b)


@pytest.fixture(scope="module")
def raw_wine():
    """scikit-learn's wine as it comes (proline in the hundreds, hue near 1), float64,
    split 140 / 38 by a seeded permutation."""
    from sklearn.datasets import load_wine

    x = torch.tensor(load_wine().data, dtype=torch.float64)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x[perm[:140]], x[perm[140:]]


def _paired_gap(a: torch.Tensor, b: torch.Tensor):
    """Mean of the per-row differences a - b and its standard error."""
    d = a - b
    return d.mean().item(), (d.std() / len(d) ** 0.5).item()


@pytest.mark.cost(11)
@pytest.mark.slow  # three fits and held-out standard errors: 11 s
def test_early_stopping_on_raw_wine_beats_a_fixed_step_count(raw_wine):
    train, test = raw_wine
    gauss = pgm.Gaussian(13).fit(train, method="mle", seed=0, progress=False)

    def flow():
        with seeded(0):
            return pgm.Flow(13).double()

    fixed = flow().fit(train, method="mle", seed=0, progress=False, num_steps=300)
    stopped = flow().fit(train, method="mle", seed=0, progress=False, num_steps=300,
                         validation=0.15, patience=20)
    assert stopped.info["stopped"] == "early_stopping"
    assert len(stopped.losses) < 300 and stopped.info["best_step"] < len(stopped.losses)
    assert fixed.log_prob(train).mean() > stopped.log_prob(train).mean()  # it overfits...
    gap, se = _paired_gap(stopped.log_prob(test), fixed.log_prob(test))
    assert gap > 3 * se  # ...and early stopping is better on held-out rows, beyond noise
    gap, se = _paired_gap(stopped.log_prob(test), gauss.log_prob(test))
    assert gap > -3 * se  # and no worse than the Gaussian, within noise


def test_a_pyro_optimizer_trains_at_its_own_rate_and_options_it_would_not_read_are_refused(
        tmp_path):
    """A ``pyro.optim`` optimizer is used as given: ``pyro.optim.Adam({"lr": 0.01})``
    takes the steps of ``optimizer="adam", lr=0.01, lr_decay=1`` (the oracle). ``lr=0.1`` beside
    it was recorded and did nothing; the options only a torch optimizer the loop builds
    reads are now refused by name, before any work."""
    x = pgm.datasets.correlated_gaussian(200, dim=2, seed=0)[0]
    kw = dict(method="map", seed=0, num_steps=20, progress=False)
    model = pgm.Gaussian(2)
    ours = model.fit(x, optimizer="adam", lr=0.01, lr_decay=1.0, **kw)
    pyros = model.fit(x, optimizer=pyro.optim.Adam({"lr": 0.01}), **kw)
    np.testing.assert_allclose(pyros.losses, ours.losses, rtol=1e-6)
    # the record names the optimizer that ran and holds no options it did not read (it
    # recorded lr=0.05 and lr_decay=0.05, the defaults, beside pyro.optim.Adam at 0.01),
    # through a save and a load too; a torch optimizer class is recorded by its name
    assert ours.options["optimizer"] == "adam" and ours.options["lr"] == 0.01
    expected = {"optimizer": "pyro.optim.Adam", "optimizer_args": {"lr": 0.01}}
    pyros.save(tmp_path / "pyros")
    for record in (pyros.options, pgm.load(tmp_path / "pyros").options):
        assert {k: record.get(k) for k in expected} == expected
        assert not {"lr", "lr_decay", "betas", "critic_lr"} & set(record), record
    sgd = model.fit(x, optimizer=torch.optim.SGD, lr=1e-3, **kw).options
    assert sgd["optimizer"] == "torch.optim.sgd.SGD" and sgd["lr"] == 1e-3
    # a pyro.optim scheduler by its own name (it was recorded as the Adam inside it)
    decayed = model.fit(x, optimizer=pyro.optim.ExponentialLR(
        {"optimizer": torch.optim.Adam, "optim_args": {"lr": 0.01}, "gamma": 0.9}), **kw)
    assert {k: decayed.options.get(k) for k in expected} == {
        "optimizer": "pyro.optim.ExponentialLR", "optimizer_args": {
            "optimizer": "torch.optim.adam.Adam", "optim_args": {"lr": 0.01}, "gamma": 0.9}}
    for unread in (dict(lr=0.1), dict(lr_decay=0.5), dict(lr=0.1, lr_decay=0.5)):
        names = ", ".join(f"{k}=" for k in unread)
        with pytest.raises(ValueError, match=f"^{names}: options of the optimizer the loop "
                                             f"builds, but optimizer=pyro.optim.SGD"):
            model.fit(x, optimizer=pyro.optim.SGD({"lr": 1e-4}), **kw, **unread)
    with pytest.raises(ValueError, match=r"^critic_lr=, betas=: .* optimizer=pyro.optim.Adam\("):
        pgm.GAN(2, hidden=(8,)).fit(x, method="adversarial", critic_lr=0.1,
                                    betas=(0.5, 0.9), optimizer=pyro.optim.Adam({"lr": 1e-3}))


def test_a_non_finite_gradient_at_the_first_step_says_the_start_is_kept():
    """sqrt(w) at w = 0: a finite loss, an infinite gradient at step 0. The message said
    the parameters were left "at their values after step -1"."""
    w = torch.zeros(3, requires_grad=True)
    opts = LoopOptions(num_steps=5, lr=0.1, lr_decay=1.0, optimizer="sgd")
    out = optimize([Player(lambda batch: w.sqrt().sum(), [w])], torch.zeros(4, 1), None,
                   opts, progress=False)
    assert out.error is not None and out.error.step == 0
    assert str(out.error) == ("Non-finite gradient at step 0 (loss = 0.0); the parameters "
                              "were left at their starting values. Try a smaller lr, or "
                              "check the data scale.")
    assert torch.equal(w.detach(), torch.zeros(3))


def test_an_optimizer_whose_step_needs_a_closure_is_refused_before_any_step():
    """Any torch.optim.Optimizer subclass was accepted, and LBFGS failed inside torch at
    the first step ("LBFGS.step() missing 1 required positional argument: 'closure'"):
    the loop calls step() with no closure. Such an optimizer is refused when the options
    are checked, saying what is supported; one whose closure is optional trains."""
    x = pgm.datasets.correlated_gaussian(60, dim=3, seed=0)[0]
    model = pgm.Gaussian(3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    expected = (r"^optimizer=LBFGS: its step\(\) requires a closure .* closure-based "
                r"optimizers are not supported\. Expected one of \['adagrad', 'adam', "
                r"'adamw', 'rmsprop', 'sgd'\], or a torch.optim.Optimizer subclass .* whose "
                r"step\(\) takes no required closure$")
    for opt in (torch.optim.LBFGS, pyro.optim.PyroOptim(torch.optim.LBFGS, {"lr": 1.0})):
        with pytest.raises(ValueError, match=expected):
            model.fit(x, method="map", optimizer=opt, num_steps=20, progress=False)
        with pytest.raises(ValueError, match=expected):
            LoopOptions(optimizer=opt)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    class Stepper(torch.optim.Adam):  # a closure it may take, as every built-in one
        def step(self, closure=None):
            return super().step(closure)

    fit = model.fit(x, method="map", optimizer=Stepper, num_steps=3, progress=False)
    assert len(fit.losses) == 3
