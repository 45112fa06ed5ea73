#!/usr/bin/env bash
# On a CUDA machine from the repository root: the engine's GPU tests at full size, then `ctxsparse bench
# generate` on the issue's three target points (extra arguments go to it), then, if the time budget still
# allows, one extra compiled point (dense and Double Sparsity S=50 at B=4, N=128K, torch.compile of the MLPs
# and norms), then the tables and targets. Each part fails soft.
# FlashInfer comes from the wheels folder (make gpu-wheels); its two decode configurations are compiled in
# the background while the tests run. Logs and JSON go to $LOG_DIR, and to $OUT when that is set.
#   benchmarks/run_engine_gpu.sh [-- bench arguments, e.g. --points 4x32768 4x131072 1x131072 16x32768]
# TOTAL_BUDGET (seconds, default 330): the compiled point runs only if at least COMPILE_MIN (150) are left.
set -uo pipefail
LOG_DIR=${LOG_DIR:-out}
WHEELS=${WHEELS:-gpu-wheels}
TOTAL_BUDGET=${TOTAL_BUDGET:-330}
COMPILE_MIN=${COMPILE_MIN:-150}
SECONDS=0
mkdir -p "$LOG_DIR"
. "$(dirname "$0")/gpu_setup.sh"
install_wheels "$WHEELS" || echo "wheel install failed"
[ "${1:-}" = "--" ] && shift
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$LOG_DIR/gpu.txt"
warm_pid=
if python3 -c "import flashinfer" 2>/dev/null; then
  python3 - >"$LOG_DIR/flashinfer-warm.log" 2>&1 <<'PY' &
import torch
from ctxsparse.engine.cache import CacheShape, PagedKVCache
from ctxsparse.engine.dense_gpu import FlashInferDenseStep
cache = PagedKVCache(CacheShape(1, 2, 256, 16, 8, 128, torch.bfloat16), torch.device("cuda"))
step = FlashInferDenseStep(cache, 2, 32, 128**-0.5)
step.before_step([100, 200])
torch.cuda.synchronize()
print("flashinfer warm", step.timings_us)
PY
  warm_pid=$!
fi
echo "=== tests"
timeout "${TEST_TIMEOUT:-200}" python3 -m pytest -q -s -p no:cacheprovider tests/engine/test_engine_gpu.py 2>&1 \
  | tee "$LOG_DIR/engine-tests.log"
[ -n "$warm_pid" ] && { wait "$warm_pid"; tail -n 3 "$LOG_DIR/flashinfer-warm.log"; }
echo "=== bench generate (${SECONDS}s so far)"
timeout "${BENCH_TIMEOUT:-300}" python3 -m ctxsparse.cli.main bench generate --output-dir "$LOG_DIR/results" "$@" 2>&1 \
  | tee "$LOG_DIR/generate-bench.log"
left=$((TOTAL_BUDGET - SECONDS))
if [ "$left" -ge "$COMPILE_MIN" ]; then
  echo "=== bench generate --compile, one point (${SECONDS}s so far, ${left}s left)"
  timeout "$left" python3 -m ctxsparse.cli.main bench generate --output-dir "$LOG_DIR/results" --points 4x131072 \
    --methods double_sparsity --sparsity 50 --no-stock --compile --name-suffix=-compiled 2>&1 \
    | tee "$LOG_DIR/generate-bench-compiled.log"
else
  echo "=== compiled point skipped: ${SECONDS}s used, ${left}s left (needs ${COMPILE_MIN}s)"
fi
mkdir -p benchmarks/results
cp "$LOG_DIR"/results/generate-*.json benchmarks/results/ 2>/dev/null
if [ -n "${OUT:-}" ]; then cp -r "$LOG_DIR"/* "$OUT"/ 2>/dev/null; fi
echo "=== table and targets (${SECONDS}s)"
for f in "$LOG_DIR"/results/generate-*.json; do
  [ -e "$f" ] || { echo "no results JSON"; break; }
  python3 - "$f" <<'PY'
import json, sys
from ctxsparse.bench.generate_targets import format_table
r = json.load(open(sys.argv[1]))
print(f"{r['gpu']}, copy {r['copy_tbps']:.2f} TB/s, compile {r['setup'].get('compile')}, {sys.argv[1]}")
print(format_table(r["rows"]))
for t in r.get("targets", []):
    if t["status"] != "not measured":
        print(f"{t['status']:>12}  {t['target']}: {t['measured']}")
PY
done
