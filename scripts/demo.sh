#!/usr/bin/env bash
# The main job on the embedded defaults: `alignflow run configs/quickstart.yaml` (a proxy and a judge
# reward model, GRPO of SmolLM2-135M-Instruct against the proxy, then an evaluation report), about 15 minutes on a
# 2-core CPU. Data: ../shared/data when present, else the Hugging Face hub (needs `datasets` and a
# network), else the small samples shipped in tests/fixtures (enough to see the pipeline run, not
# to learn anything). Extra arguments go to `alignflow run`, e.g. --set grpo.train.steps=24.
set -euo pipefail
cd "$(dirname "$0")/.."
ALIGNFLOW=".venv/bin/alignflow"
RUN="${RUN_DIR:-runs/quickstart}"
SHARED="../shared/data"

if [ -d "$SHARED/hh-rlhf" ]; then
  WHERE="../shared/data (Anthropic HH-RLHF helpful subsets, red-team prompts, XSTest)"
  DATA=()
elif .venv/bin/python -c "import datasets" 2>/dev/null && .venv/bin/python - <<'PY' 2>/dev/null
import urllib.request; urllib.request.urlopen("https://huggingface.co", timeout=5)
PY
then
  WHERE="the Hugging Face hub (Anthropic/hh-rlhf: train split for the proxy RM and GRPO, test split for the judge)"
  DATA=(--set rm.data.train=Anthropic/hh-rlhf:train --set judge_rm.data.train=Anthropic/hh-rlhf:test
        --set grpo.data.train=Anthropic/hh-rlhf:train --set eval.prompts.source=Anthropic/hh-rlhf:train
        --set eval.probes.red_team.path= --set eval.probes.xstest.path=)
else
  F=tests/fixtures/data
  WHERE="the small fixtures in tests/fixtures (install alignflow[hub] and a network, or ../shared/data, for real data)"
  DATA=(--set rm.data.train=$F/preference.jsonl --set judge_rm.data.train=$F/hh_small.jsonl.gz
        --set grpo.data.train=$F/prompts.jsonl --set eval.prompts.source=$F/prompts.jsonl
        --set eval.prompts.held_out=false --set eval.probes.red_team.path= --set eval.probes.xstest.path=)
fi
echo "quickstart data: $WHERE"

$ALIGNFLOW run configs/quickstart.yaml --set output_dir="$RUN" "${DATA[@]}" "$@"
echo
echo "quickstart done: report in $RUN/eval/report.html (metrics: $RUN/eval/metrics.json, stages: $RUN/summary.json)"
