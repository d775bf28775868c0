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
    plan = _hook_plan(model, names) if dtype is None else None
    if plan is not None:
        return _each_batch(model, task, examples, batch_size,
                           lambda b, s: _hooked_batch(model, task, b, quantity, plan, s))
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


def check_finite(rows, start: int, what: str):
    """``rows`` (``[B, ...]``) unchanged, or an :class:`InputError` naming the first example
    (numbered from ``start``) whose row holds a NaN or an infinity."""
    return _finite(rows, start, what)


def _finite(flat, start: int, what: str):
    import math

    import torch

    if math.isfinite(float(flat.sum())):   # NaN / inf anywhere make the sum NaN / inf (one pass)
        return flat.detach()
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


def _hook_plan(model, names):
    """What :func:`_hooked_batch` needs, worked out once: ``(modules, rows)`` with ``modules`` the
    scored ``nn.Linear`` layers by name and ``rows[m] = (weight columns, bias columns)`` (slices
    of the ``[B, d]`` output, ``None`` when not scored); ``None`` when the hook path does not
    apply (see :func:`_linear_owners`)."""
    owners = _linear_owners(model, names)
    if owners is None:
        return None
    mods = {m: model.get_submodule(m) for m in sorted({owners[n][0] for n in names})}
    rows: dict[str, list] = {m: [None, None] for m in mods}
    at = 0
    for n in names:
        m, kind = owners[n]
        size = mods[m].weight.numel() if kind == "weight" else mods[m].out_features
        rows[m][kind == "bias"] = slice(at, at + size)
        at += size
    return mods, rows, at


def _hooked_batch(model, task, batch, quantity, plan, start=0, check=True, out=None):
    """Per-example gradients of ``nn.Linear`` parameters from one batched backward pass.

    With the quantity summed over the batch, the gradient at example ``b``'s layer outputs depends
    on example ``b`` only (eval mode), so ``dW_b = sum_t g_bt a_bt^T`` exactly (as in K-FAC); the
    same rows as the ``vmap`` path, in ``names`` order, at a fraction of its cost on small models.
    Forward hooks record each scored layer's inputs and outputs (every call of a layer used more
    than once); one ``autograd.grad`` to those outputs (not to the parameters) gives the ``g``s,
    and the rows are written straight into one ``[B, d]`` tensor (``plan``: :func:`_hook_plan`).
    ``check=False`` skips the NaN / inf check (the caller checks, e.g. on projected rows);
    ``out``: a ``[B, d]`` tensor of the batch's dtype to overwrite (saves allocating and
    page-faulting a large block per batch), else a new one.
    """
    import torch

    mods, rows, width = plan
    calls: list = []

    def make(m):
        def hook(mod, inp, out):
            if out.requires_grad:
                calls.append((m, inp[0].detach(), out))
        return hook

    handles = [mod.register_forward_hook(make(m)) for m, mod in mods.items()]
    try:
        val = getattr(task, quantity)(model, batch)
    finally:
        for h in handles:
            h.remove()
    outs = torch.autograd.grad(val.sum(), [o for _, _, o in calls], allow_unused=True) if calls else []
    B = val.shape[0]
    reuse = out is not None and tuple(out.shape) == (B, width) and out.dtype == val.dtype and out.is_contiguous()
    flat = out if reuse else torch.empty(B, width, dtype=val.dtype)    # every column is written below
    written: set = set()
    for (m, a, _), g in zip(calls, outs):
        if g is None:        # this call does not reach the quantity: its gradient is zero
            continue
        g3, a3 = g.detach().reshape(B, -1, g.shape[-1]), a.reshape(B, -1, a.shape[-1]).to(g.dtype)
        w, bias = rows[m]
        if w is not None:
            view = flat[:, w].view(B, g3.shape[2], a3.shape[2])
            if g3.shape[1] == 1 and (m, 0) not in written:   # an outer product, straight into place
                torch.mul(g3.transpose(1, 2), a3, out=view)
                written.add((m, 0))
            else:
                dw = g3.transpose(1, 2) * a3 if g3.shape[1] == 1 else torch.bmm(g3.transpose(1, 2), a3)
                _write(view, dw, (m, 0), written)
        if bias is not None:
            _write(flat[:, bias], g3.sum(1), (m, 1), written)
    for m, (w, bias) in rows.items():      # layers that do not reach the quantity: zeros
        for kind, cols in ((0, w), (1, bias)):
            if cols is not None and (m, kind) not in written:
                flat[:, cols] = 0
    return _finite(flat, start, f"{quantity} gradient") if check else flat


def _write(view, value, key, written: set) -> None:
    """Copy ``value`` into ``view`` the first time ``key`` is written, add it after (a layer
    called more than once)."""
    if key in written:
        view.add_(value)
    else:
        view.copy_(value)
        written.add(key)


def _vmap_batch(model, task, params, buffers, batch, quantity, start=0, check=True):
    import torch

    g = torch.func.grad(_single(task, quantity), argnums=0)
    grads = torch.func.vmap(g, in_dims=(None, None, None, *([0] * len(batch))))(params, buffers, model, *batch)
    flat = torch.cat([grads[n].reshape(grads[n].shape[0], -1) for n in params], dim=1)
    return _finite(flat, start, f"{quantity} gradient") if check else flat.detach()


def batch_grad_fn(model, task, names: Sequence[str]):
    """``fn(batch, quantity, start=0, check=True)`` -> ``[B, d]`` per-example gradients of one
    collated batch (the model is put in eval mode; ``start`` numbers the examples in error
    messages; ``check=False`` leaves the NaN / inf check to the caller, see :func:`check_finite`;
    ``out``: a buffer the hook path may overwrite and return, e.g. the previous batch's rows).
    The path is chosen once: hooks for ``nn.Linear``-only parameters, ``vmap`` otherwise."""
    names = list(names)
    plan = _hook_plan(model, names)

    def fn(batch, quantity: str, start: int = 0, check: bool = True, out=None):
        model.eval()
        if plan is not None:
            return _hooked_batch(model, task, batch, quantity, plan, start, check, out)
        params, buffers = _split_params(model, names)    # the weights the model holds now
        return _vmap_batch(model, task, params, buffers, batch, quantity, start, check)

    return fn


def batch_grads(model, task, batch, quantity: str, names: Sequence[str], start: int = 0):
    """``[B, d]`` per-example gradients of one collated ``batch`` (see :func:`batch_grad_fn`)."""
    return batch_grad_fn(model, task, names)(batch, quantity, start)


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
