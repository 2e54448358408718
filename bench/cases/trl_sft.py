"""SFT with TRL's SFTTrainer: prompt-completion chat rows, loss on the completion only; the
``padding_free`` variant (bf16, no gradient checkpointing) flattens each batch into one row (TRL's
``padding_free=True``), TRL's counterpart of alignflow's packed rows."""

import benchlib
from benchlib import METER, data_file, emit, read_jsonl

args = benchlib.case_args(__doc__)

from datasets import Dataset  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402
from trl_common import check_file_order, load_causal_lm, load_tokenizer, settings, start, training_kwargs  # noqa: E402

rows = read_jsonl(data_file(args, "sft.jsonl"), limit=args.batch * (args.warmup + args.steps))
dataset = Dataset.from_list([{"prompt": r["prompt"], "completion": [{"role": "assistant", "content": r["completion"]}]}
                             for r in rows])
tokenizer = load_tokenizer(args.model)
model = load_causal_lm(args.model, tokenizer)
padding_free = args.variant == "padding_free"
# TRL refuses max_length with padding_free and no packing; every bench row fits max_length anyway.
config = SFTConfig(**training_kwargs(args, batch=args.batch), max_length=None if padding_free else args.max_length,
                   packing=False, padding_free=padding_free)
start(args.model)
trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
check_file_order(trainer)
trainer.train()
emit(args, case="sft", framework="trl", samples_per_step=args.batch,
     window=METER.window(args.warmup, args.steps),
     settings={**settings(trainer), "padding_free": config.padding_free})
