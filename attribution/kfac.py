"""K-FAC and EK-FAC curvature for the ``nn.Linear`` layers of a model (influence functions).

For each linear layer the Fisher block is approximated by ``A (x) G``: ``A`` = second moment of
the layer inputs (with a 1 appended for the bias) per token, ``G`` = second moment of the
gradients at the layer outputs per example, both measured with targets sampled from the model
(``Task.sampled_loss``, i.e. the true Fisher = Gauss-Newton for softmax outputs). EK-FAC keeps
the eigenvectors of ``A`` and ``G`` but refits the eigenvalues to the per-example gradients
projected on them (George et al. 2018; Grosse et al. 2023). Damping is ``damping x mean
eigenvalue`` of each layer (relative; documented in docs/attribution.md).

Per-example gradients of a linear layer come from hooks: with a loss summed over the batch,
the gradient at example ``b``'s outputs depends only on example ``b``, so
``dW_b = sum_t g_bt a_bt^T`` exactly. Only ``nn.Linear`` layers are scored; the manifest lists
them (embeddings and norms are left out, as in kronfluence).
"""

from __future__ import annotations

import contextlib
from typing import Sequence

from ..core.errors import ConfigError, InputError


def linear_modules(model, include: Sequence[str] | None = None) -> list[str]:
    import torch

    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    if include:
        names = [n for n in names if any(n == p or n.startswith(p.rstrip(".") + ".") for p in include)]
    if not names:
        raise ConfigError("influence (kfac/ekfac): the model has no nn.Linear layers to score; "
                          "use hessian='explicit' or 'cg'")
    return names


@contextlib.contextmanager
def _capture(model, names):
    """Record (inputs, output-grads) of each named Linear for every forward call."""
    mods = dict(model.named_modules())
    store = {n: [] for n in names}
    handles = []

    def make(n):
        def hook(mod, inp, out):
            a = inp[0].detach()
            if mod.bias is not None:
                a = _with_ones(a)
            entry = {"a": a}
            store[n].append(entry)
            if out.requires_grad:
                out.register_hook(lambda g: entry.__setitem__("g", g.detach()))
        return hook

    for n in names:
        handles.append(mods[n].register_forward_hook(make(n)))
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def _with_ones(a):
    import torch

    return torch.cat([a, torch.ones(*a.shape[:-1], 1, dtype=a.dtype, device=a.device)], dim=-1)


def _as3d(t):
    # [B, ..., d] -> [B, T, d]
    return t.reshape(t.shape[0], -1, t.shape[-1])


def layer_grads(model, task, batch, names, quantity="loss", generator=None):
    """Per-example gradients ``{module: [B, out, in(+1)]}`` of ``quantity`` summed over the batch."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    with _capture(model, names) as store:
        if quantity == "sampled":
            val = task.sampled_loss(model, batch, generator)
        else:
            val = getattr(task, quantity)(model, batch)
        torch.autograd.grad(val.sum(), params, allow_unused=True)
    out = {}
    for n in names:
        total = None
        for e in store[n]:
            if "g" not in e:
                continue
            d = torch.einsum("bto,bti->boi", _as3d(e["g"]), _as3d(e["a"]))
            total = d if total is None else total + d
        if total is None:
            raise ConfigError(f"influence: layer {n!r} does not affect the loss; exclude it with --params")
        out[n] = total
    return out, store


class KFAC:
    """Fitted factors for a set of linear layers; ``precondition`` applies the damped inverse."""

    def __init__(self, model, task, names, ekfac: bool = True, damping: float = 0.1):
        if damping <= 0:
            raise ConfigError(f"damping={damping}: must be > 0 (it is relative to the mean eigenvalue)")
        self.model, self.task, self.names, self.ekfac, self.damping = model, task, list(names), ekfac, damping
        self.QA, self.QG, self.lam = {}, {}, {}

    def fit(self, batches, seed: int = 0, dtype=None) -> "KFAC":
        import torch

        dtype = dtype or torch.float64
        gen = torch.Generator().manual_seed(int(seed))
        A = {n: None for n in self.names}
        G = {n: None for n in self.names}
        n_tok = {n: 0 for n in self.names}
        n_ex = 0
        self.model.eval()
        for batch in batches:
            _, store = layer_grads(self.model, self.task, batch, self.names, "sampled", gen)
            n_ex += batch[0].shape[0]
            for n in self.names:
                for e in store[n]:
                    if "g" not in e:
                        continue
                    a = e["a"].reshape(-1, e["a"].shape[-1]).to(dtype)
                    g = e["g"].reshape(-1, e["g"].shape[-1]).to(dtype)
                    A[n] = a.T @ a if A[n] is None else A[n] + a.T @ a
                    G[n] = g.T @ g if G[n] is None else G[n] + g.T @ g
                    n_tok[n] += a.shape[0]
        if n_ex == 0:
            raise InputError("influence: the train set is empty; give at least one training example")
        for n in self.names:
            if A[n] is None:
                raise ConfigError(f"influence: layer {n!r} does not affect the loss; exclude it with --params")
            ea, qa = torch.linalg.eigh(A[n] / n_tok[n])
            eg, qg = torch.linalg.eigh(G[n] / n_ex)
            self.QA[n], self.QG[n] = qa, qg
            self.lam[n] = torch.outer(eg.clamp_min(0), ea.clamp_min(0))  # [out, in]
        if self.ekfac:
            self._refit_eigenvalues(batches, seed)
        return self

    def _refit_eigenvalues(self, batches, seed):
        import torch

        gen = torch.Generator().manual_seed(int(seed) + 1)
        acc = {n: torch.zeros_like(self.lam[n]) for n in self.names}
        n_ex = 0
        for batch in batches:
            grads, _ = layer_grads(self.model, self.task, batch, self.names, "sampled", gen)
            n_ex += batch[0].shape[0]
            for n in self.names:
                r = self.QG[n].T @ grads[n].to(self.QG[n].dtype) @ self.QA[n]
                acc[n] += (r ** 2).sum(0)
        for n in self.names:
            self.lam[n] = acc[n] / n_ex

    def precondition(self, grads: dict) -> dict:
        """``(F + damping * mean_eig * I)^-1 g`` per layer, for ``{module: [B, out, in]}``."""
        out = {}
        for n in self.names:
            lam = self.lam[n]
            d = self.damping * float(lam.mean())
            if d <= 0:
                raise ConfigError(f"influence: layer {n!r} has zero curvature; exclude it with --params")
            g = grads[n].to(lam.dtype)
            r = self.QG[n].T @ g @ self.QA[n]
            out[n] = self.QG[n] @ (r / (lam + d)) @ self.QA[n].T
        return out


def flatten(grads: dict, names) -> "object":
    import torch

    return torch.cat([grads[n].reshape(grads[n].shape[0], -1) for n in names], dim=1)
