"""Test-wide setup: 8 forced CPU devices (for sharding tests) and full float32 precision.

XLA_FLAGS must be set before jax is first imported, which is why it happens here at import time.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # pylint: disable=wrong-import-position

jax.config.update("jax_default_matmul_precision", "highest")
