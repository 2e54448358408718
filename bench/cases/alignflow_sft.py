"""SFT with alignflow's ``train_sft``: the same prompt-completion rows, loss on the response only.
Padding-free packed batches (its default); the ``padded`` variant pads every row instead."""

import benchlib
from benchlib import METER, emit

args = benchlib.case_args(__doc__)

from af_common import CONSOLE, data_config, model_config, settings, start, train_config  # noqa: E402

from alignflow.config.schema import SFTConfig  # noqa: E402
from alignflow.trainers.sft import train_sft  # noqa: E402

rows = args.batch * (args.warmup + args.steps)
data = data_config(args, "sft.jsonl", rows)
cfg = SFTConfig(output_dir=args.workdir, model=model_config(args), data=data,
                train=train_config(args, args.batch), resume=False)
cfg.validate()
start(args)
train_sft(cfg, console=CONSOLE)
emit(args, case="sft", framework="alignflow", samples_per_step=args.batch,
     window=METER.window(args.warmup, args.steps), settings=settings(args, packing=data.packing))
