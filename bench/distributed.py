"""The RL step on Ray worker groups against one local process: where the extra time goes.

    .venv/bin/python bench/distributed.py                       # SmolLM2-135M GRPO, 3 repeats
    .venv/bin/python bench/distributed.py --model PATH --repeats 5 --variants local-1,ray-2

Each variant runs in a fresh process, alternating within every repeat so drift on the machine hits
all of them alike: ``local-1`` (everything in one process), ``ray-1`` (one Ray rank: the process
boundary alone) and ``ray-2`` (two ranks, FSDP2 over gloo, each rank one thread). Every process
builds the workers (timed apart), runs warm-up steps, then times the measured steps with the
controller's own per-phase clock. For Ray it also reads each worker-group call's time in the driver
against the time the slowest rank ran the method: the difference is dispatch, serialisation and
transfer. A last process times gloo's all-gather and reduce-scatter of the model's parameters on
two ranks, the collectives FSDP2 runs for every sharded forward and backward.

Prints a markdown table and writes it, with each process's JSON, to ``bench/out/distributed-<time>/``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULT = "BENCH_RESULT "


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--variants", default="local-1,ray-1,ray-2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="measured steps per process")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--prompts-per-step", type=int, default=4)
    parser.add_argument("--n", type=int, default=8, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # one variant, in this process
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- one variant (a child process)


def prompts_file(out: Path) -> Path:
    """Arithmetic prompts (the GRPO task of configs/grpo_arithmetic.yaml), written once."""
    path = out / "arithmetic" / "train.jsonl"
    if not path.is_file():
        subprocess.run([str(REPO / ".venv" / "bin" / "alignflow"), "data", "arithmetic", "--out", str(path.parent),
                        "--train", "400", "--test", "20", "--seed", "0", "--ops", "add:1-2,sub:1-2,mul:1",
                        "--template", "What is {question}? Reply with only the number."], check=True,
                       capture_output=True)
    return path


def run_variant(args: argparse.Namespace) -> dict:
    from rich.console import Console

    from alignflow.config import load_config
    from alignflow.config.rl import RLConfig
    from alignflow.models import load_tokenizer
    from alignflow.trainers.rl_controller import PromptSet, RLController, build_workers, load_prompt_sets
    from alignflow.trainers.run_setup import start_run
    from alignflow.workers.ray_group import RayWorkerGroup

    backend, world = args.worker.split("-")
    quiet = Console(quiet=True)
    steps = args.warmup + args.steps
    rows = args.prompts_per_step * args.n
    cfg = load_config(RLConfig, None, [
        f"model.name={args.model}", f"model.dtype={args.dtype}", f"data.train={prompts_file(args.out)}",
        "data.val_fraction=0", "data.max_prompt_length=96", f"output_dir={args.out / 'runs' / args.worker}",
        "reward_function=alignflow.tasks.arithmetic:exact_match", "algorithm.adv_estimator=grpo",
        "algorithm.kl_in_reward=false", "algorithm.kl_loss_coef=0.04", "algorithm.kl_estimator=k3",
        "algorithm.missing_eos_penalty=null", f"rollout.n={args.n}", f"rollout.max_new_tokens={args.max_new_tokens}",
        f"train.steps={steps}", f"train.prompts_per_step={args.prompts_per_step}", "train.ppo_epochs=1",
        f"train.mini_batch_size={rows}", f"train.micro_batch_size={rows // 2}", "train.actor_lr=1e-5",
        "train.schedule=constant", "train.eval_prompts=0", "resume=false",
        f"train.threads={2 // int(world) if backend == 'ray' else 2}",
        f"distributed.backend={backend}", f"distributed.world_size={world}",
        f"distributed.num_cpus_per_worker={2 / int(world)}",
    ])
    start_run(cfg, cfg.output_dir, seed=0, threads=cfg.train.threads)
    started = time.perf_counter()
    workers = build_workers(cfg)
    build_s = time.perf_counter() - started
    train_prompts, _ = load_prompt_sets(cfg, load_tokenizer(cfg.model.name), quiet)
    controller = RLController(cfg, workers, train_prompts, PromptSet(), console=quiet)
    groups = [g for g in (workers.policy, workers.reward, workers.critic) if isinstance(g, RayWorkerGroup)]
    measured, overheads = [], []
    for step in range(steps):
        for group in groups:
            group.timings.clear()
        metrics = controller.train_step()
        if step >= args.warmup:
            measured.append({k: v for k, v in metrics.items() if k.startswith("time/")})
            overheads.append(call_overheads(groups))
    workers.shutdown()
    return {"variant": args.worker, "build_s": build_s, "steps": measured, "overheads": overheads}


def call_overheads(groups) -> dict[str, float]:
    """Per worker method, the driver's time minus the slowest rank's own time (Ray groups)."""
    return {f"{group.role}.{method}": sum(wall - ran for wall, ran in timings)
            for group in groups for method, timings in group.timings.items()}


def collectives(args: argparse.Namespace) -> dict:
    """Seconds for gloo's all-gather and reduce-scatter of the model's parameters on 2 ranks."""
    import torch.multiprocessing as mp

    from alignflow.config.schema import ModelConfig
    from alignflow.models import load_policy

    model, _ = load_policy(ModelConfig(name=args.model))
    numel = sum(p.numel() for p in model.parameters())
    del model
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_time_collectives, args=(numel, queue), nprocs=2)
    result = queue.get()
    result["parameters"] = numel
    return result


def _time_collectives(rank: int, numel: int, queue) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:29571", rank=rank, world_size=2)
    out = {}
    for dtype in (torch.bfloat16, torch.float32):
        shard = torch.ones(numel // 2, dtype=dtype)
        full = torch.empty(numel // 2 * 2, dtype=dtype)
        times = {"all_gather": [], "reduce_scatter": []}
        for _ in range(4):
            dist.barrier()
            started = time.perf_counter()
            dist.all_gather_into_tensor(full, shard)
            times["all_gather"].append(time.perf_counter() - started)
            dist.barrier()
            started = time.perf_counter()
            dist.reduce_scatter_tensor(shard, full)
            times["reduce_scatter"].append(time.perf_counter() - started)
        for name, values in times.items():
            out[f"{name}_{str(dtype).split('.')[-1]}_s"] = statistics.median(values[1:])
    if rank == 0:
        queue.put(out)
    dist.destroy_process_group()


# ----------------------------------------------------------------------------- the driver


def child(args: argparse.Namespace, variant: str, log: Path) -> dict:
    command = [sys.executable, __file__, "--worker", variant, "--out", str(args.out)] + [
        f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("worker", "out", "variants")]
    env = {**os.environ, "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    log.write_text(proc.stdout + proc.stderr)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode or not lines:
        raise RuntimeError(f"{variant} failed (exit {proc.returncode}); see {log}")
    return json.loads(lines[-1][len(RESULT):])


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def table(results: dict[str, list[dict]], comm: dict) -> str:
    variants = list(results)
    base = statistics.median(s["time/step_s"] for r in results[variants[0]] for s in r["steps"])
    lines = ["| variant | build workers s | step s, median (min-max) | vs " + variants[0] + " | generate | score | "
             "logprobs | actor update | weight sync | Ray call overhead s/step |", "|" + "---|" * 10]
    for variant in variants:
        runs = results[variant]
        steps = [s for r in runs for s in r["steps"]]

        def phase(key: str, steps=steps) -> str:
            return f"{statistics.median(s.get(f'time/{key}_s', 0.0) for s in steps):.2f}"

        overhead = [sum(o.values()) for r in runs for o in r["overheads"]]
        step_times = [s["time/step_s"] for s in steps]
        lines.append(f"| {variant} | {spread([r['build_s'] for r in runs])} | {spread(step_times)} | "
                     f"{statistics.median(step_times) / base:.2f}x | {phase('generate')} | {phase('score')} | "
                     f"{phase('logprobs')} | {phase('actor_update')} | {phase('sync_weights')} | "
                     f"{statistics.median(overhead) if overhead else 0.0:.3f} |")
    if comm:
        lines.append("")
        lines.append(f"gloo on 2 ranks, {comm['parameters'] / 1e6:.1f}M parameters: " + ", ".join(
            f"{k[:-2]} {v:.3f} s" for k, v in comm.items() if k.endswith("_s")))
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    if args.worker:
        print(RESULT + json.dumps(collectives(args) if args.worker == "collectives" else run_variant(args)), flush=True)
        return
    args.out = args.out or REPO / "bench" / "out" / f"distributed-{time.strftime('%Y%m%d-%H%M%S')}"
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    variants = args.variants.split(",")
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for repeat in range(args.repeats):
        for variant in variants if repeat % 2 == 0 else variants[::-1]:
            print(f"repeat {repeat + 1}/{args.repeats}: {variant}", flush=True)
            results[variant].append(child(args, variant, args.out / "logs" / f"{variant}-{repeat}.log"))
    comm = child(args, "collectives", args.out / "logs" / "collectives.log")
    (args.out / "raw.json").write_text(json.dumps({"results": results, "collectives": comm}, indent=1))
    report = table(results, comm)
    (args.out / "results.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
