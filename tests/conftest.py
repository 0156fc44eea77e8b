"""Shared test set-up.

Four host CPU devices let the sharding tests run on any machine; this must be set
before jax is imported anywhere.
"""
import os
import pathlib
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# triton (imported by torch._dynamo, e.g. through torchvision in the peer tests) crashes the
# process with a segmentation fault when it is imported after tensorflow (the CIFAR-10 tests load
# it through tfds); the other order works. With the [peers] extra installed, load it first.
try:
    import triton  # noqa: F401  (0.1 s)
except ImportError:
    pass

# shared test helpers (tests/oracle.py: the independent numpy oracle) import as plain modules
sys.path.insert(0, str(pathlib.Path(__file__).parent))
