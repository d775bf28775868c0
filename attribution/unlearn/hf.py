"""Hugging Face causal LMs from a local folder, behind the same small interface as the tiny GPT.

The unlearning code needs from a model ``model(ids) -> logits`` and ``model.config.max_len``, and
from a tokenizer ``encode(text, bos)``, ``pad_id`` / ``bos_id`` / ``eos_id`` / ``unk_id``,
``vocab``, ``len()`` and character ``offsets`` of its tokens (for the works' spans). This module
wraps a ``transformers`` model and fast tokenizer so, loaded with ``local_files_only`` (no hub
access) and safetensors only, and writes the unlearned model back as a Hugging Face folder
(safetensors weights, config, tokenizer files).

Example::

    model, tok = load_hf("models/my-gpt2")          # tribute.attribution.unlearn.run.load_model picks it
    save_hf(unlearned, tok, "out/tmp", marker={"method": "calibrated"})
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from ...core.errors import DependencyError, InputError

WEIGHT_GLOBS = ("*.safetensors",)


def is_hf_folder(folder) -> bool:
    """True when ``folder/config.json`` is a Hugging Face model config (it names a ``model_type``)."""
    try:
        cfg = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and "model_type" in cfg and cfg.get("kind") != "tribute-tiny-gpt"


def weight_files(folder) -> list[Path]:
    """The model's weight files (the tiny GPT's ``model.safetensors`` or a HF folder's shards)."""
    return sorted(p for g in WEIGHT_GLOBS for p in Path(folder).glob(g) if p.is_file())


class HFTokenizer:
    """A ``transformers`` fast tokenizer with the tiny-LM tokenizer's interface."""

    def __init__(self, inner):
        self.inner = inner
        eos = inner.eos_token_id
        self.bos_id = inner.bos_token_id if inner.bos_token_id is not None else eos
        self.eos_id = eos if eos is not None else self.bos_id
        if self.eos_id is None:
            raise InputError("tokenizer: has neither a BOS nor an EOS token; give a causal-LM tokenizer")
        self.pad_id = inner.pad_token_id if inner.pad_token_id is not None else self.eos_id
        self.unk_id = inner.unk_token_id if inner.unk_token_id is not None else -1   # byte-level BPE: none

    def __len__(self) -> int:
        return len(self.inner)

    @property
    def vocab(self) -> dict:
        return self.inner.get_vocab()

    def encode(self, text: str, bos: bool = True) -> list[int]:
        ids = self.inner(text, add_special_tokens=False)["input_ids"]
        return ([self.bos_id] if bos else []) + list(ids)

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character ``(start, end)`` of each token of ``encode(text, bos=False)``."""
        enc = self.inner(text, add_special_tokens=False, return_offsets_mapping=True)
        return [tuple(o) for o in enc["offset_mapping"]]

    def decode(self, ids) -> str:
        return self.inner.decode(list(ids))

    def save(self, folder) -> None:
        self.inner.save_pretrained(str(folder))


def _module():
    import torch

    class HFCausalLM(torch.nn.Module):
        """``ids [B, T] -> logits [B, T, V]`` over a ``transformers`` causal LM; ``config.max_len``."""

        def __init__(self, inner, max_len: int):
            super().__init__()
            self.inner = inner
            self.config = SimpleNamespace(max_len=int(max_len), vocab_size=int(inner.config.vocab_size))

        def forward(self, ids):
            return self.inner(input_ids=ids).logits

    return HFCausalLM


def load_hf(folder, what: str = "--model"):
    """``(model, tokenizer)`` of a local Hugging Face causal-LM folder (safetensors weights)."""
    try:
        import transformers
    except ImportError as e:
        raise DependencyError("Hugging Face models need transformers; install the extra: "
                              "pip install 'tribute[hf]'") from e
    import torch

    folder = Path(folder)
    if not weight_files(folder):
        raise InputError(f"{what} {folder}: no .safetensors weights (only safetensors are loaded); "
                         "re-save the model with save_pretrained(safe_serialization=True)")
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        inner = transformers.AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True,
                                                                  use_safetensors=True, dtype=torch.float32,
                                                                  attn_implementation="eager")
    except Exception as e:  # OSError, ValueError, safetensors errors, unknown architectures
        raise InputError(f"{what} {folder}: the Hugging Face model does not load ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}); give a local causal-LM folder with "
                         "config.json, tokenizer files and safetensors weights") from e
    if not getattr(tok, "is_fast", False):
        raise InputError(f"{what} {folder}: the tokenizer is not a fast tokenizer (no character offsets); "
                         "save it as tokenizer.json")
    wrapped = HFTokenizer(tok)
    n_emb = int(inner.get_input_embeddings().weight.shape[0])
    if len(wrapped) > n_emb:
        raise InputError(f"{what} {folder}: tokenizer mismatch: the tokenizer has {len(wrapped)} tokens, the "
                         f"model's embedding only {n_emb}; give the tokenizer the model was trained with")
    inner.eval()
    n_ctx = int(getattr(inner.config, "max_position_embeddings", 0) or getattr(inner.config, "n_positions", 0) or 1024)
    return _module()(inner, n_ctx), wrapped


def save_hf(model, tok: HFTokenizer, folder, marker: dict) -> None:
    """Write ``model`` (an :func:`load_hf` model) and ``tok`` into ``folder`` as a HF folder;
    ``marker`` is recorded in ``config.json`` under ``tribute_unlearned``."""
    inner = model.inner
    inner.config.tribute_unlearned = marker
    try:
        inner.save_pretrained(str(folder), safe_serialization=True)
    finally:
        del inner.config.tribute_unlearned
    tok.save(folder)
