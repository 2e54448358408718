"""alignflow's HFRolloutEngine on the same prompt batch (token ids) as the plain HF ``generate`` case.

EOS is ignored in both (the engine gets no EOS ids), so every row decodes exactly
--max-new-tokens tokens; sampling at --temperature, no top-k / top-p. Generation only, as HF's
case: the policy loads straight in the rollout dtype (``load_sampling_policy``), with no fp32
weights kept for training beside it. Variants: ``default`` samples from bf16 weights, packed, as
alignflow's RL rollout copy (``rollout.weights: auto``); ``autocast``: bf16 autocast over fp32
weights (the default before the bf16 copy, kept to measure it); ``fp32``: no autocast.
"""

import benchlib
from benchlib import METER, data_file, emit, read_jsonl

args = benchlib.case_args(__doc__)

import torch  # noqa: E402
from af_common import model_config, rollout_weights  # noqa: E402

from alignflow.config.rl import resolve_rollout_weights  # noqa: E402
from alignflow.rollout import HFRolloutEngine, SamplingParams  # noqa: E402
from alignflow.workers.policy import load_sampling_policy, sampling_precision  # noqa: E402

if args.variant == "compile":  # train.compile compiles training blocks only: the run would repeat ``default``
    raise SystemExit("the generate case has no compile variant (train.compile does not touch the rollout engine)")
rows = read_jsonl(data_file(args, "prompts.jsonl"), limit=args.batch)
prompt_ids = [r["prompt_ids"] for r in rows]
cfg = model_config(args)
model, tokenizer = load_sampling_policy(cfg, resolve_rollout_weights(rollout_weights(args), cfg.dtype))
engine = HFRolloutEngine(model, pad_token_id=tokenizer.pad_token_id, eos_token_ids=())
params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, do_sample=True)

METER.install_token_counter(args.model)
torch.manual_seed(args.seed)
in_bf16 = next(engine.model.parameters()).dtype == torch.bfloat16  # for the settings column
for _ in range(args.warmup + args.steps):
    with sampling_precision(engine.model, cfg.dtype, "cpu"):  # as the RL worker samples
        out = engine.generate(prompt_ids, params)
    new = int(out["response_mask"].sum())
    if new != len(rows) * args.max_new_tokens:
        raise SystemExit(f"the engine returned {new} tokens, expected {len(rows)} x {args.max_new_tokens}")
    METER.generated_tokens += new
    METER.mark()
emit(args, case="generate", framework="alignflow", samples_per_step=len(rows),
     window=METER.window(args.warmup, args.steps), tokens_key="generated_tokens",
     settings={"batch": len(rows), "prompt_tokens": sum(map(len, prompt_ids)), "max_new_tokens": args.max_new_tokens,
               "temperature": args.temperature, "autocast_bf16": cfg.dtype == "bf16" and not in_bf16,
               "engine_weights": str(next(engine.model.parameters()).dtype), "torch": torch.__version__})
