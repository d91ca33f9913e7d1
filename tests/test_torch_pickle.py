"""The numpy-only PyTorch checkpoint reader against real and synthetic torch files."""

import collections
import io
import pickle

import numpy as np
import pytest

from disentangle_jax.third_party.common import torch_pickle
from tests import recipe
from tests import torch_writer


def _sample() -> dict:
  rng = np.random.default_rng(0)
  return collections.OrderedDict(
    w=rng.normal(size=(3, 4)).astype(np.float32),
    b=np.arange(5, dtype=np.int64),
    h=rng.normal(size=(2,)).astype(np.float16),
    scalar=np.array(7, np.int64),
    nested={"x": rng.normal(size=(2, 2, 2)).astype(np.float64)},
  )


def _assert_same(a, b):
  assert type(a) in (dict, collections.OrderedDict) and list(a) == list(b)
  for k in a:
    if isinstance(a[k], dict):
      _assert_same(a[k], b[k])
    else:
      assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
      np.testing.assert_array_equal(a[k], b[k])


def test_reads_real_torch_zip_file():
  """The fixture `.pt` was written by torch.save itself; it must equal the `.npz` of the same state_dict."""
  sd = torch_pickle.load(str(recipe.TESTDATA / "sg2ada_r32_weights.pt"))
  ref = np.load(recipe.TESTDATA / "sg2ada_r32_weights.npz")
  assert list(sd) == list(ref.keys())
  for key in ref:
    assert sd[key].dtype == ref[key].dtype
    np.testing.assert_array_equal(sd[key], ref[key])


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_roundtrip_formats(tmp_path, fmt):
  path = str(tmp_path / "ckpt.pt")
  (torch_writer.save if fmt == "zip" else torch_writer.save_legacy)(_sample(), path)
  _assert_same(torch_pickle.load(path), _sample())


def test_tensors_inside_plain_pickle():
  """Snapshot pickles hold tensors as `_load_from_bytes(<legacy stream>)`."""
  data = torch_writer.pickle_with_tensors({"a": _sample()["w"], "b": [_sample()["b"]]})
  out = torch_pickle.SafeUnpickler(io.BytesIO(data)).load()
  np.testing.assert_array_equal(out["a"], _sample()["w"])
  np.testing.assert_array_equal(out["b"][0], _sample()["b"])


def test_refuses_unknown_globals(tmp_path):
  path = tmp_path / "evil.pkl"
  path.write_bytes(pickle.dumps({"f": print}))
  with pytest.raises(torch_pickle.CheckpointFormatError, match="builtins.print"):
    torch_pickle.load(str(path))


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_truncated_file_is_a_clear_error(tmp_path, fmt):
  path = tmp_path / "ckpt.pt"
  (torch_writer.save if fmt == "zip" else torch_writer.save_legacy)(_sample(), str(path))
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(torch_pickle.CheckpointFormatError):
    torch_pickle.load(str(path))
