#!/usr/bin/env bash
# The study on Ray, one GPU then two (issue: two-GPU Ray scaling run), from the repository root on a 2-GPU host:
#   CTXSPARSE_GGUF=/path/to/SmolLM2-135M-Instruct.Q4_1.gguf WHEELS=gpu-wheels bash benchmarks/ray_scaling.sh
# WHEELS must hold the wheels of ray (and its dependencies the host lacks: jsonschema & co.) and gguf; they
# are installed into /tmp/site. CTXSPARSE_GGUF defaults to the first *.gguf in $WHEELS. Extra arguments go to
# benchmarks/ray_scaling.py (e.g. --samples 32 for a shorter run). Results: benchmarks/results/$NAME/ and $OUT/$NAME.
set -uo pipefail
WHEELS=${WHEELS:-gpu-wheels}
NAME=${NAME:-smollm2-ray-scaling}
. "$(dirname "$0")/gpu_setup.sh"
install_wheels "$WHEELS" || echo "wheel install failed"
if [ -z "${CTXSPARSE_GGUF:-}" ] && compgen -G "$WHEELS/*.gguf" >/dev/null; then
  CTXSPARSE_GGUF=$(ls "$WHEELS"/*.gguf | head -1)
fi
[ -n "${CTXSPARSE_GGUF:-}" ] && export CTXSPARSE_GGUF
export CTXSPARSE_CALIBRATION_DIR=${CTXSPARSE_CALIBRATION_DIR:-$PWD/benchmarks/results/$NAME/calibration}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 -c "import ray; print('ray', ray.__version__)" || { echo "ray is not importable: carry its wheels in $WHEELS"; exit 1; }
timeout "${TIMEOUT_S:-540}" python3 benchmarks/ray_scaling.py --name "$NAME" "$@"
