#!/usr/bin/env bash
# The main job on the embedded defaults: SFT of SmolLM2-135M-Instruct, then a MiniLM reward model,
# each on a small real sample. About 10 minutes on a
# 2-core CPU. Data: ../shared/data when present, else the Hugging Face hub (needs `datasets` and a
# network), else the small samples shipped in tests/fixtures (enough to see the pipeline run).
set -euo pipefail
cd "$(dirname "$0")/.."
ALIGNFLOW=".venv/bin/alignflow"
RUN="${RUN_DIR:-runs/demo}"
SHARED="../shared/data"

if [ -d "$SHARED/hh-rlhf" ]; then
  PAIRS="$SHARED/hh-rlhf"; SFT_DATA="$SHARED/lima/lima.json"; WHERE="../shared/data"
elif .venv/bin/python -c "import datasets" 2>/dev/null && .venv/bin/python - <<'PY' 2>/dev/null
import urllib.request; urllib.request.urlopen("https://huggingface.co", timeout=5)
PY
then
  PAIRS="Anthropic/hh-rlhf:test"; SFT_DATA="Anthropic/hh-rlhf:test"; WHERE="the Hugging Face hub"
else
  PAIRS="tests/fixtures/data/preference.jsonl"; SFT_DATA="tests/fixtures/data/sft.jsonl"
  WHERE="the small fixtures shipped in tests/fixtures (install alignflow[hub] for real data)"
fi
echo "demo data: $WHERE"

$ALIGNFLOW sft configs/sft.yaml --set output_dir="$RUN/sft" --set data.train="$SFT_DATA" \
  --set data.max_samples=400 --set train.max_steps=30 --set train.eval_every=15 --set train.save_every=15 \
  --set train.batch_size=4 --set train.micro_batch_size=4 --set train.grad_accum=1 \
  --set data.max_length=256 --set data.max_prompt_length=128 --set train.eval_max_samples=32
$ALIGNFLOW rm train configs/rm.yaml --set output_dir="$RUN/rm" --set data.train="$PAIRS" \
  --set data.max_samples=1200 --set train.eval_every=25
echo
echo "demo done: SFT policy in $RUN/sft/model, reward model in $RUN/rm/model (summaries: */summary.json)"
