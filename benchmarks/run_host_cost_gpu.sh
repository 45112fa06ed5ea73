#!/usr/bin/env bash
# On a CUDA machine from the repository root, in about 2 minutes: the eager host cost of sparse_decode and the
# two sparse-decode target points (S=50, N=128K, B=8 and B=1), each step under a timeout, failing soft.
#   1. FlashInfer from the wheels folder (gpu-wheels/, if present) into /tmp/site
#   2. benchmarks/sweep_host_cost.py --profile: host µs per eager call per launch mode (direct, runner, jit)
#   3. bench decode at the two points without FlashInfer (our graphed, eager and host times; quick), then
#      with FlashInfer (both dense settings timed, the faster one is the anchor) in the time left
#   4. a short table: per point our times, the dense anchor (this run's, else the H200 file's in
#      benchmarks/results/, said so), x over dense, the target and the time that meets it; the host rows
#   5. (after the table, up to LATENCY_TIMEOUT s more; LATENCY_TIMEOUT=0 skips it) where the graphed time goes
#      at the two points: split kernel alone, no PDL, capped split counts (benchmarks/sweep_decode_latency.py)
# Logs and JSON go to $LOG_DIR (default: $OUT, else out/).
#   benchmarks/run_host_cost_gpu.sh   (HOST_TIMEOUT, PLAIN_TIMEOUT, FI_TIMEOUT, LATENCY_TIMEOUT override the limits)
set -uo pipefail
LOG_DIR=${LOG_DIR:-${OUT:-out}}
WHEELS=${WHEELS:-gpu-wheels}
HOST_TIMEOUT=${HOST_TIMEOUT:-60}
PLAIN_TIMEOUT=${PLAIN_TIMEOUT:-40}
FI_TIMEOUT=${FI_TIMEOUT:-80}
LATENCY_TIMEOUT=${LATENCY_TIMEOUT:-60}
mkdir -p "$LOG_DIR"
start=$(date +%s)
stamp() { echo "=== $1 ($(( $(date +%s) - start )) s)"; }

stamp install
. "$(dirname "$0")/gpu_setup.sh"
install_wheels "$WHEELS" || echo "FlashInfer wheels did not install: the dense anchor comes from the recorded H200 run"

stamp "eager host cost"
timeout "$HOST_TIMEOUT" python3 benchmarks/sweep_host_cost.py --profile --json "$LOG_DIR/host-cost.json" 2>&1 \
  | tee "$LOG_DIR/host-cost.log" | head -n 40
echo "sweep_host_cost exit: ${PIPESTATUS[0]}"

points=(--batch 8 1 --context 131072 --sparsity 50 --iters 30)
stamp "bench decode, ours alone"
timeout "$PLAIN_TIMEOUT" python3 -m ctxsparse.cli.main bench decode "${points[@]}" --no-flashinfer \
  --output "$LOG_DIR/decode-points-plain.json" 2>&1 | tee "$LOG_DIR/decode-points-plain.log" | tail -n 6
echo "bench decode (no FlashInfer) exit: ${PIPESTATUS[0]}"

stamp "bench decode, with FlashInfer"
if python3 -c "import flashinfer" 2>/dev/null; then
  timeout "$FI_TIMEOUT" python3 -m ctxsparse.cli.main bench decode "${points[@]}" \
    --output "$LOG_DIR/decode-points.json" 2>&1 | tee "$LOG_DIR/decode-points.log" | tail -n 6
  echo "bench decode (FlashInfer) exit: ${PIPESTATUS[0]} (124: the $FI_TIMEOUT s timeout)"
else
  echo "flashinfer is not importable: the dense anchor comes from the recorded H200 run"
fi

stamp table
python3 - "$LOG_DIR" <<'PY' 2>&1 | tee "$LOG_DIR/host-cost-table.txt"
import glob, json, os, sys

log = sys.argv[1]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def rows(result):
    return {(r["batch"], r["context"], r["sparsity"]): r for r in (result or {}).get("rows", [])}


fi, plain = rows(load(f"{log}/decode-points.json")), rows(load(f"{log}/decode-points-plain.json"))
recorded_files = sorted(glob.glob("benchmarks/results/decode-H200-*.json"))
recorded = rows(load(recorded_files[-1])) if recorded_files else {}
fmt = lambda v, spec=".1f": "-" if v is None else format(v, spec)
print(f"{'point':>20} {'ours us':>8} {'eager us':>9} {'host us':>8} {'dense us':>9} {'anchor':>9} {'x dense':>8} "
      f"{'target':>7} {'needs us':>9} verdict")
for b, n, s, want in ((8, 131072, 50, 40.0), (1, 131072, 50, 15.0)):
    ours = fi.get((b, n, s)) or plain.get((b, n, s)) or {}
    dense, source = (fi.get((b, n, s)) or {}).get("dense_us"), "this run"
    if dense is None:
        dense, source = (recorded.get((b, n, s)) or {}).get("dense_us"), "recorded"
    t = ours.get("ours_us")
    x = None if t is None or dense is None else dense / t
    need = None if dense is None else dense / want
    verdict = "not measured" if x is None else "met" if x >= want else f"missed by {want / x:.2f}x"
    print(f"{f'S={s} B={b} N={n // 1024}K':>20} {fmt(t):>8} {fmt(ours.get('ours_eager_us')):>9} "
          f"{fmt(ours.get('ours_host_us')):>8} {fmt(dense):>9} {source if dense else '-':>9} {fmt(x):>8} "
          f"{want:>6.0f}x {fmt(need):>9} {verdict}")
host = load(f"{log}/host-cost.json")
if host:
    print(f"eager host µs per call on {host['device']} (target <= 30):")
    for r in host["rows"]:
        modes = " ".join(f"{k[:-8]}={v:.1f}" for k, v in r.items() if k.endswith("_host_us"))
        print(f"  B={r['batch']} N={r['context'] // 1024}K k={r['k']}: {modes}  direct bound: {r.get('direct_used')}")
else:
    print("no host-cost result (see host-cost.log)")
PY

if [ "$LATENCY_TIMEOUT" -gt 0 ]; then
  stamp "decode latency decomposition"
  timeout "$LATENCY_TIMEOUT" python3 benchmarks/sweep_decode_latency.py --json "$LOG_DIR/decode-latency.json" 2>&1 \
    | tee "$LOG_DIR/decode-latency.log"
  echo "sweep_decode_latency exit: ${PIPESTATUS[0]}"
fi
stamp done
