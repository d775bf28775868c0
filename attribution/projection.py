"""Random projections of gradients, seeded per checkpoint (``model_id``).

* :class:`GaussianProjector`: dense i.i.d. N(0, 1) matrix, built in column blocks from a seeded
  generator (the JL transform traker's ``BasicProjector`` uses on CPU).
* :class:`CountSketchProjector`: each gradient coordinate goes to one seeded bucket with a
  seeded random sign, scaled so inner products are preserved in expectation. It costs O(d) per
  gradient instead of O(d k) and needs no matrix, which is what makes featurising a language
  model on CPU affordable. Both plug into traker as projectors (:func:`traker_projector`).

``project(grads, model_id, inplace=False)`` returns ``[B, k]`` (``inplace``: the projector may
overwrite ``grads``, which saves a copy of large gradient blocks); inner products of projected vectors estimate
inner products of the originals (both are scaled by ``1/sqrt(k)``).
"""

from __future__ import annotations

from ..core.errors import ConfigError

PROJECTORS = ("none", "gaussian", "countsketch")


class GaussianProjector:
    def __init__(self, grad_dim: int, proj_dim: int, seed: int = 0, block: int = 65536):
        self.grad_dim, self.proj_dim, self.seed, self.block = int(grad_dim), int(proj_dim), int(seed), block

    def project(self, grads, model_id: int = 0, inplace: bool = False):
        import torch

        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(model_id))
        out = torch.zeros(grads.shape[0], self.proj_dim, dtype=grads.dtype)
        for s in range(0, self.grad_dim, self.block):
            e = min(s + self.block, self.grad_dim)
            m = torch.randn(e - s, self.proj_dim, generator=gen, dtype=torch.float32).to(grads.dtype)
            out += grads[:, s:e] @ m
        return out / self.proj_dim ** 0.5


class CountSketchProjector:
    def __init__(self, grad_dim: int, proj_dim: int, seed: int = 0):
        self.grad_dim, self.proj_dim, self.seed = int(grad_dim), int(proj_dim), int(seed)
        self._cache: dict[int, tuple] = {}

    def _hash(self, model_id: int):
        import torch

        if model_id not in self._cache:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(model_id) + 7)
            bucket = torch.randint(0, self.proj_dim, (self.grad_dim,), generator=gen)
            sign = torch.randint(0, 2, (self.grad_dim,), generator=gen).float() * 2 - 1
            self._cache = {model_id: (bucket, sign)}
        return self._cache[model_id]

    def project(self, grads, model_id: int = 0, inplace: bool = False):
        """``[B, k]``; ``inplace=True`` multiplies the signs into ``grads`` itself (no copy of the
        gradients; the caller no longer needs them)."""
        import torch

        bucket, sign = self._hash(int(model_id))
        out = torch.zeros(grads.shape[0], self.proj_dim, dtype=grads.dtype)
        signed = grads.mul_(sign.to(grads.dtype)) if inplace else grads * sign.to(grads.dtype)
        out.index_add_(1, bucket, signed)
        # a count sketch preserves inner products without rescaling; TRAK's features are
        # compared with the dense projector's up to this same 1/sqrt(k) factor.
        return out


def make_projector(kind: str, grad_dim: int, proj_dim: int, seed: int):
    """A projector by name; ``"none"`` returns ``None`` (use the full gradients)."""
    if kind not in PROJECTORS:
        raise ConfigError(f"projector {kind!r}: use one of {', '.join(PROJECTORS)}")
    if kind == "none":
        return None
    if proj_dim < 1:
        raise ConfigError(f"proj_dim={proj_dim}: must be >= 1 with projector {kind!r}")
    cls = GaussianProjector if kind == "gaussian" else CountSketchProjector
    return cls(grad_dim, proj_dim, seed)


def traker_projector(kind: str, grad_dim: int, proj_dim: int, seed: int):
    """A ``trak.projectors.AbstractProjector`` running our projector (for ``TRAKer(projector=)``)."""
    from trak.projectors import AbstractProjector, ProjectionType
    from trak.utils import vectorize

    inner = make_projector(kind, grad_dim, proj_dim, seed)

    class _Adapter(AbstractProjector):
        def __init__(self):
            super().__init__(grad_dim, proj_dim, seed, ProjectionType.normal, "cpu")

        def project(self, grads, model_id):
            if isinstance(grads, dict):
                grads = vectorize(grads, device="cpu")
            return inner.project(grads, model_id)

    return _Adapter()
