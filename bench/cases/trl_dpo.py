"""DPO with TRL's DPOTrainer (sigmoid loss, beta 0.1); the reference is TRL's default, a frozen copy
of the policy run inside every step."""

import benchlib
from benchlib import METER, data_file, emit, read_jsonl

args = benchlib.case_args(__doc__)

from datasets import Dataset  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402
from trl_common import check_file_order, load_causal_lm, load_tokenizer, settings, start, training_kwargs  # noqa: E402


def reply(text):
    return [{"role": "assistant", "content": text}]


rows = read_jsonl(data_file(args, "pairs.jsonl"), limit=args.batch * (args.warmup + args.steps))
dataset = Dataset.from_list([{"prompt": r["prompt"], "chosen": reply(r["chosen"]), "rejected": reply(r["rejected"])}
                             for r in rows])
tokenizer = load_tokenizer(args.model)
model = load_causal_lm(args.model, tokenizer)
config = DPOConfig(**training_kwargs(args, batch=args.batch), max_length=args.max_length, beta=0.1,
                   loss_type=["sigmoid"])
start(args.model)
trainer = DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
check_file_order(trainer)
trainer.train()
emit(args, case="dpo", framework="trl", samples_per_step=args.batch,
     window=METER.window(args.warmup, args.steps), settings={**settings(trainer), "beta": 0.1,
                                                               "precompute_ref_log_probs": False})
