"""Normalised word tokens with character offsets, and seeded 64-bit token / n-gram hashes.

Normalisation (the same for works, corpora and outputs): a *word* is a maximal run of Unicode
word characters (``\\w+``: letters, digits, underscore) in the original text; punctuation and
whitespace only separate words, so re-punctuation and re-spacing never change the words.
Each word is NFKC-normalised and case-folded. Offsets always point into the original text, so a
reported span can be cut out of the document as it was given.

Hashes are seeded (keyed BLAKE2b per distinct word, then a polynomial combination with a
SplitMix64 finaliser per n-gram), the same on every machine and process.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..core.hashing import stable_hash64

_WORD = re.compile(r"\w+")
_MASK64 = (1 << 64) - 1
# Odd 64-bit multiplier of the polynomial n-gram combination.
_POLY = np.uint64(0x9E3779B97F4A7C15)

#: English function words: an n-gram made mostly of these is not evidence on its own
#: (see :func:`content_counts` and ``IndexConfig.min_content_words``).
STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each even ever every few for from
further had has have having he her here hers herself him himself his how i if in into is it its
itself just let may me might more most much must my myself no nor not now of off on once one only or
other our ours ourselves out over own said same say says shall she should so some such than that the
their theirs them themselves then there these they this those through thus to too under unto until
up upon us very was we were what when where which while who whom whose why will with would ye yet
you your yours yourself yourselves s t d ll m o re ve thee thou thy thine hath doth
""".split())


@dataclass(frozen=True)
class Tokens:
    """The normalised words of a text and their character spans in the original text."""

    words: list[str]
    starts: np.ndarray  # int64, character offset of each word
    ends: np.ndarray    # int64, one past the last character

    def __len__(self) -> int:
        return len(self.words)


def normalise_word(word: str) -> str:
    """NFKC + case-fold one word (ASCII words take the fast path)."""
    if word.isascii():
        return word.lower()
    return unicodedata.normalize("NFKC", word).casefold()


def _word_mask(text: str) -> np.ndarray:
    """bool per character of ``text``: is it a word character (``\\w``: alphanumeric or ``_``)?"""
    return _code_point_mask(np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32))


def _code_point_mask(cps: np.ndarray) -> np.ndarray:
    """:func:`_word_mask` of a text given as its uint32 code points."""
    mask = np.zeros(len(cps), dtype=bool)
    low = cps < 128
    mask[low] = _ASCII_WORD[cps[low]]
    if not low.all():
        high = cps[~low]
        uniq = np.unique(high)
        ok = np.fromiter((chr(c).isalnum() for c in uniq.tolist()), dtype=bool, count=len(uniq))
        mask[~low] = ok[np.searchsorted(uniq, high)]
    return mask


_ASCII_WORD = np.array([chr(c).isalnum() or chr(c) == "_" for c in range(128)], dtype=bool)


def tokenize(text: str) -> Tokens:
    """The normalised words of ``text`` with their character offsets in ``text``."""
    if not text:
        return Tokens([], np.empty(0, np.int64), np.empty(0, np.int64))
    if text.isascii():
        words = _WORD.findall(text.lower())
    else:
        words = [w.lower() if w.isascii() else normalise_word(w) for w in _WORD.findall(text)]
    mask = _word_mask(text)
    edges = np.diff(np.concatenate(([False], mask, [False])).astype(np.int8))
    starts = np.nonzero(edges == 1)[0].astype(np.int64)
    ends = np.nonzero(edges == -1)[0].astype(np.int64)
    if len(starts) != len(words):  # pragma: no cover - the mask and the regex agree on \\w
        m = list(_WORD.finditer(text))
        starts = np.asarray([x.start() for x in m], dtype=np.int64)
        ends = np.asarray([x.end() for x in m], dtype=np.int64)
    return Tokens(words, starts, ends)


def words_only(text: str) -> list[str]:
    """The normalised words of ``text`` without offsets (faster than :func:`tokenize`)."""
    if text.isascii():
        return _WORD.findall(text.lower())
    return [normalise_word(w) for w in _WORD.findall(text)]


def count_words(text: str) -> int:
    """How many words :func:`tokenize` finds in ``text``."""
    return len(_WORD.findall(text))


class WordHasher:
    """Seeded 64-bit hashes of normalised words, with a bounded cache."""

    def __init__(self, seed: int, cache_size: int = 1 << 20):
        self.seed = int(seed)
        self.cache_size = cache_size
        self._cache: dict[str, int] = {}

    def hashes(self, words: list[str]) -> np.ndarray:
        """uint64 hash of each word."""
        cache = self._cache
        missing = set(words).difference(cache)
        if missing:
            if len(cache) + len(missing) > self.cache_size:
                cache.clear()
                missing = set(words)
            for w in missing:
                cache[w] = stable_hash64(w.encode("utf-8"), self.seed)
        return np.fromiter(map(cache.__getitem__, words), dtype=np.uint64, count=len(words))


@lru_cache(maxsize=64)
def _hasher(seed: int) -> WordHasher:
    return WordHasher(seed)


def word_hashes(words: list[str], seed: int) -> np.ndarray:
    """uint64 seeded hash of each normalised word (cached per process and seed)."""
    return _hasher(int(seed)).hashes(words)


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def ngram_hashes(hashes: np.ndarray, n: int) -> np.ndarray:
    """uint64 hash of every word n-gram (``len(hashes) - n + 1`` of them, or none).

    ``H = splitmix(sum_i h[j+i] * P^(n-1-i))`` with wrapping uint64 arithmetic.
    """
    m = len(hashes) - n + 1
    if m <= 0:
        return np.empty(0, dtype=np.uint64)
    with np.errstate(over="ignore"):
        acc = hashes[:m].copy()
        for i in range(1, n):
            acc = acc * _POLY + hashes[i:i + m]
        return _splitmix(acc)


def content_counts(words: list[str], n: int) -> np.ndarray:
    """For every word n-gram, how many of its words are not :data:`STOPWORDS` (nor pure digits)."""
    m = len(words) - n + 1
    if m <= 0:
        return np.empty(0, dtype=np.int32)
    content = np.fromiter(
        (not (w in STOPWORDS or w.isdigit()) for w in words), dtype=np.int32, count=len(words)
    )
    c = np.concatenate([[0], np.cumsum(content)])
    return (c[n:] - c[:m]).astype(np.int32)


def stopword_mask(words: list[str]) -> np.ndarray:
    """bool per word: is it a stopword (or pure digits)?"""
    return np.fromiter((w in STOPWORDS or w.isdigit() for w in words), dtype=bool, count=len(words))


class WordTable:
    """Raw word (as it appears in a text) -> id of its normalised form's (seeded hash, stopword
    flag), held in numpy arrays: one dict look-up per word and no Python object per hash."""

    def __init__(self, seed: int, cache_size: int = 1 << 20):
        self.seed = int(seed)
        self.cache_size = cache_size
        self._clear()

    def _clear(self) -> None:
        self._ids: dict[str, int] = {}
        self._hash = np.empty(1024, dtype=np.uint64)
        self._stop = np.empty(1024, dtype=bool)

    def _add(self, raw_words) -> None:
        missing = set(raw_words).difference(self._ids)
        if not missing:
            return
        if len(self._ids) + len(missing) > self.cache_size:
            self._clear()
            missing = set(raw_words)
        n0 = len(self._ids)
        need = n0 + len(missing)
        if need > len(self._hash):
            cap = max(need, 2 * len(self._hash))
            self._hash = np.resize(self._hash, cap)
            self._stop = np.resize(self._stop, cap)
        raws = sorted(missing)
        norm = [normalise_word(w) for w in raws]
        self._hash[n0:need] = _hasher(self.seed).hashes(norm)
        self._stop[n0:need] = stopword_mask(norm)
        self._ids.update(zip(raws, range(n0, need)))

    def lookup(self, raw_words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(uint64 hash, stopword flag) of every raw word: those of :func:`normalise_word` of it."""
        try:
            ids = np.fromiter(map(self._ids.__getitem__, raw_words), dtype=np.int64, count=len(raw_words))
        except KeyError:
            self._add(raw_words)
            ids = np.fromiter(map(self._ids.__getitem__, raw_words), dtype=np.int64, count=len(raw_words))
        return self._hash[ids], self._stop[ids]


@lru_cache(maxsize=64)
def _table(seed: int) -> WordTable:
    return WordTable(seed)


@dataclass(frozen=True)
class TokenBatch:
    """The words of several texts at once: concatenated per-word arrays and CSR offsets.

    Words ``offsets[i]:offsets[i+1]`` belong to text ``i``; ``starts`` / ``ends`` are character
    offsets inside that text; ``hashes`` / ``stop`` equal :func:`word_hashes` /
    :func:`stopword_mask` of :func:`tokenize`'s words of the text.
    """

    hashes: np.ndarray   # uint64
    stop: np.ndarray     # bool
    starts: np.ndarray   # int64
    ends: np.ndarray     # int64
    offsets: np.ndarray  # int64[len(texts) + 1]


def tokenize_batch(texts: list[str], seed: int) -> TokenBatch:
    """:func:`tokenize` + :func:`word_hashes` + :func:`stopword_mask` of many texts in one pass
    (one regex scan and one character mask over the texts joined by newlines)."""
    if not texts:
        z = np.empty(0, np.int64)
        return TokenBatch(np.empty(0, np.uint64), np.empty(0, bool), z, z, np.zeros(1, np.int64))
    joined = "\n".join(texts)
    lens = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    text_start = np.concatenate([[0], np.cumsum(lens + 1)[:-1]]).astype(np.int64)
    cps = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    mask = _code_point_mask(cps)
    # the words: every non-word character becomes a space, then a plain split (the same list
    # as ``_WORD.findall(joined)``, about twice as fast)
    raw = np.where(mask, cps, np.uint32(32)).astype(np.uint32, copy=False).tobytes().decode("utf-32-le", "surrogatepass").split()
    edges = np.diff(np.concatenate(([False], mask, [False])).astype(np.int8))
    starts = np.nonzero(edges == 1)[0].astype(np.int64)
    ends = np.nonzero(edges == -1)[0].astype(np.int64)
    if len(starts) != len(raw):  # pragma: no cover - the mask and the regex agree on \w
        raw = _WORD.findall(joined)
        m = list(_WORD.finditer(joined))
        starts = np.asarray([x.start() for x in m], dtype=np.int64)
        ends = np.asarray([x.end() for x in m], dtype=np.int64)
    offsets = np.searchsorted(starts, np.append(text_start, len(joined) + 1)).astype(np.int64)
    doc = np.repeat(np.arange(len(texts)), np.diff(offsets))
    hashes, stop = _table(int(seed)).lookup(raw)
    return TokenBatch(hashes, stop, starts - text_start[doc], ends - text_start[doc], offsets)


class KeyLookup:
    """Find uint64 needles in a sorted array of distinct uint64 keys (random hashes) without
    sorting the needles: the keys are bucketed by their top bits (about 4 buckets per key), so a
    needle is compared with the one or two keys of its bucket; most absent needles land in an
    empty bucket and cost one read."""

    def __init__(self, keys: np.ndarray):
        self.keys = np.asarray(keys)
        nbits = 10
        while (1 << nbits) < 4 * len(self.keys) and nbits < 30:
            nbits += 1
        self.shift = np.uint64(64 - nbits)
        top = self.keys >> self.shift
        dtype = np.int32 if len(self.keys) < (1 << 31) else np.int64
        self.bucket_start = np.searchsorted(top, np.arange((1 << nbits) + 1, dtype=np.uint64)).astype(dtype)

    def find(self, needles: np.ndarray) -> np.ndarray:
        """Position of each needle in the keys, or -1 when it is not a key."""
        needles = np.asarray(needles, dtype=np.uint64)
        pos = np.full(len(needles), -1, dtype=np.int64)
        if len(self.keys) == 0 or len(needles) == 0:
            return pos
        b = (needles >> self.shift).astype(np.int64)
        lo = self.bucket_start[b].astype(np.int64)
        cnt = self.bucket_start[b + 1] - lo
        act = np.flatnonzero(cnt)
        j = 0
        while len(act):
            p = lo[act] + j
            eq = self.keys[p] == needles[act]
            pos[act[eq]] = p[eq]
            act = act[~eq & (cnt[act] > j + 1)]
            j += 1
        return pos


__all__ = [
    "KeyLookup", "STOPWORDS", "TokenBatch", "Tokens", "WordHasher", "WordTable", "content_counts", "count_words", "ngram_hashes",
    "normalise_word", "stopword_mask", "tokenize", "tokenize_batch", "word_hashes", "words_only",
]
