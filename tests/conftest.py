"""Shared test set-up.

Four host CPU devices let the sharding tests run on any machine; this must be set
before jax is imported anywhere.
"""
import os
import pathlib
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# shared test helpers (tests/oracle.py: the independent numpy oracle) import as plain modules
sys.path.insert(0, str(pathlib.Path(__file__).parent))
