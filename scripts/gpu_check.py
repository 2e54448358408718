"""The GPU check (issue 17): GRPO of SmolLM2-135M-Instruct on the arithmetic task on CUDA with the
HF rollout engine, then tokens/s and the fraction of the GPU's bf16 peak.

Where it runs: with Ray and >= 2 GPUs, 2 Ray ranks training with FSDP2 over nccl; with Ray and one
GPU, one Ray rank; without Ray, the local backend (one rank, this process). FSDP2 shards only with
>= 2 ranks (nccl cannot put two ranks on one GPU), so on one GPU the actor trains unsharded.

``--cpu-smoke`` runs the same path on the CPU with a tiny random Llama, to check this script where
there is no GPU (its figures mean nothing).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0,
                    "A10": 125.0, "RTX 4090": 165.0}
# Model FLOPs per token and parameter of one RL step: 2 to sample, 2 for the reference log-probs,
# 6 for the update's forward and backward (GRPO with one update: no separate old-log-prob pass).
FLOPS_PER_TOKEN_PARAM = 2 + 2 + 6


def peak_tflops(device_name: str) -> float | None:
    """The bf16 peak of the first table entry named in ``device_name`` (longest names first)."""
    for key in sorted(BF16_PEAK_TFLOPS, key=len, reverse=True):
        if key in device_name:
            return BF16_PEAK_TFLOPS[key]
    return None


def placement(gpus: int, has_ray: bool) -> tuple[list[str], str]:
    """Config overrides for the ranks this machine allows, and a line saying what runs."""
    if has_ray and gpus >= 2:
        return (["distributed.backend=ray", "distributed.world_size=2", "distributed.num_gpus_per_worker=1"],
                "2 Ray ranks, FSDP2 over nccl")
    if has_ray and gpus == 1:
        return (["distributed.backend=ray", "distributed.world_size=1", "distributed.num_gpus_per_worker=1"],
                "1 Ray rank on 1 GPU (FSDP2 shards only with >= 2 ranks: the actor trains unsharded)")
    return ([], "local backend, 1 rank" + (" (no Ray: several ranks need it)" if gpus else " on the CPU"))


def run_config(args: argparse.Namespace, work: Path, model: str) -> list[str]:
    from alignflow.tasks.arithmetic import write_arithmetic

    write_arithmetic(work / "data", train=max(64, args.steps * args.prompts), test=0, seed=0)
    return [f"model.name={model}", f"model.dtype={'fp32' if args.cpu_smoke else 'bf16'}",
            f"data.train={work / 'data' / 'train.jsonl'}", "data.val_fraction=0", "data.max_prompt_length=96",
            "reward_function=alignflow.tasks.arithmetic:exact_match", f"output_dir={work / 'run'}",
            f"rollout.max_new_tokens={args.max_new_tokens}", "rollout.temperature=0.7", f"rollout.n={args.n}",
            "algorithm.adv_estimator=grpo", "algorithm.kl_in_reward=false", "algorithm.kl_loss_coef=0.04",
            "algorithm.kl_estimator=k3", "algorithm.missing_eos_penalty=null",
            f"train.steps={args.steps}", f"train.prompts_per_step={args.prompts}", "train.ppo_epochs=1",
            f"train.mini_batch_size={args.prompts * args.n}", f"train.micro_batch_size={args.micro}",
            "train.actor_lr=1e-5", "train.schedule=constant", "train.eval_prompts=0", "train.save_every=0"]


def parameter_count(model_dir: Path) -> int:
    """Parameters that cost FLOPs per token: all of them, less an input embedding not tied to the head."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters())  # a tied matrix is counted once
    embedding = model.get_input_embeddings().weight
    return total if embedding is model.get_output_embeddings().weight else total - embedding.numel()


def report(history: list[dict], model_dir: Path, mean_prompt_tokens: float, rows: int, device_name: str) -> dict:
    """Figures over the steps after the first, which pays for warm-up (kernels, allocator)."""
    timed = history[1:] or history
    seconds = sum(m["time/step_s"] for m in timed)
    generated = sum(m["response/length_mean"] * rows for m in timed)
    tokens = generated + mean_prompt_tokens * rows * len(timed)
    params = parameter_count(model_dir)
    achieved = FLOPS_PER_TOKEN_PARAM * params * tokens / seconds
    peak = peak_tflops(device_name)
    return {"device": device_name, "steps_timed": len(timed), "parameters": params,
            "generated_tokens_per_s": generated / seconds, "tokens_per_s": tokens / seconds,
            "generate_s_per_step": sum(m.get("time/generate_s", 0.0) for m in timed) / len(timed),
            "achieved_tflops": achieved / 1e12,
            "fraction_of_bf16_peak": None if peak is None else achieved / (peak * 1e12), "bf16_peak_tflops": peak}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny random Llama on the CPU, 2 steps")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="alias, folder or hub name")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=16, help="prompts per step")
    parser.add_argument("--n", type=int, default=8, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--micro", type=int, default=32, help="micro-batch rows")
    args = parser.parse_args()
    if args.cpu_smoke:
        args.steps, args.prompts, args.n, args.max_new_tokens, args.micro = 2, 2, 2, 8, 2
    elif not torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA device (use --cpu-smoke to check the script on a CPU)", file=sys.stderr)
        return 2

    from rich.console import Console

    from alignflow.config import load_config
    from alignflow.config.rl import RLConfig
    from alignflow.models import load_tokenizer
    from alignflow.trainers.rl_controller import load_prompt_sets, train_rl

    gpus = 0 if args.cpu_smoke else torch.cuda.device_count()
    overrides, where = placement(gpus, importlib.util.find_spec("ray") is not None)
    device_name = "CPU" if args.cpu_smoke else torch.cuda.get_device_name(0)
    with tempfile.TemporaryDirectory(prefix="alignflow-gpu-check-") as tmp:
        work = Path(tmp)
        model = args.model
        if args.cpu_smoke:
            sys.path.insert(0, str(REPO))
            from tests.tiny_models import build_tiny_llama

            model = str(build_tiny_llama(work / "tiny-llama"))
        cfg = load_config(RLConfig, None, [*run_config(args, work, model), *overrides])
        print(f"gpu_check: {device_name} x{max(gpus, 1)}, {where}; {args.steps} GRPO steps of {model}, "
              f"{args.prompts} prompts x {args.n} samples, HF rollout engine", flush=True)
        prompts = load_prompt_sets(cfg, load_tokenizer(cfg.model.name), Console(quiet=True))[0].token_ids
        result = train_rl(cfg)
        figures = report(result.history, Path(result.model_dir), sum(map(len, prompts)) / len(prompts),
                         args.prompts * args.n, device_name)
    print(json.dumps({"placement": where, **figures}, indent=2))
    peak = figures["fraction_of_bf16_peak"]
    print(f"gpu_check: {figures['tokens_per_s']:.0f} tokens/s (prompt + response; "
          f"{figures['generated_tokens_per_s']:.0f} generated/s), "
          f"{figures['achieved_tflops']:.2f} TFLOP/s = "
          + (f"{100 * peak:.2f}% of the {figures['bf16_peak_tflops']:.0f} TFLOP/s bf16 peak" if peak is not None
             else "(no bf16 peak known for this device)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
