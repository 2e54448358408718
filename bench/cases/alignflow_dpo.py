"""DPO with alignflow's ``train_dpo`` (sigmoid loss, beta 0.1, reference: cached), padding-free
packed rows (its default); the ``padded`` variant pads every row instead.

alignflow scores every pair the run will visit with the starting policy once, before the first
step; TRL runs its reference inside every step. So that both pay for the reference, the time of
that pass is measured and its share for the measured steps (steps / (warmup + steps)) is added,
and the same share of its counted work (tokens, attention pairs, LM-head rows) to the FLOP count.
"""

import benchlib
from benchlib import METER, emit

args = benchlib.case_args(__doc__)

from af_common import CONSOLE, Stopwatch, data_config, model_config, settings, start, train_config  # noqa: E402

import alignflow.trainers.dpo as dpo_module  # noqa: E402
from alignflow.config.dpo import DPOConfig, DPOLossConfig  # noqa: E402

rows = args.batch * (args.warmup + args.steps)
data = data_config(args, "pairs.jsonl", rows)
cfg = DPOConfig(output_dir=args.workdir, model=model_config(args), data=data,
                train=train_config(args, args.batch), loss=DPOLossConfig(type="sigmoid", beta=0.1, reference="cached"),
                resume=False)
cfg.validate()
reference = Stopwatch()
dpo_module.cached_reference = reference.wrap(dpo_module.cached_reference)
start(args)
dpo_module.train_dpo(cfg, console=CONSOLE)
share = args.steps / (args.warmup + args.steps)
METER.extra_seconds = reference.seconds * share
if reference.before is not None:  # the reference pass's tokens, attention pairs and head rows, the same share
    METER.add_extra_counts(reference.before, reference.after, share)
emit(args, case="dpo", framework="alignflow", samples_per_step=args.batch,
     window=METER.window(args.warmup, args.steps),
     settings=settings(args, beta=0.1, reference="cached", packing=data.packing,
                       reference_seconds_total=reference.seconds, reference_seconds_added=METER.extra_seconds))
