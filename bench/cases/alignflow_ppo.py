"""PPO with alignflow's RL controller (TRL no longer has a PPO trainer; the driver compares it per
generated token with TRL's RLOO). alignflow's PPO defaults (GAE, critic from the policy body,
KL 0.05 in the reward, whitened advantages, missing-EOS penalty -1, value clipping) except one
PPO epoch with one mini-batch, so that it does as many optimizer steps per iteration as RLOO.
--batch * --group rows per iteration (the driver passes --group 1: PPO samples once per prompt)."""

import benchlib
from benchlib import METER, emit

args = benchlib.case_args(__doc__)

from af_common import run_rl  # noqa: E402

from alignflow.config.rl import AlgorithmConfig  # noqa: E402

algorithm = AlgorithmConfig(adv_estimator="gae", critic_init="policy")
run = run_rl(args, case="ppo", algorithm=algorithm, n=args.group, prompts_per_step=args.batch,
             missing_eos_penalty=-1.0)
emit(args, case="ppo", framework="alignflow", samples_per_step=run["rows"],
     window=METER.window(args.warmup, args.steps), settings=run["settings"],
     phases=run["phases"])
