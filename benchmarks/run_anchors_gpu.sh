#!/usr/bin/env bash
# On a CUDA machine from the repository root, in about 8 minutes: the honest-anchor run.
#   1. FlashInfer from the wheels folder (gpu-wheels/, if present) into /tmp/site
#   2. the GPU, its datasheet peak and its measured copy rate
#   3. FlashInfer's kernels compiled in the background (both use_tensor_cores settings) while
#   4. the GPU test files run at full size (tests/attention, tests/gpu_index, tests/bench), under a timeout,
#      and the host time of eager sparse_decode calls (benchmarks/sweep_host_cost.py)
#   5. bench decode and bench pipeline, target points first, each under a time budget and a timeout
#   6. a short table of the target points (x over the best dense anchor, target, verdict, byte ceiling)
# Results JSON go to benchmarks/results/ (named by GPU and date); logs and JSON to $LOG_DIR (default: $OUT,
# else out/). Each step fails soft: a failing step is reported and the next one runs.
#   benchmarks/run_anchors_gpu.sh            (TEST_TIMEOUT, DECODE_BUDGET, PIPELINE_BUDGET override the limits)
set -uo pipefail
LOG_DIR=${LOG_DIR:-${OUT:-out}}
WHEELS=${WHEELS:-gpu-wheels}
TEST_TIMEOUT=${TEST_TIMEOUT:-150}
WARM_TIMEOUT=${WARM_TIMEOUT:-200}
DECODE_BUDGET=${DECODE_BUDGET:-95}
PIPELINE_BUDGET=${PIPELINE_BUDGET:-75}
RESULTS=benchmarks/results
mkdir -p "$LOG_DIR" "$RESULTS"
start=$(date +%s)
stamp() { echo "=== $1 ($(( $(date +%s) - start )) s)"; }

stamp install
. "$(dirname "$0")/gpu_setup.sh"
install_wheels "$WHEELS" || echo "FlashInfer wheels did not install: the anchors will be missing"

stamp gpu
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv 2>&1 | tee "$LOG_DIR/gpu.txt"
python3 - <<'PY' 2>&1 | tee -a "$LOG_DIR/gpu.txt"
import torch
from ctxsparse.bench.peaks import bandwidth
from ctxsparse.bench.timing import copy_bandwidth_tbps
from ctxsparse.versions import versions
bw = bandwidth(torch.cuda.get_device_name(), copy_bandwidth_tbps())
print(f"{bw.gpu}: measured device-to-device copy {bw.copy_tbps:.2f} TB/s (read + written); {bw.note}")
print(versions())
PY

warm_pid=
if python3 -c "import flashinfer" 2>/dev/null; then
  timeout "$WARM_TIMEOUT" python3 - >"$LOG_DIR/flashinfer-warm.log" 2>&1 <<'PY' &
import torch, flashinfer
from ctxsparse.attention.flashinfer_backend import FlashInferDense, FlashInferVectorSparse
flashinfer.top_k(torch.randn(8, 4096, device="cuda", dtype=torch.float16), 40)
k = torch.randn(4, 16, 8, 128, device="cuda", dtype=torch.bfloat16)
dense = FlashInferDense(k.device)
dense.plan(torch.arange(4, device="cuda", dtype=torch.int32).view(1, 4), 64, k, 32, 128**-0.5)
print("dense", dense.choice_record())
sparse = FlashInferVectorSparse(k.device)
sparse.plan(torch.randint(0, 64, (1, 8, 16), device="cuda", dtype=torch.int32), None,
            k.view(1, 64, 8, 128).transpose(1, 2), k.view(1, 64, 8, 128).transpose(1, 2), 32, 128**-0.5)
print("vector-sparse", sparse.choice_record())
torch.cuda.synchronize()
print("flashinfer warm")
PY
  warm_pid=$!
else
  echo "flashinfer is not importable: the bench runs our kernels alone and names the missing anchor columns"
fi

stamp tests
# The three test folders run side by side, each under its own timeout (a timeout loses only that folder's
# summary). FlashInfer's tests wait for its kernels to compile, so they run after the warm-up.
test_pids=()
for dir in attention gpu_index bench; do
  timeout "$TEST_TIMEOUT" python3 -m pytest -q -p no:cacheprovider "tests/$dir" -k "not flashinfer_backend" \
    >"$LOG_DIR/tests-$dir.log" 2>&1 &
  test_pids+=($!)
done
for i in 0 1 2; do
  wait "${test_pids[$i]}"; rc=$?
  dir=$(echo attention gpu_index bench | cut -d' ' -f$((i + 1)))
  echo "--- tests/$dir exit $rc (124: the $TEST_TIMEOUT s timeout)"; tail -n 12 "$LOG_DIR/tests-$dir.log"
done

stamp "eager host cost"
timeout 60 python3 benchmarks/sweep_host_cost.py --profile --json "$LOG_DIR/host-cost.json" 2>&1 \
  | tee "$LOG_DIR/host-cost.log" | head -n 30

if [ -n "$warm_pid" ]; then
  stamp "flashinfer warm-up"
  wait "$warm_pid"; tail -n 4 "$LOG_DIR/flashinfer-warm.log"
fi

stamp "flashinfer tests"
timeout "${FI_TEST_TIMEOUT:-60}" python3 -m pytest -q -p no:cacheprovider tests/attention -k "flashinfer_backend" 2>&1 \
  | tee "$LOG_DIR/tests-flashinfer.log" | tail -n 12
echo "flashinfer tests exit: ${PIPESTATUS[0]}"

gpu=$(python3 -c "import torch; from ctxsparse.bench.decode import gpu_short_name as s; print(s(torch.cuda.get_device_name()))")
day=$(python3 -c "import datetime; print(datetime.date.today())")
decode_json="$RESULTS/decode-${gpu:-GPU}-$day.json"
pipeline_json="$RESULTS/pipeline-${gpu:-GPU}-$day.json"

stamp "bench decode"
timeout $(( DECODE_BUDGET + 40 )) python3 -m ctxsparse.cli.main bench decode --output "$decode_json" \
  --batch 8 1 32 --context 131072 32768 --sparsity 50 10 100 20 --iters 30 --budget-s "$DECODE_BUDGET" 2>&1 \
  | tee "$LOG_DIR/decode-bench.log"
echo "bench decode exit: ${PIPESTATUS[0]}"

stamp "bench pipeline"
timeout $(( PIPELINE_BUDGET + 40 )) python3 -m ctxsparse.cli.main bench pipeline --output "$pipeline_json" \
  --batch 8 1 --context 131072 32768 --sparsity 50 2 3 10 --iters 20 --budget-s "$PIPELINE_BUDGET" 2>&1 \
  | tee "$LOG_DIR/pipeline-bench.log"
echo "bench pipeline exit: ${PIPESTATUS[0]}"

stamp "target points"
python3 -m ctxsparse.bench.target_table "$decode_json" "$pipeline_json" 2>&1 | tee "$LOG_DIR/targets.txt"
for f in "$decode_json" "$pipeline_json"; do cp "$f" "$LOG_DIR"/ 2>/dev/null || echo "no $f"; done
stamp done
