"""SFT, reward-model and DPO training on 2 ranks (FSDP2 over gloo, processes alignflow starts) against
one process: same global batch and seed, the same fp32 weights (1e-5) after 10 steps, one log; an SFT
run checkpointed on 2 ranks at step 5 resumes on 1 and ends where the uninterrupted 1-rank run does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from alignflow.config import ConfigError, DPOConfig, RewardConfig, SFTConfig, load_config
from alignflow.runtime.launch import with_world_size
from alignflow.trainers.dpo import train_dpo
from alignflow.trainers.reward import train_reward_model
from alignflow.trainers.sft import train_sft

pytestmark = pytest.mark.timeout(240)
QUIET = Console(quiet=True)
TWO_RANKS = "distributed.world_size=2"
QUESTIONS = ["What is the capital of France?", "How do I bake bread?", "Please tell me a joke.",
             "What is two plus two?", "Can you help me?", "Tell me about numbers.", "Why is the sky blue?",
             "Name a colour."]
TOLERANCE = 1e-5


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("offline-dp")
    answers = ["The capital of France is Paris.", "Mix flour, water and yeast, then bake it.",
               "Why did the chicken cross the road?", "Two plus two is four."]
    sft = [{"prompt": f"{q} ({i})", "response": answers[i % 4]} for i, q in enumerate(QUESTIONS * 6)]
    pairs = [{"prompt": f"{q} ({i})", "chosen": answers[i % 4], "rejected": "I cannot help with that request."}
             for i, q in enumerate(QUESTIONS * 6)]
    return {"folder": folder, "sft": write_jsonl(folder / "sft.jsonl", sft),
            "pairs": write_jsonl(folder / "pairs.jsonl", pairs)}


def overrides(model: Path, train: Path, out: Path, *extra: str) -> list[str]:
    """10 steps of 8 rows in micro-batches of 4 (2 a rank on 2 ranks), fp32, an eval and a checkpoint at 5."""
    return [f"model.name={model}", "model.dtype=fp32", f"data.train={train}", f"output_dir={out}",
            "data.max_length=64", "data.max_prompt_length=24", "data.val_fraction=0.2", "train.batch_size=8",
            "train.micro_batch_size=4", "train.grad_accum=2", "train.lr=1e-3", "train.max_steps=10",
            "train.warmup_ratio=0.0", "train.log_every=1", "train.eval_every=5", "train.save_every=5", *extra]


def max_abs_difference(a: Path, b: Path) -> float:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    return max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)


def rows(run: Path, split: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [row for row in map(json.loads, lines) if row["split"] == split]


def assert_logged_once_and_alike(one: Path, two: Path, key: str = "loss") -> None:
    """Rank 0 logs every step once, with the one-process values."""
    a, b = rows(one, "train"), rows(two, "train")
    assert [r["step"] for r in b] == list(range(1, 11))
    for x, y in zip(a, b, strict=True):
        assert y[key] == pytest.approx(x[key], rel=1e-4, abs=1e-5), (x["step"], key)
        assert y["tokens"] == x["tokens"] and y["units"] == x["units"]
    assert [r["step"] for r in rows(two, "eval")] == [r["step"] for r in rows(one, "eval")]


@pytest.fixture(scope="module")
def sft_runs(tiny_llama_dir, data) -> dict[str, Path]:
    folder = data["folder"]
    for name, extra in (("sft-1", ()), ("sft-2", (TWO_RANKS,))):
        train_sft(load_config(SFTConfig, None, overrides(tiny_llama_dir, data["sft"], folder / name, *extra)), QUIET)
    return {"one": folder / "sft-1", "two": folder / "sft-2"}


def test_sft_on_two_ranks_matches_one_process(sft_runs):
    difference = max_abs_difference(sft_runs["one"] / "model", sft_runs["two"] / "model")
    print(f"SFT 2 ranks vs 1: max abs weight difference {difference:.3g}")
    assert difference <= TOLERANCE
    assert_logged_once_and_alike(sft_runs["one"], sft_runs["two"])
    assert sorted(p.name for p in (sft_runs["two"] / "checkpoints" / "step-000005" / "optimizer").iterdir()) == \
        [".metadata", "__0_0.distcp", "__1_0.distcp"]  # one optimizer shard a rank


def test_sft_saved_on_two_ranks_at_step_5_resumes_on_one(tiny_llama_dir, data, sft_runs):
    resumed = data["folder"] / "sft-2-then-1"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(sft_runs["two"] / "checkpoints" / "step-000005", resumed / "checkpoints" / "step-000005")
    train_sft(load_config(SFTConfig, None, overrides(tiny_llama_dir, data["sft"], resumed)), QUIET)
    assert [r["step"] for r in rows(resumed, "train")] == list(range(6, 11))  # it did resume at step 5
    difference = max_abs_difference(sft_runs["one"] / "model", resumed / "model")
    print(f"SFT saved on 2 ranks at step 5, resumed on 1: max abs weight difference {difference:.3g}")
    assert difference <= TOLERANCE


def test_reward_model_on_two_ranks_matches_one_process(tiny_llama_dir, data):
    runs = []
    for name, extra in (("rm-1", ()), ("rm-2", (TWO_RANKS,))):
        out = data["folder"] / name
        train_reward_model(load_config(RewardConfig, None, overrides(tiny_llama_dir, data["pairs"], out, *extra)),
                           QUIET)
        runs.append(out)
    difference = max_abs_difference(runs[0] / "model", runs[1] / "model")
    print(f"reward model 2 ranks vs 1: max abs weight difference {difference:.3g}")
    # Twice the others' bound: each rank packs its own pairs (prompt shared, data.share_prompt), so
    # the sums run in another order; measured 1.16e-5 on an AVX512 CPU after 10 Adam steps at lr 1e-3.
    assert difference <= 2 * TOLERANCE
    assert_logged_once_and_alike(*runs, key="accuracy")
    assert (runs[1] / "best" / "model.safetensors").is_file()


def test_dpo_on_two_ranks_matches_one_process(tiny_llama_dir, data):
    runs = []
    for name, extra in (("dpo-1", ()), ("dpo-2", (TWO_RANKS,))):
        out = data["folder"] / name
        train_dpo(load_config(DPOConfig, None, overrides(tiny_llama_dir, data["pairs"], out, *extra)), QUIET)
        runs.append(out)
    difference = max_abs_difference(runs[0] / "model", runs[1] / "model")
    print(f"DPO 2 ranks vs 1: max abs weight difference {difference:.3g}")
    assert difference <= TOLERANCE
    assert_logged_once_and_alike(*runs)
    reference = torch.load(runs[1] / "reference_logps.pt", weights_only=True)["logps"]["train"]
    assert not torch.isnan(reference[~torch.isnan(reference).all(1)]).any()  # scored half by each rank, merged


def test_world_size_must_divide_the_micro_batch(tiny_llama_dir, data):
    with pytest.raises(ConfigError, match=r"distributed.world_size=3 must divide train.micro_batch_size \(4\)"):
        load_config(SFTConfig, None, overrides(tiny_llama_dir, data["sft"], data["folder"] / "x",
                                               "distributed.world_size=3"))
    with pytest.raises(ConfigError, match="distributed.backend=ray is for alignflow rl"):
        load_config(DPOConfig, None, overrides(tiny_llama_dir, data["pairs"], data["folder"] / "x",
                                               "distributed.backend=ray"))


def test_under_torchrun_the_config_follows_its_world_size(tiny_llama_dir, data):
    cfg = load_config(SFTConfig, None, overrides(tiny_llama_dir, data["sft"], data["folder"] / "x"))
    assert with_world_size(cfg, 2).distributed.world_size == 2  # recorded in config.yaml as run
    with pytest.raises(ConfigError, match=r"distributed.world_size=4, but torchrun started 2 ranks"):
        with_world_size(with_world_size(cfg, 4), 2)
    with pytest.raises(ConfigError, match=r"distributed.world_size=8 must divide train.micro_batch_size \(4\)"):
        with_world_size(cfg, 8)
