"""Reward model with alignflow's ``train_reward_model``: Bradley-Terry on the same pairs, SmolLM2
body with a fresh scalar head (chosen and rejected in one forward), padding-free packed rows (its
default for decoder backbones); the ``padded`` variant pads every row instead."""

import benchlib
from benchlib import METER, emit

args = benchlib.case_args(__doc__)

from af_common import CONSOLE, data_config, model_config, settings, start, train_config  # noqa: E402

from alignflow.config.schema import RewardConfig, RewardTrainConfig  # noqa: E402
from alignflow.trainers.reward import train_reward_model  # noqa: E402

rows = args.batch * (args.warmup + args.steps)
data = data_config(args, "pairs.jsonl", rows)
cfg = RewardConfig(output_dir=args.workdir, model=model_config(args), data=data,
                   train=train_config(args, args.batch, cls=RewardTrainConfig), resume=False)
cfg.validate()
start(args)
train_reward_model(cfg, console=CONSOLE)
emit(args, case="rm", framework="alignflow", samples_per_step=args.batch,
     window=METER.window(args.warmup, args.steps), settings=settings(args, packing=data.packing))
