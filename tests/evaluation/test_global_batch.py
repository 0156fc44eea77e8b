"""``perturbation_curve`` and ``evaluate`` on a batch sharded across 2 and 3 processes
(``jax.distributed`` on 127.0.0.1, gloo CPU collectives, two host devices per process) return
what one device returns (the work is in global_batch_worker.py)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("global_batch_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("n", [2, 3])
def test_global_batch_gives_the_numbers_of_one_device(n):
    path = os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": path,
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(i), str(n), str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(n)]
    try:
        results = [(p.wait(timeout=180), p.stdout.read().decode(), p.stderr.read().decode()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for i, (rc, out, err) in enumerate(results):
        assert rc == 0, f"process {i}: {err[-3000:]}"
        assert f"process {i}: global batch == one device" in out
