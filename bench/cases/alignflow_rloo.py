"""RLOO with alignflow's RL controller: --batch prompts x --group samples per iteration, one update
over the batch, KL penalty 0.05 in the reward (TRL's RLOO default), no advantage whitening, no
missing-EOS penalty, the same length reward."""

import benchlib
from benchlib import METER, emit

args = benchlib.case_args(__doc__)

from af_common import run_rl  # noqa: E402

from alignflow.config.rl import AlgorithmConfig  # noqa: E402

algorithm = AlgorithmConfig(adv_estimator="rloo", kl_in_reward=True, kl_coef=0.05, kl_estimator="k1",
                            whiten_advantages=False, loss_agg_mode="token-mean", clip_low=0.2)
run = run_rl(args, case="rloo", algorithm=algorithm, n=args.group, prompts_per_step=args.batch,
             missing_eos_penalty=None)
emit(args, case="rloo", framework="alignflow", samples_per_step=run["rows"],
     window=METER.window(args.warmup, args.steps), settings=run["settings"],
     phases=run["phases"])
