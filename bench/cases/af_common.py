"""What the alignflow case scripts share (runs in alignflow's .venv): configs built from the case flags.

Variant ``default`` is alignflow's default precision (bf16 autocast over fp32 master weights, no
gradient checkpointing; RL rollouts from a bf16 copy of the weights); ``fp32`` sets
``model.dtype: fp32``; ``autocast`` (generate and RL) samples under autocast from the fp32 weights,
as rollouts did before the bf16 copy (``rollout.weights: shared``); ``padded`` (SFT, RM, DPO) turns
packing off; ``compile`` sets ``train.compile`` (the actor's and critic's blocks in RL).

Data order: ``prepare_data.py`` writes every file already shuffled once (the shared shuffle), and
:func:`file_order` makes alignflow take the rows in file order, as TRL does with its sequential
sampler, so both sides see the same rows in the same order at every step.
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchlib import METER, data_file
from rich.console import Console

CONSOLE = Console(stderr=True)


def file_order() -> None:
    """Take the training rows (offline trainers) and the RL prompts in file order instead of
    alignflow's seeded permutation per epoch; the files already hold the shared shuffle.

    alignflow has no setting for this, so the bench replaces the two pure functions that choose the
    order: ``plan_steps`` (offline trainers: step -> micro-batches of row indices) and
    ``prompt_order`` (RL: stream position -> prompt index). Everything else about a step is
    unchanged: the same rows, the same micro-batch split."""
    import alignflow.trainers.dpo as dpo_module
    import alignflow.trainers.loop as loop_module
    import alignflow.trainers.rl_controller as rl_module

    def plan_steps(lengths, cfg):
        n, batch = len(lengths), cfg.batch_size
        if n < batch:
            raise SystemExit(f"only {n} training rows, fewer than a batch of {batch}")
        total = cfg.max_steps or max(1, int(cfg.epochs * (n // batch)))
        plan = []
        for step in range(total):
            rows = [(step * batch + i) % n for i in range(batch)]
            plan.append([rows[i : i + cfg.micro_batch_size] for i in range(0, batch, cfg.micro_batch_size)])
        return plan

    def prompt_order(position, count, n_prompts, seed):
        return [k % n_prompts for k in range(position, position + count)]

    loop_module.plan_steps = plan_steps
    dpo_module.plan_steps = plan_steps
    rl_module.prompt_order = prompt_order


def dtype(args: argparse.Namespace) -> str:
    if args.variant not in ("default", "fp32", "bf16", "autocast", "padded", "compile"):
        raise SystemExit(f"unknown alignflow variant {args.variant!r} (default | fp32 | autocast | padded | compile)")
    return "fp32" if args.variant == "fp32" else "bf16"


def rollout_weights(args: argparse.Namespace) -> str:
    """``rollout.weights`` for this variant: ``autocast`` re-measures rollouts from the shared fp32 weights."""
    return "shared" if args.variant == "autocast" else "auto"


def model_config(args: argparse.Namespace):
    from alignflow.config.schema import ModelConfig

    return ModelConfig(name=args.model, dtype=dtype(args))


def data_config(args: argparse.Namespace, name: str, rows: int):
    """All ``rows`` rows train (no validation split, so no evaluation runs). Batches are packed
    (alignflow's default) except in the ``padded`` variant, the before of packing."""
    from alignflow.config.schema import CausalLMDataConfig

    return CausalLMDataConfig(train=data_file(args, name), val_fraction=0.0, max_samples=rows,
                              max_length=args.max_length, max_prompt_length=args.max_length - 1,
                              packing=args.variant != "padded")


def train_config(args: argparse.Namespace, batch: int, cls=None):
    """``batch`` rows per optimizer step in one micro-batch, constant LR, no evaluation, no
    intermediate checkpoints, one log line at the end, compiled blocks in the ``compile`` variant;
    ``cls``: a TrainConfig subclass."""
    from alignflow.config.schema import TrainConfig

    steps = args.warmup + args.steps
    return (cls or TrainConfig)(seed=args.seed, lr=args.lr, batch_size=batch, micro_batch_size=batch, grad_accum=1,
                       max_steps=steps, warmup_ratio=0.0, scheduler="constant", eval_every=0, save_every=0,
                       log_every=steps, threads=args.threads, compile=args.variant == "compile")


def settings(args: argparse.Namespace, **extra) -> dict:
    import torch
    import transformers

    import alignflow

    return {"alignflow": getattr(alignflow, "__version__", "?"), "transformers": transformers.__version__,
            "torch": torch.__version__, "dtype": dtype(args), "gradient_checkpointing": False,
            "batch": args.batch, "lr": args.lr, "threads": torch.get_num_threads(), "data_order": "file",
            **extra}  # extra may set batch


def start(args: argparse.Namespace) -> None:
    file_order()
    METER.install_token_counter(args.model)
    METER.install_optimizer_clock()


def run_rl(args: argparse.Namespace, *, case: str, algorithm, n: int, prompts_per_step: int,
           missing_eos_penalty: float | None) -> dict:
    """Build alignflow's local workers and controller and time ``train_step()`` (one RL iteration:
    generate, score, reference + behaviour log-probs, [values], advantages, update). ``phases``: the
    controller's own clock per phase (``time/*_s``), medians over the measured steps."""
    from alignflow.config.rl import PromptDataConfig, RLConfig, RLTrainConfig, RolloutConfig
    from alignflow.trainers.rl_controller import RLController, load_prompt_sets
    from alignflow.trainers.run_setup import start_run
    from alignflow.workers.local import build_local_workers

    steps = args.warmup + args.steps
    rows = prompts_per_step * n
    algorithm.missing_eos_penalty = missing_eos_penalty
    cfg = RLConfig(
        output_dir=args.workdir, model=model_config(args), reward_function="benchlib:alignflow_length_reward",
        data=PromptDataConfig(train=data_file(args, "prompts.jsonl"), val_fraction=0.0,
                              max_samples=2 * prompts_per_step * steps, max_prompt_length=args.max_length),
        rollout=RolloutConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, n=n,
                              weights=rollout_weights(args)),
        algorithm=algorithm,
        # One optimizer step per iteration over the whole batch, as TRL's GRPO/RLOO with
        # gradient_accumulation_steps=1 and num_iterations=1.
        train=RLTrainConfig(steps=steps, prompts_per_step=prompts_per_step, ppo_epochs=1, mini_batch_size=rows,
                             micro_batch_size=rows, actor_lr=args.lr, critic_lr=args.lr, schedule="constant",
                             eval_prompts=0, seed=args.seed, threads=args.threads,
                             compile=args.variant == "compile"),
        resume=False,
    )
    cfg.validate()
    file_order()
    METER.install_token_counter(args.model)
    start_run(cfg, cfg.output_dir, seed=cfg.train.seed, threads=cfg.train.threads)
    workers = build_local_workers(cfg)
    train_prompts, eval_prompts = load_prompt_sets(cfg, workers.policy.worker.tokenizer, CONSOLE)
    controller = RLController(cfg, workers, train_prompts, eval_prompts, console=CONSOLE)
    step_times = []
    for step in range(steps):
        metrics = controller.train_step()
        METER.mark()
        if step >= args.warmup:
            step_times.append({k: v for k, v in metrics.items() if k.startswith("time/")})
    phases = {key: statistics.median(t.get(key, 0.0) for t in step_times) for key in step_times[0]}
    algo = cfg.algorithm
    run_settings = settings(args, batch=rows, n=n, prompts_per_step=prompts_per_step, adv_estimator=algo.adv_estimator,
                            kl_in_reward=algo.kl_in_reward, kl_coef=algo.kl_coef, kl_loss_coef=algo.kl_loss_coef,
                            ppo_epochs=1, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                            critic=cfg.needs_critic, rollout_weights=cfg.rollout.weights)
    return {"rows": rows, "phases": phases, "settings": run_settings}


class Stopwatch:
    """Times every call of a wrapped function and keeps the meter's counts before and after it."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.before: dict | None = None
        self.after: dict | None = None

    def wrap(self, fn):
        def timed(*a, **k):
            started = time.perf_counter()
            before = METER.snapshot()
            try:
                return fn(*a, **k)
            finally:
                self.seconds += time.perf_counter() - started
                self.before = self.before or before
                self.after = METER.snapshot()

        return timed
