"""The tiny causal LM: tokenizer, seeded training, safetensors checkpoints, generation."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from tribute.attribution.lm import (  # noqa: E402
    LMConfig, TinyGPT, TrainConfig, WordTokenizer, generate, load_lm, token_windows, train_lm,
)
from tribute.core.errors import InputError  # noqa: E402

TEXTS = ["The cat sat on the mat.\n\nThe dog barked.", "A bird sang, and the cat listened!"] * 3


def test_tokenizer_round_trip_and_json(tmp_path):
    tok = WordTokenizer.fit(TEXTS)
    ids = tok.encode("The cat sat on the mat.", bos=False)
    assert tok.decode(ids) == "The cat sat on the mat."
    assert tok.decode(tok.encode("The dog barked.\n\nA bird sang")) == "The dog barked.\n\nA bird sang"
    assert tok.encode("zebra", bos=False) == [tok.unk_id]
    tok.save(tmp_path / "t.json")
    assert WordTokenizer.load(tmp_path / "t.json").vocab == tok.vocab
    (tmp_path / "bad.json").write_text(json.dumps({"kind": "other"}))
    with pytest.raises(InputError, match="not a tribute word tokenizer"):
        WordTokenizer.load(tmp_path / "bad.json")


def test_windows_cover_every_prediction_once():
    ids = list(range(10))
    w = token_windows(ids, 4)
    assert w == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert sum(len(x) - 1 for x in w) == len(ids) - 1


def test_training_is_seeded_and_checkpoints_load_without_pickle(tmp_path):
    tok = WordTokenizer.fit(TEXTS)
    cfg = LMConfig(vocab_size=len(tok), max_len=16, d_model=16, n_layer=1, n_head=2, d_ff=16)
    a, b = TinyGPT(cfg), TinyGPT(cfg)
    tc = TrainConfig(steps=12, batch_size=4, checkpoints=2, lr=1e-2)
    paths = train_lm(a, tok, TEXTS, tc, out_dir=tmp_path / "a")
    train_lm(b, tok, TEXTS, tc, out_dir=tmp_path / "b")
    assert [p.split("/")[-1] for p in paths] == ["ckpt-000006.safetensors", "ckpt-000012.safetensors"]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    m, t = load_lm(tmp_path / "a")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), m.state_dict().values()))
    assert t.vocab == tok.vocab
    text, p_ids, o_ids = generate(m, t, "The cat", max_new_tokens=5)
    assert (text, o_ids) == generate(m, t, "The cat", max_new_tokens=5)[::2]
    assert len(o_ids) <= 5 and p_ids[0] == t.bos_id
    s1 = generate(m, t, "The cat", max_new_tokens=5, temperature=1.0, seed=1)
    assert s1 == generate(m, t, "The cat", max_new_tokens=5, temperature=1.0, seed=1)
    with pytest.raises(InputError, match="exceeds the context"):
        generate(m, t, "The cat", max_new_tokens=40)


def test_training_lowers_the_loss():
    tok = WordTokenizer.fit(TEXTS)
    model = TinyGPT(LMConfig(vocab_size=len(tok), max_len=16, d_model=16, n_layer=1, n_head=2, d_ff=16))
    from tribute.attribution import CausalLMTask

    task = CausalLMTask(max_len=16)
    batch = task.collate([(tok.encode(t)[:16], 0) for t in TEXTS[:2]])
    before = task.loss(model, batch).sum().item()
    train_lm(model, tok, TEXTS, TrainConfig(steps=40, batch_size=4, lr=1e-2))
    assert task.loss(model, batch).sum().item() < 0.7 * before


def test_no_repeat_ngram_blocks_repeats():
    from tribute.attribution.lm import _banned

    assert _banned([1, 2, 3, 1, 2], 3) == {3}
    assert _banned([5, 6, 5], 2) == {6}
    assert _banned([1, 2], 3) == set()
    tok = WordTokenizer.fit(TEXTS)
    model = TinyGPT(LMConfig(vocab_size=len(tok), max_len=32, d_model=16, n_layer=1, n_head=2, d_ff=16))
    _, _, out = generate(model, tok, "The cat", max_new_tokens=20, no_repeat_ngram=2)
    pairs = list(zip(out, out[1:]))
    assert len(pairs) == len(set(pairs))
