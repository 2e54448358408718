#!/usr/bin/env bash
# The GPU check of issue 17: 5 GRPO steps of SmolLM2-135M-Instruct on CUDA with the HF rollout engine,
# printing tokens/s and the fraction of the GPU's bf16 peak (FSDP2 over nccl on 2 Ray ranks where Ray
# and 2 GPUs are; one rank otherwise). Needs torch with CUDA and transformers; vLLM is not used.
# Extra arguments go to scripts/gpu_check.py (--steps, --prompts, --n, --model, --cpu-smoke).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
exec "$PY" scripts/gpu_check.py "$@"
