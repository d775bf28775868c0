"""The minhash index: datasketch MinHash-LSH over windows of the works, every candidate verified.

Shingles are word k-grams (``shingle`` words, seeded 64-bit hashes); shingles made only of
stopwords ("of the", "and the") are dropped, because they carry no evidence and they inflate the
similarity of unrelated texts. A work is cut into windows of ``window`` shingles every
``work_stride`` shingles; a text into windows every ``doc_stride`` shingles (a text shorter than a
window is one window). Each window's MinHash goes into / queries a datasketch ``MinHashLSH``.

Whole-document MinHash cannot find a 300-word quote inside a 3,000-word document (Jaccard near
0), and datasketch's LSH Ensemble mis-tunes itself when query and indexed sizes differ (see
FIELD-NOTES): windows of the same size on both sides avoid both problems.

**Verification.** LSH only proposes candidates; those whose MinHash Jaccard estimate lies more
than ``ESTIMATE_SLACK`` below the threshold are dropped, and per (text window, work) only the
most similar work window is verified. Each candidate (work window, text window) is
scored on the true shingle sets: the Jaccard similarity, or — when the text window is shorter
than a full window — the containment of the text window's shingles in the work window, whichever
is larger. Only pairs scoring at least ``minhash_threshold`` and sharing at least ``MIN_SHARED``
(4) shingles are reported, with that score. A short text (at most 4 windows of shingles, e.g. a
model output) is also queried with half windows, which must have at least half of their
shingles in the work window: an edited 12-word quote is then not diluted by the words around it.
For works that neither its full nor its half windows found, a short text is also queried with
*quote windows* of ``window // 3`` shingles at every shingle: at least half of a quote window's
shingles must be in the work window, and at least ``QUOTE_MIN_RARE`` (2) of those shared ones
must be distinctive (found in at most ``max(1, 1% of works)`` works), so that a stock phrase
several works share ("says Yahweh of Armies") is not evidence for any of them.

**Batches.** :meth:`MinHashIndex.hits_many` runs all of this for many texts at once: one
shingling pass, one signature computation, one band lookup and one vectorised verification (no
Python object per shingle or candidate); :meth:`MinHashIndex.hits_reference` is the one-text,
Python-set implementation it is tested against.

**Signatures.** They are computed for all windows at once with numpy, using datasketch's own
permutations and its ``affine32`` scheme (MurmurHash3 finaliser, then ``a * h + b mod 2^32``),
so each one equals ``datasketch.MinHash(num_perm, seed, hashfunc=identity).update_batch`` of the
window's 32-bit shingle values exactly (a test checks this). Each shingle is permuted once even
where windows overlap: the window boundaries cut the shingles into segments, each segment's
minimum is taken once, and a window's signature is the minimum of its segments'.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import IntegrityError
from .exact import load_arrays, save_arrays
from .text import KeyLookup, ngram_hashes

FILES = ("shingles", "shingle_word", "work_offsets", "win_work", "win_start", "win_len", "signatures")
_M32 = (np.uint32(16), np.uint32(2246822507), np.uint32(13), np.uint32(3266489909), np.uint32(16))
_BATCH_ROWS = 1 << 13
#: texts with at most this many windows of shingles are also queried with half windows
SHORT_TEXT_WINDOWS = 4
#: how far below the threshold a candidate's MinHash Jaccard estimate may be and still be verified
ESTIMATE_SLACK = 0.12
#: a window pair must share at least this many shingles, whatever its score
MIN_SHARED = 4
#: the containment a half window needs (stricter than a full window's score: it is smaller)
HALF_CONTAINMENT = 0.5
#: a short text is also queried with quote windows of ``window // QUOTE_DIVISOR`` shingles at
#: every shingle, for short edited quotes (a 12-word quote with two edits keeps about 6 shingles)
QUOTE_DIVISOR = 3
#: the containment a quote window needs
QUOTE_CONTAINMENT = 0.5
#: ... and how many of its shared shingles must be *distinctive*: found in at most
#: ``max(RARE_MIN_WORKS, 1% of works)`` works, so that a stock phrase shared by several works
#: ("says Yahweh of Armies", "the son of") does not tie a quote to the wrong one
QUOTE_MIN_RARE = 2
RARE_MIN_WORKS = 1


def fmix32(hv: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser (datasketch's pre-mix of the affine32 scheme)."""
    s1, m1, s2, m2, s3 = _M32
    with np.errstate(over="ignore"):
        hv = hv ^ (hv >> s1)
        hv = hv * m1
        hv = hv ^ (hv >> s2)
        hv = hv * m2
        return hv ^ (hv >> s3)


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's (a, b) permutation parameters for ``num_perm`` and ``seed`` (affine32)."""
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    return np.asarray(a, dtype=np.uint32), np.asarray(b, dtype=np.uint32)


def _mix64(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def shingle_values(shingles: np.ndarray) -> np.ndarray:
    """The 32-bit values fed to MinHash (low half of the 64-bit shingle hashes)."""
    return (shingles & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def window_starts(n_shingles: int, window: int, stride: int) -> np.ndarray:
    """Window start offsets: every ``stride``, plus one window ending at the last shingle."""
    if n_shingles <= window:
        return np.zeros(1 if n_shingles else 0, dtype=np.int64)
    starts = np.arange(0, n_shingles - window + 1, stride, dtype=np.int64)
    if starts[-1] + window < n_shingles:
        starts = np.append(starts, n_shingles - window)
    return starts


def _window_starts_many(m: np.ndarray, window: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`window_starts` of texts with ``m`` (> 0) shingles each, concatenated: (starts,
    position of each window's text in ``m``)."""
    m = np.asarray(m, dtype=np.int64)
    over = np.maximum(m - window, 0)
    tail = (m > window) & (over % stride != 0)
    k = over // stride + 1 + tail
    doc = np.repeat(np.arange(len(m), dtype=np.int64), k)
    first = np.cumsum(k) - k
    st = (np.arange(int(k.sum()), dtype=np.int64) - first[doc]) * stride
    st[(first + k - 1)[tail]] = over[tail]
    return st, doc


def signatures(values: np.ndarray, starts: np.ndarray, lens: np.ndarray, a: np.ndarray,
               b: np.ndarray) -> np.ndarray:
    """MinHash signature (uint32[num_perm]) of each window ``values[s:s+l]`` (``l >= 1``).

    Windows are taken in chunks of about ``_BATCH_ROWS`` values. Within a chunk the window
    boundaries cut the values into elementary segments (longer ones split to the most common
    length ``B``); every segment is padded to ``B`` values by repeating its last one (a repeat
    does not change a minimum), so the permuted values form one ``(segments, B, num_perm)`` block
    whose minimum over ``B`` is a plain reduction; a window's signature is then the minimum of
    its segments' ones. Every window still equals datasketch's MinHash of its values exactly."""
    starts = np.asarray(starts, dtype=np.int64)
    lens = np.asarray(lens, dtype=np.int64)
    out = np.empty((len(starts), len(a)), dtype=np.uint32)
    if len(starts) == 0:
        return out
    order = np.argsort(starts, kind="stable")
    s_sorted = starts[order]
    e_sorted = s_sorted + lens[order]
    chunk = (s_sorted - s_sorted[0]) // _BATCH_ROWS
    bounds = np.flatnonzero(np.diff(chunk)) + 1
    bounds = np.concatenate([[0], bounds, [len(order)]])
    values = np.asarray(values)
    for i, j in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        ws, we = s_sorted[i:j], e_sorted[i:j]
        out[order[i:j]] = _window_mins(values, ws, we, a, b)
    return out


#: windows spanning more elementary segments than this are reduced apart (less padding)
_MAX_SEGMENTS = 8


def _window_mins(values, ws, we, a, b) -> np.ndarray:
    """Signatures of windows ``[ws, we)`` (see :func:`signatures`)."""
    cut = np.unique(np.concatenate([ws, we]))
    seglen = np.diff(cut)
    B = int(min(64, max(1, np.argmax(np.bincount(seglen)))))
    long = seglen > B
    if long.any():
        ls, ll = cut[:-1][long], seglen[long]
        k = (ll - 1) // B                                   # extra cuts per long segment
        first = np.repeat(ls, k)
        step = np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k) + 1
        cut = np.unique(np.concatenate([cut, first + step * B]))
        seglen = np.diff(cut)
    ridx = cut[:-1, None] + np.minimum(np.arange(B), seglen[:, None] - 1)
    col = np.ascontiguousarray(fmix32(values[ridx]).T)    # (B, segments): j-th value of each segment
    seg = np.empty((len(ridx), len(a)), dtype=np.uint32)   # (segments, num_perm)
    tmp = np.empty_like(seg)
    with np.errstate(over="ignore"):
        np.multiply(col[0][:, None], a, out=seg)
        seg += b
        for j in range(1, B):                               # a running minimum stays in cache
            np.multiply(col[j][:, None], a, out=tmp)
            tmp += b
            np.minimum(seg, tmp, out=seg)
    fs = np.searchsorted(cut, ws)
    k = np.searchsorted(cut, we) - fs                       # segments per window (>= 1)
    out = np.empty((len(ws), len(a)), dtype=np.uint32)
    big = k > _MAX_SEGMENTS
    for sel in (np.flatnonzero(~big), np.flatnonzero(big)):
        if len(sel) == 0:
            continue
        K = int(k[sel].max())                               # pad with the window's last segment
        step = max(1, (1 << 14) // K)
        for i in range(0, len(sel), step):
            w = sel[i:i + step]
            out[w] = seg[fs[w][:, None] + np.minimum(np.arange(K), k[w][:, None] - 1)].min(axis=1)
    return out


def text_shingles(hashes: np.ndarray, words_stop: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(shingle hashes, first word position) of the kept shingles of a text (see the module doc)."""
    g = ngram_hashes(hashes, k)
    if len(g) == 0:
        return g, np.empty(0, dtype=np.int64)
    m = len(g)
    all_stop = np.ones(m, dtype=bool)
    for i in range(k):
        all_stop &= words_stop[i:i + m]
    keep = np.nonzero(~all_stop)[0]
    return g[keep], keep.astype(np.int64)


def _first_last(items: list, members: frozenset) -> tuple[int, int]:
    """Positions of the first and the last item that is in ``members`` (one exists)."""
    first = next(i for i, x in enumerate(items) if x in members)
    last = next(i for i in range(len(items) - 1, -1, -1) if items[i] in members)
    return first, last


@dataclass(frozen=True)
class WindowHit:
    """A verified (work window, text window) pair, in word positions."""

    work: int
    doc_first_word: int
    doc_end_word: int    # one past the last word
    work_first_word: int
    work_end_word: int
    score: float


class MinHashIndex:
    """Windows of the works in a datasketch MinHashLSH (see the module doc)."""

    def __init__(self, *, shingle: int, window: int, work_stride: int, num_perm: int, seed: int,
                 lsh_threshold: float, arrays: dict):
        self.shingle, self.window, self.work_stride = shingle, window, work_stride
        self.num_perm, self.seed, self.lsh_threshold = num_perm, seed, lsh_threshold
        for name in FILES:
            setattr(self, name, arrays[name])
        self.a, self.b = permutations(num_perm, self._mh_seed)
        self._lsh = None
        self._bands: tuple[int, int] | None = None
        self._band_table: tuple[np.ndarray, np.ndarray] | None = None
        self._band_lookup: KeyLookup | None = None
        self._distinct: np.ndarray | None = None
        self._wsets: tuple[np.ndarray, np.ndarray] | None = None
        self._sets: dict[int, frozenset] = {}

    @property
    def _mh_seed(self) -> int:
        return self.seed % (1 << 32)

    # -- building -----------------------------------------------------------------------------
    @classmethod
    def build(cls, work_hashes: list[np.ndarray], work_stop: list[np.ndarray], *, shingle: int, window: int,
              work_stride: int, num_perm: int, seed: int, lsh_threshold: float) -> "MinHashIndex":
        """Index the works given their word hashes and stopword masks (work number = position)."""
        arrays = {
            "shingles": np.empty(0, np.uint64), "shingle_word": np.empty(0, np.int32),
            "work_offsets": np.zeros(1, np.int64), "win_work": np.empty(0, np.int32),
            "win_start": np.empty(0, np.int64), "win_len": np.empty(0, np.int32),
            "signatures": np.empty((0, num_perm), np.uint32),
        }
        empty = cls(shingle=shingle, window=window, work_stride=work_stride, num_perm=num_perm, seed=seed,
                    lsh_threshold=lsh_threshold, arrays=arrays)
        return empty.extended(work_hashes, work_stop)

    def extended(self, work_hashes: list[np.ndarray], work_stop: list[np.ndarray]) -> "MinHashIndex":
        """A new index holding this one's works plus the given ones (numbered after them)."""
        n_old = len(self.work_offsets) - 1
        total = int(self.work_offsets[-1])
        sh, sw, offsets, ww, ws, wl = [], [], [], [], [], []
        for w, (h, stop) in enumerate(zip(work_hashes, work_stop), start=n_old):
            g, pos = text_shingles(h, stop, self.shingle)
            starts = window_starts(len(g), self.window, self.work_stride)
            ww.append(np.full(len(starts), w, dtype=np.int32))
            ws.append(starts + total)
            wl.append(np.minimum(self.window, len(g) - starts).astype(np.int32))
            sh.append(g)
            sw.append(pos.astype(np.int32))
            total += len(g)
            offsets.append(total)
        new_sh = np.concatenate(sh) if sh else np.empty(0, np.uint64)
        new_ws = np.concatenate(ws).astype(np.int64) if ws else np.empty(0, np.int64)
        new_wl = np.concatenate(wl).astype(np.int32) if wl else np.empty(0, np.int32)
        all_sh = np.concatenate([np.asarray(self.shingles), new_sh])
        new_sig = signatures(shingle_values(all_sh), new_ws, new_wl, self.a, self.b)
        arrays = {
            "shingles": all_sh,
            "shingle_word": np.concatenate([np.asarray(self.shingle_word)] + sw).astype(np.int32),
            "work_offsets": np.concatenate([np.asarray(self.work_offsets), np.asarray(offsets, np.int64)]),
            "win_work": np.concatenate([np.asarray(self.win_work)] + ww).astype(np.int32),
            "win_start": np.concatenate([np.asarray(self.win_start), new_ws]),
            "win_len": np.concatenate([np.asarray(self.win_len), new_wl]),
            "signatures": np.concatenate([np.asarray(self.signatures), new_sig]),
        }
        return MinHashIndex(shingle=self.shingle, window=self.window, work_stride=self.work_stride,
                            num_perm=self.num_perm, seed=self.seed, lsh_threshold=self.lsh_threshold, arrays=arrays)

    def save(self, folder: Path) -> list[str]:
        return save_arrays(folder, self, FILES)

    @classmethod
    def load(cls, folder: Path, *, n_works: int, **settings) -> "MinHashIndex":
        arrays = load_arrays(folder, FILES, "minhash")
        nw = len(arrays["win_work"])
        sig = arrays["signatures"]
        if (len(arrays["work_offsets"]) != n_works + 1 or len(arrays["win_start"]) != nw
                or len(arrays["win_len"]) != nw or sig.ndim != 2 or sig.shape != (nw, settings["num_perm"])
                or len(arrays["shingles"]) != len(arrays["shingle_word"])):
            raise IntegrityError(f"{folder}: minhash index arrays do not fit together; run `tribute index build`")
        return cls(arrays=arrays, **settings)

    @property
    def nbytes(self) -> int:
        return int(sum(getattr(self, name).nbytes for name in FILES))

    @property
    def lsh(self):
        """A datasketch ``MinHashLSH`` filled with the stored window signatures (the reference that
        :meth:`candidates` reproduces; built on first use)."""
        if self._lsh is None:
            from datasketch import LeanMinHash, MinHashLSH

            lsh = MinHashLSH(threshold=self.lsh_threshold, num_perm=self.num_perm)
            with lsh.insertion_session() as session:
                for i, sig in enumerate(np.asarray(self.signatures)):
                    session.insert(i, LeanMinHash(seed=self._mh_seed, hashvalues=sig, scheme="affine32"),
                                   check_duplication=False)
            self._lsh = lsh
        return self._lsh

    @property
    def bands(self) -> tuple[int, int]:
        """(b, r): datasketch MinHashLSH's optimal number of bands and rows for the threshold."""
        if self._bands is None:
            from datasketch import MinHashLSH

            ref = MinHashLSH(threshold=self.lsh_threshold, num_perm=self.num_perm)
            self._bands = (ref.b, ref.r)
        return self._bands

    def _band_keys(self, sigs: np.ndarray) -> np.ndarray:
        """uint64 key of every (window, band): the band's r values and the band number, hashed."""
        b, r = self.bands
        sigs = np.asarray(sigs, dtype=np.uint64)[:, : b * r].reshape(len(sigs), b, r)
        with np.errstate(over="ignore"):
            acc = np.broadcast_to(np.arange(1, b + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15),
                                  (len(sigs), b)).copy()
            for j in range(r):
                acc = _mix64(acc ^ sigs[:, :, j])
        return acc

    @property
    def _table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(distinct band keys, CSR offsets, work windows) of the stored signatures."""
        if self._band_table is None:
            keys = self._band_keys(self.signatures)
            flat = keys.ravel()
            win = np.repeat(np.arange(len(keys), dtype=np.int64), keys.shape[1])
            order = np.argsort(flat, kind="stable")
            flat, win = flat[order], win[order]
            first = np.ones(len(flat), dtype=bool)
            first[1:] = flat[1:] != flat[:-1]
            self._band_table = (flat[first], np.append(np.nonzero(first)[0], len(flat)), win)
        return self._band_table

    def _work_sets(self, L: int) -> tuple[np.ndarray, np.ndarray]:
        """(bool[windows, L]: is this position the first of its value in its work window?,
        distinct values per work window), computed once."""
        if self._wsets is None or self._wsets[0].shape[1] != L:
            ar = np.arange(L, dtype=np.int64)
            tri = ar[None, :] < ar[:, None]
            shingles = np.asarray(self.shingles)
            start = np.asarray(self.win_start, dtype=np.int64)
            wlen = np.asarray(self.win_len, dtype=np.int64)
            sets = np.zeros((len(start), L), dtype=bool)
            for i in range(0, len(start), 4096):
                st, ln = start[i:i + 4096], wlen[i:i + 4096]
                wm = ar[None, :] < ln[:, None]
                W = shingles[np.minimum(st[:, None] + ar, max(len(shingles) - 1, 0))]
                sets[i:i + len(st)] = wm & ~((W[:, :, None] == W[:, None, :]) & tri & wm[:, None, :]).any(axis=2)
            self._wsets = (sets, np.count_nonzero(sets, axis=1))
        return self._wsets

    @property
    def shingle_distinct(self) -> np.ndarray:
        """bool per stored shingle: is its value in at most ``max(RARE_MIN_WORKS, 1% of works)``
        works (computed from the stored shingles, on first use)?"""
        if self._distinct is None:
            sh = np.asarray(self.shingles)
            offs = np.asarray(self.work_offsets, dtype=np.int64)
            n_works = len(offs) - 1
            work = np.repeat(np.arange(n_works, dtype=np.int64), np.diff(offs))
            pairs = np.unique(np.stack([sh, work.astype(np.uint64)], axis=1), axis=0)
            vals, nworks = np.unique(pairs[:, 0], return_counts=True)
            limit = max(RARE_MIN_WORKS, -(-n_works // 100))
            self._distinct = nworks[np.searchsorted(vals, sh)] <= limit if len(sh) else np.zeros(0, bool)
        return self._distinct

    @property
    def _lookup(self) -> KeyLookup:
        if self._band_lookup is None:
            self._band_lookup = KeyLookup(self._table[0])
        return self._band_lookup

    def candidates(self, sigs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query row, work window) pairs that share a band with each query signature: the
        candidates datasketch's ``MinHashLSH.query`` returns, computed for all rows at once."""
        empty = (np.empty(0, np.int64), np.empty(0, np.int64))
        if len(sigs) == 0 or len(self.win_work) == 0:
            return empty
        keys, offsets, wins = self._table
        q = self._band_keys(sigs)
        pos = self._lookup.find(q.ravel())
        hit = np.flatnonzero(pos >= 0)
        if len(hit) == 0:
            return empty
        pos = pos[hit]
        lo = offsets[pos]
        cnt = offsets[pos + 1] - lo
        rows = np.repeat(hit // q.shape[1], cnt)
        within = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        cand = wins[np.repeat(lo, cnt) + within]
        n = len(self.win_work)
        pair = np.unique(rows * n + cand)
        return pair // n, pair % n

    def _work_window_set(self, i: int) -> np.ndarray:
        s = int(self.win_start[i])
        return np.unique(np.asarray(self.shingles[s:s + int(self.win_len[i])]))

    # -- querying -----------------------------------------------------------------------------
    def hits(self, hashes: np.ndarray, stop: np.ndarray, *, doc_stride: int, threshold: float) -> list[WindowHit]:
        """Verified window pairs between a text (its word hashes) and the works (see
        :meth:`hits_many`, which this calls for one text)."""
        return self.hits_many(hashes, stop, np.array([0, len(hashes)], dtype=np.int64),
                              doc_stride=doc_stride, threshold=threshold)[0]

    def _query_windows(self, n_sh: np.ndarray, doc_stride: int, threshold: float):
        """(start, length, needed score, text, kind: 0 full, 1 half, 2 quote) of every query
        window of texts with ``n_sh`` shingles, starts local to each text (per text: its full
        windows, then half windows, then quote windows, as :func:`window_starts` cuts them)."""
        n_sh = np.asarray(n_sh, dtype=np.int64)
        half = self.window // 2
        quote = self.window // QUOTE_DIVISOR
        short = n_sh <= SHORT_TEXT_WINDOWS * self.window
        kinds = [(n_sh > 0, self.window, doc_stride, threshold, 0)]
        if half >= 4:
            kinds.append((short & (n_sh > half), half, max(1, half // 2), max(threshold, HALF_CONTAINMENT), 1))
        if quote >= MIN_SHARED:
            kinds.append((short & (n_sh > quote), quote, 1, max(threshold, QUOTE_CONTAINMENT), 2))
        st, ln, nd, dc, rr = [], [], [], [], []
        for sel, size, stride, need, rare in kinds:
            docs = np.flatnonzero(sel)
            s, d = _window_starts_many(n_sh[docs], size, stride)
            st.append(s)
            ln.append(np.minimum(size, n_sh[docs][d] - s))
            dc.append(docs[d])
            nd.append(np.full(len(s), need, dtype=np.float64))
            rr.append(np.full(len(s), rare, dtype=np.int64))
        dc_all = np.concatenate(dc)
        order = np.argsort(dc_all, kind="stable")            # text by text, kinds in the order above
        return (np.concatenate(st)[order], np.concatenate(ln)[order], np.concatenate(nd)[order],
                dc_all[order], np.concatenate(rr)[order])

    def hits_many(self, hashes: np.ndarray, stop: np.ndarray, offsets: np.ndarray, *, doc_stride: int,
                  threshold: float) -> list[list[WindowHit]]:
        """Verified window pairs between each of several texts and the works: ``hashes`` /
        ``stop`` hold the texts' word hashes and stopword flags one after the other, text ``i``
        being words ``offsets[i]:offsets[i+1]``. Shingling, signatures, the LSH lookup and the
        verification run once for all texts, in numpy.

        A short text (at most ``SHORT_TEXT_WINDOWS`` windows of shingles, e.g. a model output) is
        also queried with half-size windows, so that a short edited quote inside it is not diluted
        by the surrounding words; such a half window must have at least ``HALF_CONTAINMENT`` of its
        shingles inside the work window.
        """
        offsets = np.asarray(offsets, dtype=np.int64)
        n_docs = len(offsets) - 1
        out: list[list[WindowHit]] = [[] for _ in range(n_docs)]
        k = self.shingle
        hashes = np.asarray(hashes, dtype=np.uint64)
        g = ngram_hashes(hashes, k)
        if len(g) == 0 or len(self.win_work) == 0:
            return out
        m = len(g)
        counts = np.diff(offsets)
        doc_of = np.repeat(np.arange(n_docs, dtype=np.int64), counts)[:m]
        local = np.arange(m, dtype=np.int64) - offsets[doc_of]
        all_stop = np.ones(m, dtype=bool)
        stop = np.asarray(stop, dtype=bool)
        for i in range(k):
            all_stop &= stop[i:i + m]
        keep = np.nonzero(~all_stop & (local + k <= counts[doc_of]))[0]
        g, pos, gdoc = g[keep], local[keep], doc_of[keep]
        if len(g) == 0:
            return out
        n_sh = np.bincount(gdoc, minlength=n_docs)
        sh_off = np.concatenate([[0], np.cumsum(n_sh)]).astype(np.int64)
        lst, lens, need, wdoc, kind = self._query_windows(n_sh, doc_stride, threshold)
        need_rare = np.where(kind == 2, QUOTE_MIN_RARE, 0)
        starts = lst + sh_off[wdoc]
        sigs = signatures(shingle_values(g), starts, lens, self.a, self.b)
        rows, cands = self._best_candidates(sigs, rows_full=lens == self.window, threshold=threshold,
                                            *self.candidates(sigs))
        if len(rows) == 0:
            return out
        ok, score, q_first, q_last, w_first, w_last, rare = self._verify(g, starts, lens, rows, cands)
        ok &= (score >= need[rows]) & (rare >= need_rare[rows])
        # quote windows only stand in for works no full or half window of the text found
        works_all = np.asarray(self.win_work, dtype=np.int64)[cands]
        quote = kind[rows] == 2
        pair = wdoc[rows] * (len(self.work_offsets) + 1) + works_all
        seen = np.unique(pair[ok & ~quote])
        if len(seen):
            p = np.searchsorted(seen, pair)
            p[p >= len(seen)] = 0
            ok &= ~(quote & (seen[p] == pair))
        sel = np.nonzero(ok)[0]
        win_start = np.asarray(self.win_start)
        r, c = rows[sel], cands[sel]
        qs = starts[r]
        d_first = pos[qs + q_first[sel]]
        d_end = pos[qs + q_last[sel]] + k
        wsw = np.asarray(self.shingle_word[win_start[c] + w_first[sel]], dtype=np.int64)
        wew = np.asarray(self.shingle_word[win_start[c] + w_last[sel]], dtype=np.int64) + k
        works = np.asarray(self.win_work)[c]
        for d, w, a, b, x, y, sc in zip(wdoc[r].tolist(), works.tolist(), d_first.tolist(), d_end.tolist(),
                                        wsw.tolist(), wew.tolist(), score[sel].tolist()):
            out[d].append(WindowHit(w, a, b, x, y, sc))
        return out

    def _verify(self, g: np.ndarray, starts: np.ndarray, lens: np.ndarray, rows: np.ndarray,
                cands: np.ndarray, chunk: int = 4096):
        """Exact scores of (query window ``rows``, work window ``cands``) pairs on the true shingle
        sets, vectorised: (shares >= MIN_SHARED, score, first / last shared shingle of the query
        window, first / last shared shingle of the work window, shared distinctive shingles),
        positions within each window."""
        L = int(max(self.window, lens.max()))
        ar = np.arange(L, dtype=np.int64)
        tri = ar[None, :] < ar[:, None]          # tri[i, j]: j before i
        shingles = np.asarray(self.shingles)
        win_start = np.asarray(self.win_start, dtype=np.int64)
        win_len = np.asarray(self.win_len, dtype=np.int64)
        P = len(rows)
        ok = np.zeros(P, dtype=bool)
        score = np.zeros(P, dtype=np.float64)
        qf, ql, wf, wl_, rare = (np.zeros(P, dtype=np.int64) for _ in range(5))
        distinct = self.shingle_distinct
        work_sets, work_n = self._work_sets(L)
        for c0 in range(0, P, chunk):
            r, c = rows[c0:c0 + chunk], cands[c0:c0 + chunk]
            qn, wn = lens[r], win_len[c]
            qm = ar[None, :] < qn[:, None]
            wm = ar[None, :] < wn[:, None]
            Q = g[np.minimum(starts[r][:, None] + ar, len(g) - 1)]
            widx = np.minimum(win_start[c][:, None] + ar, len(shingles) - 1)
            W = shingles[widx]
            eq = (Q[:, :, None] == W[:, None, :]) & qm[:, :, None] & wm[:, None, :]
            q_in = eq.any(axis=2)
            w_in = eq.any(axis=1)
            # first occurrence of each value inside its own window (the window's set), once per
            # distinct query window; the work windows' ones are stored
            _, fi, inv = np.unique(r, return_index=True, return_inverse=True)
            Qu, qmu = Q[fi], qm[fi]
            q_set = (qmu & ~((Qu[:, :, None] == Qu[:, None, :]) & tri & qmu[:, None, :]).any(axis=2))[inv]
            w_set = work_sets[c]
            inter = np.count_nonzero(q_in & q_set, axis=1)
            nq = np.count_nonzero(q_set, axis=1)
            nw = work_n[c]
            with np.errstate(divide="ignore", invalid="ignore"):
                sc = inter / (nq + nw - inter)
                cont = inter / nq
            short = qn < self.window
            sc = np.where(short, np.maximum(sc, cont), sc)
            sl = slice(c0, c0 + len(r))
            ok[sl] = inter >= MIN_SHARED
            score[sl] = np.where(ok[sl], sc, 0.0)
            qf[sl] = np.argmax(q_in, axis=1)
            ql[sl] = L - 1 - np.argmax(q_in[:, ::-1], axis=1)
            wf[sl] = np.argmax(w_in, axis=1)
            wl_[sl] = L - 1 - np.argmax(w_in[:, ::-1], axis=1)
            rare[sl] = np.count_nonzero(w_in & w_set & distinct[widx], axis=1)
        return ok, score, qf, ql, wf, wl_, rare

    def hits_reference(self, hashes: np.ndarray, stop: np.ndarray, *, doc_stride: int,
                       threshold: float) -> list[WindowHit]:
        """The one-text, Python-set implementation :meth:`hits_many` must equal (kept for tests)."""
        g, pos = text_shingles(hashes, stop, self.shingle)
        if len(g) == 0 or len(self.win_work) == 0:
            return []
        starts, lens, need, _, kind = self._query_windows(np.array([len(g)]), doc_stride, threshold)
        need_rare = np.where(kind == 2, QUOTE_MIN_RARE, 0)
        sigs = signatures(shingle_values(g), starts, lens, self.a, self.b)
        rows, cands = self._best_candidates(sigs, rows_full=lens == self.window, threshold=threshold,
                                            *self.candidates(sigs))
        out: list[WindowHit] = []
        qsets: dict[int, frozenset] = {}
        if len(self._sets) > 200_000:
            self._sets.clear()
        for j, c in zip(rows.tolist(), cands.tolist()):
            q = qsets.get(j)
            if q is None:
                s = int(starts[j])
                q = qsets[j] = frozenset(g[s:s + int(lens[j])].tolist())
            ws = self._sets.get(c)
            if ws is None:
                ws = self._sets[c] = frozenset(self._work_window_set(c).tolist())
            inter = len(q & ws)
            if inter < MIN_SHARED:
                continue
            w0, wl = int(self.win_start[c]), int(self.win_len[c])
            distinct = {v for v, ok in zip(np.asarray(self.shingles[w0:w0 + wl]).tolist(),
                                           self.shingle_distinct[w0:w0 + wl].tolist()) if ok}
            if len(q & distinct) < int(need_rare[j]):
                continue
            score = inter / (len(q) + len(ws) - inter)
            if int(lens[j]) < self.window:
                score = max(score, inter / len(q))
            if score >= float(need[j]):
                out.append((int(kind[j]) == 2, self._trimmed_hit(g, pos, int(starts[j]), int(lens[j]), c, q, ws,
                                                                     score)))
        found = {h.work for is_quote, h in out if not is_quote}
        return [h for is_quote, h in out if not (is_quote and h.work in found)]

    def _best_candidates(self, sigs, rows, cands, *, rows_full: np.ndarray, threshold: float):
        """Pre-filter LSH candidates with the MinHash estimate of their Jaccard, then keep the most
        similar work window per (text window, work): the others overlap it and add nothing to the
        text's span. Only full-size text windows are pre-filtered (their score is a Jaccard); the
        cut-off sits ``ESTIMATE_SLACK`` below the threshold (> 3 standard errors at 128 permutations)."""
        if len(rows) == 0:
            return rows, cands
        stored = np.asarray(self.signatures)
        est = np.empty(len(rows), dtype=np.float64)
        for i in range(0, len(rows), 8192):   # the share of equal values, in cache-sized blocks
            r, c = rows[i:i + 8192], cands[i:i + 8192]
            est[i:i + len(r)] = np.count_nonzero(sigs[r] == stored[c], axis=1)
        est /= sigs.shape[1]                  # exactly the mean of the equalities
        keep = ~rows_full[rows] | (est >= threshold - ESTIMATE_SLACK)
        rows, cands, est = rows[keep], cands[keep], est[keep]
        work = np.asarray(self.win_work)[cands]
        order = np.lexsort((cands, -est, work, rows))
        rows, cands, work = rows[order], cands[order], work[order]
        first = np.ones(len(rows), dtype=bool)
        first[1:] = (rows[1:] != rows[:-1]) | (work[1:] != work[:-1])
        return rows[first], cands[first]

    def _trimmed_hit(self, g, pos, s: int, ln: int, c: int, q: frozenset, ws: frozenset, score: float) -> WindowHit:
        """The pair's words, trimmed on both sides to the first and last shared shingle."""
        first, last = _first_last(g[s:s + ln].tolist(), ws) if len(q) > len(ws) or not q <= ws else (0, ln - 1)
        d_first, d_end = int(pos[s + first]), int(pos[s + last]) + self.shingle
        ws0, wl = int(self.win_start[c]), int(self.win_len[c])
        first, last = _first_last(self.shingles[ws0:ws0 + wl].tolist(), q) if not ws <= q else (0, wl - 1)
        w_first = int(self.shingle_word[ws0 + first])
        w_end = int(self.shingle_word[ws0 + last]) + self.shingle
        return WindowHit(int(self.win_work[c]), d_first, d_end, w_first, w_end, float(score))
