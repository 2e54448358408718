"""Regressions of issue 16 for the offline trainers: NaN stops, resume with another config, unsafe
state files, and reruns that rewrote history."""

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from alignflow.config import ConfigError, RewardConfig, SFTConfig, load_config
from alignflow.reporting.metrics_logger import MetricsLogger, read_metrics
from alignflow.trainers.loop import TrainingError
from alignflow.trainers.reward import train_reward_model
from alignflow.trainers.sft import train_sft


def sft_config(model_dir, data, out, *overrides):
    return load_config(SFTConfig, None, [
        f"model.name={model_dir}", f"data.train={data}", f"output_dir={out}", "model.dtype=fp32",
        "data.max_length=64", "data.max_prompt_length=32", "data.val_fraction=0.2",
        "train.batch_size=4", "train.micro_batch_size=2", "train.grad_accum=2", "train.lr=3e-3",
        "train.max_steps=6", "train.eval_every=3", "train.log_every=1", "train.save_every=2",
        "train.warmup_ratio=0.0", *overrides,
    ])


def rm_config(model_dir, data, out, *overrides):
    return load_config(RewardConfig, None, [
        f"model.name={model_dir}", f"data.train={data}", f"output_dir={out}", "model.dtype=fp32",
        "data.max_length=64", "data.max_prompt_length=24", "data.val_fraction=0.25",
        "train.batch_size=8", "train.micro_batch_size=4", "train.grad_accum=2", "train.lr=3e-3",
        "train.max_steps=6", "train.eval_every=3", "train.log_every=1", "train.save_every=2",
        "train.warmup_ratio=0.0", *overrides,
    ])


def checkpoint_weights(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    shards = sorted((out / "checkpoints").glob("step-*/model/*.safetensors"))
    return {p.parent.parent.name: load_file(p) for p in shards}


def stop_after_checkpoint(monkeypatch, step: int) -> None:
    """Make the next run stop (like a kill) right after it publishes the checkpoint of ``step``."""
    import alignflow.trainers.loop as loop

    original = loop.save_checkpoint

    def save_then_stop(output_dir, at, **kwargs):
        path = original(output_dir, at, **kwargs)
        if at == step:
            monkeypatch.setattr(loop, "save_checkpoint", original)
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(loop, "save_checkpoint", save_then_stop)


# ----- defect 1: a NaN stop must not poison the run -------------------------------------------


@pytest.mark.parametrize("job", ["sft", "rm"])
def test_huge_lr_stops_with_only_finite_checkpoints(job, tiny_llama_dir, sft_file, preference_file, tmp_path):
    out = tmp_path / "run"
    run = (lambda: train_sft(sft_config(tiny_llama_dir, sft_file, out, "train.lr=1e6"))) if job == "sft" else (
        lambda: train_reward_model(rm_config(tiny_llama_dir, preference_file, out, "train.lr=1e6")))
    with pytest.raises(TrainingError) as err:
        run()
    message = str(err.value)
    assert "model.dtype=fp32" not in message  # the run is fp32 already
    for step, weights in checkpoint_weights(out).items():
        bad = [k for k, v in weights.items() if not torch.isfinite(v).all()]
        assert not bad, f"{step} holds non-finite weights {bad[:3]}"
    assert "last good checkpoint" in message
    with pytest.raises(TrainingError):  # the same config resumed diverges again: never "done"
        run()
    assert not (out / "summary.json").exists()


def test_non_finite_gradients_skip_the_update_and_stop_after_the_limit(tiny_llama_dir, sft_file, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, max_norm: torch.tensor(float("inf")))
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"3 consecutive updates skipped .*train\.max_skipped_updates"):
        train_sft(sft_config(tiny_llama_dir, sft_file, out, "train.max_skipped_updates=3", "train.save_every=0"))
    rows = [r for r in read_metrics(out / "metrics.jsonl") if r["split"] == "train"]
    assert [r["skipped_update"] for r in rows] == [1.0, 1.0, 1.0]


# ----- defect 2: resume must not silently take another config ---------------------------------


def test_resume_with_another_lr_is_refused_naming_the_key(tiny_llama_dir, sft_file, tmp_path, monkeypatch):
    out = tmp_path / "run"
    stop_after_checkpoint(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train_sft(sft_config(tiny_llama_dir, sft_file, out))
    recorded = (out / "config.yaml").read_text()
    with pytest.raises(ConfigError) as err:
        train_sft(sft_config(tiny_llama_dir, sft_file, out, "train.lr=1e-3"))
    message = str(err.value)
    assert "train.lr" in message and "0.003" in message and "0.001" in message
    assert "resume=false" in message and "force_resume=true" in message
    assert (out / "config.yaml").read_text() == recorded  # no false record of the refused config


def test_resume_allows_more_steps_and_forced_resume(tiny_llama_dir, sft_file, tmp_path, monkeypatch):
    out = tmp_path / "run"
    stop_after_checkpoint(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train_sft(sft_config(tiny_llama_dir, sft_file, out))
    assert train_sft(sft_config(tiny_llama_dir, sft_file, out, "train.max_steps=8", "train.log_every=2")
                     ).metrics["steps"] == 8
    forced = train_sft(sft_config(tiny_llama_dir, sft_file, out, "train.max_steps=10", "train.lr=1e-3",
                                  "force_resume=true"))
    assert forced.metrics["steps"] == 10
    # The forced run trains on at the new lr (cosine, no warmup), as its config.yaml records.
    lr_at = {r["step"]: r["lr"] for r in read_metrics(out / "metrics.jsonl") if r["split"] == "train"}
    assert lr_at[9] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 9 / 10)))


def test_fresh_start_into_a_folder_with_checkpoints_clears_them(tiny_llama_dir, sft_file, tmp_path, monkeypatch):
    out = tmp_path / "run"
    stop_after_checkpoint(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        train_sft(sft_config(tiny_llama_dir, sft_file, out))
    stop_after_checkpoint(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train_sft(sft_config(tiny_llama_dir, sft_file, out, "train.lr=1e-3", "resume=false"))
    # A later resume continues the new run (step 2), never the old one's step 4.
    assert sorted(checkpoint_weights(out)) == ["step-000002"]
    assert max(r["step"] for r in read_metrics(out / "metrics.jsonl")) == 2


# ----- defect 3: resuming never unpickles arbitrary objects ------------------------------------


class RunsACommand:
    def __reduce__(self):
        return (Path.touch, (Path(__file__).parent / "PWNED",))


def test_a_pickled_callable_in_trainer_state_is_refused(tiny_llama_dir, sft_file, tmp_path, monkeypatch):
    out = tmp_path / "run"
    stop_after_checkpoint(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        train_sft(sft_config(tiny_llama_dir, sft_file, out))
    marker = Path(__file__).parent / "PWNED"
    marker.unlink(missing_ok=True)
    state = out / "checkpoints" / "step-000004" / "trainer_state.pt"
    torch.save({"step": 4, "payload": RunsACommand()}, state)
    with pytest.raises(ValueError, match=r"trainer_state\.pt.*(refused|not a plain)") as err:
        train_sft(sft_config(tiny_llama_dir, sft_file, out))
    assert not marker.exists(), "the pickled callable ran"
    assert "step-000002" in str(err.value)  # the previous complete checkpoint is offered


def test_a_truncated_newest_checkpoint_names_the_previous_one(tiny_llama_dir, sft_file, tmp_path, monkeypatch):
    out = tmp_path / "run"
    stop_after_checkpoint(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        train_sft(sft_config(tiny_llama_dir, sft_file, out))
    state = out / "checkpoints" / "step-000004" / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[:200])
    with pytest.raises(ValueError) as err:
        train_sft(sft_config(tiny_llama_dir, sft_file, out))
    message = str(err.value)
    assert "\n" not in message and "step-000004" in message and "corrupt" in message and "step-000002" in message


def test_optimizer_scheduler_and_rng_state_load_with_weights_only(tmp_path):
    from alignflow.config.schema import TrainConfig
    from alignflow.runtime import rng_state
    from alignflow.runtime.optim import build_optimizer, build_scheduler
    from alignflow.runtime.state_io import load_state, save_state

    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    for scheduler_name in ("cosine", "linear", "constant"):
        cfg = TrainConfig(scheduler=scheduler_name, warmup_ratio=0.2)
        optimizer = build_optimizer(model, cfg)
        scheduler = build_scheduler(optimizer, cfg, 10)
        model(torch.ones(2, 3)).sum().backward()
        optimizer.step()
        scheduler.step()
        save_state({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()},
                   tmp_path / "state.pt")
        loaded = load_state(tmp_path / "state.pt")
        build_optimizer(model, cfg).load_state_dict(loaded["optimizer"])
        assert loaded["scheduler"]["last_epoch"] == 1


# ----- defect 6: reruns and resumes must not rewrite history -----------------------------------


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_rerunning_a_finished_job_changes_no_file(tiny_llama_dir, sft_file, tmp_path):
    out = tmp_path / "run"
    first = train_sft(sft_config(tiny_llama_dir, sft_file, out))
    before = snapshot(out)
    again = train_sft(sft_config(tiny_llama_dir, sft_file, out))
    assert snapshot(out) == before
    assert again.metrics == first.metrics


def test_resumed_logs_read_as_one_clean_run(tiny_llama_dir, sft_file, tmp_path, monkeypatch):
    (tmp_path / "bad.jsonl").write_text(sft_file.read_text() + "{not json\n")
    straight = tmp_path / "straight"
    train_sft(sft_config(tiny_llama_dir, tmp_path / "bad.jsonl", straight))
    out = tmp_path / "run"
    # Stop after step 5 was logged: the resumed run redoes step 5 from the checkpoint of step 4.
    import alignflow.trainers.loop as loop

    real = loop.MetricsLogger.log

    def log_then_stop(self, step, metrics, split="train"):
        real(self, step, metrics, split)
        if step == 5 and split == "train":
            raise KeyboardInterrupt

    monkeypatch.setattr(loop.MetricsLogger, "log", log_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train_sft(sft_config(tiny_llama_dir, tmp_path / "bad.jsonl", out))
    monkeypatch.setattr(loop.MetricsLogger, "log", real)
    train_sft(sft_config(tiny_llama_dir, tmp_path / "bad.jsonl", out))

    def steps(folder):
        return [(r["step"], r["split"]) for r in read_metrics(folder / "metrics.jsonl")]

    assert steps(out) == steps(straight)
    assert (out / "skipped_rows.jsonl").read_text() == (straight / "skipped_rows.jsonl").read_text()
    summary, expected = (json.loads((f / "summary.json").read_text()) for f in (out, straight))
    assert summary.keys() == expected.keys()
    assert summary["train_loss"] == expected["train_loss"] and summary["eval_loss"] == expected["eval_loss"]


def test_non_finite_metrics_are_written_as_null_with_a_flag(tmp_path):
    logger = MetricsLogger(tmp_path, tensorboard=False)
    logger.log(1, {"loss": float("nan"), "grad_norm": float("inf"), "lr": 0.1})
    line = (tmp_path / "metrics.jsonl").read_text()

    def reject(constant):
        raise AssertionError(f"{constant} is not JSON")

    row = json.loads(line, parse_constant=reject)
    assert row["loss"] is None and row["grad_norm"] is None and row["lr"] == 0.1
    assert sorted(row["non_finite"]) == ["grad_norm", "loss"]
    assert not any(isinstance(v, float) and not math.isfinite(v) for v in row.values())


def test_a_fresh_start_leaves_nothing_of_the_previous_run(tiny_llama_dir, preference_file, tmp_path):
    out = tmp_path / "run"
    train_reward_model(rm_config(tiny_llama_dir, preference_file, out))
    assert (out / "best").is_dir()
    # Without validation pairs the new run keeps no best checkpoint: the old run's must not pass for it.
    again = train_reward_model(rm_config(tiny_llama_dir, preference_file, out, "resume=false",
                                         "data.val_fraction=0.0", "train.max_steps=2"))
    assert again.best_dir is None and not (out / "best").exists()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000002"]
