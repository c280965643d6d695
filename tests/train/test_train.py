"""tailscope.train: the WW-PGD projection on constructed spectra, the optimizer wrapper, AlphaLR,
callbacks and the IDX loader. Oracles: spectra we build as U diag(s) V^T, numpy SVDs of the result,
and the closed-form properties of the map (monotone, exact trace-log)."""

from __future__ import annotations

import gzip
import math
import struct

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tailscope.errors import ConfigError, InputError
from tailscope.fit.powerlaw import fit_power_law
from tailscope.train import (
    AlphaLR,
    ProjectionConfig,
    SpectralProjection,
    SpectralProjectionCallback,
    layer_alphas,
    layerwise_param_groups,
    load_mnist,
    log_projection,
    read_idx,
)
from tailscope.train.projection import nearest_in_window, project_tail, tail_window, target_logs

pytestmark = pytest.mark.usefixtures("one_thread")


def heavy_spectrum(m: int, alpha: float, n_tail: int, seed: int) -> np.ndarray:
    """Ascending eigenvalues: a uniform bulk in [0.05, 1] and a Pareto(alpha) tail above 1."""
    rng = np.random.default_rng(seed)
    bulk = rng.uniform(0.05, 1.0, m - n_tail)
    tail = (1.0 - rng.uniform(0, 1, n_tail)) ** (-1.0 / (alpha - 1.0)) * 1.05
    return np.sort(np.concatenate([bulk, tail]))


def linear_with_spectrum(evals: np.ndarray, n_out: int, seed: int) -> torch.nn.Linear:
    """A Linear(n_in = M, n_out) layer whose W = U diag(sqrt(evals)) V^T."""
    rng = np.random.default_rng(seed)
    m = evals.size
    u, _ = np.linalg.qr(rng.standard_normal((n_out, m)))
    v, _ = np.linalg.qr(rng.standard_normal((m, m)))
    layer = torch.nn.Linear(m, n_out)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(u @ np.diag(np.sqrt(evals[::-1])) @ v.T))
    return layer


def evals_of(weight: torch.Tensor) -> np.ndarray:
    w = weight.detach().reshape(weight.shape[0], -1).double().numpy()
    return np.sort(np.linalg.svd(w, compute_uv=False) ** 2)


def normalized_tracelog(evals: np.ndarray, k: int) -> float:
    scaled = np.sort(evals) * evals.size / evals.sum()
    return float(np.log(scaled[-k:]).sum())


def tail_alpha(evals: np.ndarray, k: int) -> float:
    tail = np.sort(evals)[-k:]
    return 1.0 + k / np.log(tail / tail[0]).sum()


def project_and_check_tracelog(opt, weight, epoch, index=0, target=0.0):
    """Project, then check the trace-log against an oracle: the new singular values along the k
    directions that were the tail (from our own SVD of the old weight), over the new mean ||W'||^2/M."""
    as_matrix = lambda: weight.detach().reshape(weight.shape[0], -1).double().numpy()  # noqa: E731
    u, _, vt = np.linalg.svd(as_matrix(), full_matrices=False)
    row = opt.project(epoch).layers[index]
    assert row.status == "projected", row.reason
    w_new = as_matrix()
    s_tail = np.einsum("ok,oi,ki->k", u[:, : row.tail], w_new, vt[: row.tail])
    mean = (w_new**2).sum() / min(w_new.shape)
    assert np.log(s_tail**2 / mean).sum() == pytest.approx(target, abs=1e-6)
    assert row.tracelog_after == pytest.approx(target, abs=1e-9)
    return row


# -- the map on constructed spectra ------------------------------------------------------------

@pytest.mark.parametrize("preserve", ["norm", "bulk"])
def test_projection_reaches_alpha_and_exact_tracelog(preserve):
    evals = heavy_spectrum(128, alpha=4.0, n_tail=30, seed=1)
    model = torch.nn.Sequential(linear_with_spectrum(evals, 256, seed=2))
    opt = SpectralProjection(model, torch.optim.SGD(model.parameters(), lr=0.1), preserve=preserve, eta=0.5)
    alpha0 = fit_power_law(evals).alpha
    for epoch in range(8):
        row = project_and_check_tracelog(opt, model[0].weight, epoch)
    after = evals_of(model[0].weight)
    assert normalized_tracelog(after, row.tail) == pytest.approx(0.0, abs=0.05)  # the tail stayed on top
    assert abs(alpha0 - 2.0) > 1.0
    assert abs(tail_alpha(after, row.tail) - 2.0) < 0.15
    assert abs(fit_power_law(after).alpha - 2.0) < 0.5 * abs(alpha0 - 2.0)
    if preserve == "norm":
        assert after.sum() == pytest.approx(evals.sum(), rel=1e-9)  # ||W||_F unchanged


spectra = st.builds(
    lambda m, sigma, seed: np.sort(np.random.default_rng(seed).lognormal(0.0, sigma, m)),
    st.integers(12, 160), st.floats(0.2, 2.5), st.integers(0, 2**31 - 1),
)


@settings(max_examples=150, deadline=None)
@given(evals=spectra, frac=st.floats(0.05, 0.9), eta=st.floats(1e-3, 1.0), tl_step=st.one_of(st.just(1.0), st.floats(0.0, 1.0)),
       alpha=st.floats(1.5, 6.0), target=st.floats(-3.0, 3.0), preserve=st.sampled_from(["norm", "bulk"]))
def test_projection_is_monotone_and_never_crosses(evals, frac, eta, tl_step, alpha, target, preserve):
    m = evals.size
    window = tail_window(evals, alpha, target)
    assume(window.size > 0)
    k = nearest_in_window(int(frac * m), window)
    step = project_tail(evals, k, target_alpha=alpha, tracelog_target=target, eta=eta,
                        tracelog_step=tl_step, preserve=preserve)
    if not step.ok:
        assert step.status == "infeasible" and np.array_equal(step.evals, evals)
        return
    nu_old, nu_new = m / evals.sum(), m / step.evals.sum()
    old, new = evals[-k:] * nu_old, step.evals[-k:] * nu_new  # normalized units
    goal = np.exp(target_logs(k, alpha, target))
    tol = 1e-9 * np.maximum(goal, old)
    assert np.all(step.evals > 0)
    up, down = goal > old, goal < old
    assert np.all(new[up] >= old[up] - tol[up]) and np.all(new[up] <= goal[up] + tol[up])
    assert np.all(new[down] <= old[down] + tol[down]) and np.all(new[down] >= goal[down] - tol[down])
    # each moves at least eta of its log-distance
    assert np.all(np.abs(np.log(new / old)) >= eta * np.abs(np.log(goal / old)) - 1e-9)
    assert step.closed >= max(eta, tl_step) - 1e-12
    assert np.all((step.weights >= eta - 1e-12) & (step.weights <= 1 + 1e-12))
    gap_before = float(np.log(old).sum()) - target
    assert float(np.log(new).sum()) - target == pytest.approx((1 - step.closed) * gap_before, abs=1e-8 * k)
    if tl_step == 1.0:
        assert float(np.log(new).sum()) == pytest.approx(target, abs=1e-9 * k)
    if preserve == "norm":  # same normalization: the guarantees hold in raw units too
        assert nu_new == pytest.approx(nu_old, rel=1e-12)
    else:
        assert np.allclose(step.evals[: m - k], evals[: m - k], rtol=0, atol=0)


@pytest.mark.parametrize("alpha, target", [(2.0, 0.0), (3.0, 1.0), (1.5, -2.0)])
def test_tail_window_matches_a_direct_check_of_every_k(alpha, target):
    rng = np.random.default_rng(0)
    for evals in (np.sort(rng.lognormal(0, 1.5, 100)), heavy_spectrum(128, 4.0, 30, 1)):
        m, nu = evals.size, evals.size / evals.sum()
        direct = []
        for k in range(2, m):
            goal = np.exp(target_logs(k, alpha, target))
            bulk = evals[: m - k] * nu
            if goal.sum() < m and bulk.max() * (m - goal.sum()) / bulk.sum() <= goal.min():
                direct.append(k)
        assert list(tail_window(evals, alpha, target)) == direct
    assert list(tail_window(heavy_spectrum(128, 4.0, 30, 1), 2.0, 0.0)) == list(range(52, 58))


def test_small_layers_and_short_tails_are_untouched():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Linear(128, 10))
    before = [p.detach().clone() for p in model.parameters()]
    opt = SpectralProjection(model, torch.optim.Adam(model.parameters()), min_tail=1000)
    rows = opt.project(0).layers
    assert [r.status for r in rows] == ["skipped", "skipped"]
    assert "min_tail" in rows[0].reason and "min_evals" in rows[1].reason
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_warmup_and_ramp():
    cfg = ProjectionConfig(eta=0.6, warmup_epochs=2, ramp_epochs=3)
    assert [cfg.step_at(e) for e in range(6)] == pytest.approx([0, 0, 0.2, 0.4, 0.6, 0.6])
    model = torch.nn.Sequential(linear_with_spectrum(heavy_spectrum(64, 4.0, 16, 0), 96, 0))
    w0 = model[0].weight.detach().clone()
    opt = SpectralProjection(model, torch.optim.SGD(model.parameters(), lr=0.1), cfg)
    assert opt.project(1).layers[0].status == "warmup" and torch.equal(w0, model[0].weight)
    assert opt.project(2).layers[0].eta == pytest.approx(0.2)


def test_conv2d_is_projected_as_the_reshaped_matrix():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(16, 48, 3)
    model = torch.nn.Sequential(conv)
    opt = SpectralProjection(model, torch.optim.SGD(model.parameters(), lr=0.1), min_evals=10)
    for epoch in range(3):
        row = project_and_check_tracelog(opt, conv.weight, epoch)
        assert row.shape == (48, 144)
    assert conv.weight.shape == (48, 16, 3, 3)


def test_layer_selection_by_role_regex_and_id():
    model = torch.nn.ModuleDict({"up_proj": torch.nn.Linear(32, 64), "down_proj": torch.nn.Linear(64, 32)})
    names = lambda **kw: [layer.name for layer in SpectralProjection(model, torch.optim.SGD(model.parameters(), 0.1), **kw).layers]  # noqa: E731
    assert names() == ["up_proj", "down_proj"]
    assert names(layers=("mlp_down",)) == ["down_proj"]
    assert names(layers=("^up",)) == ["up_proj"]
    assert names(layers=(-1,)) == ["down_proj"]  # drop layer id 1 (ids over named_modules, root = 0)


@pytest.mark.parametrize("bad, match", [
    (dict(eta=0.0), "eta"), (dict(tail="tpl"), "tail"), (dict(moments="zero"), "moments"),
    (dict(target_alpha=1.0), "target_alpha"), (dict(layers=("[",)), "regex"), (dict(min_tail=1), "min_tail"),
    (dict(preserve="x"), "preserve"), (dict(tracelog_step=1.5), "tracelog_step"),
])
def test_config_errors_name_the_option(bad, match):
    with pytest.raises(ConfigError, match=match):
        ProjectionConfig(**bad)


# -- the optimizer wrapper -------------------------------------------------------------------

def _digits_like(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 32, generator=g)
    y = (x[:, :4].argmax(1)).long()
    return x, y


def _mlp() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(32, 96), torch.nn.ReLU(), torch.nn.Linear(96, 96),
                               torch.nn.ReLU(), torch.nn.Linear(96, 4))


def _train(model, opt, x, y, steps):
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_wrapper_is_an_optimizer_and_state_dict_round_trips():
    model = _mlp()
    x, y = _digits_like()
    opt = SpectralProjection(model, torch.optim.Adam(model.parameters(), lr=1e-2))
    assert isinstance(opt, torch.optim.Optimizer) and opt.state is opt.optimizer.state
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)  # schedulers accept it
    _train(model, opt, x, y, 5)
    sched.step()
    assert opt.optimizer.param_groups[0]["lr"] == pytest.approx(5e-3)
    opt.project(0)
    saved = opt.state_dict()
    assert saved["spectral_projection"]["rounds"] == 1
    other = SpectralProjection(model, torch.optim.Adam(model.parameters(), lr=1.0))
    other.load_state_dict(saved)
    assert other.rounds == 1 and other.param_groups[0]["lr"] == pytest.approx(5e-3)
    for p in model.parameters():
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(other.state[p][key], opt.state[p][key])


@pytest.mark.parametrize("policy", ["rescale", "reset", "keep"])
def test_adam_resumes_after_projection_and_moments_follow_policy(policy):
    model = _mlp()
    x, y = _digits_like()
    opt = SpectralProjection(model, torch.optim.Adam(model.parameters(), lr=1e-2), moments=policy, min_evals=10)
    _train(model, opt, x, y, 20)
    w = model[2].weight
    old_w = w.detach().double().clone()
    old_m = opt.state[w]["exp_avg"].double().clone()
    old_v = opt.state[w]["exp_avg_sq"].clone()
    row = opt.project(0).layers[1]
    assert row.status == "projected"
    new_m = opt.state[w]["exp_avg"].double()
    if policy == "keep":
        assert torch.equal(new_m, old_m)
    elif policy == "reset":
        assert not new_m.any() and not opt.state[w]["exp_avg_sq"].any() and float(opt.state[w]["step"]) == 0
    else:
        u, s, vh = torch.linalg.svd(old_w, full_matrices=False)
        ratio = torch.einsum("oi,ok,ki->k", w.detach().double(), u, vh) / s  # s'/s in the kept basis
        coeff_old = torch.einsum("oi,ok,ki->k", old_m, u, vh)
        coeff_new = torch.einsum("oi,ok,ki->k", new_m, u, vh)
        assert torch.allclose(coeff_new, ratio * coeff_old, rtol=1e-4, atol=1e-10)
        rest = lambda m, c: m - (u * c) @ vh  # noqa: E731 - the part outside the singular directions
        assert torch.allclose(rest(new_m, coeff_new), rest(old_m, coeff_old), atol=1e-6)
        assert torch.equal(opt.state[w]["exp_avg_sq"], old_v)
    losses = _train(model, opt, x, y, 30)
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_every_steps_projects_inside_step():
    model = _mlp()
    x, y = _digits_like()
    opt = SpectralProjection(model, torch.optim.SGD(model.parameters(), lr=0.05), every_steps=4, min_evals=10)
    _train(model, opt, x, y, 9)
    assert opt.rounds == 2 and len(opt.history) == 2


# -- AlphaLR ----------------------------------------------------------------------------------

def test_alpha_lr_maps_alphas_linearly_to_the_range():
    heavy = linear_with_spectrum(heavy_spectrum(64, 2.5, 20, 3), 128, 3)
    light = linear_with_spectrum(heavy_spectrum(64, 6.0, 20, 4), 128, 4)
    mid = linear_with_spectrum(heavy_spectrum(64, 4.0, 20, 5), 128, 5)
    model = torch.nn.Sequential(heavy, mid, light)
    opt = torch.optim.SGD(layerwise_param_groups(model, lr=0.1), lr=0.1)
    sched = AlphaLR(opt, model, s_min=0.5, s_max=1.5)
    alphas = layer_alphas(model)
    assert alphas == pytest.approx(sched.alphas)
    lo, hi = min(alphas.values()), max(alphas.values())
    lrs = {g["layer"]: g["lr"] for g in opt.param_groups}
    for name, a in alphas.items():
        assert lrs[name] == pytest.approx(0.1 * (0.5 + (a - lo) / (hi - lo)))
    assert lrs["0"] == pytest.approx(0.05) and lrs["2"] == pytest.approx(0.15)
    assert set(sched.state_dict()) >= {"alphas", "multipliers", "base_lrs"}


def test_alpha_lr_needs_layer_groups():
    model = _mlp()
    with pytest.raises(ConfigError, match="layerwise_param_groups"):
        AlphaLR(torch.optim.SGD(model.parameters(), lr=0.1), model)


# -- callbacks ---------------------------------------------------------------------------------

def test_log_projection_lines_and_records():
    model = _mlp()
    opt = SpectralProjection(model, torch.optim.SGD(model.parameters(), lr=0.1), min_evals=10)
    lines: list[str] = []
    recs = log_projection(opt.project(0), lines.append)
    assert len(recs) == 3 and len(lines) == 4 and "tracelog gap" in lines[0]
    projected = [r for r in recs if r["status"] == "projected"]
    assert projected and all(abs(r["tracelog_gap_after"]) < 1e-9 for r in projected)
    assert all(r["tracelog_gap_before"] == r["tracelog_before"] for r in projected)


class _Classifier(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = _mlp()

    def forward(self, x, labels=None):  # noqa: ANN001, ANN201
        logits = self.net(x)
        return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}


def test_trainer_callback_projects_at_epoch_ends(tmp_path):
    from transformers import Trainer, TrainingArguments

    x, y = _digits_like()
    rows = [{"x": a, "labels": b} for a, b in zip(x[:128], y[:128])]
    model = _Classifier()
    opt = SpectralProjection(model, torch.optim.AdamW(model.parameters(), lr=1e-3), min_evals=10)
    callback = SpectralProjectionCallback(opt)
    args = TrainingArguments(output_dir=str(tmp_path), num_train_epochs=2, per_device_train_batch_size=32,
                             report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=rows, optimizers=(opt, None), callbacks=[callback])
    trainer.train()  # the Trainer builds its LR scheduler on the wrapper
    assert opt.rounds == 2 and [r["epoch"] for r in callback.records if r["layer"] == "net.0"] == [0, 1]
    logged = [h for h in trainer.state.log_history if "wwpgd/mean_alpha" in h]
    assert len(logged) == 2 and all(math.isfinite(h["wwpgd/mean_alpha"]) for h in logged)


# -- IDX files ---------------------------------------------------------------------------------

def _idx(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    head = bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + array.astype(array.dtype.newbyteorder(">")).tobytes()


def test_idx_loader_reads_mnist_layout(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 7, dtype=np.uint8)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx(labels))
    x, y = load_mnist(tmp_path, "train")
    assert x.shape == (7, 784) and x.dtype == np.float32
    assert np.allclose(x * 255, images.reshape(7, -1)) and np.array_equal(y, labels)
    floats = np.arange(6, dtype=np.float32).reshape(2, 3)
    (tmp_path / "f.idx").write_bytes(_idx(floats, 0x0D))
    assert np.array_equal(read_idx(tmp_path / "f.idx"), floats)


@pytest.mark.parametrize("mutate, match", [
    (lambda b: b"\x01" + b[1:], "first two bytes"),
    (lambda b: b[:2] + b"\x07" + b[3:], "data type"),
    (lambda b: b[:-5], "bytes"),
    (lambda b: b[:6], "truncated IDX header"),
])
def test_idx_loader_rejects_malformed_files(tmp_path, mutate, match):
    good = _idx(np.zeros((3, 4, 4), dtype=np.uint8))
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(mutate(good))
    with pytest.raises(InputError, match=match) as info:
        read_idx(path)
    assert "bad-idx3-ubyte" in str(info.value)


def test_idx_loader_checks_the_pair(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx(np.zeros((3, 2, 2), dtype=np.uint8)))
    with pytest.raises(InputError, match="missing t10k-labels"):
        load_mnist(tmp_path, "test")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx(np.zeros(4, dtype=np.uint8)))
    with pytest.raises(InputError, match="4 labels for 3 images"):
        load_mnist(tmp_path, "test")
