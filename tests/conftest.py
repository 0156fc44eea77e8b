"""Shared test set-up.

Four host CPU devices let the sharding tests run on any machine; this must be set
before jax is imported anywhere.
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
