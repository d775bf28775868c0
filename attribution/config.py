"""The settings of one attribution run, validated up front (messages name the field and the fix)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..core.errors import ConfigError

METHODS = ("trak", "influence", "tracin", "graddot", "gradcos")
HESSIANS = ("ekfac", "kfac", "explicit", "cg")
CURVATURES = ("gn", "fisher")


@dataclass
class AttributionConfig:
    """How to score queries against training examples.

    Fields:
        method: trak | influence | tracin | graddot | gradcos.
        proj_dim: projection dimension of gradient features (0 = full gradients; trak needs > 0).
        projector: none | gaussian | countsketch | traker (trak only: traker's own projector).
        hessian: influence curvature: ekfac | kfac (linear layers, scales) | explicit | cg
            (full damped Fisher/Gauss-Newton inverse; references for small models).
        damping: influence damping, relative: ``damping x mean eigenvalue`` of the curvature.
        curvature: explicit / cg curvature: gn (exact Gauss-Newton from the loss's output Hessian,
            no sampling; small outputs such as classifiers) | fisher (Monte-Carlo Fisher from
            ``fisher_samples`` sampled labels per example; any task with ``sampled_loss``).
        fisher_samples: sampled targets per example for curvature fisher.
        lr: tracin step size per checkpoint (default 1 for each).
        params: parameter-name prefixes to differentiate (default all; kfac: module prefixes).
        lambda_reg: trak's ridge term (needed when proj_dim exceeds the train-set size).
        trak_impl: trak: native (tribute's own featurisation with traker's formula; in memory, or
            into ``features_dir`` when one is given, then resumable) | traker (traker's ``TRAKer``). Default: traker with
            projector traker, native otherwise.
        batch_size: examples per gradient batch.
        chunk: rows per on-disk feature chunk (the unit of resuming and sharding).
        seed: seeds projections and Fisher sampling.
    """

    method: str = "graddot"
    proj_dim: int = 0
    projector: str = "none"
    hessian: str = "ekfac"
    damping: float = 0.1
    curvature: str = "gn"
    fisher_samples: int = 1
    lr: list[float] | None = None
    params: list[str] | None = None
    lambda_reg: float = 0.0
    trak_impl: str | None = None
    batch_size: int = 16
    chunk: int = 64
    seed: int = 0
    cg_tol: float = 1e-8
    cg_max_iter: int = 500
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method {self.method!r}: use one of {', '.join(METHODS)}")
        if self.hessian not in HESSIANS:
            raise ConfigError(f"hessian {self.hessian!r}: use one of {', '.join(HESSIANS)}")
        if self.projector not in ("none", "gaussian", "countsketch", "traker"):
            raise ConfigError(f"projector {self.projector!r}: use none, gaussian, countsketch or traker")
        if self.proj_dim < 0:
            raise ConfigError(f"proj_dim={self.proj_dim}: must be >= 0 (0 = full gradients)")
        if self.method == "trak":
            if self.trak_impl is None:
                self.trak_impl = "traker" if self.projector == "traker" else "native"
            if self.trak_impl not in ("native", "traker"):
                raise ConfigError(f"trak_impl {self.trak_impl!r}: use native or traker")
            if self.trak_impl == "native" and self.projector == "traker":
                raise ConfigError("trak_impl native runs tribute's projectors: use projector countsketch or "
                                  "gaussian, or trak_impl traker")
            if self.proj_dim < 1:
                raise ConfigError("trak needs a projection: set proj_dim >= 1 (e.g. 512)")
            if self.projector == "none":
                raise ConfigError("trak needs a projector: use traker, gaussian or countsketch")
        elif self.projector == "traker":
            raise ConfigError(f"projector 'traker' is only for method trak, not {self.method}")
        elif (self.projector == "none") != (self.proj_dim == 0):
            raise ConfigError(f"projector {self.projector!r} with proj_dim={self.proj_dim}: use "
                              "projector none with proj_dim 0, or a projector with proj_dim >= 1")
        if self.method == "influence" and self.proj_dim:
            raise ConfigError("influence does not use projections; set proj_dim 0 and projector none")
        if self.curvature not in CURVATURES:
            raise ConfigError(f"curvature {self.curvature!r}: use one of {', '.join(CURVATURES)}")
        if self.damping <= 0:
            raise ConfigError(f"damping={self.damping}: must be > 0")
        if self.fisher_samples < 1:
            raise ConfigError(f"fisher_samples={self.fisher_samples}: must be >= 1")
        if self.batch_size < 1 or self.chunk < 1:
            raise ConfigError("batch_size and chunk must be >= 1")
        if self.lambda_reg < 0:
            raise ConfigError(f"lambda_reg={self.lambda_reg}: must be >= 0")
        if self.lr is not None and any(x <= 0 for x in self.lr):
            raise ConfigError("lr: every tracin step size must be > 0")

    def as_dict(self) -> dict:
        d = asdict(self)
        # record only what the method uses, so a rerun with an irrelevant field changed is allowed
        keep = {"method", "params", "batch_size", "seed", "chunk"}
        keep |= {"trak": {"proj_dim", "projector", "lambda_reg", "trak_impl"},
                 "influence": {"hessian", "damping", "curvature", "fisher_samples", "cg_tol", "cg_max_iter"},
                 "tracin": {"proj_dim", "projector", "lr"},
                 "graddot": {"proj_dim", "projector"},
                 "gradcos": {"proj_dim", "projector"}}[self.method]
        out = {k: v for k, v in d.items() if k in keep}
        if self.extra:
            out["extra"] = dict(self.extra)
        return out
