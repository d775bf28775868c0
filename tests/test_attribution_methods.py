"""Per-example gradients and every attribution method against naive float64 references.

Tiny seeded models; tolerances are named at the top. Sign convention under test: score > 0 means
including the training example raises the query's measured output.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tribute.attribution import AttributionConfig, CausalLMTask, ClassificationTask, attribute  # noqa: E402
from tribute.attribution.grads import per_example_grads  # noqa: E402
from tribute.attribution.projection import CountSketchProjector, GaussianProjector  # noqa: E402

GRAD_RTOL = 1e-4          # float32 vmap gradients vs float64 autograd loop
SCORE_RTOL = 1e-3         # float32 feature pipelines vs float64 references (relative to max |score|)
SOLVE_RTOL = 1e-6         # float64 explicit inverse vs CG
TRAK_CORR = 0.995         # traker inverts X^T X in float32: correlation with the float64 formula


def _mlp(seed=0, d_in=5, hidden=6, classes=3):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(d_in, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, classes))


def _data(n=24, d_in=5, classes=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d_in, generator=g)
    y = (X[:, 0] * 2 + X[:, 1]).gt(0).long() + (X[:, 2] > 1).long() * (classes > 2)
    return [(X[i], int(y[i])) for i in range(n)]


def _train(model, data, steps=40, lr=0.3, save_every=None):
    X = torch.stack([x for x, _ in data])
    y = torch.tensor([t for _, t in data])
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    ckpts = []
    for s in range(steps):
        loss = torch.nn.functional.cross_entropy(model(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if save_every and (s + 1) % save_every == 0:
            ckpts.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    return ckpts


def _naive_grads(model, task, examples, quantity):
    """float64 autograd, one example at a time."""
    m = _copy64(model)
    rows = []
    for ex in examples:
        batch = tuple(b.double() if b.is_floating_point() else b for b in task.collate([ex]))
        val = getattr(task, quantity)(m, batch).sum()
        ps = list(m.parameters())
        gs = torch.autograd.grad(val, ps, allow_unused=True)
        rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(gs, ps)]))
    return torch.stack(rows).numpy()


def _copy64(model):
    import copy

    return copy.deepcopy(model).double()


def _close(a, b, rtol):
    scale = max(np.abs(b).max(), 1e-12)
    assert np.abs(a - b).max() <= rtol * scale, f"max diff {np.abs(a - b).max():.3g} vs scale {scale:.3g}"


@pytest.fixture(scope="module")
def setup():
    model = _mlp()
    data = _data()
    ckpts = _train(model, data, steps=45, save_every=15)
    return model, data, ckpts


def test_per_example_grads_match_naive_float64(setup):
    model, data, _ = setup
    task = ClassificationTask()
    for q in ("loss", "measurement"):
        ref = _naive_grads(model, task, data, q)
        got = per_example_grads(model, task, data, q, batch_size=7).double().numpy()   # nn.Linear hook path
        _close(got, ref, GRAD_RTOL)
        vm = per_example_grads(model, task, data, q, batch_size=7, dtype=torch.float32).double().numpy()  # vmap
        _close(vm, ref, GRAD_RTOL)


class _SharedLayers(torch.nn.Module):
    """A layer called twice, inputs with a token axis, and a layer that does not reach the output."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.a, self.b, self.unused = torch.nn.Linear(4, 4), torch.nn.Linear(4, 3), torch.nn.Linear(4, 2)

    def forward(self, x):                      # x: [B, T, 4]
        h = torch.tanh(self.a(torch.tanh(self.a(x))))
        self.unused(x)
        return self.b(h).mean(1)


def test_hooked_grads_shared_layer_token_axis_and_unused_layer():
    """The nn.Linear hook path sums a layer's calls, handles a token axis, gives zeros for a layer
    that does not reach the quantity, and scores only the named parameters (naive float64 rows)."""
    model = _SharedLayers()
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(3, 4, generator=g), i % 3) for i in range(6)]
    task = ClassificationTask()
    ref = _naive_grads(model, task, data, "loss")
    got = per_example_grads(model, task, data, "loss", batch_size=4).double().numpy()
    _close(got, ref, GRAD_RTOL)
    assert np.abs(got[:, -10:]).max() == 0                # unused.weight and unused.bias
    names = ["a.bias", "b.weight"]                        # a subset, in named_parameters order
    cols = np.r_[16:20, 20:32]
    _close(per_example_grads(model, task, data, "loss", names, batch_size=4).double().numpy(), ref[:, cols], GRAD_RTOL)


def test_per_example_grads_causal_lm():
    from tribute.attribution.lm import LMConfig, TinyGPT

    model = TinyGPT(LMConfig(vocab_size=11, max_len=8, d_model=8, n_head=2, d_ff=8, n_layer=1))
    task = CausalLMTask(max_len=8)
    ex = [([2, 5, 6, 7, 8], 0), ([2, 9, 10], 1), ([2, 5, 5, 5, 5, 6, 7, 8], 3)]
    for q in ("loss", "measurement"):
        got = per_example_grads(model, task, ex, q, batch_size=2).double().numpy()
        _close(got, _naive_grads(model, task, ex, q), GRAD_RTOL)


def test_graddot_gradcos_tracin_match_reference(setup):
    model, data, ckpts = setup
    task = ClassificationTask()
    train, queries = data, data[:4]
    ref_t, ref_q = [], []
    for sd in ckpts:
        model.load_state_dict(sd)
        ref_t.append(_naive_grads(model, task, train, "loss"))
        ref_q.append(_naive_grads(model, task, queries, "measurement"))
    dot = -ref_q[-1] @ ref_t[-1].T
    _close(attribute(model, ckpts, task, train, queries, "graddot").scores, dot, SCORE_RTOL)
    qn = ref_q[-1] / np.linalg.norm(ref_q[-1], axis=1, keepdims=True)
    tn = ref_t[-1] / np.linalg.norm(ref_t[-1], axis=1, keepdims=True)
    _close(attribute(model, ckpts, task, train, queries, "gradcos").scores, -qn @ tn.T, SCORE_RTOL)
    lr = [0.5, 0.3, 0.2]
    tracin = sum(-w * (q @ t.T) for w, q, t in zip(lr, ref_q, ref_t))
    _close(attribute(model, ckpts, task, train, queries, "tracin", lr=lr).scores, tracin, SCORE_RTOL)


def test_sign_convention_self_influence_positive(setup):
    """A training example attributed to itself raises its own margin: every method scores > 0."""
    model, data, ckpts = setup
    task = ClassificationTask()
    for method, kw in [("graddot", {}), ("tracin", {}), ("influence", {"hessian": "explicit"}),
                       ("influence", {"hessian": "ekfac"})]:
        s = attribute(model, ckpts, task, data, data[:6], method, **kw).scores
        assert (np.diag(s[:, :6]) > 0).all(), method


def _exact_gn(model, task, data):
    """The exact Gauss-Newton (= true Fisher) of the mean loss, enumerating classes, float64."""
    m = _copy64(model)
    d = sum(p.numel() for p in m.parameters())
    F = torch.zeros(d, d, dtype=torch.float64)
    for x, _ in data:
        logits = m(x.double()[None])[0]
        p = torch.softmax(logits, -1).detach()
        for c in range(len(p)):
            lp = torch.log_softmax(m(x.double()[None])[0], -1)[c]
            g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(lp, list(m.parameters()))])
            F += p[c] * torch.outer(g, g)
    return F / len(data)


def test_influence_explicit_and_cg_match_exact_gauss_newton(setup):
    model, data, ckpts = setup
    model.load_state_dict(ckpts[-1])
    task = ClassificationTask()
    queries = data[:3]
    F = _exact_gn(model, task, data)
    d = F.shape[0]
    damping = 0.1
    H = F + damping * torch.trace(F) / d * torch.eye(d, dtype=torch.float64)
    T = torch.tensor(_naive_grads(model, task, data, "loss"))
    Q = torch.tensor(_naive_grads(model, task, queries, "measurement"))
    ref = -(Q @ torch.linalg.solve(H, T.T)).numpy()
    # curvature "gn" (default): the closed-form Gauss-Newton, equal to the naive one
    exp = attribute(model, [ckpts[-1]], task, data, queries, "influence", hessian="explicit",
                    damping=damping).scores
    cg = attribute(model, [ckpts[-1]], task, data, queries, "influence", hessian="cg", damping=damping).scores
    _close(exp, ref, SOLVE_RTOL)
    _close(cg, ref, SOLVE_RTOL * 100)
    # curvature "fisher": Monte-Carlo Fisher (120 sampled labels per example), close, not equal
    mc = attribute(model, [ckpts[-1]], task, data, queries, "influence", hessian="explicit",
                   damping=damping, curvature="fisher", fisher_samples=120).scores
    mc_cg = attribute(model, [ckpts[-1]], task, data, queries, "influence", hessian="cg",
                      damping=damping, curvature="fisher", fisher_samples=120).scores
    _close(mc_cg, mc, SOLVE_RTOL * 100)
    corr = np.corrcoef(mc.ravel(), ref.ravel())[0, 1]
    assert 0.99 < corr < 1 - 1e-9, corr


def test_gauss_newton_rows_need_a_small_output():
    """An LM's vocabulary x tokens output is refused for curvature gn with a pointer to fisher."""
    from tribute.attribution.lm import LMConfig, TinyGPT
    from tribute.core.errors import ConfigError

    model = TinyGPT(LMConfig(vocab_size=40, max_len=8, d_model=8, n_head=2, d_ff=8, n_layer=1))
    ex = [([2, 5, 6, 7, 8, 9, 10, 11], 0)] * 2
    with pytest.raises(ConfigError, match="curvature='fisher'"):
        attribute(model, None, CausalLMTask(max_len=8), ex, ex, "influence", hessian="cg")


class _EmpiricalTask(ClassificationTask):
    """Deterministic 'sampling' (the true labels) so a naive K-FAC reference can reproduce it."""

    def sampled_loss(self, model, batch, generator):
        return self.loss(model, batch)


def test_ekfac_and_kfac_match_naive_float64(setup):
    model, data, ckpts = setup
    model.load_state_dict(ckpts[-1])
    task = _EmpiricalTask()
    queries = data[:3]
    m = _copy64(model)
    lin = [mod for mod in m if isinstance(mod, torch.nn.Linear)]
    # naive per-example layer gradients [W | b] and the activations / output-grads
    per_t, per_q, acts, ogs = [[] for _ in lin], [[] for _ in lin], [[] for _ in lin], [[] for _ in lin]
    for kind, exs in (("t", data), ("q", queries)):
        for x, y in exs:
            xb, yb = x.double()[None], torch.tensor([y])
            h = [xb]
            outs = []
            z = xb
            for mod in m:
                z = mod(z)
                if isinstance(mod, torch.nn.Linear):
                    outs.append(z)
                else:
                    h.append(z)
            val = task.loss(lambda _: z, (xb, yb)).sum() if kind == "t" else task.measurement(lambda _: z, (xb, yb)).sum()
            gouts = torch.autograd.grad(val, outs)
            for k in range(len(lin)):
                a = torch.cat([h[k][0].detach(), torch.ones(1, dtype=torch.float64)])
                g = gouts[k][0].detach()
                (per_t if kind == "t" else per_q)[k].append(torch.outer(g, a))
                if kind == "t":
                    acts[k].append(a)
                    ogs[k].append(g)
    for ekfac in (False, True):
        ref = np.zeros((len(queries), len(data)))
        for k in range(len(lin)):
            A = torch.stack(acts[k]).T @ torch.stack(acts[k]) / len(data)
            G = torch.stack(ogs[k]).T @ torch.stack(ogs[k]) / len(data)
            ea, QA = torch.linalg.eigh(A)
            eg, QG = torch.linalg.eigh(G)
            lam = torch.outer(eg.clamp_min(0), ea.clamp_min(0))
            if ekfac:
                lam = torch.stack([(QG.T @ d @ QA) ** 2 for d in per_t[k]]).mean(0)
            damp = 0.1 * lam.mean()
            for i, dq in enumerate(per_q[k]):
                pq = QG @ ((QG.T @ dq @ QA) / (lam + damp)) @ QA.T
                for j, dt in enumerate(per_t[k]):
                    ref[i, j] -= float((pq * dt).sum())
        got = attribute(model, [ckpts[-1]], task, data, queries, "influence",
                        hessian="ekfac" if ekfac else "kfac", damping=0.1).scores
        _close(got, ref, SCORE_RTOL)


def test_trak_matches_naive_formula(setup, tmp_path):
    """traker's scores equal the TRAK formula on the same projected features, up to scale."""
    model, data, ckpts = setup
    task = ClassificationTask()
    queries = data[:4]
    k, lam = 16, 1e-2
    got = attribute(model, ckpts, task, data, queries, "trak", proj_dim=k, projector="gaussian",
                    lambda_reg=lam, features_dir=tmp_path / "f").scores
    d = sum(p.numel() for p in model.parameters())
    proj = GaussianProjector(d, k, seed=0)
    ref = np.zeros_like(got)
    for mid, sd in enumerate(ckpts):
        model.load_state_dict(sd)
        tg = torch.tensor(_naive_grads(model, task, data, "train_output")).float()
        qg = torch.tensor(_naive_grads(model, task, queries, "measurement")).float()
        X = (proj.project(tg, mid) / d ** 0.5).double().numpy()
        Xq = (proj.project(qg, mid) / d ** 0.5).double().numpy()
        xtx = X.T @ X + lam * np.eye(k)
        inv = np.linalg.inv(xtx)
        inv /= np.abs(inv).mean()
        with torch.no_grad():
            p = torch.softmax(model(torch.stack([x for x, _ in data])), -1)
            q = (1 - p[torch.arange(len(data)), torch.tensor([y for _, y in data])]).double().numpy()
        ref += (Xq @ inv @ X.T) * q[None, :]
    corr = np.corrcoef(got.ravel(), ref.ravel())[0, 1]
    assert corr > TRAK_CORR, corr


def test_trak_native_equals_traker(setup, tmp_path):
    """tribute's own TRAK featurisation gives traker's TRAKer scores on the same projector."""
    model, data, ckpts = setup
    task = ClassificationTask()
    kw = dict(proj_dim=16, lambda_reg=1e-2)
    for projector in ("gaussian", "countsketch"):
        ours = attribute(model, ckpts, task, data, data[:5], "trak", projector=projector, trak_impl="native",
                         features_dir=tmp_path / f"n-{projector}", **kw).scores
        ref = attribute(model, ckpts, task, data, data[:5], "trak", projector=projector, trak_impl="traker",
                        features_dir=tmp_path / f"t-{projector}", **kw).scores
        _close(ours, ref, SCORE_RTOL)


def test_trak_native_features_reused_and_in_memory_run_equal(setup, tmp_path, monkeypatch):
    """TRAK (native) writes its features once into features_dir and a rerun reuses the file; a run
    without a features folder writes nothing and gives the same scores; the folder refuses
    another train set."""
    import tempfile

    from tribute.core.errors import ConfigError

    model, data, ckpts = setup
    task = ClassificationTask()
    kw = dict(proj_dim=16, lambda_reg=1e-2, projector="countsketch")
    first = attribute(model, ckpts, task, data, data[:5], "trak", features_dir=tmp_path / "f", **kw).scores
    path = tmp_path / "f" / "trak" / "features.npy"
    feats, stamp = np.load(path), path.stat().st_mtime_ns
    assert feats.shape == (len(ckpts), len(data), 17) and feats.dtype == np.float32
    again = attribute(model, ckpts, task, data, data[:5], "trak", features_dir=tmp_path / "f", **kw).scores
    assert path.stat().st_mtime_ns == stamp and np.array_equal(again, first)
    spare = tmp_path / "tmp"
    spare.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spare))
    mem = attribute(model, ckpts, task, data, data[:5], "trak", **kw).scores
    assert np.array_equal(mem, first) and not any(spare.iterdir())
    with pytest.raises(ConfigError, match="other settings"):
        attribute(model, ckpts, task, data[1:], data[:5], "trak", features_dir=tmp_path / "f", **kw)


def test_trak_native_nan_gradient_names_the_example_and_writes_no_features(setup, tmp_path):
    """TRAK checks finiteness on the projected rows, then names the example from its gradient."""
    from tribute.core.errors import InputError

    model, data, ckpts = setup
    data = list(data)
    data[5] = (torch.full_like(data[5][0], float("nan")), data[5][1])
    with pytest.raises(InputError, match="example 5: its train_output gradient"):
        attribute(model, ckpts, ClassificationTask(), data, data[:2], "trak", proj_dim=8, projector="countsketch",
                  lambda_reg=1e-2, batch_size=4, features_dir=tmp_path / "f")
    assert not (tmp_path / "f" / "trak" / "features.npy").exists()
    assert not [p for p in (tmp_path / "f" / "trak").iterdir()]        # no temp file left behind


def test_fingerprint_fast_path_gives_the_general_bytes():
    """(tensor, int) examples take a stacked shortcut; lists take the general path: same hash, and
    the bytes are the documented ones."""
    import hashlib

    from tribute.attribution.api import fingerprint_examples

    g = torch.Generator().manual_seed(0)
    pairs = [(torch.randn(2, 3, generator=g), i * 7) for i in range(5)]
    assert fingerprint_examples(pairs) == fingerprint_examples([list(p) for p in pairs])
    x = torch.tensor([1.0, 2.0])
    want = hashlib.sha256(b"[float32(2,)" + x.numpy().tobytes() + b"12]").hexdigest()
    assert fingerprint_examples([(x, 12)]) == fingerprint_examples([[x, 12]]) == "sha256:" + want
    assert fingerprint_examples(pairs) != fingerprint_examples(pairs[:4] + [(pairs[4][0], 1)])


def test_countsketch_is_a_sparse_linear_map_and_preserves_inner_products():
    d, k = 500, 64
    cs = CountSketchProjector(d, k, seed=3)
    eye = torch.eye(d)
    P = cs.project(eye, 0)                     # row i = image of e_i: one nonzero of +-1
    assert ((P != 0).sum(1) == 1).all() and set(P[P != 0].abs().tolist()) == {1.0}
    g = torch.randn(5, d, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(cs.project(g, 0), g @ P, atol=1e-5)
    assert not torch.equal(cs.project(g, 1), cs.project(g, 0))   # another checkpoint, another sketch
    # unbiased inner products: average over many seeds approaches the exact Gram matrix
    est = sum(CountSketchProjector(d, k, seed=s).project(g, 0) @ CountSketchProjector(d, k, seed=s).project(g, 0).T
              for s in range(200)) / 200
    assert torch.allclose(est, g @ g.T, atol=0.1 * float((g @ g.T).abs().max()))


def test_projected_graddot_approximates_full(setup):
    model, data, ckpts = setup
    task = ClassificationTask()
    full = attribute(model, ckpts, task, data, data[:4], "graddot").scores
    proj = attribute(model, ckpts, task, data, data[:4], "graddot", proj_dim=512, projector="countsketch").scores
    assert np.corrcoef(full.ravel(), proj.ravel())[0, 1] > 0.95


def test_config_validation_names_the_field():
    from tribute.core.errors import ConfigError

    for kw, word in [({"method": "nope"}, "method"), ({"method": "trak"}, "proj_dim"),
                     ({"projector": "gaussian"}, "proj_dim"), ({"damping": 0}, "damping"),
                     ({"method": "influence", "proj_dim": 4, "projector": "gaussian"}, "influence")]:
        with pytest.raises(ConfigError, match=word):
            AttributionConfig(**kw)
