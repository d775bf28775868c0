"""Bad input gets a clear one-line error and leaves nothing half-written; features resume."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tribute.attribution import CausalLMTask, ClassificationTask, attribute  # noqa: E402
from tribute.attribution.features import FeatureStore, parse_shard  # noqa: E402
from tribute.core.errors import ConfigError, InputError  # noqa: E402


def _setup(n=12):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, 4, generator=g)
    data = [(X[i], int(X[i, 0] > 0)) for i in range(n)]
    return model, data


def test_checkpoint_that_does_not_fit_the_model(tmp_path):
    model, data = _setup()
    other = torch.nn.Sequential(torch.nn.Linear(4, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2))
    with pytest.raises(ConfigError, match="does not match the model"):
        attribute(model, [other.state_dict()], ClassificationTask(), data, data[:2], "graddot",
                  features_dir=tmp_path / "f")
    assert not (tmp_path / "f").exists()          # checked before anything is written
    with pytest.raises(Exception, match="no such file"):
        attribute(model, [tmp_path / "missing.safetensors"], ClassificationTask(), data, data[:2])
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot be read"):
        attribute(model, [bad], ClassificationTask(), data, data[:2])


def test_empty_train_set_and_no_queries():
    model, data = _setup()
    with pytest.raises(InputError, match="empty"):
        attribute(model, None, ClassificationTask(), [], data[:2])
    with pytest.raises(InputError, match="no queries"):
        attribute(model, None, ClassificationTask(), data, [])


def test_nan_gradients_are_an_error_naming_the_example():
    model, data = _setup()
    data = list(data)
    data[3] = (torch.full((4,), float("nan")), 1)
    with pytest.raises(InputError, match="example 3"):
        attribute(model, None, ClassificationTask(), data, data[:1], "graddot")


def test_query_longer_than_context():
    task = CausalLMTask(max_len=4)
    with pytest.raises(InputError, match="longer than the model's context"):
        task.collate([([2, 3, 4, 5, 6], 1)])


def test_features_reused_only_with_same_settings_and_size(tmp_path):
    model, data = _setup()
    f = tmp_path / "f"
    a = attribute(model, None, ClassificationTask(), data, data[:2], "tracin", features_dir=f).scores
    b = attribute(model, None, ClassificationTask(), data, data[:2], "tracin", features_dir=f).scores
    assert np.array_equal(a, b)
    with pytest.raises(ConfigError, match="other settings"):
        attribute(model, None, ClassificationTask(), data, data[:2], "tracin", features_dir=f,
                  proj_dim=4, projector="countsketch")
    with pytest.raises(ConfigError, match="other settings"):
        attribute(model, None, ClassificationTask(), data[:-1], data[:2], "tracin", features_dir=f)
    store_cfg = {"x": 1}
    FeatureStore(tmp_path / "s", store_cfg, n_rows=5, dim=3, n_ckpts=1)
    with pytest.raises(ConfigError, match="features on disk are for 5"):
        FeatureStore(tmp_path / "s", store_cfg, n_rows=6, dim=3, n_ckpts=1)


def test_sharded_featurisation_resumes_and_equals_one_pass(tmp_path):
    model, data = _setup(n=20)
    one = attribute(model, None, ClassificationTask(), data, data[:3], "graddot", chunk=4).scores
    f = tmp_path / "f"
    r0 = attribute(model, None, ClassificationTask(), data, data[:3], "graddot", chunk=4, features_dir=f, shard="0/2")
    assert not r0.complete and r0.scores is None
    r1 = attribute(model, None, ClassificationTask(), data, data[:3], "graddot", chunk=4, features_dir=f, shard="1/2")
    assert r1.complete
    assert np.allclose(r1.scores, one, rtol=1e-6, atol=1e-9)
    done = sorted(p.name for p in (f / "train" / "done").iterdir())
    assert len(done) == 5
    for bad in ("2/2", "x", "1/0"):
        with pytest.raises(InputError, match="shard"):
            parse_shard(bad)
    with pytest.raises(ConfigError, match="shard"):
        attribute(model, None, ClassificationTask(), data, data[:3], "influence", shard="0/2")


def test_model_is_restored_after_attribution():
    model, data = _setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    other = {k: v + 1 for k, v in before.items()}
    attribute(model, [other], ClassificationTask(), data, data[:2], "graddot")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
