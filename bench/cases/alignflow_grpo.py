"""GRPO with alignflow's RL controller: --batch prompts x --group samples per iteration, one update
over the batch, KL loss to the reference (k3, 0.04: TRL's GRPO form), token-mean loss, no
missing-EOS penalty (TRL has none), the same length reward."""

import benchlib
from benchlib import METER, emit

args = benchlib.case_args(__doc__)

from af_common import run_rl  # noqa: E402

from alignflow.config.rl import AlgorithmConfig  # noqa: E402

algorithm = AlgorithmConfig(adv_estimator="grpo", kl_in_reward=False, kl_loss_coef=0.04, kl_estimator="k3",
                            whiten_advantages=False, loss_agg_mode="token-mean", clip_low=0.2)
run = run_rl(args, case="grpo", algorithm=algorithm, n=args.group, prompts_per_step=args.batch,
             missing_eos_penalty=None)
emit(args, case="grpo", framework="alignflow", samples_per_step=run["rows"],
     window=METER.window(args.warmup, args.steps), settings=run["settings"],
     phases=run["phases"])
