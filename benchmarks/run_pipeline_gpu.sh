#!/usr/bin/env bash
# On a CUDA machine from the repository root: the indexer pipeline's GPU tests at full size, then
# `ctxsparse bench pipeline` (extra arguments go to it), and on request the launch-setting sweep.
# FlashInfer comes from the wheels folder (make gpu-wheels); its kernels are compiled in the background
# while the tests run. Logs and JSON go to $LOG_DIR.
#   benchmarks/run_pipeline_gpu.sh [tests] [bench] [sweep] [-- bench arguments]
set -uo pipefail
LOG_DIR=${LOG_DIR:-out}
WHEELS=${WHEELS:-gpu-wheels}
mkdir -p "$LOG_DIR"
. "$(dirname "$0")/gpu_setup.sh"
install_wheels "$WHEELS" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv | tee "$LOG_DIR/gpu.txt"
steps=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do steps+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#steps[@]} -eq 0 ] && steps=(tests bench)
warm_pid=
if python3 -c "import flashinfer" 2>/dev/null; then
  # compile FlashInfer's decode and top-k kernels once, alongside the tests
  python3 - >"$LOG_DIR/flashinfer-warm.log" 2>&1 <<'PY' &
import torch, flashinfer
from ctxsparse.attention.flashinfer_backend import FlashInferDense
x = torch.randn(8, 4096, device="cuda", dtype=torch.float16)
flashinfer.top_k(x, 40)
k = torch.randn(4, 16, 8, 128, device="cuda", dtype=torch.bfloat16)
runner = FlashInferDense(k.device)
runner.plan(torch.arange(4, device="cuda", dtype=torch.int32).view(1, 4), 64, k, 32, 128**-0.5)
runner.run(torch.randn(1, 32, 128, device="cuda", dtype=torch.bfloat16), k, k)
torch.cuda.synchronize()
print("flashinfer warm")
PY
  warm_pid=$!
fi
for step in "${steps[@]}"; do
  echo "=== $step"
  case $step in
    tests) timeout "${TEST_TIMEOUT:-240}" python3 -m pytest -q -p no:cacheprovider tests/gpu_index \
             tests/bench/test_pipeline_bench.py 2>&1 | tee "$LOG_DIR/pipeline-tests.log" ;;
    bench) [ -n "$warm_pid" ] && { wait "$warm_pid"; tail -n 3 "$LOG_DIR/flashinfer-warm.log"; }
           python3 -m ctxsparse.cli.main bench pipeline --output-dir benchmarks/results "$@" 2>&1 \
             | tee "$LOG_DIR/pipeline-bench.log"
           cp benchmarks/results/pipeline-*.json "$LOG_DIR"/ ;;
    sweep) python3 benchmarks/sweep_indexers.py --json "$LOG_DIR/sweep-indexers.json" 2>&1 | tee "$LOG_DIR/sweep-indexers.log" ;;
    *) echo "unknown step $step" ;;
  esac
done
