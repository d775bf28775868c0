"""What is being attributed: a :class:`Task` says how a model's training loss and its measured
output are computed for a batch of examples.

Sign convention (everywhere in tribute): a score > 0 means that *including* the training example
raises the measured output of the query (for a language model: makes the generated output more
likely given its prompt; for a classifier: raises the margin of the query's label).

A task works on *examples* (whatever one training item or query is) and turns a list of them into
a *batch* (a tuple of tensors, first dimension = examples) with :meth:`Task.collate`. Every
per-example quantity is a function of a batch and returns one value per row, so tribute can take
per-example gradients with ``torch.func.vmap``.

Example::

    task = ClassificationTask()
    batch = task.collate([(x0, 1), (x1, 0)])
    task.loss(model, batch)          # tensor([l0, l1])
    task.measurement(model, batch)   # margins
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Sequence

from ..core.errors import DependencyError, InputError


class Task(ABC):
    """What a user implements to attribute a model: a training loss and a measured output.

    Subclasses implement :meth:`collate`, :meth:`loss` and :meth:`measurement`; override
    :meth:`sampled_loss` to enable influence functions (the curvature is the Fisher / Gauss-Newton
    matrix estimated with targets sampled from the model), and :meth:`train_output` /
    :meth:`out_to_loss_grad` to refine TRAK (defaults: output = log-likelihood, weight 1).
    """

    name = "task"

    @abstractmethod
    def collate(self, examples: Sequence[Any]) -> tuple:
        """A batch (tuple of tensors, first dimension = examples) from a list of examples."""

    @abstractmethod
    def loss(self, model, batch: tuple):
        """Per-example training loss, shape ``[B]`` (what training minimises)."""

    @abstractmethod
    def measurement(self, model, batch: tuple):
        """Per-example measured output of a query, shape ``[B]`` (what is attributed)."""

    def sampled_loss(self, model, batch: tuple, generator):
        """Per-example loss against targets sampled from the model's own predictions.

        Its gradients' second moment is the (true) Fisher, which equals the Gauss-Newton matrix
        for softmax outputs: the curvature influence functions use.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement sampled_loss")

    def train_output(self, model, batch: tuple):
        """TRAK's model output for training examples (default: the log-likelihood, ``-loss``)."""
        return -self.loss(model, batch)

    def out_to_loss_grad(self, model, batch: tuple):
        """TRAK's weight ``dloss/doutput`` per example (default 1)."""
        import torch

        return torch.ones(batch[0].shape[0], dtype=torch.float32)

    def config(self) -> dict:
        """Settings recorded in run manifests (a rerun with other settings is refused)."""
        return {"task": self.name}


# --------------------------------------------------------------------------- classification
class ClassificationTask(Task):
    """Examples are ``(features, label)``; the model maps ``[B, ...]`` to logits ``[B, C]``.

    Loss: cross-entropy. Measurement: the margin, correct logit minus logsumexp of the others
    (higher = more confident in the label).
    """

    name = "classification"

    def collate(self, examples):
        import torch

        if not examples:
            raise InputError("classification task: empty batch; pass at least one example")
        xs = torch.stack([torch.as_tensor(x) for x, _ in examples])
        ys = torch.as_tensor([int(y) for _, y in examples], dtype=torch.long)
        return (xs, ys)

    def loss(self, model, batch):
        import torch.nn.functional as F

        x, y = batch
        return F.cross_entropy(model(x), y, reduction="none")

    def margin(self, logits, y):
        import torch

        correct = logits.gather(-1, y[..., None]).squeeze(-1)
        is_label = torch.arange(logits.shape[-1]) == y[..., None]   # vmap-safe (no one_hot)
        others = logits.masked_fill(is_label, -math.inf)
        return correct - torch.logsumexp(others, dim=-1)

    def measurement(self, model, batch):
        x, y = batch
        return self.margin(model(x), y)

    def sampled_loss(self, model, batch, generator):
        import torch
        import torch.nn.functional as F

        x, _ = batch
        logits = model(x)
        with torch.no_grad():
            t = torch.multinomial(F.softmax(logits.double(), -1), 1, generator=generator).squeeze(-1)
        return F.cross_entropy(logits, t, reduction="none")

    def train_output(self, model, batch):
        x, y = batch
        return self.margin(model(x), y)

    def out_to_loss_grad(self, model, batch):
        import torch

        x, y = batch
        with torch.no_grad():
            p = torch.softmax(model(x), -1).gather(-1, y[:, None]).squeeze(-1)
        return (1 - p).float()


# --------------------------------------------------------------------------- causal LM
class CausalLMTask(Task):
    """Examples are ``(token_ids, n_prompt)``: a sequence and how many leading tokens are prompt.

    The model maps ``[B, T]`` token ids to logits ``[B, T, V]`` (a plain torch module; for a
    Hugging Face model wrap it with :func:`hf_causal_lm`). Loss: summed negative log-likelihood
    of the non-prompt tokens (a training document has ``n_prompt = 0``: every token after the
    first). Measurement: the log-probability of the output given the prompt, summed over the
    output tokens. Sequences longer than ``max_len`` are refused (no silent truncation).
    """

    name = "causal-lm"

    def __init__(self, max_len: int, pad_id: int = 0):
        if max_len < 2:
            raise InputError(f"causal-lm task: max_len={max_len}; use the model's context length (>= 2)")
        self.max_len = int(max_len)
        self.pad_id = int(pad_id)

    def config(self) -> dict:
        return {"task": self.name, "max_len": self.max_len, "pad_id": self.pad_id}

    def collate(self, examples):
        import torch

        if not examples:
            raise InputError("causal-lm task: empty batch; pass at least one example")
        rows = []
        for i, (ids, n_prompt) in enumerate(examples):
            ids = [int(t) for t in ids]
            if len(ids) > self.max_len:
                raise InputError(
                    f"causal-lm example {i}: {len(ids)} tokens, longer than the model's context "
                    f"({self.max_len}); shorten it or split it into documents"
                )
            if len(ids) - max(int(n_prompt), 1) < 1:
                raise InputError(f"causal-lm example {i}: no output tokens to score; give a longer sequence")
            rows.append((ids, max(int(n_prompt), 1)))
        T = max(len(r[0]) for r in rows)
        ids = torch.full((len(rows), T), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), T), dtype=torch.float32)  # 1 where the token is scored
        for i, (seq, n_prompt) in enumerate(rows):
            ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[i, n_prompt: len(seq)] = 1.0
        return (ids, mask)

    def _token_logp(self, model, ids, targets=None):
        import torch

        logits = model(ids)[:, :-1, :]
        logp = torch.log_softmax(logits.float(), dim=-1)
        tgt = ids[:, 1:] if targets is None else targets
        return logp.gather(-1, tgt[..., None]).squeeze(-1), logits

    def loss(self, model, batch):
        ids, mask = batch
        lp, _ = self._token_logp(model, ids)
        return -(lp * mask[:, 1:]).sum(-1)

    def measurement(self, model, batch):
        ids, mask = batch
        lp, _ = self._token_logp(model, ids)
        return (lp * mask[:, 1:]).sum(-1)

    def sampled_loss(self, model, batch, generator):
        import torch

        ids, mask = batch
        logits = model(ids)[:, :-1, :].float()
        with torch.no_grad():
            probs = torch.softmax(logits.double(), -1)
            t = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
            t = t.reshape(probs.shape[:-1])
        lp = torch.log_softmax(logits, -1).gather(-1, t[..., None]).squeeze(-1)
        return -(lp * mask[:, 1:]).sum(-1)


def hf_causal_lm(folder: str):
    """Load a Hugging Face causal LM and its tokenizer from a local ``folder`` (safetensors only).

    Returns ``(model, tokenizer, task)`` where ``model`` is an ``nn.Module`` returning logits
    (wrapped), usable with every method. Needs the ``hf`` extra: ``pip install 'tribute[hf]'``.
    """
    try:
        import transformers
    except ImportError as e:
        raise DependencyError(
            "Hugging Face models need transformers; install the extra: pip install 'tribute[hf]'"
        ) from e
    import torch

    try:
        tok = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        hf = transformers.AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, use_safetensors=True, torch_dtype=torch.float32
        )
    except (OSError, ValueError) as e:
        raise InputError(f"{folder}: cannot load a causal LM from this folder ({e}); give a local "
                         "Hugging Face model folder with safetensors weights") from e
    hf.eval()

    class HFModule(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, ids):
            return self.inner(input_ids=ids).logits

    n_ctx = int(getattr(hf.config, "max_position_embeddings", 1024) or 1024)
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    return HFModule(hf), tok, CausalLMTask(max_len=n_ctx, pad_id=int(pad))
