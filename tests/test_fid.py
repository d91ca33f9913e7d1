"""FID: the FID Inception's pool3 against pytorch-fid (fixtures from `tests/make_fid_inception_fixtures.py`), its
converter and errors, the Frechet distance against pytorch-fid's `calculate_frechet_distance`, and the statistics
cache."""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from disentangle_jax import fid
from disentangle_jax.cli import convert as convert_cli
from disentangle_jax.third_party import fid_inception
from disentangle_jax.third_party.common.state_dict import CheckpointMismatchError
from disentangle_jax.third_party.common.torch_pickle import CheckpointFormatError
from tests import metric_weights
from tests import recipe
from tests import torch_writer

SET = "fid_inception"
# The converter, cache and batching tests use a narrow network at the smallest input (`metric_weights.FID_SMALL`,
# numpy-drawn weights): they need its contract, not its size.
PROBE = [0, 1, 2, 3, 150, 295, 296, 297, 298]  # as the fixture script records the resized input


def _distance_cases() -> tuple[dict, dict]:
  return dict(np.load(recipe.TESTDATA / "fid_distance.npz")), json.loads(
    (recipe.TESTDATA / "fid_distance.json").read_text()
  )


# --- the network ----------------------------------------------------------------------------------------------------


def test_pool3_parity_with_pytorch_fid(tmp_path):
  """pytorch-fid's `.pth` layout through the torch-free reader; 128 px images in [-1, 1] give its pool3."""
  path = tmp_path / "pt_inception.pth"
  torch_writer.save(recipe.state_dict(SET), str(path))
  net = fid_inception.load(path)
  assert isinstance(net, fid_inception.Module) and net.config == fid_inception.FID
  io = recipe.io(SET)
  images = jnp.asarray(io["image_rgb_uint8"].astype(np.float32) / 127.5 - 1.0)
  got = np.asarray(net.features(images))
  assert got.shape == (2, 2048)
  atol = recipe.meta(SET)["suggested_atol"]["pool3"]
  np.testing.assert_allclose(got, io["pool3"], rtol=0, atol=atol)


def test_resizing_minus_one_one_images_equals_pytorch_fids_resize_then_rescale():
  """pytorch-fid resizes [0, 1] images to 299 and then maps them to [-1, 1]; we resize [-1, 1] images directly.
  Bilinear resizing is linear, so both give the network the same input (checked where borders and middle meet)."""
  io = recipe.io(SET)
  net = nnx.eval_shape(lambda: fid_inception.init(fid_inception.FID, seed=0))
  seen = np.asarray(net.preprocess(jnp.asarray(io["image_rgb_uint8"].astype(np.float32) / 127.5 - 1.0)))
  seen = seen.transpose(0, 3, 1, 2)[:, :, PROBE][:, :, :, PROBE]
  np.testing.assert_allclose(seen, io["resized_input_probe"], rtol=0, atol=1e-6)


def test_converter_names_the_wrong_network(tmp_path):
  sd = fid_inception.to_numpy_state_dict(metric_weights.fid_inception_net(0))
  np.savez(tmp_path / "tv.npz", **{**sd, "AuxLogits.fc.weight": np.zeros((1000, 96), np.float32)})
  with pytest.raises(CheckpointFormatError, match=r"tv\.npz.*AuxLogits.*inception_v3"):
    fid_inception.convert(tmp_path / "tv.npz")
  np.savez(tmp_path / "c1000.npz", **{**sd, "fc.weight": sd["fc.weight"][:1000], "fc.bias": sd["fc.bias"][:1000]})
  with pytest.raises(CheckpointFormatError, match=r"c1000\.npz: fc\.weight has 1000 classes.*1008"):
    fid_inception.convert(tmp_path / "c1000.npz")
  np.savez(tmp_path / "missing.npz", **{k: v for k, v in sd.items() if k != "Mixed_7c.branch_pool.bn.running_var"})
  with pytest.raises(CheckpointMismatchError, match=r"missing\.npz(.|\n)*Mixed_7c\.branch_pool\.bn\.running_var"):
    fid_inception.convert(tmp_path / "missing.npz")


def test_cli_convert_round_trip(tmp_path):
  """`disentangle-jax convert fid_inception SRC DST` writes what `load` reads back, variable for variable."""
  net = metric_weights.fid_inception_net(1)
  sd = fid_inception.to_numpy_state_dict(net)
  sd["Conv2d_1a_3x3.bn.num_batches_tracked"] = np.array(1, np.int64)  # present in torch files, unused
  torch_writer.save(sd, str(tmp_path / "w.pth"))
  convert_cli.main(["convert", "fid_inception", str(tmp_path / "w.pth"), str(tmp_path / "conv")])
  back = fid_inception.load(tmp_path / "conv")
  assert back.config == dataclasses.replace(metric_weights.FID_SMALL, input_size=299)
  jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(nnx.state(back)), nnx.to_pure_dict(nnx.state(net)))


# --- the distance ---------------------------------------------------------------------------------------------------


def test_frechet_distance_matches_pytorch_fid():
  arrays, info = _distance_cases()
  mu_a, sigma_a = fid.statistics(arrays["small_a"])
  mu_b, sigma_b = fid.statistics(arrays["small_b"])
  np.testing.assert_allclose(fid.frechet_distance(mu_a, sigma_a, mu_b, sigma_b), info["small"]["fid"], rtol=1e-6)
  # `distance` is the same computation from features (the reference as features or as its statistics).
  np.testing.assert_allclose(fid.distance(arrays["small_a"], arrays["small_b"]), info["small"]["fid"], rtol=1e-6)
  assert fid.distance(arrays["small_a"], (mu_b, sigma_b)) == fid.distance(arrays["small_a"], arrays["small_b"])
  assert abs(fid.frechet_distance(mu_a, sigma_a, mu_a, sigma_a) - info["small_same"]["fid"]) < 1e-8


def test_frechet_distance_with_singular_covariances_matches_pytorch_fid():
  """48 samples of 512-d features: rank-47 covariances, as FID on a small sample has (2048-d sets
  would take scipy's `sqrtm` most of a minute on two busy cores)."""
  w = _distance_cases()[1]["wide"]
  a = np.abs(recipe.generated_array(w["seed"], w["index_a"], w["shape"], w["scale"]))
  b = np.abs(recipe.generated_array(w["seed"], w["index_b"], w["shape"], w["scale"])) + np.float32(w["offset_b"])
  value = fid.frechet_distance(*fid.statistics(a), *fid.statistics(b))
  np.testing.assert_allclose(value, w["fid"], rtol=1e-6)


def test_frechet_distance_refuses_what_pytorch_fid_refuses():
  arrays, info = _distance_cases()
  assert info["not_psd"]["raises"].startswith("Imaginary component")
  with pytest.raises(fid.FIDError, match="imaginary part up to 1"):
    fid.frechet_distance(np.zeros(2), arrays["not_psd_sigma"], np.zeros(2), np.eye(2))
  with pytest.raises(fid.FIDError, match=r"means of different sizes: \(2,\) and \(3,\)"):
    fid.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_non_finite_root_is_retaken_with_eps_on_the_diagonals(monkeypatch):
  calls = []

  def sqrtm(a):
    calls.append(a)
    return np.full_like(a, np.nan) if len(calls) == 1 else np.eye(len(a))

  monkeypatch.setattr(fid.linalg, "sqrtm", sqrtm)
  s1, s2 = np.diag([1.0, 2.0]), np.diag([3.0, 0.0])
  value = fid.frechet_distance(np.zeros(2), s1, np.ones(2), s2, eps=1e-3)
  np.testing.assert_allclose(calls[1], (s1 + 1e-3 * np.eye(2)) @ (s2 + 1e-3 * np.eye(2)))
  assert value == pytest.approx(2.0 + 3.0 + 3.0 - 2.0 * 2.0)


def test_running_statistics_equal_statistics_of_everything():
  x = np.random.default_rng(0).normal(5.0, 0.1, (23, 7))  # a large mean: the shifted sums keep the precision
  running = fid.RunningStatistics()
  for part in np.split(x, [1, 9, 10]):
    running.update(part)
  mu, sigma = running.result()
  want_mu, want_sigma = fid.statistics(x)
  np.testing.assert_allclose(mu, want_mu, rtol=1e-14)
  np.testing.assert_allclose(sigma, want_sigma, rtol=1e-10, atol=1e-16)
  np.testing.assert_allclose(want_sigma, np.cov(x, rowvar=False), rtol=1e-14)
  with pytest.raises(fid.FIDError, match="at least 2 images, got 1"):
    one = fid.RunningStatistics()
    one.update(x[:1])
    one.result()


# --- statistics of images and their cache ---------------------------------------------------------------------------


def _write_faces(folder, n: int) -> np.ndarray:
  """n 16x16 PNGs; returns them as the folder reader gives them ([-1, 1])."""
  folder.mkdir()
  images = np.random.default_rng(3).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
  for i, im in enumerate(images):
    Image.fromarray(im).save(folder / f"{i:02d}.png")
  return images.astype(np.float32) / 127.5 - 1.0


def test_folder_statistics_batch_padding_and_cache(tmp_path, monkeypatch):
  net = metric_weights.fid_inception_net(2)
  images = _write_faces(tmp_path / "faces", 5)
  # The same compiled batch-2 program as the pipeline's (rows 0-1, 2-3, 3-4).
  parts = [fid_inception.features(net, jnp.asarray(images[i : i + 2])) for i in (0, 2, 3)]
  want = fid.statistics(np.concatenate([parts[0], parts[1], parts[2][1:]]))
  cache = tmp_path / "cache"
  seen = []
  got = fid.folder_statistics(net, tmp_path / "faces", size=16, batch_size=2, cache_dir=cache, progress=seen.append)
  assert seen == [2, 4, 5]  # 3 batches of 2, the last padded and its padding dropped
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got[1], want[1], rtol=1e-4, atol=1e-7)
  assert len(list(cache.glob("stats_*.npz"))) == 1

  computed = []

  def stub(*args, **kwargs):  # what a cache miss costs here is a call; the statistics themselves were checked above
    computed.append(1)
    return np.zeros(3), np.eye(3)

  monkeypatch.setattr(fid, "statistics_of_images", stub)
  again = fid.folder_statistics(net, tmp_path / "faces", size=16, batch_size=2, cache_dir=cache)
  np.testing.assert_array_equal(again[1], got[1])
  assert not computed
  # A changed file, other weights or another reading size are other statistics.
  os.utime(tmp_path / "faces" / "03.png", ns=(1, 1))
  fid.folder_statistics(net, tmp_path / "faces", size=16, batch_size=2, cache_dir=cache)
  fid.folder_statistics(metric_weights.fid_inception_net(3), tmp_path / "faces", size=16, batch_size=2, cache_dir=cache)
  fid.folder_statistics(net, tmp_path / "faces", size=8, batch_size=2, cache_dir=cache)
  assert len(computed) == 3 and len(list(cache.glob("stats_*.npz"))) == 4


def test_statistics_of_images_takes_single_images_and_batches():
  net = metric_weights.fid_inception_net(4)
  x = np.random.default_rng(5).uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32)
  by_item = fid.statistics_of_images(net, [x[0], x[1:3], x[3]], batch_size=2)
  whole = fid.statistics(np.concatenate([fid_inception.features(net, jnp.asarray(x[i : i + 2])) for i in (0, 2)]))
  np.testing.assert_allclose(by_item[1], whole[1], rtol=1e-4, atol=1e-7)
  with pytest.raises(fid.FIDError, match=r"\[H, W, 3\] or \[B, H, W, 3\].*\(16, 16\)"):
    fid.statistics_of_images(net, [x[0, :, :, 0]])
