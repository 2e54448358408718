"""The optimisation loop shared by the offline trainers (SFT, reward model, DPO).

A trainer supplies the examples and a ``loss_fn`` for one micro-batch; this loop owns the rest:
deterministic batch order, gradient accumulation, clipping, the LR schedule, logging, periodic
evaluation, checkpoints and exact resumption. The batch order is a pure function of
(seed, epoch), so a resumed run replays exactly the batches the interrupted one would have seen,
and its ``metrics.jsonl`` is cut back to the checkpoint's step, so the log reads as one run.

An update whose gradient norm is not finite is never applied (the step is skipped and logged with
``skipped_update=1``); ``train.max_skipped_updates`` in a row stop the run. A non-finite loss stops
it at the end of its step. Either stop names the last good checkpoint: checkpoints never hold
non-finite weights.

On several ranks (``trainers.data_parallel``) the plan is the same global one: each rank trains an
equal part of every micro-batch, its loss weighted by its part's share of the step's units (tokens,
pairs) times the world size, which FSDP's gradient average divides back out, so the gradient is the
one-process gradient. Metrics are summed over the ranks with the same weights; rank 0 logs and
saves; the checkpoint reads back at any world size.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from alignflow.config.schema import TrainConfig
from alignflow.models import compile_blocks
from alignflow.reporting.metrics_logger import MetricsLogger, format_metrics, read_metrics
from alignflow.reporting.progress_lines import progress_line
from alignflow.runtime import distributed, rng_state, set_rng_state
from alignflow.runtime.optim import build_optimizer, build_scheduler
from alignflow.runtime.optimizer_state import load_optimizer_state
from alignflow.trainers.checkpoint import (
    OPTIMIZER_DIR,
    CheckpointError,
    damaged_advice,
    latest_checkpoint,
    load_checkpoint_state,
    save_checkpoint,
)
from alignflow.trainers.data_parallel import DataParallelModel, all_min, all_sum, rank_part


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a NaN loss); the message names the step and the rows."""


def plan_steps(lengths: Sequence[int], cfg: TrainConfig) -> list[list[list[int]]]:
    """Indices for every optimizer step: ``plan[step][micro] -> example indices``.

    Each epoch draws a fresh permutation from (seed, epoch); the remainder that does not fill a
    whole batch is left for the next permutation rather than making a small, noisy last step.
    Within a step, examples are sorted by length before being cut into micro-batches, so each
    micro-batch pads little while the step still sees a random sample.
    """
    n = len(lengths)
    if n < cfg.batch_size:
        raise TrainingError(f"only {n} training examples, fewer than train.batch_size={cfg.batch_size}")
    steps_per_epoch = n // cfg.batch_size
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    plan: list[list[list[int]]] = []
    epoch = 0
    while len(plan) < total:
        generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=generator).tolist()
        for start in range(0, steps_per_epoch * cfg.batch_size, cfg.batch_size):
            chunk = sorted(order[start : start + cfg.batch_size], key=lambda i: lengths[i])
            plan.append([chunk[i : i + cfg.micro_batch_size] for i in range(0, len(chunk), cfg.micro_batch_size)])
            if len(plan) == total:
                break
        epoch += 1
    return plan


@dataclass
class LoopResult:
    step: int
    train_metrics: dict[str, float] = field(default_factory=dict)
    eval_metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_time_s: float = 0.0
    initial_eval: dict[str, float] = field(default_factory=dict)  # before the first step (``eval_at_start``)
    already_done: bool = False  # the newest checkpoint was the last step: nothing was trained now

    def summary(self) -> dict[str, float]:
        """The last train and eval metrics (prefixed), step count and wall time, for ``summary.json``."""
        return {**{"train_" + k: v for k, v in self.train_metrics.items()},
                **{"eval_" + k: v for k, v in self.eval_metrics.items()},
                "steps": self.step, "wall_time_s": self.wall_time_s}


LossFn = Callable[[list[int], float], tuple[torch.Tensor, dict[str, float]]]
"""(example indices of this rank's part of one micro-batch, weight of that part in the step) -> (loss, metrics).
A ``tokens`` metric (non-padding tokens in the micro-batch) is summed into the step's throughput."""


def run_loop(
    *,
    net: DataParallelModel,
    tokenizer,
    cfg: TrainConfig,
    output_dir: str | Path,
    lengths: Sequence[int],
    loss_fn: LossFn,
    unit_count: Callable[[list[int]], int],
    evaluate: Callable[[], dict[str, float]] | None,
    metadata: Callable[[], dict[str, Any]],
    describe_rows: Callable[[list[int]], str],
    resume: bool = True,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
    logger: MetricsLogger | None = None,
    head: torch.nn.Module | None = None,
    head_lr: float | None = None,
    dtype: str = "fp32",
    eval_at_start: bool = False,
) -> LoopResult:
    """Train ``net`` for the planned steps; ``unit_count`` gives the loss's normaliser per micro-batch
    (tokens for SFT, pairs for reward models) so that accumulation weights every unit equally.
    ``head``: a reward model's scalar head, trained at ``head_lr`` when that is set. ``dtype``: the
    model's compute precision (for advice when the run diverges). ``eval_at_start``: evaluate (and
    log at step 0) before the first step."""
    output_dir = Path(output_dir)
    plan = plan_steps(lengths, cfg)
    logger = logger or MetricsLogger(output_dir)
    console = logger.console
    start_step = 0
    window: list[dict[str, float]] = []  # the steps since the last logged row (averaged into the next)
    skipped_in_a_row = 0
    ckpt = latest_checkpoint(output_dir) if resume else None
    state = load_checkpoint_state(ckpt) if ckpt is not None else None
    if state is not None:
        _restore_weights(net.model, state, ckpt)
    net.shard()  # after the restore: every rank shards the same weights
    optimizer = build_optimizer(net.root, cfg, head=head, head_lr=head_lr)
    scheduler = build_scheduler(optimizer, cfg, len(plan))
    configured = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    if state is not None:
        start_step = _restore_training(net.root, optimizer, scheduler, state, ckpt)
        use_configured_hyperparameters(optimizer, scheduler, configured)
        window = list(state.get("log_window", []))
        skipped_in_a_row = int(state.get("skipped_in_a_row", 0))
        console.print(f"[bold]resuming[/] from {ckpt} at step {start_step}/{len(plan)}")
    # Steps after the checkpoint are redone, and logged, again; a fresh start logs from scratch.
    logger.truncate_after(start_step if ckpt is not None else -1)
    result = _logged_result(logger, start_step)
    if ckpt is None and eval_at_start and evaluate is not None:
        result.initial_eval = _evaluate(net.root, evaluate, logger, 0, None)
    if start_step >= len(plan):
        result.already_done = True
        return result

    def checkpoint(step: int) -> Path:
        return save_checkpoint(output_dir, step, net=net, optimizer=optimizer, tokenizer=tokenizer,
                               metadata=metadata(), state={"scheduler": scheduler.state_dict(), "rng": rng_state(),
                                                           "log_window": window, "skipped_in_a_row": skipped_in_a_row})

    def stop(step: int, what: str) -> TrainingError:
        """Save the state after ``step`` steps when it is finite (not at the last step: that checkpoint
        would read as a finished run), and say which checkpoint is the last good one."""
        try:
            last = checkpoint(step) if step < len(plan) else latest_checkpoint(output_dir)
        except CheckpointError:
            last = latest_checkpoint(output_dir)
        where = f"the last good checkpoint is {last}" if last else "no good checkpoint was saved"
        return TrainingError(f"{what}; {where}. {divergence_advice(dtype)}")

    if cfg.compile:
        compile_blocks(net.model)
    net.root.train()
    world = distributed.world_size()
    started = time.perf_counter()
    progress = Progress(TextColumn("[bold blue]train"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[line]}"), TimeRemainingColumn(), console=console)
    with progress:
        task = progress.add_task("train", total=len(plan), completed=start_step, line="")
        for step in range(start_step, len(plan)):
            micro_batches = plan[step]
            total_units = max(sum(unit_count(mb) for mb in micro_batches), 1)  # of the global step
            step_metrics: dict[str, float] = {}
            tokens = 0  # non-padding tokens processed, summed (not averaged) over micro-batches
            first_bad = len(micro_batches)  # the first micro-batch whose loss is not finite here
            step_start = time.perf_counter()
            for at, micro in enumerate(micro_batches):
                part = rank_part(micro)
                share = unit_count(part) / total_units
                loss, metrics = loss_fn(part, share * world)
                if not torch.isfinite(loss):
                    first_bad = min(first_bad, at)
                loss.backward()  # even a non-finite one: every rank runs the same collectives
                tokens += metrics.pop("tokens", 0)
                for key, value in metrics.items():
                    step_metrics[key] = step_metrics.get(key, 0.0) + value * share
            keys = sorted(step_metrics)
            *sums, tokens = all_sum([step_metrics[key] for key in keys] + [tokens])
            step_metrics = dict(zip(keys, sums))
            bad = all_min(first_bad * world + distributed.rank())  # the first (micro-batch, rank) in order
            if bad < len(micro_batches) * world:
                optimizer.zero_grad(set_to_none=True)
                at, where = divmod(bad, world)
                raise stop(step, f"non-finite loss at step {step + 1}; "
                                 f"rows: {describe_rows(rank_part(micro_batches[at], where))}")
            norm = torch.nn.utils.clip_grad_norm_([p for p in net.root.parameters() if p.requires_grad],
                                                  cfg.max_grad_norm)
            grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)  # sharded: every rank's
            skipped = not math.isfinite(grad_norm)  # such an update would make every weight NaN
            if not skipped:
                optimizer.step()
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            skipped_in_a_row = skipped_in_a_row + 1 if skipped else 0
            step_metrics.update(grad_norm=grad_norm, lr=scheduler.get_last_lr()[0],
                                step_time_s=time.perf_counter() - step_start, units=float(total_units),
                                tokens=float(tokens), skipped_update=float(skipped))
            window.append(step_metrics)
            done = step + 1
            if skipped:
                console.print(f"[yellow]step {done}: gradient norm {grad_norm} is not finite; update skipped[/]")
            if done % cfg.log_every == 0 or done == len(plan):
                averaged = {k: sum(m[k] for m in window) / len(window) for k in window[0]}
                seconds = sum(m["step_time_s"] for m in window)
                averaged["units_per_s"] = sum(m["units"] for m in window) / seconds
                averaged["tokens_per_s"] = sum(m["tokens"] for m in window) / seconds
                logger.log(done, averaged)
                result.history.append({"step": done, **averaged})
                result.train_metrics = averaged
                progress.update(task, line=format_metrics(averaged, ["loss", "accuracy", "lr"]))
                if not console.is_terminal:  # a pipe sees no bar: one greppable line per log step instead
                    console.print(progress_line("train", done, len(plan), time.perf_counter() - started, averaged,
                                                ["loss", "accuracy", "lr", "tokens_per_s"], start=start_step))
                window = []
            if skipped_in_a_row >= cfg.max_skipped_updates:
                raise stop(done, f"{skipped_in_a_row} consecutive updates skipped (gradient norm not finite) "
                                 f"up to step {done}, the limit train.max_skipped_updates={cfg.max_skipped_updates}")
            if evaluate is not None and cfg.eval_every and done % cfg.eval_every == 0 and done < len(plan):
                result.eval_metrics = _evaluate(net.root, evaluate, logger, done, on_eval)
            if cfg.save_every and done % cfg.save_every == 0 and done < len(plan):
                checkpoint(done)
            progress.update(task, advance=1)
    if evaluate is not None:
        result.eval_metrics = _evaluate(net.root, evaluate, logger, len(plan), on_eval)
    checkpoint(len(plan))
    result.step = len(plan)
    result.wall_time_s = time.perf_counter() - started
    return result


def use_configured_hyperparameters(optimizer, scheduler, configured: list[dict[str, Any]]) -> None:
    """Train on with this config's optimizer settings (lr, betas, eps, weight decay) at the restored
    schedule position: a resumed optimizer state carries the saved ones, which differ after a forced
    resume, and the run's config.yaml must say what it trains with. Same config: the same numbers."""
    for group, settings in zip(optimizer.param_groups, configured):
        group.update(settings)
    scheduler.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
    for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * factor(scheduler.last_epoch)


def divergence_advice(dtype: str) -> str:
    """What to try when a run diverges; fp32 is only advice for a run that is not fp32 already."""
    lower = "try a lower train.lr" + (" or model.dtype=fp32" if dtype != "fp32" else "")
    return (f"{lower}, then rerun with --set resume=false (a fresh start), or resume the last good "
            f"checkpoint under the new settings with --set force_resume=true")


def _logged_result(logger: MetricsLogger, step: int) -> LoopResult:
    """What the rows already logged up to ``step`` say: the result a resumed run continues from."""
    rows = read_metrics(logger.path)

    def metrics_of(row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if k not in ("step", "split", "time")}

    train = [row for row in rows if row["split"] == "train"]
    evals = [row for row in rows if row["split"] == "eval"]
    later = [row for row in evals if row["step"] > 0]
    return LoopResult(step=step, train_metrics=metrics_of(train[-1]) if train else {},
                      eval_metrics=metrics_of(later[-1]) if later else {},
                      history=[{"step": row["step"], **metrics_of(row)} for row in train],
                      initial_eval=next((metrics_of(row) for row in evals if row["step"] == 0), {}))


def _evaluate(model, evaluate, logger: MetricsLogger, step: int, on_eval) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        metrics = evaluate()
    model.train()
    logger.log(step, metrics, split="eval")
    logger.console.print(f"[green]eval step {step}[/] {format_metrics(metrics)}")
    if on_eval is not None:
        on_eval(step, metrics)
    return metrics


def _restore_weights(model, state: dict, ckpt: Path) -> None:
    """The checkpoint's weights into the unsharded ``model`` (each rank reads the full folder)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if state.get("lora_state"):
        model.load_state_dict(state["lora_state"], strict=False)
    else:
        weights: dict[str, torch.Tensor] = {}
        for shard in sorted((ckpt / "model").glob("*.safetensors")):
            try:
                weights.update(load_file(shard))
            except (SafetensorError, OSError) as err:
                raise CheckpointError(f"{shard} is corrupt or truncated ({err}); {damaged_advice(ckpt)}") from None
        missing, unexpected = model.load_state_dict(weights, strict=False)
        # Tied weights (lm_head = embeddings) are saved once; anything else missing is an error.
        missing = [k for k in missing if not k.endswith("lm_head.weight")]
        if missing or unexpected:
            raise TrainingError(f"checkpoint {ckpt} does not match the model: missing {missing[:5]}, "
                                f"unexpected {unexpected[:5]}")


def _restore_training(root, optimizer, scheduler, state: dict, ckpt: Path) -> int:
    """Optimizer (its shards, read at this world size), schedule and RNG; the step to resume from."""
    load_optimizer_state(root, optimizer, ckpt / OPTIMIZER_DIR, advice=damaged_advice(ckpt))
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return int(state["step"])
