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
    import torch

    if quantity not in QUANTITIES:
        raise InputError(f"quantity {quantity!r}: use one of {', '.join(QUANTITIES)}")
    if len(examples) == 0:
        raise InputError("no examples to take gradients of; pass a non-empty set")
    names = list(names) if names is not None else param_names(model)
    all_params = dict(model.named_parameters())
    cast = (lambda t: t.to(dtype)) if dtype is not None else (lambda t: t)
    params = {n: cast(all_params[n].detach()) for n in names}
    frozen = {n: cast(p.detach()) for n, p in all_params.items() if n not in params}
    buffers = {**{n: b for n, b in model.named_buffers()}, **frozen}
    was_training = model.training
    model.eval()
    g = torch.func.grad(_single(task, quantity), argnums=0)
    out = []
    try:
        for start in range(0, len(examples), batch_size):
            batch = task.collate(list(examples[start:start + batch_size]))
            batch = tuple(cast(b) if b.is_floating_point() else b for b in batch)
            grads = torch.func.vmap(g, in_dims=(None, None, None, *([0] * len(batch))))(
                params, buffers, model, *batch
            )
            flat = torch.cat([grads[n].reshape(grads[n].shape[0], -1) for n in names], dim=1)
            bad = ~torch.isfinite(flat).all(dim=1)
            if bad.any():
                i = start + int(bad.nonzero()[0, 0])
                raise InputError(f"example {i}: its {quantity} gradient is NaN or infinite; check the "
                                 "model checkpoint and that example")
            out.append(flat.detach())
    finally:
        model.train(was_training)
    return torch.cat(out, dim=0)


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
