"""What the fault-injection tests share besides fixtures: jobs and their outcomes, weight and log
comparisons, the seeded choice of kill points, and the tally printed at the end of the session.
(A module of its own: ``from conftest import`` is ambiguous when several test folders run together.)"""

from __future__ import annotations

import json
import os
import random
import signal
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("ALIGNFLOW_RELIABILITY_SEED", "16"))
WIDE = 10_000  # console columns: one-line errors stay on one line
QUESTIONS = ["What is the capital of France?", "How do I bake bread?", "Please tell me a joke.",
             "What is two plus two?", "Can you help me?", "Tell me about numbers.", "Why is the sky blue?",
             "Name a fruit.", "What is a word?", "Say something nice.", "Count to three.", "Who are you?"]
REWARDS = '''
def length_reward(prompts, responses, metadata):
    return [len(r) / 10.0 for r in responses]


SCORED = []


def late_nan_reward(prompts, responses, metadata):
    """Good rewards for the first 10 responses (the step-0 evaluation's 2 and two GRPO steps of 2
    prompts x 2 samples: one checkpoint), NaN from then on."""
    good = sum(SCORED) < 10
    SCORED.append(len(responses))
    return [len(r) / 10.0 if good else float("nan") for r in responses]
'''

# What the suite survived, printed at the end of the session (see pytest_terminal_summary).
TALLY: dict[str, Counter] = {"kills survived, bit-identical": Counter(),
                             "NaN injections stopped, finite last checkpoint": Counter()}


def random_for(name: str) -> random.Random:
    return random.Random(f"{SEED}:{name}")


@dataclass
class Job:
    """One trainer's CLI command and tiny config; ``steps``: its length, checkpoints every 2 steps."""

    name: str
    command: list[str]
    config: dict
    steps: int

    def write(self, folder: Path, **changes) -> Path:
        path = folder / f"{self.name}.yaml"
        path.write_text(yaml.safe_dump({**self.config, **changes}))
        return path


@dataclass
class Outcome:
    returncode: int
    output: str

    @property
    def text(self) -> str:
        """The output with the console's line wrapping undone."""
        return " ".join(self.output.split())

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    weights: dict[str, torch.Tensor] = {}
    for shard in sorted((out / "model").glob("*.safetensors")):
        weights.update(load_file(shard))
    return weights


def assert_same_weights(a: Path, b: Path) -> None:
    expected, actual = final_weights(a), final_weights(b)
    assert expected and actual.keys() == expected.keys()
    different = [k for k in expected if not torch.equal(expected[k], actual[k])]
    assert not different, f"weights differ from the uninterrupted run: {different[:5]}"


def volatile(key: str) -> bool:
    """Metrics that measure the clock, not the run."""
    return key == "time" or "time" in key or key.endswith("_s") or "per_s" in key


def logged_rows(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not volatile(k)} for line in lines]


def checkpoint_tensors(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Every safetensors file under ``out/checkpoints`` by its path."""
    return {str(p.relative_to(out)): load_file(p) for p in sorted((out / "checkpoints").rglob("*.safetensors"))}


def non_finite_checkpoints(out: Path) -> list[str]:
    return [path for path, tensors in checkpoint_tensors(out).items()
            if any(t.is_floating_point() and not torch.isfinite(t).all() for t in tensors.values())]
