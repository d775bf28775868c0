"""The attribution methods. Each returns a ``[n_queries, n_train]`` float64 score matrix.

Sign convention: score > 0 means including the training example raises the query's measured
output. With ``f`` the measurement, ``L_i`` the loss of training example ``i`` and ``H`` the
curvature of the mean training loss:

* graddot: ``-grad f . grad L_i`` (one gradient step on ``L_i`` changes ``f`` by ``-lr`` times it);
* gradcos: the same divided by both norms;
* tracin: ``sum_k lr_k (-grad f_k . grad L_i,k)`` over checkpoints ``k``;
* influence: ``-grad f^T (H + damping)^-1 grad L_i`` (n times the change in ``f`` when ``i`` is
  added to the training set, to first order); averaged over checkpoints;
* trak: traker's scores (ensemble over checkpoints), positive = raises the output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import ConfigError, InputError
from .features import FeatureStore
from .grads import batch_grad_fn, check_finite, gauss_newton_rows, grad_dim, per_example_grads, sampled_loss_grads
from .projection import make_projector


def _check_finite(t, what: str):
    import torch

    if not torch.isfinite(t).all():
        raise InputError(f"{what}: NaN or infinite values; check the model checkpoint and inputs")
    return t


# ------------------------------------------------------------------ gradient-feature methods
def gradient_features(model, task, examples, quantity, names, cfg, projector, ckpt_id, dtype=None):
    g = per_example_grads(model, task, examples, quantity, names, cfg.batch_size, dtype=dtype)
    if projector is not None:
        g = projector.project(g, ckpt_id)
    return g


def score_from_features(load, n_ckpts, model, task, queries, names, cfg, store: FeatureStore):
    import torch

    d = grad_dim(model, names)
    proj = make_projector(cfg.projector, d, cfg.proj_dim, cfg.seed)
    if cfg.method in ("graddot", "gradcos"):
        ckpts = [n_ckpts - 1]
        weights = [1.0]
    else:
        lr = cfg.lr or [1.0] * n_ckpts
        if len(lr) != n_ckpts:
            raise ConfigError(f"lr has {len(lr)} step sizes for {n_ckpts} checkpoints; give one per checkpoint")
        ckpts, weights = list(range(n_ckpts)), lr
    total = None
    for k, w in zip(ckpts, weights):
        load(k)
        q = gradient_features(model, task, queries, "measurement", names, cfg, proj, k).double().numpy()
        t = np.asarray(store.load(k), dtype=np.float64)
        if cfg.method == "gradcos":
            qn = np.linalg.norm(q, axis=1, keepdims=True)
            tn = np.linalg.norm(t, axis=1, keepdims=True)
            s = -(q / np.maximum(qn, 1e-30)) @ (t / np.maximum(tn, 1e-30)).T
        else:
            s = -w * (q @ t.T)
        total = s if total is None else total + s
    return total


# ------------------------------------------------------------------ influence functions
class _Batches:
    def __init__(self, task, examples, bs):
        self.task, self.examples, self.bs = task, examples, bs

    def __iter__(self):
        for s in range(0, len(self.examples), self.bs):
            yield self.task.collate(list(self.examples[s:s + self.bs]))


def _reference_batch(batch_size: int, d: int, budget: int = 1 << 22) -> int:
    """Examples per vectorised batch on the small-model reference paths (explicit / cg): at least
    ``batch_size``, up to 512 while a batch's rows stay near ``budget`` numbers per model output.
    Per-example rows do not depend on the batch, so this changes speed only (vmap's per-batch
    overhead dominates on small models: 0.20 s at 16 vs 0.04 s at 256 on the bench classifier)."""
    return max(batch_size, min(512, budget // max(d, 1)))


def influence_explicit(model, task, train, queries, names, cfg):
    """``-Q (G + lambda I)^-1 T^T`` in float64, ``G`` the curvature of the mean training loss.

    ``curvature="gn"``: the exact Gauss-Newton matrix (closed-form output Hessian, no sampling);
    ``"fisher"``: the Monte-Carlo Fisher from ``fisher_samples`` sampled labels per example.
    ``lambda = damping x mean eigenvalue of G``.
    """
    import torch

    f64 = torch.float64
    bs = _reference_batch(cfg.batch_size, grad_dim(model, names))
    if cfg.curvature == "gn":
        R = gauss_newton_rows(model, task, train, names, bs, dtype=f64)   # [n, O, d]
        S = R.reshape(-1, R.shape[-1]) * R.shape[1] ** 0.5   # so that S^T S / len(S) = sum_i R_i^T R_i / n
    else:
        S = sampled_loss_grads(model, task, train, cfg.seed, cfg.fisher_samples, names, dtype=f64)
    T = per_example_grads(model, task, train, "loss", names, bs, dtype=f64)
    Q = per_example_grads(model, task, queries, "measurement", names, bs, dtype=f64)
    d = S.shape[1]
    if cfg.hessian == "explicit":
        if d > 20000:
            raise ConfigError(f"influence hessian=explicit: {d} parameters is too many for a dense "
                              "inverse; use hessian=ekfac or cg, or restrict params")
        F = S.T @ S / S.shape[0]
        lam = cfg.damping * float(torch.trace(F)) / d
        X = torch.linalg.solve(F + lam * torch.eye(d, dtype=f64), Q.T)  # [d, q]
    else:
        lam = cfg.damping * float((S ** 2).sum()) / (S.shape[0] * d)
        X = _cg(lambda v: S.T @ (S @ v) / S.shape[0] + lam * v, Q.T, cfg.cg_tol, cfg.cg_max_iter)
    return -(X.T @ T.T).numpy()


def _cg(matvec, B, tol, max_iter):
    """Conjugate gradients for each column of ``B`` (an SPD operator ``matvec``)."""
    import torch

    X = torch.zeros_like(B)
    R = B - matvec(X)
    P = R.clone()
    rs = (R * R).sum(0)
    b_norm = (B * B).sum(0).clamp_min(1e-300)
    for _ in range(max_iter):
        if bool((rs / b_norm <= tol ** 2).all()):
            return X
        AP = matvec(P)
        alpha = rs / (P * AP).sum(0).clamp_min(1e-300)
        X = X + alpha * P
        R = R - alpha * AP
        rs_new = (R * R).sum(0)
        P = R + (rs_new / rs.clamp_min(1e-300)) * P
        rs = rs_new
    raise ConfigError(f"influence hessian=cg did not converge in {max_iter} iterations; raise cg_max_iter "
                      "or damping")


def influence_kfac(model, task, train, queries, cfg, modules):
    """``-Q_precond . T`` with K-FAC / EK-FAC preconditioning of the query gradients."""
    import torch

    from .kfac import KFAC, flatten, layer_grads

    batches = _Batches(task, train, cfg.batch_size)
    kf = KFAC(model, task, modules, ekfac=cfg.hessian == "ekfac", damping=cfg.damping).fit(batches, cfg.seed)
    pq = []
    for b in _Batches(task, queries, cfg.batch_size):
        g, _ = layer_grads(model, task, b, modules, "measurement")
        pq.append(flatten(kf.precondition(g), modules))
    PQ = _check_finite(torch.cat(pq), "query gradients")
    cols = []
    for b in batches:
        g, _ = layer_grads(model, task, b, modules, "loss")
        t = _check_finite(flatten(g, modules).to(PQ.dtype), "training gradients")
        cols.append(-(PQ @ t.T))
    return torch.cat(cols, dim=1).numpy()


# ------------------------------------------------------------------ TRAK
def trak_scores(load_sd, n_ckpts, model, task, train, queries, names, cfg, save_dir: Path | None, load=None):
    """TRAK scores ``[n_queries, n_train]``, ensembled over checkpoints (``cfg.trak_impl``);
    ``save_dir`` ``None``: native features stay in memory (traker always needs a folder);
    ``load(k)`` applies checkpoint ``k`` to the model (default ``load_state_dict(load_sd(k))``)."""
    if cfg.trak_impl == "traker":
        return _trak_traker(load_sd, n_ckpts, model, task, train, queries, names, cfg, save_dir)
    return _trak_native(load_sd, n_ckpts, model, task, train, queries, names, cfg, save_dir, load)


def _trak_native(load_sd, n_ckpts, model, task, train, queries, names, cfg, save_dir: Path | None, load=None):
    """traker's TRAK formula on tribute's own features (no ``TRAKer`` bookkeeping).

    Per checkpoint ``m``: ``X_m`` = projected gradients of ``task.train_output`` over
    ``sqrt(n_params)`` (traker's normalisation; it sets the scale of ``lambda_reg``), with the
    out-to-loss weights ``w_m`` as a last column, ``A_m = (X_m^T X_m + lambda_reg I)^-1`` scaled
    to mean ``|A_m|`` = 1 (as traker does), and ``S = mean_m(Q_m A_m X_m^T) * mean_m(w_m)`` with
    ``Q_m`` the projected query gradients of ``task.measurement``: the scores traker's
    ``finalize_scores`` returns, in float64.

    With ``save_dir`` the features go to ``save_dir/features.npy`` (``[n_ckpts, n_train, k + 1]``
    float32, written once, atomically; ``save_dir`` lies in the features folder whose manifest
    :func:`~tribute.attribution.api.attribute` checks and writes first; a rerun with the same
    settings reuses the file and only takes the query gradients). Without it (a run with no features folder) they stay
    in memory: nothing is written. One pass over the checkpoints computes training and query
    features together, so each checkpoint's weights are loaded once.
    """
    import torch

    if cfg.lambda_reg == 0 and cfg.proj_dim > len(train):
        raise ConfigError(f"trak: proj_dim={cfg.proj_dim} exceeds the {len(train)} training examples, so "
                          "X^T X is singular; set lambda_reg > 0 (e.g. 1e-3) or lower proj_dim")
    if load is None:
        def load(k):
            model.load_state_dict(load_sd(k))
    d = grad_dim(model, names)
    proj = make_projector(cfg.projector, d, cfg.proj_dim, cfg.seed)
    path = None
    if save_dir is not None:
        # the folder above holds the run's manifest (settings, checkpoints' and train set's
        # fingerprints), checked before this runs: a folder made with other inputs is refused
        save_dir.mkdir(parents=True, exist_ok=True)
        path = save_dir / "features.npy"          # [n_ckpts, n_train, proj_dim + 1], written once
    on_disk = path is not None and path.exists()
    shape = (n_ckpts, len(train), cfg.proj_dim + 1)
    stored = None
    if on_disk:
        stored = np.load(path, mmap_mode="r", allow_pickle=False)
        if stored.shape != shape:
            raise ConfigError(f"{path}: shape {stored.shape} on disk, expected {shape}; delete the folder "
                              "and run again")
    batches = [] if on_disk else [task.collate(list(train[s:s + cfg.batch_size]))
                                  for s in range(0, len(train), cfg.batch_size)]
    qbatches = [(s, task.collate(list(queries[s:s + cfg.batch_size]))) for s in range(0, len(queries), cfg.batch_size)]
    grads = batch_grad_fn(model, task, names)     # the model's weights change in place: one plan
    root = d ** 0.5
    eye = cfg.lambda_reg * torch.eye(cfg.proj_dim, dtype=torch.float64)
    acc = {"total": 0.0, "w": 0.0}

    spare = [None]     # the previous batch's gradient block, overwritten by the next (no reallocation)

    def features(k: int) -> np.ndarray:
        F, start = np.empty(shape[1:], dtype="<f4"), 0
        for b in batches:
            stop = start + b[0].shape[0]
            raw = spare[0] = grads(b, "train_output", start, check=False, out=spare[0])
            g = proj.project(raw, k, inplace=True)
            if not torch.isfinite(g).all():      # NaN / inf in a gradient reach its projected row
                check_finite(raw, start, "train_output gradient")
            F[start:stop, :-1] = (g / root).numpy()
            with torch.no_grad():
                F[start:stop, -1] = task.out_to_loss_grad(model, b).reshape(-1).float().numpy()
            start = stop
        return F

    def run(fh=None):     # one pass: checkpoint k's weights are loaded once, its block streamed out
        if fh is not None:
            np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": shape})
        for k in range(n_ckpts):
            load(k)
            F = np.array(stored[k]) if on_disk else features(k)   # a writable copy of one block
            if fh is not None:
                fh.write(F.tobytes())
            X32 = torch.from_numpy(F[:, :-1])
            X = X32.double()
            # X^T X in float32 (as traker does; the features are float32), solved in float64
            L, info = torch.linalg.cholesky_ex((X32.T @ X32).double() + eye)
            if int(info) != 0:
                raise ConfigError("trak: the feature matrix is singular; set lambda_reg > 0 (e.g. 1e-3) or "
                                  "lower proj_dim")
            A = torch.cholesky_inverse(L)
            Q = proj.project(torch.cat([grads(b, "measurement", s) for s, b in qbatches]), k) / root
            acc["total"] = acc["total"] + (Q.double() @ (A / A.abs().mean())) @ X.T
            acc["w"] = acc["w"] + torch.from_numpy(F[:, -1]).double()

    was_training = model.training
    try:
        if path is not None and not on_disk:
            from ..core.manifest import atomic_write

            atomic_write(path, run)      # streamed: one checkpoint's block in memory at a time
        else:
            run()
    finally:
        model.train(was_training)
    return ((acc["total"] / n_ckpts) * (acc["w"] / n_ckpts)[None, :]).numpy()


def _trak_traker(load_sd, n_ckpts, model, task, train, queries, names, cfg, save_dir: Path):
    """TRAK scores from traker's ``TRAKer`` (ensemble over checkpoints), ``[n_queries, n_train]``."""
    import logging

    import torch
    from trak import TRAKer
    from trak.modelout_functions import AbstractModelOutput

    from .projection import traker_projector

    class _Output(AbstractModelOutput):
        def __init__(self):
            self.mode = "train"

        def get_output(self, model, weights, buffers, *example):
            batch = tuple(t.unsqueeze(0) for t in example)

            def call(x):
                return torch.func.functional_call(model, (weights, buffers), (x,))

            fn = task.train_output if self.mode == "train" else task.measurement
            return fn(call, batch)[0]

        def get_out_to_loss_grad(self, model, weights, buffers, batch):
            def call(x):
                return torch.func.functional_call(model, (weights, buffers), (x,))

            return task.out_to_loss_grad(call, tuple(batch)).reshape(-1, 1).clone().detach()

    out = _Output()
    d = grad_dim(model, names)
    projector = None
    if cfg.projector != "traker":
        projector = traker_projector(cfg.projector, d, cfg.proj_dim, cfg.seed)
    logging.getLogger("TRAK").setLevel(logging.WARNING)
    model.eval()
    if save_dir.exists():  # traker cannot resume a finalized store with a CPU projector: start clean
        import shutil

        shutil.rmtree(save_dir)
    tr = TRAKer(model=model, task=out, train_set_size=len(train), save_dir=str(save_dir),
                device="cpu", proj_dim=cfg.proj_dim, projector=projector, use_half_precision=False,
                proj_max_batch_size=cfg.batch_size if cfg.batch_size in (8, 16, 32) else 32,
                lambda_reg=cfg.lambda_reg, grad_wrt=names, logging_level=logging.WARNING,
                projector_seed=cfg.seed)
    for k in range(n_ckpts):
        sd = load_sd(k)
        tr.load_checkpoint(sd, model_id=k)
        out.mode = "train"
        for s in range(0, len(train), cfg.batch_size):
            e = min(s + cfg.batch_size, len(train))
            tr.featurize(batch=task.collate(list(train[s:e])), inds=np.arange(s, e))
    try:
        tr.finalize_features()
    except RuntimeError as e:  # torch.linalg errors: X^T X singular
        raise ConfigError(f"trak: the feature matrix is singular ({str(e).splitlines()[0][:80]}); "
                          "set lambda_reg > 0 (e.g. 1e-3) or lower proj_dim") from e
    exp = "queries"
    for k in range(n_ckpts):
        out.mode = "query"
        tr.start_scoring_checkpoint(exp_name=exp, checkpoint=load_sd(k), model_id=k, num_targets=len(queries))
        for s in range(0, len(queries), cfg.batch_size):
            e = min(s + cfg.batch_size, len(queries))
            tr.score(batch=task.collate(list(queries[s:e])), num_samples=e - s)
    scores = tr.finalize_scores(exp_name=exp)
    return np.asarray(scores, dtype=np.float64).T
