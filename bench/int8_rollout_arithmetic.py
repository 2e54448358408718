"""GRPO on the arithmetic task with int8 rollouts (+ truncated IS) against bf16 rollouts: same
seeds, held-out accuracy per step, one PNG.

    python bench/int8_rollout_arithmetic.py OUT [--steps 20] [--eval-every 5] [--eval-prompts 100] [--set k=v ...]

Writes the arithmetic prompts to OUT/data (unless there), runs ``alignflow rl
configs/grpo_arithmetic.yaml`` into OUT/bf16 and OUT/int8 (``rollout.weights=int8
rollout.is_cap=2``), and plots each run's eval ``reward_mean`` (greedy exact-match accuracy) to
OUT/accuracy.png. A finished run is not redone (resume); extra ``--set`` overrides go to both runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = {"bf16": ["rollout.weights=bf16"], "int8": ["rollout.weights=int8", "rollout.is_cap=2"]}


def alignflow(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "alignflow", *args], check=True, cwd=ROOT)


def eval_accuracy(run_dir: Path) -> tuple[list[int], list[float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("split") == "eval"]
    key = next(k for k in ("reward_mean", "eval/reward_mean") if k in rows[0])
    return [r["step"] for r in rows], [r[key] for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--eval-prompts", type=int, default=100)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    out = args.out.resolve()
    data = out / "data"
    if not (data / "train.jsonl").exists():  # the command in configs/grpo_arithmetic.yaml's header
        alignflow("data", "arithmetic", "--out", str(data), "--train", "3000", "--test", "200", "--seed", "0",
                  "--ops", "add:1-2,sub:1-2,mul:1", "--template", "What is {question}? Reply with only the number.")
    common = [f"data.train={data / 'train.jsonl'}", f"data.validation={data / 'test.jsonl'}",
              f"train.steps={args.steps}", f"train.eval_every={args.eval_every}",
              f"train.eval_prompts={args.eval_prompts}", *args.overrides]
    for name, settings in RUNS.items():
        sets = [f"output_dir={out / name}", *common, *settings]
        alignflow("rl", "configs/grpo_arithmetic.yaml", *[a for s in sets for a in ("--set", s)])

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in RUNS:
        steps, accuracy = eval_accuracy(out / name)
        ax.plot(steps, accuracy, marker="o", label=f"{name} rollouts")
        print(f"{name}: " + ", ".join(f"step {s} {a:.1%}" for s, a in zip(steps, accuracy)))
    ax.set(xlabel="step", ylabel="held-out accuracy (greedy)", title="GRPO arithmetic, SmolLM2-135M")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=120)
    print(f"wrote {out / 'accuracy.png'}")


if __name__ == "__main__":
    main()
