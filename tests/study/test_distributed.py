"""``jaxattr study`` split across 2 and 3 local processes (``jax.distributed`` on 127.0.0.1,
CPU, two host devices per process): the folder ends as one process leaves it; a SIGKILL of one
process and a rerun give the same results; a coordinator nobody answers at fails fast.

Every process, the single-process reference included, runs with the same two host devices: XLA's
CPU kernels round differently (~1e-8) with another device count. The processes share a
persistent compilation cache, filled by the reference run, so the multi-process runs do not
compile again (52 s → 7 s for a run on this 2-core machine; the same executables, the same
numbers)."""

import filecmp
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jaxattr.cli import main
from jaxattr.study import distributed

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--folds", "2", "--decays", "0,0.01", "--groups", "A", "--methods", "gradient", "--epochs", "2",
        "--patience", "2", "--width", "small", "--eval-size", "8", "--batch-size", "64", "--no-progress"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CODE = "import sys; from jaxattr.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    path = os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": path,
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
            "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("jax_cache")),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}


def _start(env: dict, out: Path, n: int, *extra: str) -> list[subprocess.Popen]:
    port = _free_port()
    return [subprocess.Popen([sys.executable, "-c", CODE, "study", *ARGS, "--out", str(out),
                              "--coordinator", f"127.0.0.1:{port}", "--num-processes", str(n),
                              "--process-id", str(i), "--coordinator-timeout", "120", *extra],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
            for i in range(n)]


def _finish(procs: list[subprocess.Popen], timeout: float = 240) -> list[tuple[int, str, str]]:
    deadline = time.monotonic() + timeout
    try:
        return [(p.wait(timeout=max(1, deadline - time.monotonic())), p.stdout.read().decode(),
                 p.stderr.read().decode()) for p in procs]
    finally:
        _kill(procs)


def _kill(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, env):
    """The study in one process (no process options), with the same devices as the others."""
    out = tmp_path_factory.mktemp("single")
    proc = subprocess.Popen([sys.executable, "-c", CODE, "study", *ARGS, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    [(rc, _, stderr)] = _finish([proc])
    assert rc == 0, stderr[-3000:]
    return out


def _same_folder(out: Path, reference: Path) -> None:
    assert filecmp.cmp(out / "results.csv", reference / "results.csv", shallow=False)
    assert (out / "report.md").read_text() == (reference / "report.md").read_text()
    assert sorted(p.name for p in (out / "units").iterdir()) == sorted(p.name for p in (reference / "units").iterdir())
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(p.name for p in (reference / "figures").iterdir())
    assert not list(out.rglob(".*.tmp"))  # no temporary file left behind


@pytest.mark.parametrize("n", [2, 3])
def test_processes_split_the_study_and_end_as_one_process(n, reference, env, tmp_path):
    results = _finish(_start(env, tmp_path, n))
    for i, (rc, stdout, stderr) in enumerate(results):
        assert rc == 0, f"process {i}: {stderr[-3000:]}"
        assert f"process {i} of {n}: study done" in stdout
    _same_folder(tmp_path, reference)
    # every unit evaluated once, by one process: 4 units shared round-robin
    evaluated = [int(out.split(" units evaluated")[0].rsplit(" ", 1)[1]) for _, out, _ in results]
    assert sum(evaluated) == 4 and max(evaluated) - min(evaluated) <= 1


def test_kill_9_of_one_process_then_rerun_gives_the_same_results(reference, env, tmp_path):
    procs = _start(env, tmp_path, 2, "--heartbeat-timeout", "3")
    try:
        # process 1 owns every other unit: the decay-0.01 models; kill it once it has trained one
        first = tmp_path / "checkpoints" / "digits_f0_d0.01_A" / "_CHECKPOINT_METADATA"
        deadline = time.monotonic() + 240
        while not first.exists():
            assert procs[1].poll() is None, procs[1].stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "process 1 trained nothing in 4 minutes"
            time.sleep(0.05)
        procs[1].send_signal(signal.SIGKILL)
        # JAX's runtime stops process 0 once process 1's heartbeats stop (3 s here)
        assert procs[0].wait(timeout=120) != 0
    finally:
        _kill(procs)
    assert not (tmp_path / "results.csv").exists()
    # the rerun, with another number of processes: it resumes and finishes as one process would
    results = _finish(_start(env, tmp_path, 3))
    assert [rc for rc, _, _ in results] == [0, 0, 0], [err[-2000:] for _, _, err in results]
    assert sum(int(out.split(" already done")[0].rsplit(" ", 1)[1]) for _, out, _ in results) >= 3
    _same_folder(tmp_path, reference)


def test_unreachable_coordinator_fails_fast_with_a_clear_message(tmp_path, capsys):
    start = time.monotonic()
    rc = main(["study", *ARGS, "--out", str(tmp_path), "--coordinator", f"127.0.0.1:{_free_port()}",
               "--num-processes", "2", "--process-id", "1", "--coordinator-timeout", "2"])
    assert rc == 2 and time.monotonic() - start < 30
    err = capsys.readouterr().err
    assert "cannot reach the coordinator at 127.0.0.1:" in err and "within 2 s" in err
    assert not (tmp_path / "config.json").exists()


@pytest.mark.parametrize("argv, message", [
    (["--coordinator", "127.0.0.1:1234"], "missing: --num-processes, --process-id"),
    (["--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "2"], "[0, 2)"),
    (["--coordinator", "nohost", "--num-processes", "2", "--process-id", "1"], "HOST:PORT"),
])
def test_incomplete_process_options_are_refused(argv, message, tmp_path, capsys):
    assert main(["study", *ARGS, "--out", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_share_is_disjoint_covering_and_balanced():
    items = list(range(11))
    parts = [distributed.share(items, distributed.Processes(i, 3)) for i in range(3)]
    assert sorted(sum(parts, [])) == items and [len(p) for p in parts] == [4, 4, 3]
    assert distributed.share(items, distributed.SINGLE) == items


def test_one_process_without_options_does_not_start_the_runtime(monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "OMPI_MCA_orte_hnp_uri"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.initialize() == distributed.SINGLE
    assert distributed.initialize(num_processes=1) == distributed.SINGLE
    import jax

    assert not jax.distributed.is_initialized()
