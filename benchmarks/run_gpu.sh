#!/usr/bin/env bash
# On a CUDA machine from the repository root: install the FlashInfer wheels (make gpu-wheels), then run
# the steps named as arguments (default: tests sweep bench). Logs and the results JSON go to $LOG_DIR.
#   tests  the sparse decode test file at full size, and the benchmark's CPU tests
#   sweep  the kernel launch-configuration sweep (benchmarks/sweep_decode.py)
#   focus  the sweep over the default configuration's neighbours
#   bench  ctxsparse bench decode over the whole grid, JSON into benchmarks/results/ and $LOG_DIR
set -uo pipefail
LOG_DIR=${LOG_DIR:-out}
WHEELS=${WHEELS:-gpu-wheels}
mkdir -p "$LOG_DIR"
. "$(dirname "$0")/gpu_setup.sh"
install_wheels "$WHEELS" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv | tee "$LOG_DIR/gpu.txt"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(tests sweep bench)
for step in "${steps[@]}"; do
  echo "=== $step"
  case $step in
    tests) timeout "${TEST_TIMEOUT:-300}" python3 -m pytest -q -p no:cacheprovider tests/attention/test_sparse_decode.py tests/bench 2>&1 | tee "$LOG_DIR/tests.log" ;;
    sweep) python3 benchmarks/sweep_decode.py --json "$LOG_DIR/sweep.json" 2>&1 | tee "$LOG_DIR/sweep.log" ;;
    focus) python3 benchmarks/sweep_decode.py --mode focus --json "$LOG_DIR/focus.json" 2>&1 | tee "$LOG_DIR/focus.log" ;;
    bench) python3 -m ctxsparse.cli.main bench decode --output-dir benchmarks/results 2>&1 | tee "$LOG_DIR/bench.log"
           cp benchmarks/results/decode-*.json "$LOG_DIR"/ ;;
    *) echo "unknown step $step" ;;
  esac
done
