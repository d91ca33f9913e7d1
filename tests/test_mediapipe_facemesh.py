"""MediaPipe face mesh and BlazeFace ports against the TFLite interpreter, on the real weights of the mediapipe wheel.

The wheel (mediapipe==0.10.21, ~36 MB) is fetched once per machine by `pip download` into the test cache
($DISENTANGLE_JAX_CACHE or ~/.cache/disentangle_jax/wheels); the library itself never downloads. The reference is
`tf.lite.Interpreter` with its reference kernels (no XNNPACK delegate).
"""

from __future__ import annotations

import importlib
import json
import pathlib
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
from flax import nnx

from disentangle_jax import trees
from disentangle_jax.third_party import mediapipe_facemesh as mp
from disentangle_jax.third_party.mediapipe_facemesh import blazeface
from disentangle_jax.third_party.mediapipe_facemesh import detection
from disentangle_jax.third_party.mediapipe_facemesh import tflite
from disentangle_jax.third_party.mediapipe_facemesh import xla_options

MESH_MEMBER = importlib.import_module("disentangle_jax.third_party.mediapipe_facemesh.convert").WHEEL_MEMBER
DETECTOR_MEMBER = blazeface.WHEEL_MEMBER


@pytest.fixture(scope="session")
def tflite_files(wheel, tmp_path_factory) -> dict[str, pathlib.Path]:
  out = tmp_path_factory.mktemp("tflite")
  with zipfile.ZipFile(wheel) as archive:
    files = {}
    for key, member in (("mesh", MESH_MEMBER), ("detector", DETECTOR_MEMBER)):
      files[key] = out / pathlib.Path(member).name
      files[key].write_bytes(archive.read(member))
  return files


@pytest.fixture(scope="session")
def mesh(wheel):
  return mp.load(wheel)


@pytest.fixture(scope="session")
def detector(wheel):
  return mp.load_blazeface(wheel)


def _interpreter(path: pathlib.Path):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  reference_kernels = tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
  interp = tf.lite.Interpreter(model_path=str(path), experimental_op_resolver_type=reference_kernels)
  interp.allocate_tensors()
  return interp


def _run(interp, x: np.ndarray) -> dict[str, np.ndarray]:
  """Runs a batch-1 interpreter over each image of `x`; returns outputs by tensor name, stacked."""
  outs: dict[str, list[np.ndarray]] = {}
  for image in x:
    interp.set_tensor(interp.get_input_details()[0]["index"], image[None].astype(np.float32))
    interp.invoke()
    for d in interp.get_output_details():
      outs.setdefault(d["name"], []).append(interp.get_tensor(d["index"])[0])
  return {k: np.stack(v) for k, v in outs.items()}


def _astronaut() -> np.ndarray:
  return skimage.data.astronaut()


def _face_crop(size: int) -> np.ndarray:
  """The astronaut's face (a fixed square around it) in [-1, 1], resized to `size`."""
  crop = _astronaut()[57:199, 153:295].astype(np.float32) / 127.5 - 1.0
  return np.asarray(jax.image.resize(crop, (size, size, 3), "linear", antialias=True))


# --- reading the .tflite --------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["mesh", "detector"])
def test_graph_and_constants_match_the_interpreter(tflite_files, key):
  model = tflite.load(tflite_files[key], {"mesh": MESH_MEMBER, "detector": DETECTOR_MEMBER}[key])
  interp = _interpreter(tflite_files[key])
  listed = interp._get_ops_details()  # pylint: disable=protected-access
  ops = [(o["op_name"], tuple(o["inputs"]), tuple(o["outputs"])) for o in listed if o["op_name"] != "DELEGATE"]
  assert [(o.op, o.inputs, o.outputs) for o in model.operators] == ops
  details = {d["index"]: d for d in interp.get_tensor_details()}
  for t in model.tensors:
    assert t.name == details[t.index]["name"]
    assert t.shape == tuple(details[t.index]["shape"])
    data = model.constant(t.index)
    if data is not None and data.dtype != np.int32:
      np.testing.assert_array_equal(data, interp.get_tensor(t.index), err_msg=t.name)
  assert {o.op for o in model.operators} >= {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MAX_POOL_2D", "PAD", "DEQUANTIZE"}
  assert "DEPTHWISE_CONV_2D" in model.summary()


def test_wheel_and_file_read_the_same(wheel, tflite_files):
  from_wheel = tflite.load(wheel, MESH_MEMBER)
  from_file = tflite.load(tflite_files["mesh"], MESH_MEMBER)
  assert len(from_wheel.operators) == len(from_file.operators)
  np.testing.assert_array_equal(from_wheel.value(1), from_file.value(1))
  assert from_wheel.source.endswith("!" + MESH_MEMBER)


def test_truncated_and_corrupt_files_name_the_file(tflite_files, tmp_path):
  data = tflite_files["mesh"].read_bytes()
  truncated = tmp_path / "truncated.tflite"
  truncated.write_bytes(data[: len(data) // 2])
  with pytest.raises(tflite.TFLiteFormatError, match="truncated.tflite"):
    mp.convert(truncated)
  corrupt = tmp_path / "corrupt.tflite"
  corrupt.write_bytes(data[:8] + np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
  with pytest.raises(tflite.TFLiteFormatError, match="corrupt.tflite"):
    mp.load(corrupt)
  other = tmp_path / "notes.tflite"
  other.write_text("not a model at all")
  with pytest.raises(tflite.TFLiteFormatError, match="notes.tflite.*not a TFLite model"):
    mp.convert(other)


def test_wheel_without_the_model_names_wheel_and_member(tmp_path):
  fake = tmp_path / "mediapipe-0.0-py3-none-any.whl"
  with zipfile.ZipFile(fake, "w") as archive:
    archive.writestr("mediapipe/__init__.py", "")
  with pytest.raises(tflite.TFLiteFormatError, match=f"{fake.name}.*{MESH_MEMBER}"):
    mp.load(fake)
  with pytest.raises(tflite.TFLiteFormatError, match=f"{fake.name}.*{DETECTOR_MEMBER}"):
    mp.load_blazeface(fake)


def test_the_wrong_model_is_rejected_with_the_op_at_fault(tflite_files):
  with pytest.raises(tflite.TFLiteFormatError, match="face_detection_short_range.tflite"):
    mp.convert(tflite_files["detector"])


# --- face mesh ------------------------------------------------------------------------------------------------


def test_converted_config_is_the_default(wheel):
  config, params = mp.convert(wheel)
  assert config == mp.Config()
  assert config.num_landmarks == 468
  assert mp.Config.from_dict(json.loads(json.dumps(config.to_dict()))) == config
  assert params["landmark_head"]["out"]["conv"]["kernel"].shape == (3, 3, 32, 1404)


def test_mesh_matches_tflite(mesh, tflite_files):
  x01 = np.stack([(_face_crop(192) + 1) / 2, np.random.default_rng(1).uniform(0, 1, (192, 192, 3))]).astype(np.float32)
  ref = _run(_interpreter(tflite_files["mesh"]), x01)
  coords, logit = mp.raw(mesh, x01)
  np.testing.assert_allclose(np.asarray(coords), ref["conv2d_21"].reshape(2, -1), atol=1e-3, rtol=0)
  np.testing.assert_allclose(np.asarray(logit), ref["conv2d_31"].reshape(2), atol=1e-3, rtol=0)
  # Inside a caller's own jax.jit (as in a train step, without the net's compiler options) too.
  plain = jax.jit(lambda m, x: m.raw(x)[0])(mesh, x01)
  np.testing.assert_allclose(np.asarray(plain), ref["conv2d_21"].reshape(2, -1), atol=1e-3, rtol=0)
  # The public method takes [-1, 1] images and returns points and the sigmoid score.
  points, score = mp.landmarks_and_score(mesh, x01 * 2 - 1)
  assert points.shape == (2, 468, 3)
  np.testing.assert_allclose(np.asarray(points), ref["conv2d_21"].reshape(2, 468, 3), atol=1e-3, rtol=0)
  np.testing.assert_allclose(np.asarray(score), 1 / (1 + np.exp(-ref["conv2d_31"].reshape(2))), atol=1e-5)
  assert score[0] > 0.99 and score[1] < 0.5  # a face, then noise


def test_mesh_gradient_matches_finite_differences(mesh):
  x = _face_crop(64)[None]  # resized to 192 inside: the gradient goes through the resize too
  w = np.random.default_rng(0).normal(size=(len(mp.KEEP_INDICES), 2)).astype(np.float32)
  keep = jnp.asarray(mp.KEEP_INDICES)

  def loss(module, x):
    return jnp.sum(module.landmarks(x)[0, keep, :2] * w) / 100

  opts = xla_options.compiler_options()
  grad = np.asarray(jax.jit(jax.grad(loss, argnums=1), compiler_options=opts)(mesh, x))
  value = jax.jit(loss, compiler_options=opts)
  assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0
  eps = 3e-3
  for i in np.argsort(-np.abs(grad).reshape(-1))[:3]:
    step = np.zeros(x.size, np.float32)
    step[i] = eps
    step = step.reshape(x.shape)
    fd = (float(value(mesh, x + step)) - float(value(mesh, x - step))) / (2 * eps)
    np.testing.assert_allclose(grad.reshape(-1)[i], fd, rtol=0.1)


def test_mesh_indices():
  assert len(set(mp.FACE_OVAL_INDICES)) == len(mp.FACE_OVAL_INDICES) == 36
  assert len(mp.KEEP_INDICES) == 468 - 36 and not set(mp.KEEP_INDICES) & set(mp.FACE_OVAL_INDICES)
  assert set(mp.RIGHT_EYE_CORNERS) <= set(mp.RIGHT_EYE_INDICES)
  assert set(mp.LEFT_EYE_CORNERS) <= set(mp.LEFT_EYE_INDICES)


def test_init_and_shapes():
  full = jax.eval_shape(lambda: mp.FaceMesh(mp.Config(), rngs=nnx.Rngs(0)))
  out = jax.eval_shape(lambda m, x: m.landmarks_and_score(x), full, jax.ShapeDtypeStruct((2, 256, 256, 3), jnp.float32))
  assert out[0].shape == (2, 468, 3) and out[1].shape == (2,)
  head = lambda out_channels, tail: mp.HeadConfig(((8, 2),), 4, tail, out_channels, 3, 3)
  tiny = mp.Config(
    input_size=24, stem_channels=4, backbone=((8, 2),), landmark_head=head(1404, ((4, 1),)), presence_head=head(1, ())
  )
  net = mp.init(tiny, seed=3)
  points = mp.landmarks(net, jnp.zeros((2, 40, 40, 3)))
  assert points.shape == (2, 468, 3) and bool(jnp.all(jnp.isfinite(points)))
  same, other = (trees.params_of(mp.init(tiny, seed=s), nnx.Param) for s in (3, 4))
  mine = trees.params_of(net, nnx.Param)
  np.testing.assert_array_equal(mine["stem"]["conv"]["kernel"], same["stem"]["conv"]["kernel"])
  assert not np.array_equal(mine["stem"]["conv"]["kernel"], other["stem"]["conv"]["kernel"])
  with pytest.raises(ValueError, match="shape"):
    net.landmarks(jnp.zeros((2, 64, 64)))


def test_converted_directory_round_trip(wheel, tmp_path):
  mp.convert_to(wheel, tmp_path / "mesh")
  mp.convert_to_blazeface(wheel, tmp_path / "face")
  for load, name in ((mp.load, "mesh"), (lambda path: mp.load_blazeface(path).net, "face")):
    restored, original = load(tmp_path / name), load(wheel)
    assert restored.config == original.config
    jax.tree.map(
      np.testing.assert_array_equal, trees.params_of(restored, nnx.Param), trees.params_of(original, nnx.Param)
    )
  with pytest.raises(ValueError, match="blazeface"):
    mp.load(tmp_path / "face")
  with pytest.raises(FileExistsError):
    mp.convert_to(wheel, tmp_path / "mesh")


# --- BlazeFace ------------------------------------------------------------------------------------------------


def test_anchors():
  anchors = detection.ssd_anchors()
  assert anchors.shape == (896, 2)
  np.testing.assert_allclose(anchors[0], [0.5 / 16, 0.5 / 16])
  np.testing.assert_allclose(anchors[2], [1.5 / 16, 0.5 / 16])  # 2 anchors per cell, then the next column
  np.testing.assert_allclose(anchors[512:518], [[0.5 / 8, 0.5 / 8]] * 6)
  np.testing.assert_allclose(anchors[-1], [7.5 / 8, 7.5 / 8])


def test_weighted_nms_averages_overlaps_by_score():
  boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
  kps = np.zeros((3, 6, 2), np.float32)
  kps[1] = 3.0
  scores = np.array([0.9, 0.6, 0.7], np.float32)
  out = detection.weighted_nms(boxes, kps, scores, 0.3)
  assert [round(s, 3) for _, _, s in out] == [0.9, 0.7]
  np.testing.assert_allclose(out[0][0], [0.4, 0.4, 10.4, 10.4], atol=1e-5)
  np.testing.assert_allclose(out[0][1], np.full((6, 2), 1.2), atol=1e-5)
  np.testing.assert_allclose(out[1][0], boxes[2])


def test_blazeface_matches_tflite(detector, tflite_files, wheel):
  config, _ = mp.convert_blazeface(wheel)
  assert config == mp.BlazeFaceConfig() and config.num_anchors == 896
  image = detection.to_unit_range(_astronaut())
  x = np.stack([detection.letterbox(image, 128)[0], np.random.default_rng(2).uniform(-1, 1, (128, 128, 3))]).astype(
    np.float32
  )
  ref = _run(_interpreter(tflite_files["detector"]), x)
  regressors, logits = detector.raw(x)
  np.testing.assert_allclose(np.asarray(regressors), ref["regressors"], atol=1e-3, rtol=0)
  np.testing.assert_allclose(np.asarray(logits), ref["classificators"][..., 0], atol=1e-3, rtol=0)
  plain = jax.jit(lambda m, x: m.raw(x)[0])(detector.net, x)
  np.testing.assert_allclose(np.asarray(plain), ref["regressors"], atol=1e-3, rtol=0)


def test_detect_one_face_then_mesh_inside_it(detector, mesh):
  image = _astronaut()
  faces = detector.detect(image)
  assert len(faces) == 1
  face = faces[0]
  x0, y0, x1, y1 = face.box
  assert face.score > 0.8
  assert 150 < x0 < x1 < 300 and 50 < y0 < y1 < 200 and 60 < x1 - x0 < 140 and 60 < y1 - y0 < 140
  right_eye, left_eye, nose, mouth = face.keypoints[:4]
  assert right_eye[0] < nose[0] < left_eye[0] and max(right_eye[1], left_eye[1]) < nose[1] < mouth[1]
  # The float [-1, 1] image gives the same faces.
  same = detector.detect(image.astype(np.float32) / 127.5 - 1)
  np.testing.assert_allclose(same[0].box, face.box, atol=1e-3)

  rx0, ry0, rx1, ry1 = np.round(face.roi(1.5)).astype(int)
  assert 0 <= rx0 and 0 <= ry0 and rx1 <= image.shape[1] and ry1 <= image.shape[0]
  crop = image[ry0:ry1, rx0:rx1].astype(np.float32) / 127.5 - 1
  points, score = mp.landmarks_and_score(mesh, crop[None])
  points = np.asarray(points[0])
  assert float(score[0]) > 0.9
  assert np.all((points[:, :2] > 0) & (points[:, :2] < 192))
  eyes_mouth = np.asarray(mp.eye_mouth_points(points))
  assert eyes_mouth[0, 0] < eyes_mouth[1, 0] and eyes_mouth[2, 0] < eyes_mouth[3, 0]
  assert eyes_mouth[:2, 1].max() < eyes_mouth[2:, 1].min()
  # The mesh's eyes agree with the detector's keypoints, mapped into the crop's 192-px frame.
  to_crop = lambda p: (p - np.array([rx0, ry0])) * 192 / (rx1 - rx0)
  np.testing.assert_allclose(eyes_mouth[0], to_crop(right_eye), atol=8)
  np.testing.assert_allclose(eyes_mouth[1], to_crop(left_eye), atol=8)
