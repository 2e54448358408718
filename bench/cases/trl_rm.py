"""Reward model with TRL's RewardTrainer: Bradley-Terry on (prompt, chosen, rejected) chat pairs."""

import benchlib
from benchlib import METER, data_file, emit, read_jsonl

args = benchlib.case_args(__doc__)

from datasets import Dataset  # noqa: E402
from trl import RewardConfig, RewardTrainer  # noqa: E402
from trl_common import (  # noqa: E402
    check_file_order,
    load_reward_model,
    load_tokenizer,
    settings,
    start,
    training_kwargs,
)


def reply(text):
    return [{"role": "assistant", "content": text}]


rows = read_jsonl(data_file(args, "pairs.jsonl"), limit=args.batch * (args.warmup + args.steps))
dataset = Dataset.from_list([{"prompt": r["prompt"], "chosen": reply(r["chosen"]), "rejected": reply(r["rejected"])}
                             for r in rows])
tokenizer = load_tokenizer(args.model)
model = load_reward_model(args.model, tokenizer)
config = RewardConfig(**training_kwargs(args, batch=args.batch), max_length=args.max_length)
start(args.model)
trainer = RewardTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
if len(trainer.train_dataset) != len(rows):
    raise SystemExit(f"RewardTrainer kept {len(trainer.train_dataset)} of {len(rows)} pairs (over max_length?)")
check_file_order(trainer)
trainer.train()
emit(args, case="rm", framework="trl", samples_per_step=args.batch,
     window=METER.window(args.warmup, args.steps), settings=settings(trainer))
