"""StyleGAN2 converters: the network-pickle path, wrong and truncated files, convert_to / load round trips."""

import collections

import numpy as np
import pytest
from flax import nnx

from disentangle_jax.cli import convert as convert_cli
from disentangle_jax.third_party import stylegan2
from disentangle_jax.third_party.common import state_dict as state_dict_lib
from disentangle_jax.third_party.common import torch_pickle
from tests import recipe
from tests import torch_writer

A_NPZ = recipe.TESTDATA / "sg2ada_r32_weights.npz"
A_PT = recipe.TESTDATA / "sg2ada_r32_weights.pt"
A_META = recipe.meta("sg2ada_r32")
_BUFFERS = ("resample_filter", "noise_const", "w_avg")


def _reconstruct_persistent_obj(meta):  # only its name is pickled
  raise NotImplementedError


def _rebuild_parameter(data, requires_grad, backward_hooks):  # only its name is pickled
  raise NotImplementedError


class _EasyDict(dict):
  """Pickled under the name dnnlib.util.EasyDict, as upstream's init_kwargs are."""


class _Parameter:
  """Pickles like a torch Parameter: `torch._utils._rebuild_parameter(tensor, requires_grad, hooks)`."""

  def __init__(self, array):
    self.array = array

  def __reduce__(self):
    return _rebuild_parameter, (self.array, True, collections.OrderedDict())


class _Persistent:
  """Pickles like a stylegan2-ada persistent module: `_reconstruct_persistent_obj(meta)` with the module __dict__."""

  def __init__(self, class_name, state):
    self.class_name, self.state = class_name, state

  def __reduce__(self):
    meta = dict(
      type="class",
      version=6,
      module_src="# (upstream source code; never executed)\n",
      class_name=self.class_name,
      state=self.state,
    )
    return _reconstruct_persistent_obj, (meta,)


def _module_tree(sd, class_name, init_kwargs=None):
  """Nests a flat state_dict into persistent module objects, the structure of a network pickle."""
  children = collections.OrderedDict()
  params, buffers = collections.OrderedDict(), collections.OrderedDict()
  for key, value in sd.items():
    head, _, rest = key.partition(".")
    if rest:
      children.setdefault(head, collections.OrderedDict())[rest] = value
    elif head in _BUFFERS:
      buffers[head] = value
    else:
      params[head] = _Parameter(value)
  state = {
    "training": False,
    "_parameters": params,
    "_buffers": buffers,
    "_non_persistent_buffers_set": set(),
    "_forward_hooks": collections.OrderedDict(),
    "_init_args": (),
    "_modules": collections.OrderedDict((k, _module_tree(v, k)) for k, v in children.items()),
    "_init_kwargs": _EasyDict(init_kwargs or {}),
  }
  return _Persistent(class_name, state)


def _write_pickle(path, sd, init_kwargs, with_g_ema=True):
  data = {
    "G": _module_tree(sd, "Generator", init_kwargs),
    "D": _module_tree({"b4.fc.weight": np.ones((2, 2), np.float32)}, "Discriminator"),
    "training_set_kwargs": _EasyDict(resolution=32),
    "augment_pipe": None,
  }
  if with_g_ema:
    data["G_ema"] = _module_tree(sd, "Generator", init_kwargs)
  path.write_bytes(
    torch_writer.pickle_with_tensors(
      data,
      extra_globals={
        "torch_utils": {},
        "torch_utils.persistence": {"_reconstruct_persistent_obj": _reconstruct_persistent_obj},
        "dnnlib": {},
        "dnnlib.util": {"EasyDict": _EasyDict},
        "torch._utils": {
          "_rebuild_tensor_v2": torch_writer._rebuild_tensor_v2,  # pylint: disable=protected-access
          "_rebuild_parameter": _rebuild_parameter,
        },
      },
    )
  )


def _a_state_dict():
  return dict(np.load(A_NPZ))


def _params(generator):
  return nnx.to_pure_dict(nnx.state(generator))


def _assert_same_params(a, b):
  flat_a = dict(state_dict_lib_items(a))
  flat_b = dict(state_dict_lib_items(b))
  assert flat_a.keys() == flat_b.keys()
  for k in flat_a:
    np.testing.assert_array_equal(flat_a[k], flat_b[k], err_msg=k)


def state_dict_lib_items(tree, prefix=""):
  for k, v in tree.items():
    if isinstance(v, dict):
      yield from state_dict_lib_items(v, f"{prefix}{k}/")
    else:
      yield f"{prefix}{k}", np.asarray(v)


def test_network_pickle_g_ema(tmp_path):
  """A pickle with upstream's structure converts without upstream code; conv_clamp comes from init_kwargs."""
  path = tmp_path / "network-snapshot-000000.pkl"
  _write_pickle(path, _a_state_dict(), A_META["init_kwargs"])
  config, params = stylegan2.convert(path)
  assert config.conv_clamp == 2.0 and config.resolution == 32 and config.channel_base == 1024
  _assert_same_params(params, stylegan2.convert(A_NPZ, conv_clamp=2.0)[1])
  io = recipe.io("sg2ada_r32")
  g = stylegan2.load(path)
  img = np.asarray(stylegan2.synthesis(g, io["ws_psi070"])).transpose(0, 3, 1, 2)
  np.testing.assert_allclose(img, io["img_psi070_const"], rtol=0, atol=5e-5)


def test_network_pickle_without_g_ema(tmp_path):
  path = tmp_path / "bad.pkl"
  _write_pickle(path, _a_state_dict(), A_META["init_kwargs"], with_g_ema=False)
  with pytest.raises(torch_pickle.CheckpointFormatError, match="no G_ema"):
    stylegan2.convert(path)


def test_network_pickle_refuses_code(tmp_path):
  path = tmp_path / "evil.pkl"
  import pickle  # pylint: disable=import-outside-toplevel

  path.write_bytes(pickle.dumps({"G_ema": print}))
  with pytest.raises(torch_pickle.CheckpointFormatError, match="builtins.print"):
    stylegan2.convert(path)


def test_wrong_keys_and_shapes_are_named(tmp_path):
  sd = _a_state_dict()
  del sd["synthesis.b16.conv1.affine.bias"]
  sd["synthesis.b8.torgb.bias"] = np.zeros(4, np.float32)
  sd["synthesis.b8.extra"] = np.zeros(1, np.float32)
  path = tmp_path / "bad.npz"
  np.savez(path, **sd)
  with pytest.raises(state_dict_lib.CheckpointMismatchError) as e:
    stylegan2.convert(path)
  message = str(e.value)
  assert str(path) in message
  assert "synthesis.b16.conv1.affine.bias" in message and "synthesis.b8.extra" in message
  assert "mis-shaped key synthesis.b8.torgb.bias: checkpoint has (4,), network expects (3,)" in message


def test_wrong_fir_kernel_is_refused(tmp_path):
  sd = _a_state_dict()
  sd["synthesis.b8.conv0.resample_filter"] = np.full((4, 4), 1 / 16, np.float32)
  path = tmp_path / "box.npz"
  np.savez(path, **sd)
  with pytest.raises(ValueError, match="synthesis.b8.conv0.resample_filter"):
    stylegan2.convert(path)


def test_truncated_torch_file(tmp_path):
  path = tmp_path / "half.pt"
  data = A_PT.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(torch_pickle.CheckpointFormatError):
    stylegan2.convert(path)


def test_other_network_is_refused(tmp_path):
  path = tmp_path / "resnet.pt"
  torch_writer.save({"conv1.weight": np.zeros((4, 3, 3, 3), np.float32)}, str(path))
  with pytest.raises(state_dict_lib.CheckpointMismatchError, match="neither a stylegan2-ada nor a rosinality"):
    stylegan2.convert(path)


def test_convert_to_and_load_round_trip(tmp_path):
  dst = tmp_path / "g"
  config = stylegan2.convert_to(A_PT, dst, conv_clamp=2.0)
  loaded = stylegan2.load(dst)
  assert loaded.config == config
  _assert_same_params(_params(loaded), _params(stylegan2.load(A_NPZ, conv_clamp=2.0)))
  with pytest.raises(FileExistsError):
    stylegan2.convert_to(A_PT, dst)


def test_cli_convert(tmp_path, capsys):
  dst = tmp_path / "cli"
  convert_cli.main(["convert", "stylegan2", str(A_NPZ), str(dst)])
  assert "converted stylegan2" in capsys.readouterr().out
  assert stylegan2.load(dst).config.conv_clamp == 256.0  # a state_dict does not record it: ada's default
