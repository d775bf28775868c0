"""The output guard: stop a model from reproducing works under claim while their removal is pending.

A :class:`Guard` holds an exact n-gram index (:class:`~tribute.indexes.exact.ExactIndex`) of the
works under claim and checks model outputs against it: every maximal verbatim span of a work
longer than ``max_words`` words is redacted (``action="redact"``) or the whole output is blocked
(``action="block"``), with a reason per span (the work, its words, the span's length).

Adversarial formatting. Before matching, works and outputs go through :func:`skeleton`, which
extends the index normalisation (``indexes/text.py``: words are runs of ``\\w``, NFKC, case-fold;
punctuation and whitespace only separate words) with what an adversary would use to slip a copy
past a word-level match:

* zero-width and other invisible format characters (U+200B, U+200D, U+2060, U+FEFF, the soft
  hyphen U+00AD: Unicode category Cf) are deleted, so they no longer split a word;
* combining marks (accents added to letters, Mn / Me) are deleted after NFKD, so ``ŕúth`` is ``ruth``;
* Unicode look-alikes (Cyrillic, Greek, fullwidth, mathematical letters) are folded to the Latin
  letter they imitate (NFKD plus the table :data:`CONFUSABLES`);
* the underscore (a word character for ``\\w``) is a separator, so ``the_whole_text`` is three words.

Offsets in the results always point into the output as given, so a redaction cuts the original
characters. The existing index normalisation is unchanged; the guard applies its own.

Example::

    g = Guard.build([("ruth", ruth_text)], GuardConfig(max_words=12))
    res = g.check(model_output)        # res.text: the output with spans redacted; res.redactions
"""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np

from ..core.errors import ConfigError
from .exact import ExactIndex
from .text import _table, tokenize_batch, words_only

ACTIONS = ("redact", "block")

#: Look-alike letters folded to the Latin letter they imitate (after NFKD + case-fold).
CONFUSABLES: dict[str, str] = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w",
    "һ": "h", "ӏ": "l", "ɡ": "g", "ь": "b", "г": "r", "п": "n", "и": "u", "ν": "v",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "ζ": "z", "μ": "u", "ϲ": "c", "ϳ": "j",
    # Latin look-alikes outside ASCII
    "ı": "i", "ȷ": "j", "ł": "l", "ø": "o", "ß": "ss", "ꞵ": "b", "ɑ": "a", "ɩ": "i", "ʏ": "y",
    "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ɢ": "g", "ʜ": "h", "ɪ": "i", "ᴊ": "j", "ᴋ": "k",
    "ʟ": "l", "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ʀ": "r", "ꜱ": "s", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v",
    "ᴡ": "w", "ᴢ": "z",
}
_DROP_CATEGORIES = ("Cf", "Mn", "Me")


class _CharMap(dict):
    """char -> its skeleton (a possibly empty string), computed once per distinct character."""

    def __missing__(self, c: str) -> str:
        if c == "_":
            out = " "
        elif c.isascii():
            out = c.lower()
        elif unicodedata.category(c) in _DROP_CATEGORIES:
            out = ""
        else:
            parts = []
            for d in unicodedata.normalize("NFKD", c):
                if unicodedata.category(d) in _DROP_CATEGORIES:
                    continue
                for e in d.casefold():
                    parts.append(" " if e == "_" else CONFUSABLES.get(e, e))
            out = "".join(parts)
        self[c] = out
        return out


_CHARS = _CharMap()
_ASCII_TABLE = str.maketrans({"_": " "})


def skeleton(text: str) -> tuple[str, np.ndarray | None]:
    """``(skeleton text, owner)``: ``owner[i]`` is the index in ``text`` of the character that
    produced skeleton character ``i`` (``None`` when the two are aligned one to one: ASCII)."""
    if text.isascii():
        return text.lower().translate(_ASCII_TABLE), None
    pieces = list(map(_CHARS.__getitem__, text))
    lens = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
    return "".join(pieces), np.repeat(np.arange(len(text), dtype=np.int64), lens)


def skeleton_words(text: str) -> list[str]:
    """The normalised words of :func:`skeleton` of ``text`` (what the guard indexes for a work)."""
    return words_only(skeleton(text)[0])


@dataclass(frozen=True)
class GuardConfig:
    """How the guard matches and what it does with a match."""

    max_words: int = field(default=12, metadata={"help": "verbatim spans longer than this are redacted"})
    action: str = field(default="redact", metadata={"help": "'redact' the spans or 'block' the output"})
    ngram: int = field(default=8, metadata={"help": "words per n-gram of the guard's exact index (<= max_words + 1)"})
    min_content_words: int = field(default=3, metadata={"help": "a span needs an n-gram with this many non-stopwords"})
    seed: int = field(default=20261129, metadata={"help": "seed of the word hashes"})
    mask: str = field(default="[REDACTED]", metadata={"help": "text that replaces a redacted span"})

    def __post_init__(self) -> None:
        for name, lo, hi in (("max_words", 1, 10000), ("ngram", 1, 64), ("min_content_words", 0, 64)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ConfigError(f"GuardConfig.{name}: must be an integer in [{lo}, {hi}], got {v!r}")
        if self.action not in ACTIONS:
            raise ConfigError(f"GuardConfig.action: {self.action!r}; use one of {', '.join(ACTIONS)}")
        if self.ngram > self.max_words + 1:
            object.__setattr__(self, "ngram", self.max_words + 1)
        if self.min_content_words > self.ngram:
            object.__setattr__(self, "min_content_words", self.ngram)


@dataclass(frozen=True)
class Redaction:
    work_id: str
    start: int          # character offsets in the output as given
    end: int
    n_words: int
    work_word: int      # first word of the span in the work
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GuardResult:
    text: str                      # the output after redaction ("" when blocked)
    blocked: bool
    redactions: list[Redaction]

    @property
    def clean(self) -> bool:
        return not self.redactions

    def as_dict(self) -> dict:
        return {"text": self.text, "blocked": self.blocked, "redactions": [r.as_dict() for r in self.redactions]}


class Guard:
    """Exact-span guard over a fixed set of works (build once, check many outputs)."""

    def __init__(self, config: GuardConfig, work_ids: list[str], index: ExactIndex):
        self.config = config
        self.work_ids = work_ids
        self.index = index

    @classmethod
    def build(cls, works: Iterable[tuple[str, str]], config: GuardConfig | None = None) -> "Guard":
        """Index ``(work_id, text)`` pairs (each text through :func:`skeleton`)."""
        cfg = config or GuardConfig()
        ids, words = [], []
        for wid, text in works:
            ids.append(str(wid))
            words.append(skeleton_words(text))
        idx = ExactIndex.build(words, n=cfg.ngram, seed=cfg.seed, min_content_words=cfg.min_content_words,
                               common_max_works=0)
        # the works' words go into the per-process word table now, so checking outputs mostly
        # finds their hashes there instead of hashing them one by one
        _table(cfg.seed).lookup(sorted({w for ws in words for w in ws}))
        return cls(cfg, ids, idx)

    def check(self, text: str) -> GuardResult:
        return self.check_many([text])[0]

    def check_many(self, texts: Sequence[str]) -> list[GuardResult]:
        """Check several outputs at once (one index lookup for all of them)."""
        cfg = self.config
        skels = [skeleton(t) for t in texts]
        batch = tokenize_batch([s for s, _ in skels], cfg.seed)
        runs = self.index.runs_many(batch.hashes, batch.offsets)
        out = []
        for i, (text, (_, owner)) in enumerate(zip(texts, skels)):
            base = int(batch.offsets[i])
            reds = []
            for r in runs[i]:
                if r.n_words <= cfg.max_words:
                    continue
                s = int(batch.starts[base + r.doc_word])
                e = int(batch.ends[base + r.doc_word + r.n_words - 1])
                if owner is not None:
                    s, e = int(owner[s]), int(owner[e - 1]) + 1
                    while e < len(text) and not _CHARS[text[e]]:   # trailing invisible / combining marks
                        e += 1
                wid = self.work_ids[r.work]
                reds.append(Redaction(wid, s, e, r.n_words, r.work_word,
                                      f"{r.n_words} consecutive words of work {wid} (its words {r.work_word + 1}-"
                                      f"{r.work_word + r.n_words}) under claim: longer than the limit of "
                                      f"{cfg.max_words}"))
            reds.sort(key=lambda x: (x.start, -x.end, x.work_id))
            if not reds:
                out.append(GuardResult(text, False, []))
            elif cfg.action == "block":
                out.append(GuardResult("", True, reds))
            else:
                out.append(GuardResult(_redact(text, reds, cfg.mask), False, reds))
        return out


def _redact(text: str, reds: list[Redaction], mask: str) -> str:
    parts, pos = [], 0
    for r in reds:  # sorted by start; overlapping spans merge into one mask
        if r.end <= pos:
            continue
        if r.start >= pos:
            parts.append(text[pos:r.start])
            parts.append(mask)
        pos = max(pos, r.end)
    parts.append(text[pos:])
    return "".join(parts)


def naive_haystacks(work_texts: dict[str, str]) -> dict[str, str]:
    """Each work's skeleton words joined by single spaces (with a space at both ends)."""
    return {wid: " " + " ".join(skeleton_words(t)) + " " for wid, t in work_texts.items()}


def naive_spans(haystacks: dict[str, str], text: str, max_words: int) -> set[str]:
    """Reference for tests and benchmarks: the works that share a run of more than ``max_words``
    consecutive skeleton words with ``text``, by plain substring search per work (no index)."""
    words = skeleton_words(text)
    k = max_words + 1
    windows = [" " + " ".join(words[i:i + k]) + " " for i in range(len(words) - k + 1)]
    return {wid for wid, hay in haystacks.items() if any(w in hay for w in windows)}


__all__ = ["ACTIONS", "CONFUSABLES", "Guard", "GuardConfig", "GuardResult", "Redaction", "naive_haystacks", "naive_spans", "skeleton",
           "skeleton_words"]
