"""The study across local processes (``jax.distributed`` on 127.0.0.1, CPU collectives).

Runs the same study with 1, 2 and 3 processes (each a fresh folder, started together) and prints
one JSON object per line (DESIGN.md §7):

    {"tool": "jaxattr", "what": "study_processes_<N>", "processes": N, "units": U,
     "seconds": wall, "units_per_s": U / wall, "speedup": vs 1 process,
     "coordination_ms_per_unit": ..., "waiting_s": ...}

``seconds`` is the wall time from starting the processes to the last one's exit (imports and
compilation included: every process compiles its own programs). ``coordination_ms_per_unit``:
the time the processes spent joining the runtime and at its barriers, summed over processes,
per unit of the study; ``waiting_s``: the longest a process waited, its own units done, for the
others' (load imbalance, not coordination).

Units are independent, so on N hosts (or N GPUs) with the work split evenly a study takes about
T₁/N + the report (process 0, serial) + the coordination above. On one CPU machine the processes
share its cores, so no speed-up is expected there: the script measures the overhead.

Usage: python benchmarks/distributed.py [--quick] [--processes 1,2,3] [--devices 2]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--folds", "2", "--decays", "0,0.01", "--groups", "A", "--methods", "gradient", "--epochs", "2",
        "--patience", "2", "--width", "small", "--eval-size", "8", "--batch-size", "64"]
WORKER = """
import json, sys
from jaxattr.cli import build_parser, _processes
from jaxattr.study import distributed
from jaxattr.study.runner import QUICK, run_study, study_config
args = build_parser().parse_args(sys.argv[1:])
options = dict(QUICK) if args.quick else {}
for name in ("folds", "decays", "groups", "methods", "epochs", "patience", "batch_size", "width", "eval_size"):
    if getattr(args, name) is not None:
        options[name] = getattr(args, name)
processes = _processes(args)
result = run_study(study_config(**options), args.out, progress=False, processes=processes)
print(json.dumps({"index": processes.index, "units": len(study_config(**options).units()),
                  "evaluated": result.units_evaluated, **distributed.SECONDS}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(n: int, study: list[str], devices: int) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory() as out:
        port = _free_port()
        flags = lambda i: ([] if n == 1 else ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(n),
                                              "--process-id", str(i)])
        start = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", WORKER, "study", *study, "--out", out, *flags(i)],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(n)]
        outputs = [p.communicate() for p in procs]
        seconds = time.perf_counter() - start
    for p, (_, err) in zip(procs, outputs):
        if p.returncode:
            raise SystemExit(f"a process failed:\n{err.decode()[-3000:]}")
    rows = [json.loads(o.decode().strip().splitlines()[-1]) for o, _ in outputs]
    units = rows[0]["units"]
    return {"tool": "jaxattr", "what": f"study_processes_{n}", "processes": n, "units": units,
            "seconds": round(seconds, 2), "units_per_s": round(units / seconds, 4),
            "coordination_ms_per_unit": round(1000 * sum(r["initialize"] + r["barriers"] for r in rows) / units, 2),
            "waiting_s": round(max(r["waiting"] for r in rows), 2),
            "evaluated_per_process": [r["evaluated"] for r in sorted(rows, key=lambda r: r["index"])]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the quick study (default: a 4-unit study)")
    parser.add_argument("--processes", default="1,2,3")
    parser.add_argument("--devices", type=int, default=2, help="host devices per process")
    args = parser.parse_args()
    study = ["--quick"] if args.quick else TINY
    base = None
    for n in (int(v) for v in args.processes.split(",")):
        row = run(n, study, args.devices)
        base = base or row["units_per_s"]
        row["speedup"] = round(row["units_per_s"] / base, 3)
        row["study"] = "quick" if args.quick else "tiny"
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
