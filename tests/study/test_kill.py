"""``kill -9`` of a real ``jaxattr study`` process, then a rerun: nothing finished is lost and
the numbers are those of an uninterrupted run."""

import filecmp
import os
import signal
import subprocess
import sys
import time

from jaxattr.study import runner

OPTIONS = dict(folds=2, decays=(0.0, 1e-2), groups=("A",), methods=("gradient",), epochs=3,
               patience=3, width="small", eval_size=12)
ARGS = ["--folds", "2", "--decays", "0,0.01", "--groups", "A", "--methods", "gradient",
        "--epochs", "3", "--patience", "3", "--width", "small", "--eval-size", "12",
        "--no-progress"]


def _study(out):
    code = "import sys; from jaxattr.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, "study", *ARGS, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"})


def test_kill_9_while_training_then_rerun_gives_the_uninterrupted_numbers(tmp_path):
    full = runner.run_study(runner.study_config(**OPTIONS), tmp_path / "full", progress=False)
    out = tmp_path / "killed"
    proc = _study(out)
    deadline = time.monotonic() + 300
    while not any((out / "checkpoints").glob("*")) and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint was written in 5 minutes"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "results.csv").exists()  # killed before the end
    rerun = _study(out)
    assert rerun.wait(timeout=600) == 0, rerun.stderr.read().decode()
    assert filecmp.cmp(out / "results.csv", full.results_csv, shallow=False)
