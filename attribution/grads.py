"""Per-example gradients of a :class:`~tribute.attribution.task.Task`'s quantities.

``per_example_grads`` returns one flattened gradient row per example, computed with
``torch.func`` (``functional_call`` + ``grad`` + ``vmap``) in chunks, optionally in float64. The
parameters it differentiates are chosen by name (``param_names``); the row layout is the order
of ``model.named_parameters()``. A NaN or infinite gradient is an error naming the example.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ..core.errors import InputError

QUANTITIES = ("loss", "measurement", "train_output")


def param_names(model, include: Sequence[str] | None = None) -> list[str]:
    """Names of the trainable parameters, optionally only those starting with one of ``include``."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if include:
        names = [n for n in names if any(n == pre or n.startswith(pre.rstrip(".") + ".") for pre in include)]
        if not names:
            raise InputError(f"parameters {list(include)!r}: match no parameter of the model; "
                             "give name prefixes from model.named_parameters()")
    return names


def grad_dim(model, names: Sequence[str]) -> int:
    params = dict(model.named_parameters())
    return int(sum(params[n].numel() for n in names))


def _single(task, fn: str) -> Callable:
    import torch

    def f(params, buffers, model, *example):
        batch = tuple(t.unsqueeze(0) for t in example)

        def call(x):
            return torch.func.functional_call(model, (params, buffers), (x,))

        return getattr(task, fn)(call, batch)[0]

    return f


def per_example_grads(
    model,
    task,
    examples: Sequence[Any],
    quantity: str = "loss",
    names: Sequence[str] | None = None,
    batch_size: int = 32,
    dtype=None,
):
    """``[len(examples), d]`` tensor: the gradient of ``task.<quantity>`` for each example.

    Args:
        model: an ``nn.Module`` (left unchanged; evaluated in eval mode).
        task: the :class:`Task`.
        examples: the examples (``task.collate`` turns a chunk of them into a batch).
        quantity: ``"loss"``, ``"measurement"`` or ``"train_output"``.
        names: parameter names to differentiate (default: all trainable ones).
        batch_size: examples per vmapped chunk.
        dtype: compute dtype (e.g. ``torch.float64`` for references); default the model's.
    """
    if quantity not in QUANTITIES:
        raise InputError(f"quantity {quantity!r}: use one of {', '.join(QUANTITIES)}")
    if len(examples) == 0:
        raise InputError("no examples to take gradients of; pass a non-empty set")
    names = list(names) if names is not None else param_names(model)
    owners = _linear_owners(model, names) if dtype is None else None
    if owners is not None:
        return _each_batch(model, task, examples, batch_size,
                           lambda b, s: _hooked_batch(model, task, b, quantity, names, owners, s))
    cast = (lambda t: t.to(dtype)) if dtype is not None else (lambda t: t)
    params, buffers = _split_params(model, names, cast)
    return _each_batch(model, task, examples, batch_size,
                       lambda b, s: _vmap_batch(model, task, params, buffers, b, quantity, s), cast)


def _linear_owners(model, names):
    """``{param: (module, "weight"|"bias")}`` when every name is a weight or bias of an ``nn.Linear``
    used by no other module (the hook fast path applies), else ``None``."""
    import torch

    owners, seen = {}, {}
    for mname, mod in model.named_modules():
        for pname, p in mod.named_parameters(recurse=False):
            seen.setdefault(id(p), []).append(mname)
            if isinstance(mod, torch.nn.Linear) and pname in ("weight", "bias"):
                owners[f"{mname}.{pname}" if mname else pname] = (mname, pname)
    params = dict(model.named_parameters())
    if any(n not in owners or len(seen[id(params[n])]) > 1 for n in names):
        return None
    return owners


def _each_batch(model, task, examples, batch_size, fn, cast=None):
    """``torch.cat`` of ``fn(batch, start)`` over collated chunks of ``examples``, in eval mode."""
    import torch

    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(examples), batch_size):
            batch = task.collate(list(examples[start:start + batch_size]))
            if cast is not None:
                batch = tuple(cast(t) if t.is_floating_point() else t for t in batch)
            out.append(fn(batch, start))
    finally:
        model.train(was_training)
    return torch.cat(out, dim=0)


def _finite(flat, start: int, what: str):
    import torch

    bad = ~torch.isfinite(flat.reshape(flat.shape[0], -1)).all(dim=1)
    if bad.any():
        raise InputError(f"example {start + int(bad.nonzero()[0, 0])}: its {what} is NaN or infinite; "
                         "check the model checkpoint and that example")
    return flat.detach()


def _split_params(model, names, cast=lambda t: t):
    all_params = dict(model.named_parameters())
    params = {n: cast(all_params[n].detach()) for n in names}
    frozen = {n: cast(p.detach()) for n, p in all_params.items() if n not in params}
    return params, {**dict(model.named_buffers()), **frozen}


def _hooked_batch(model, task, batch, quantity, names, owners, start=0):
    """Per-example gradients of ``nn.Linear`` parameters from one batched backward pass.

    With the quantity summed over the batch, the gradient at example ``b``'s layer outputs depends
    on example ``b`` only (eval mode), so ``dW_b = sum_t g_bt a_bt^T`` exactly (as in K-FAC); the
    same rows as the ``vmap`` path, in ``names`` order, at a fraction of its cost on small models.
    """
    import torch

    from .kfac import layer_grads

    grads, _ = layer_grads(model, task, batch, sorted({owners[n][0] for n in names}), quantity)
    cols = []
    for n in names:
        mname, kind = owners[n]
        g = grads[mname]
        cols.append(g[:, :, :model.get_submodule(mname).in_features].reshape(g.shape[0], -1) if kind == "weight"
                    else g[:, :, -1])
    return _finite(torch.cat(cols, dim=1), start, f"{quantity} gradient")


def _vmap_batch(model, task, params, buffers, batch, quantity, start=0):
    import torch

    g = torch.func.grad(_single(task, quantity), argnums=0)
    grads = torch.func.vmap(g, in_dims=(None, None, None, *([0] * len(batch))))(params, buffers, model, *batch)
    flat = torch.cat([grads[n].reshape(grads[n].shape[0], -1) for n in params], dim=1)
    return _finite(flat, start, f"{quantity} gradient")


def batch_grads(model, task, batch, quantity: str, names: Sequence[str], start: int = 0):
    """``[B, d]`` per-example gradients of one collated ``batch`` (the model is put in eval mode;
    ``start`` numbers the examples in error messages). Hook fast path for ``nn.Linear``-only
    parameters, ``vmap`` otherwise."""
    model.eval()
    owners = _linear_owners(model, names)
    if owners is not None:
        return _hooked_batch(model, task, batch, quantity, names, owners, start)
    params, buffers = _split_params(model, names)
    return _vmap_batch(model, task, params, buffers, batch, quantity, start)


MAX_GN_OUTPUTS = 256


def gauss_newton_rows(model, task, examples, names: Sequence[str] | None = None, batch_size: int = 32,
                      dtype=None):
    """``[len(examples), O, d]``: factor rows of the exact Gauss-Newton matrix of the training loss.

    For each example with model output ``z`` (``O`` numbers) and loss ``l(z)``, the Gauss-Newton
    block is ``J^T H J`` with ``J = dz/dtheta`` and ``H = d^2 l / dz^2`` (for softmax
    cross-entropy, ``diag(p) - p p^T``: the true Fisher in closed form, no sampled labels). With
    ``H = L L^T`` (eigendecomposition, negative eigenvalues clipped) the rows are ``L^T J``, so
    ``GN = sum_i R_i^T R_i / n``. The task's ``loss`` must call the model once; the output may
    have at most ``MAX_GN_OUTPUTS`` numbers per example (a language model's vocabulary x tokens
    is too many: use ``curvature="fisher"``).
    """
    import torch

    from ..core.errors import ConfigError

    def output(params, buffers, *example):
        seen = []

        def call(*args):
            seen.append(torch.func.functional_call(model, (params, buffers), args))
            return seen[-1]

        task.loss(call, tuple(t.unsqueeze(0) for t in example))
        if len(seen) != 1:
            raise ConfigError(f"curvature 'gn': the task's loss calls the model {len(seen)} times, it must "
                              "call it once; use curvature='fisher'")
        return seen[0][0]

    def loss_of_output(z, *example):
        return task.loss(lambda *_: z.unsqueeze(0), tuple(t.unsqueeze(0) for t in example))[0]

    def rows(params, buffers, batch):
        dims = (None, None, *([0] * len(batch)))
        z = torch.func.vmap(output, in_dims=dims)(params, buffers, *batch)
        if z[0].numel() > MAX_GN_OUTPUTS:
            raise ConfigError(f"curvature 'gn': the model has {z[0].numel()} outputs per example (at most "
                              f"{MAX_GN_OUTPUTS}); use curvature='fisher' (sampled labels)")
        J = torch.func.vmap(torch.func.jacrev(output), in_dims=dims)(params, buffers, *batch)
        B, O = z.shape[0], z[0].numel()
        J = torch.cat([J[n].reshape(B, O, -1) for n in params], dim=2)          # [B, O, d]
        H = torch.func.vmap(torch.func.hessian(loss_of_output))(z, *batch).reshape(B, O, O)
        ev, U = torch.linalg.eigh((H + H.transpose(1, 2)) / 2)
        L = U * ev.clamp_min(0).sqrt().unsqueeze(1)                               # H = L L^T
        return L.transpose(1, 2) @ J                                             # [B, O, d]

    names = list(names) if names is not None else param_names(model)
    cast = (lambda t: t.to(dtype)) if dtype is not None else (lambda t: t)
    params, buffers = _split_params(model, names, cast)
    return _each_batch(model, task, examples, batch_size,
                       lambda b, s: _finite(rows(params, buffers, b), s, "Gauss-Newton row"), cast)


def sampled_loss_grads(model, task, examples, seed: int, n_samples: int = 1,
                       names: Sequence[str] | None = None, dtype=None):
    """``[len(examples) * n_samples, d]``: gradients of ``task.sampled_loss`` (Fisher samples).

    One example at a time (sampling needs a seeded generator, which ``vmap`` cannot carry); for
    the explicit-inverse reference on small models.
    """
    import torch

    names = list(names) if names is not None else param_names(model)
    work = model
    if dtype is not None:
        import copy

        work = copy.deepcopy(model).to(dtype)
    params = dict(work.named_parameters())
    gen = torch.Generator().manual_seed(int(seed))
    rows = []
    work.eval()
    for i, ex in enumerate(examples):
        batch = task.collate([ex])
        if dtype is not None:
            batch = tuple(b.to(dtype) if b.is_floating_point() else b for b in batch)
        for _ in range(n_samples):
            loss = task.sampled_loss(work, batch, gen).sum()
            gs = torch.autograd.grad(loss, [params[n] for n in names])
            flat = torch.cat([x.reshape(-1) for x in gs])
            if not torch.isfinite(flat).all():
                raise InputError(f"example {i}: its sampled-loss gradient is NaN or infinite; check the "
                                 "model checkpoint and that example")
            rows.append(flat.detach())
    return torch.stack(rows)
