"""GRPO with TRL's GRPOTrainer: --batch prompts x --group samples per step, one update per batch,
KL loss to the reference (beta 0.04, so both frameworks run a reference forward), length reward."""

import benchlib
from benchlib import METER, data_file, emit, read_jsonl

args = benchlib.case_args(__doc__)

from datasets import Dataset  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402
from trl_common import check_file_order, load_causal_lm, load_tokenizer, settings, start, training_kwargs  # noqa: E402

BETA = 0.04
rows = read_jsonl(data_file(args, "prompts.jsonl"), limit=2 * args.batch * (args.warmup + args.steps))
dataset = Dataset.from_list([{"prompt": r["prompt"]} for r in rows])
tokenizer = load_tokenizer(args.model)
model = load_causal_lm(args.model, tokenizer)
rows_per_step = args.batch * args.group
config = GRPOConfig(**training_kwargs(args, batch=rows_per_step), num_generations=args.group,
                    max_completion_length=args.max_new_tokens, temperature=args.temperature, top_k=0, top_p=1.0,
                    beta=BETA, num_iterations=1, epsilon=0.2, disable_dropout=True,
                    shuffle_dataset=False)
start(args.model)
trainer = GRPOTrainer(model=model, reward_funcs=benchlib.trl_length_reward, args=config, train_dataset=dataset,
                      processing_class=tokenizer)
check_file_order(trainer)
trainer.train()
emit(args, case="grpo", framework="trl", samples_per_step=rows_per_step,
     window=METER.window(args.warmup, args.steps),
     settings={**settings(trainer), "beta": BETA, "num_generations": args.group, "loss_type": config.loss_type,
               "max_completion_length": args.max_new_tokens, "temperature": args.temperature})
