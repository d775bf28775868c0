"""A tiny seeded GPT-style causal language model in plain torch, with a word-level tokenizer.

Used by the demo (train on the demo corpus, generate outputs, attribute them) and by tests and
benchmarks. Everything persisted is safe to open: the tokenizer and model config are JSON, the
weights safetensors (``load_lm`` never unpickles).

Example::

    tok = WordTokenizer.fit(texts, max_vocab=8000)
    model = TinyGPT(LMConfig(vocab_size=len(tok)))
    train_lm(model, tok, texts, TrainConfig(steps=300), out_dir="models/lm")  # checkpoints
    text = generate(model, tok, "In the beginning", max_new_tokens=40)
    model, tok = load_lm("models/lm")
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ..core.errors import ConfigError, InputError, NotFoundError
from ..core.manifest import atomic_write_text

PAD, UNK, BOS, EOS, PARA = "<pad>", "<unk>", "<bos>", "<eos>", "<p>"
SPECIALS = (PAD, UNK, BOS, EOS, PARA)
_TOKEN_RE = re.compile(r"\n\s*\n|\w+(?:['’]\w+)*|[^\w\s]")
_NO_SPACE_BEFORE = set(".,;:!?)]}'’\"")
_NO_SPACE_AFTER = set("([{\"")


class WordTokenizer:
    """Words and punctuation marks as tokens; paragraph breaks as ``<p>``; unknown -> ``<unk>``."""

    def __init__(self, vocab: Sequence[str]):
        if list(vocab[: len(SPECIALS)]) != list(SPECIALS):
            raise InputError(f"tokenizer vocabulary must start with {list(SPECIALS)}")
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        if len(self.index) != len(self.vocab):
            raise InputError("tokenizer vocabulary has duplicate entries")

    pad_id, unk_id, bos_id, eos_id, para_id = 0, 1, 2, 3, 4

    def __len__(self) -> int:
        return len(self.vocab)

    @staticmethod
    def split(text: str) -> list[str]:
        return [PARA if t.strip() == "" else t for t in _TOKEN_RE.findall(text)]

    @classmethod
    def fit(cls, texts: Iterable[str], max_vocab: int = 16000, min_count: int = 1) -> "WordTokenizer":
        counts = Counter()
        for t in texts:
            counts.update(w for w in cls.split(t) if w != PARA)
        words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls(list(SPECIALS) + words[: max(0, max_vocab - len(SPECIALS))])

    def encode(self, text: str, bos: bool = True) -> list[int]:
        ids = [self.index.get(w, self.unk_id) for w in self.split(text)]
        return ([self.bos_id] if bos else []) + ids

    def decode(self, ids: Iterable[int]) -> str:
        out = ""
        for i in ids:
            w = self.vocab[int(i)]
            if w in (PAD, BOS, EOS):
                continue
            if w == PARA:
                out = out.rstrip() + "\n\n"
                continue
            if out and not out.endswith(("\n", " ")) and w not in _NO_SPACE_BEFORE and out[-1] not in _NO_SPACE_AFTER:
                out += " "
            out += w
        return out.strip()

    def save(self, path) -> None:
        atomic_write_text(path, json.dumps({"kind": "tribute-word-tokenizer", "vocab": self.vocab}, ensure_ascii=False))

    @classmethod
    def load(cls, path) -> "WordTokenizer":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise NotFoundError(f"{path}: no tokenizer file; train the model first") from e
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{path}: corrupt tokenizer JSON ({e}); retrain the model") from e
        if not isinstance(data, dict) or data.get("kind") != "tribute-word-tokenizer":
            raise InputError(f"{path}: not a tribute word tokenizer; retrain the model")
        return cls(data["vocab"])


@dataclass
class LMConfig:
    vocab_size: int
    max_len: int = 128
    d_model: int = 64
    n_layer: int = 2
    n_head: int = 2
    d_ff: int = 128
    seed: int = 0

    def __post_init__(self):
        if self.vocab_size < len(SPECIALS) or self.max_len < 2:
            raise ConfigError("LMConfig: vocab_size must hold the special tokens and max_len >= 2")
        if self.d_model % self.n_head:
            raise ConfigError(f"LMConfig: d_model={self.d_model} must be divisible by n_head={self.n_head}")


def _module():
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c: LMConfig):
            super().__init__()
            self.n_head = c.n_head
            self.ln1 = nn.LayerNorm(c.d_model)
            self.qkv = nn.Linear(c.d_model, 3 * c.d_model)
            self.proj = nn.Linear(c.d_model, c.d_model)
            self.ln2 = nn.LayerNorm(c.d_model)
            self.fc1 = nn.Linear(c.d_model, c.d_ff)
            self.fc2 = nn.Linear(c.d_ff, c.d_model)

        def forward(self, x, mask):
            B, T, C = x.shape
            h = self.n_head
            q, k, v = self.qkv(self.ln1(x)).split(C, dim=-1)
            q, k, v = (t.reshape(B, T, h, C // h).transpose(1, 2) for t in (q, k, v))
            att = (q @ k.transpose(-1, -2)) / math.sqrt(C // h)
            att = att.masked_fill(mask[:T, :T], float("-inf")).softmax(-1)
            y = (att @ v).transpose(1, 2).reshape(B, T, C)
            x = x + self.proj(y)
            return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.ln2(x))))

    class TinyGPT(nn.Module):
        """Token + position embeddings, pre-norm transformer blocks, linear head -> logits."""

        def __init__(self, config: LMConfig):
            super().__init__()
            self.config = config
            torch.manual_seed(config.seed)
            self.tok = nn.Embedding(config.vocab_size, config.d_model)
            self.pos = nn.Embedding(config.max_len, config.d_model)
            self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
            self.ln_f = nn.LayerNorm(config.d_model)
            self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(m.weight, std=0.02)
                    if getattr(m, "bias", None) is not None:
                        nn.init.zeros_(m.bias)
            mask = torch.triu(torch.ones(config.max_len, config.max_len, dtype=torch.bool), 1)
            self.register_buffer("causal", mask, persistent=False)

        def forward(self, ids):
            T = ids.shape[-1]
            if T > self.config.max_len:
                raise InputError(f"sequence of {T} tokens is longer than the model's context "
                                 f"({self.config.max_len}); shorten it")
            x = self.tok(ids) + self.pos(torch.arange(T, device=ids.device))
            for b in self.blocks:
                x = b(x, self.causal)
            return self.head(self.ln_f(x))

    return TinyGPT


def TinyGPT(config: LMConfig):
    """A new seeded tiny GPT (an ``nn.Module`` mapping ``[B, T]`` ids to ``[B, T, V]`` logits)."""
    return _module()(config)


@dataclass
class TrainConfig:
    steps: int = 400
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.0
    checkpoints: int = 3          # evenly spaced over training, the last at the final step
    seed: int = 0
    threads: int = 0              # torch threads (0 = leave as is)

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.checkpoints < 1:
            raise ConfigError("TrainConfig: steps, batch_size and checkpoints must be >= 1")
        if self.checkpoints > self.steps:
            raise ConfigError(f"TrainConfig: checkpoints={self.checkpoints} exceeds steps={self.steps}")


def token_windows(ids: Sequence[int], size: int) -> list[list[int]]:
    """Split a token sequence into consecutive windows of at most ``size`` tokens (>= 2 each).

    A window after the first starts with the last token of the previous one, so every token
    after the first is predicted exactly once across the windows.
    """
    ids = list(ids)
    if len(ids) <= size:
        return [ids]
    out, start = [], 0
    while start < len(ids) - 1:
        out.append(ids[start:start + size])
        start += size - 1
    return out


def train_lm(model, tokenizer: WordTokenizer, texts: Sequence[str], config: TrainConfig,
             out_dir=None, log: Callable[[str], None] | None = None, subset: Sequence[int] | None = None) -> list[str]:
    """Train ``model`` on random windows of ``texts``; save checkpoints to ``out_dir``.

    Returns the checkpoint paths (``ckpt-<step>.safetensors``; ``model.safetensors`` is the
    last). ``subset``: indices of ``texts`` to train on (LDS retraining). Seeded: the same
    inputs give the same weights.
    """
    import torch

    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(model, tokenizer, texts, config, out_dir, log, subset)
    finally:
        torch.set_num_threads(threads)


def _train(model, tokenizer, texts, config, out_dir, log, subset):
    import torch

    idx = list(range(len(texts))) if subset is None else [int(i) for i in subset]
    seqs = [tokenizer.encode(texts[i]) + [tokenizer.eos_id] for i in idx]
    seqs = [s for s in seqs if len(s) >= 2]
    if not seqs:
        raise InputError("training texts: empty; give at least one non-empty document")
    L = model.config.max_len
    # every window start, weighted by document: sample uniformly over token positions
    starts = [(d, s) for d, seq in enumerate(seqs) for s in range(0, max(1, len(seq) - 1), max(1, L // 2))]
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * min(s, config.steps) / config.steps)))
    marks = {round(config.steps * (k + 1) / config.checkpoints) for k in range(config.checkpoints)}
    paths = []
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    model.train()
    for step in range(1, config.steps + 1):
        pick = torch.randint(0, len(starts), (config.batch_size,), generator=gen).tolist()
        rows = []
        for p in pick:
            d, s = starts[p]
            off = int(torch.randint(0, max(1, L // 2), (1,), generator=gen))
            s = min(s + off, max(0, len(seqs[d]) - 2))
            rows.append(seqs[d][s:s + L])
        T = max(len(r) for r in rows)
        ids = torch.full((len(rows), T), tokenizer.pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        logits = model(ids)[:, :-1]
        tgt = ids[:, 1:]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=tokenizer.pad_id)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if log and (step % max(1, config.steps // 5) == 0 or step == config.steps):
            log(f"step {step}/{config.steps} loss {loss.item():.3f}")
        if out is not None and step in marks:
            paths.append(str(save_weights(model, out / f"ckpt-{step:06d}.safetensors")))
    model.eval()
    if out is not None:
        save_weights(model, out / "model.safetensors")
        atomic_write_text(out / "config.json", json.dumps({"kind": "tribute-tiny-gpt", **asdict(model.config),
                                                           "train": asdict(config)}, indent=2, sort_keys=True))
        tokenizer.save(out / "tokenizer.json")
    return paths


def save_weights(model, path) -> Path:
    """Save the state dict as safetensors (atomically)."""
    import os

    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, path)
    return path


def load_lm(folder, checkpoint: str | None = None):
    """``(model, tokenizer)`` from a folder written by :func:`train_lm` (safetensors + JSON)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise NotFoundError(f"{folder}: no tiny-LM here (config.json missing); train it first") from e
    if cfg.get("kind") != "tribute-tiny-gpt":
        raise InputError(f"{folder}/config.json: not a tribute tiny GPT config")
    fields = {k: cfg[k] for k in ("vocab_size", "max_len", "d_model", "n_layer", "n_head", "d_ff", "seed")}
    model = TinyGPT(LMConfig(**fields))
    wpath = folder / (checkpoint or "model.safetensors")
    if not wpath.is_file():
        raise NotFoundError(f"{wpath}: no such weights file")
    try:
        model.load_state_dict(load_file(str(wpath)), strict=True)
    except RuntimeError as e:
        raise InputError(f"{wpath}: weights do not match {folder}/config.json; retrain the model") from e
    model.eval()
    return model, WordTokenizer.load(folder / "tokenizer.json")


def checkpoints_in(folder) -> list[Path]:
    """The ``ckpt-*.safetensors`` files of a model folder, oldest first."""
    return sorted(Path(folder).glob("ckpt-*.safetensors"))


def generate(model, tokenizer: WordTokenizer, prompt: str, max_new_tokens: int = 40,
             temperature: float = 0.0, top_k: int = 0, seed: int = 0,
             no_repeat_ngram: int = 0) -> tuple[str, list[int], list[int]]:
    """Continue ``prompt``: greedy when ``temperature == 0``, else seeded sampling.

    ``no_repeat_ngram=n`` (> 0) forbids a token that would repeat an n-gram already in the prompt
    or the output (stops a small model's loops; 0 = off).

    Returns ``(text, prompt_ids, output_ids)`` where ``text`` is the decoded continuation.
    """
    import torch

    ids = tokenizer.encode(prompt)
    L = model.config.max_len
    if len(ids) + max_new_tokens > L:
        raise InputError(f"prompt of {len(ids)} tokens + {max_new_tokens} new ones exceeds the context "
                         f"({L}); shorten the prompt or generate fewer tokens")
    gen = torch.Generator().manual_seed(seed)
    out: list[int] = []
    model.eval()
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(torch.tensor([ids + out]))[0, -1].double()
            logits[tokenizer.pad_id] = -math.inf
            logits[tokenizer.bos_id] = -math.inf
            if no_repeat_ngram > 0:
                for t in _banned(ids + out, no_repeat_ngram):
                    logits[t] = -math.inf
            if temperature <= 0:
                nxt = int(torch.argmax(logits))
            else:
                logits = logits / temperature
                if top_k:
                    kth = torch.topk(logits, min(top_k, len(logits))).values[-1]
                    logits[logits < kth] = -math.inf
                nxt = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=gen))
            if nxt == tokenizer.eos_id:
                break
            out.append(nxt)
    return tokenizer.decode(out), ids, out


def _banned(seq: list[int], n: int) -> set[int]:
    """Tokens that would complete an n-gram already present in ``seq``."""
    if len(seq) < n:
        return set()
    prefix = tuple(seq[len(seq) - n + 1:]) if n > 1 else ()
    return {seq[i + n - 1] for i in range(len(seq) - n + 1) if tuple(seq[i:i + n - 1]) == prefix}
