"""Plain Hugging Face ``generate`` on the same prompt batch as alignflow's engine (runs in bench/.venv-trl).

EOS is ignored in both (every row decodes exactly --max-new-tokens tokens), so both do the same
work; sampling at --temperature, no top-k / top-p. Variant ``default``: fp32 weights (HF's
default); ``bf16``: the model loaded with bf16 weights (``dtype=torch.bfloat16``), as alignflow's
rollout samples from a bf16 copy of the weights by default; ``autocast``: fp32 weights under CPU bf16
autocast, the peer this bench ran before issue 19 (kept to measure that change's effect in one run);
``compile``: bf16 weights with the speed options HF documents for ``generate``, a static KV cache
(``cache_implementation="static"``) and generate's own ``torch.compile`` of the decode forward
(``CompileConfig``, which HF applies on GPUs only unless ``_compile_all_devices`` is set; mode
``default``, as ``reduce-overhead`` means CUDA graphs). The compile falls in the warm-up calls.
"""

import benchlib
from benchlib import METER, data_file, emit, read_jsonl

args = benchlib.case_args(__doc__)

import contextlib  # noqa: E402

import torch  # noqa: E402
from transformers import CompileConfig, GenerationConfig  # noqa: E402
from trl_common import load_causal_lm, load_tokenizer  # noqa: E402

if args.variant not in ("default", "fp32", "bf16", "autocast", "compile"):
    raise SystemExit(f"unknown variant {args.variant!r} (default | bf16 | autocast | compile)")
rows = read_jsonl(data_file(args, "prompts.jsonl"), limit=args.batch)
tokenizer = load_tokenizer(args.model)
weights = torch.bfloat16 if args.variant in ("bf16", "compile") else torch.float32
model = load_causal_lm(args.model, tokenizer, dtype=weights).eval()
pad = tokenizer.pad_token_id
width = max(len(r["prompt_ids"]) for r in rows)
input_ids = torch.tensor([[pad] * (width - len(r["prompt_ids"])) + r["prompt_ids"] for r in rows])
attention_mask = torch.tensor([[0] * (width - len(r["prompt_ids"])) + [1] * len(r["prompt_ids"]) for r in rows])
config = GenerationConfig(max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens, do_sample=True,
                          temperature=args.temperature, top_k=0, top_p=1.0, pad_token_id=pad,
                          eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
if args.variant == "compile":
    config.cache_implementation = "static"
    config.compile_config = CompileConfig(fullgraph=False, mode="default")  # the token counter breaks the graph
    config.compile_config._compile_all_devices = True

METER.install_token_counter(args.model)
torch.manual_seed(args.seed)
for _ in range(args.warmup + args.steps):
    precision = torch.autocast("cpu", dtype=torch.bfloat16) if args.variant == "autocast" else contextlib.nullcontext()
    with torch.inference_mode(), precision:
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config)
    new = out.shape[1] - width
    if new != args.max_new_tokens:
        raise SystemExit(f"generate returned {new} new tokens per row, expected {args.max_new_tokens}")
    METER.generated_tokens += len(rows) * new
    METER.mark()
window = METER.window(args.warmup, args.steps)
emit(args, case="generate", framework="hf", samples_per_step=len(rows), window=window, tokens_key="generated_tokens",
     settings={"batch": len(rows), "prompt_tokens": int(attention_mask.sum()), "max_new_tokens": args.max_new_tokens,
               "temperature": args.temperature, "weights": str(next(model.parameters()).dtype),
               "autocast_bf16": args.variant == "autocast", "static_cache_compiled": args.variant == "compile",
               "torch": torch.__version__})
