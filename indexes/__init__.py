"""tribute.indexes: find registered works in training corpora and in model outputs.

Three index kinds behind one :class:`WorkIndex` — ``exact`` (maximal verbatim word n-gram
spans), ``minhash`` (datasketch MinHash-LSH over windows, every candidate verified) and
``semantic`` (MiniLM chunk embeddings in FAISS; an explicit opt-in). Imports only ``tribute.core``.
"""

from .config import DEFAULT_KINDS, KINDS, IndexConfig, parse_kinds
from .work_index import DocResult, Match, Span, WorkIndex, WorkInfo, WorkText

__all__ = ["DEFAULT_KINDS", "KINDS", "DocResult", "IndexConfig", "Match", "Span", "WorkIndex", "WorkInfo",
           "WorkText", "parse_kinds"]
