"""MediaPipe's face mesh (468 landmarks) and BlazeFace short-range detector, ported to Flax NNX from the `.tflite`
models of the mediapipe wheel (mediapipe==0.10.21 ships both).

    mesh = mediapipe_facemesh.load("mediapipe-0.10.21-cp311-...whl")   # or face_landmark.tflite, or converted dir
    points = mesh.landmarks(images)          # [B, H, W, 3] in [-1, 1] -> [B, 468, 3] in 192-px input pixels
    detector = mediapipe_facemesh.load_blazeface(wheel)
    faces = detector.detect(uint8_image)     # [Detection(box, keypoints, score)] in image pixels
"""

from disentangle_jax.third_party.mediapipe_facemesh.blazeface import BlazeFace
from disentangle_jax.third_party.mediapipe_facemesh.blazeface import BlazeFaceConfig
from disentangle_jax.third_party.mediapipe_facemesh.blazeface import convert_blazeface
from disentangle_jax.third_party.mediapipe_facemesh.blazeface import convert_to_blazeface
from disentangle_jax.third_party.mediapipe_facemesh.blazeface import Detector
from disentangle_jax.third_party.mediapipe_facemesh.blazeface import init_blazeface
from disentangle_jax.third_party.mediapipe_facemesh.blazeface import load_blazeface
from disentangle_jax.third_party.mediapipe_facemesh.convert import convert
from disentangle_jax.third_party.mediapipe_facemesh.convert import convert_to
from disentangle_jax.third_party.mediapipe_facemesh.convert import init
from disentangle_jax.third_party.mediapipe_facemesh.convert import load
from disentangle_jax.third_party.mediapipe_facemesh.detection import Detection
from disentangle_jax.third_party.mediapipe_facemesh.mesh_indices import eye_mouth_points
from disentangle_jax.third_party.mediapipe_facemesh.mesh_indices import FACE_OVAL_INDICES
from disentangle_jax.third_party.mediapipe_facemesh.mesh_indices import KEEP_INDICES
from disentangle_jax.third_party.mediapipe_facemesh.mesh_indices import LEFT_EYE_CORNERS
from disentangle_jax.third_party.mediapipe_facemesh.mesh_indices import LEFT_EYE_INDICES
from disentangle_jax.third_party.mediapipe_facemesh.mesh_indices import MOUTH_INDICES
from disentangle_jax.third_party.mediapipe_facemesh.mesh_indices import NUM_LANDMARKS
from disentangle_jax.third_party.mediapipe_facemesh.mesh_indices import RIGHT_EYE_CORNERS
from disentangle_jax.third_party.mediapipe_facemesh.mesh_indices import RIGHT_EYE_INDICES
from disentangle_jax.third_party.mediapipe_facemesh.model import Config
from disentangle_jax.third_party.mediapipe_facemesh.model import FaceMesh
from disentangle_jax.third_party.mediapipe_facemesh.model import HeadConfig
from disentangle_jax.third_party.mediapipe_facemesh.tflite import TFLiteFormatError

Module = FaceMesh
