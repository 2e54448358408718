"""The ``alignflow`` command line: a thin layer over the Python API (configs in, runs out)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from alignflow.cli.common import ConfigArg, SetOpt, console, fail, quiet_libraries, run_job
from alignflow.cli.data_cmd import data_app
from alignflow.cli.eval_cmd import register as register_eval_command
from alignflow.cli.rl_cmd import register as register_rl_commands
from alignflow.cli.rm_eval_cmd import register as register_rm_eval_command
from alignflow.cli.run_cmd import register as register_run_commands

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(help="Align language models with human feedback: SFT, reward models, RL, evaluation.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
rm_app = typer.Typer(help="Reward models: train on preference pairs, score responses, measure on pairs.",
                     no_args_is_help=True)
app.add_typer(rm_app, name="rm")


@app.command()
def sft(config: ConfigArg, overrides: SetOpt = None) -> None:
    """Supervised fine-tuning of a policy on prompt/response data."""
    from alignflow.config import SFTConfig
    from alignflow.trainers.sft import train_sft

    run_job(train_sft, SFTConfig, config, overrides)


@app.command()
def dpo(config: ConfigArg, overrides: SetOpt = None) -> None:
    """Direct preference optimisation (DPO, IPO, cDPO) of a policy on preference pairs."""
    from alignflow.config import DPOConfig
    from alignflow.trainers.dpo import train_dpo

    run_job(train_dpo, DPOConfig, config, overrides)


@rm_app.command("train")
def rm_train(config: ConfigArg, overrides: SetOpt = None) -> None:
    """Train a reward model on preference pairs (Bradley-Terry)."""
    from alignflow.config import RewardConfig
    from alignflow.trainers.reward import train_reward_model

    run_job(train_reward_model, RewardConfig, config, overrides)


@rm_app.command("score")
def rm_score(
    model_dir: Annotated[Path, typer.Argument(help="A reward-model folder written by `alignflow rm train`.")],
    data: Annotated[str, typer.Argument(help="JSONL of {prompt, response} rows (any SFT format).")],
    out: Annotated[Optional[Path], typer.Option(help="Write rows with a `reward` field here (JSONL).")] = None,
    batch_size: int = 16,
) -> None:
    """Score responses with a trained reward model; prints summary statistics."""
    from alignflow.data.readers import read_sft
    from alignflow.models.reward_io import RewardModelScorer
    from alignflow.trainers.data_setup import report_issues

    quiet_libraries()
    try:
        scorer = RewardModelScorer(model_dir, batch_size=batch_size)
        read = read_sft(data)
    except (FileNotFoundError, ValueError) as err:
        fail(err)
    report_issues(read.issues, (out.parent if out else Path(".")), console)
    if not read.examples:
        fail(ValueError(f"{data}: no usable rows"))
    scores = scorer.score([e.prompt for e in read.examples], [e.response for e in read.examples])
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w") as fh:
            for example, score in zip(read.examples, scores.tolist()):
                fh.write(json.dumps({"prompt": example.prompt, "response": example.response,
                                     "reward": score, "source": example.source}) + "\n")
    std = scores.std().item() if len(scores) > 1 else 0.0
    console.print(f"scored {len(scores)} rows: mean={scores.mean():.4f} std={std:.4f} "
                  f"min={scores.min():.4f} max={scores.max():.4f}" + (f" -> {out}" if out else ""))


@app.command()
def curves(
    runs: Annotated[list[Path], typer.Argument(help="RL run folders (each with a metrics.jsonl).")],
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("run_comparison.png"),
    title: str = "",
) -> None:
    """Overlay several RL runs' reward, KL, entropy and length curves (e.g. GRPO vs RLOO vs REINFORCE++)."""
    from alignflow.reporting.curves import plot_run_comparison
    from alignflow.reporting.metrics_logger import read_metrics

    missing = [str(run) for run in runs if not (run / "metrics.jsonl").is_file()]
    if missing:
        fail(FileNotFoundError(f"no metrics.jsonl in {', '.join(missing)}"))
    path = plot_run_comparison({run.name: read_metrics(run / "metrics.jsonl") for run in runs}, out, title)
    console.print(f"curves of {len(runs)} runs -> {path}")


app.add_typer(data_app, name="data")
register_rm_eval_command(rm_app)
register_rl_commands(app)
register_eval_command(app)
register_run_commands(app)

if __name__ == "__main__":
    app()
