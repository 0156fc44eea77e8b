#!/usr/bin/env bash
# One prepared accelerator run (issue 14): everything the last-accelerator-measurement table of
# docs/performance.md needs, as JSON lines in one folder, in at most 8 minutes.
#
#   bash benchmarks/gpu.sh OUTDIR            # on the accelerator machine (installed packages only)
#   SMALL=1 bash benchmarks/gpu.sh OUTDIR    # tiny sizes, one precision per section, ~1–2 minutes
#                                            # on a 2-core CPU (tests/test_benchmarks.py)
#
# Sections (each under its own timeout, skipped when the 8-minute budget cannot hold it):
#   env          jax/jaxlib/torch versions and devices
#   attribution  benchmarks/attribution.py at batch 128 and 1024, per precision (float32, fast)
#   peers        benchmarks/peers.py (Captum, Zennit, Quantus, LXT on torch, same device), per precision:
#                torch TF32 off for float32, on for fast; skipped when torch or a peer is missing
#                (without lxt only its rows, attn_lrp and cp_lrp, are skipped)
#   aopc         benchmarks/aopc.py, batch 256, chunk 4096, L = 16 and 100, per precision
#   training     benchmarks/training.py, CIFAR-shaped, the vmapped 41-configuration grid, per
#                precision (float32, fast, bfloat16)
#   precision    benchmarks/precision.py: max|R − R_float64| / max|R_float64| and cost per setting
#   study        `jaxattr study --quick`, then the first fold of the full digits study
#   tests        pytest tests/engine tests/rules on the installed jax (counts as JSON)
# Output: OUTDIR/<section>.jsonl (the scripts' JSON lines), OUTDIR/<section>.{out,err} (raw),
# OUTDIR/status.jsonl (one line per run: section, rc, seconds; rc 124 = timed out) and
# OUTDIR/results.jsonl (everything, one JSON object per line, each with its "section").
# Nothing is installed and nothing is fetched from the network.
set -u

OUT=${1:?usage: [SMALL=1] bash benchmarks/gpu.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python}
SMALL=${SMALL:-0}
BUDGET=${BUDGET_S:-470}  # seconds for all sections; under 8 minutes with start-up
START=$(date +%s)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
cd "$ROOT/benchmarks"

status() {  # section rc seconds [note]
  printf '{"section": "%s", "rc": %s, "seconds": %s, "note": "%s"}\n' "$1" "$2" "$3" "${4:-}" \
    >> "$OUT/status.jsonl"
}

# run SECTION LIMIT_S COMMAND...: the command's JSON lines go to OUTDIR/SECTION.jsonl
run() {
  local section=$1 limit=$2; shift 2
  local left=$(( BUDGET - ($(date +%s) - START) ))
  if (( left < 10 )); then
    status "$section" null 0 "skipped: budget spent"
    return
  fi
  (( limit > left )) && limit=$left
  local t0; t0=$(date +%s)
  timeout --kill-after=5 "$limit" "$@" >> "$OUT/$section.out" 2>> "$OUT/$section.err"
  local rc=$?
  grep '^{' "$OUT/$section.out" > "$OUT/$section.jsonl" 2> /dev/null || true
  status "$section" "$rc" $(( $(date +%s) - t0 )) "$*"
}

# --- sizes
if [[ "$SMALL" == 1 ]]; then
  # one precision per section (each loop still runs), the fewest programs to compile
  ATTR_P="float32"; AOPC_P="fast"; TRAIN_P="bfloat16"
  ATTR_BATCHES="2"; ATTR=(--size 8 --repeats 1 --methods gradient --overhead-repeats 1
        --grad-params)
  PEERS=(--batch 2 --aopc-batch 2 --steps 4 --repeats 1 --only gradient)
  AOPC=(--batch 2 --steps 3 --chunk-size 5 --repeats 1)
  TRAIN=(--model small --epochs 1 --conv patches --no-grid)
  PREC=(--batch 2 --size 8 --repeats 1 --methods gradient --precisions float32 fast)
  QUICK=(--quick --folds 2 --epochs 1 --patience 1 --eval-size 2 --methods gradient
         --decays 0,0.01 --groups A --steps 1)
  TESTS=()
else
  ATTR_P="float32 fast"; AOPC_P="float32 fast"; TRAIN_P="float32 fast bfloat16"
  ATTR_BATCHES="128 1024"; ATTR=(--repeats 5 --overhead-repeats 10 --grad-params)
  PEERS=(--batch 1024 --aopc-batch 256 --repeats 3 --threads 16)
  AOPC=(--batch 256 --chunk-size 4096 --steps 16 100 --repeats 5)
  TRAIN=(--dataset cifar-shaped --conv xla --epochs 2)
  PREC=(--batch 128 --repeats 5)
  QUICK=(--quick)
  TESTS=(tests/engine tests/rules)
fi
ACCEL=$("$PY" -c "import jax; print(jax.default_backend())" 2> /dev/null || echo cpu)

# --- env
"$PY" - > "$OUT/env.jsonl" 2> "$OUT/env.err" <<'EOF'
import json, platform
import jax, jaxlib
info = {"section": "env", "jax": jax.__version__, "jaxlib": jaxlib.__version__,
        "backend": jax.default_backend(), "devices": [d.device_kind for d in jax.devices()],
        "python": platform.python_version()}
try:
    import torch
    info["torch"] = torch.__version__
    info["cuda"] = torch.cuda.is_available()
except ImportError:
    info["torch"] = None
print(json.dumps(info))
EOF

# --- attribution, per precision and batch
for p in $ATTR_P; do
  for b in $ATTR_BATCHES; do
    run attribution 120 "$PY" attribution.py --batch "$b" --precision "$p" "${ATTR[@]}"
  done
done

# --- peers on torch, same device, matching precision
if "$PY" -c "import torch, torchvision, captum, zennit, quantus" > /dev/null 2>&1; then
  DEVICE=cpu
  [[ "$ACCEL" == gpu ]] && DEVICE=cuda
  for p in float32 fast; do
    run peers 120 "$PY" peers.py --device "$DEVICE" --precision "$p" "${PEERS[@]}"
  done
else
  status peers null 0 "skipped: torch, torchvision, captum, zennit or quantus not installed"
fi

# --- AOPC against its forward floor
for p in $AOPC_P; do
  run aopc 90 "$PY" aopc.py --precision "$p" "${AOPC[@]}"
done

# --- training: one configuration and the vmapped 41-configuration grid
for p in $TRAIN_P; do
  run training 90 "$PY" training.py --precision "$p" "${TRAIN[@]}"
done

# --- precision errors against float64 on the CPU
run precision 90 "$PY" precision.py "${PREC[@]}"

# --- the study: --quick, then the first fold of the full digits study
run study 150 "$PY" - "$OUT/study_quick" "${QUICK[@]}" <<'EOF'
import json, sys, time
from jaxattr.cli import main
out, args = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
rc = main(["study", "--out", out, "--overwrite", "--no-progress", *args])
print(json.dumps({"tool": "jaxattr", "what": "study_quick", "args": args, "rc": rc,
                  "seconds": round(time.perf_counter() - t0, 2)}))
sys.exit(rc)
EOF
if [[ "$SMALL" == 1 ]]; then
  status study_fold0 null 0 "skipped at SMALL=1"
else
  run study_fold0 150 "$PY" - "$OUT/study_digits" <<'EOF'
import json, sys, time
from jaxattr.study.runner import run_study, study_config
t0 = time.perf_counter()
result = run_study(study_config(), sys.argv[1], overwrite=True, progress=False, only_folds=[0])
print(json.dumps({"tool": "jaxattr", "what": "study_digits_fold0", "models": result.models_trained,
                  "units": result.units_evaluated, "seconds": round(time.perf_counter() - t0, 2)}))
EOF
fi

# --- the engine and rules tests on the installed jax
if (( ${#TESTS[@]} )); then
  run tests 120 "$PY" - "$ROOT" "${TESTS[@]}" <<'EOF'
import json, os, re, subprocess, sys
root, paths = sys.argv[1], sys.argv[2:]
proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths],
                      cwd=root, capture_output=True, text=True)
tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|errors?|skipped)", tail)}
print(proc.stdout[-4000:], file=sys.stderr)
print(json.dumps({"tool": "pytest", "what": "tests", "paths": paths, "rc": proc.returncode,
                  **counts, "summary": tail}))
EOF
else
  status tests null 0 "skipped at SMALL=1"
fi

# --- everything in one file, each line tagged with its section
"$PY" - "$OUT" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
with open(out / "results.jsonl", "w") as f:
    for path in sorted(out.glob("*.jsonl")):
        if path.name in ("results.jsonl", "status.jsonl"):
            continue
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            f.write(json.dumps({"section": path.stem, **row}) + "\n")
EOF
echo "gpu.sh: $(( $(date +%s) - START )) s; results in $OUT/results.jsonl, per-run status in $OUT/status.jsonl"
