"""alignflow vs TRL, side by side: one command sets up, runs every case in both and writes a table.

    .venv/bin/python bench/run.py            # or: make bench
    .venv/bin/python bench/run.py --smoke    # seconds per case: checks that every script works

Steps: (1) create ``bench/.venv-trl`` (torch pinned like alignflow's, TRL from
``bench/requirements-trl.txt``) unless it is already there; (2) write the shared data once
(``bench/cases/prepare_data.py``); (3) measure the matmul peak (``bench/cases/peak.py``); (4) for
each case and repeat, run alignflow's and the peer's variants alternately, each in its own process
with the same thread count (a1, t1, a2, t2, ...); (5) print and write a markdown table of medians,
spreads and ratios (best variant against best variant) and ``results.json`` with every repeat's
figures. See bench/README.md for what every column means. Standard library only (``cases/flops.py``
is standard library too).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CASES_DIR = BENCH / "cases"
sys.path.insert(0, str(CASES_DIR))
import flops  # noqa: E402  (bench/cases/flops.py: the FLOP count, standard library only)

TRL_VENV = BENCH / ".venv-trl"
TRL_REQUIREMENTS = BENCH / "requirements-trl.txt"
RESULT_PREFIX = "BENCH_RESULT "
MIB = 1024  # ru_maxrss is in KiB on Linux

# The variants each side runs by default, so that "best variant against best variant" gives
# neither side more draws and no variant repeats another. Keyed by whether the CPU runs bf16
# natively (AVX512-BF16 or AMX; alignflow.runtime.native_bf16):
# - native: alignflow's default (bf16 autocast, no checkpointing), train.compile, fp32; TRL's own
#   defaults (bf16 + gradient checkpointing), bf16 without checkpointing, and torch_compile on that.
# - emulated (AVX2): alignflow runs bf16 as fp32, so its fp32 variant would repeat its default and is
#   left out; TRL's bf16 (emulated, several times slower) is replaced by fp32, and its compile runs
#   on fp32. TRL then has one variant more than alignflow (its default, emulated bf16).
# HF generate: fp32 and bf16 weights, and (native bf16) bf16 with the static cache and compile HF
# documents for generate. train.compile does not touch alignflow's generation (no compile there).
DEFAULT_VARIANTS = {
    True: {"alignflow": ["default", "compile", "fp32"], "trl": ["default", "bf16", "compile"],
           "hf": ["default", "bf16", "compile"]},
    False: {"alignflow": ["default", "compile"], "trl": ["default", "fp32", "compile"], "hf": ["default", "bf16"]},
}
# Per case: rows per step (batch; RL: prompts x group), measured steps at --scale 1, the peer case
# and how the peer runs, and variants added to DEFAULT_VARIANTS. Smoke sizes are tiny; the numbers
# they print mean nothing.
CASES: dict[str, dict] = {
    # SFT adds TRL's padding_free (no checkpointing, the CPU's native precision; TRL's counterpart of
    # alignflow's packing, documented for FlashAttention only: transformers' SDPA path handles it)
    # and, one for one, alignflow's padded (packing off).
    "sft": dict(batch=8, steps=2, smoke=dict(batch=2), extra_variants=dict(alignflow=["padded"], trl=["padding_free"])),
    "rm": dict(batch=4, steps=2, smoke=dict(batch=1)),
    "dpo": dict(batch=4, steps=2, smoke=dict(batch=1)),
    "generate": dict(batch=8, steps=3, smoke=dict(batch=2), peer="hf"),
    "grpo": dict(batch=2, group=4, steps=2, smoke=dict(batch=1, group=2)),
    "rloo": dict(batch=2, group=4, steps=2, smoke=dict(batch=1, group=2)),
    "ppo": dict(batch=8, group=1, steps=2, smoke=dict(batch=2, group=1), peer=None, compare_with="rloo"),
}
# The rate each case is compared on (the headline): samples/s (examples, pairs, prompt-samples,
# sequences); PPO against TRL's RLOO: generated tokens/s (rows and tokens per step differ).
HEADLINE = {"ppo": "gen_tokens_per_s"}
# The RL controller's phases (alignflow.trainers.rl_controller.RLController.train_step), in step order.
PHASES = ["time/generate_s", "time/score_s", "time/logprobs_s", "time/values_s", "time/critic_update_s",
          "time/actor_update_s"]
LEARNING_RATES = {"sft": 2e-5, "rm": 1e-5, "dpo": 1e-6, "grpo": 1e-6, "rloo": 1e-6, "ppo": 1e-6, "generate": 1e-6}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="alignflow vs TRL benchmark (see bench/README.md)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, 1 warm-up + 1 step, 1 repeat: checks the scripts")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma list from {','.join(CASES)}")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies the measured steps of every case")
    p.add_argument("--repeats", type=int, default=None, help="processes per framework variant (default 5; smoke 1)")
    p.add_argument("--threads", type=int, default=None, help="torch threads in every process (default 2; smoke 1)")
    p.add_argument("--warmup", type=int, default=None, help="steps before the clock starts (default 2: a compiled "
                   "model recompiles for dynamic shapes at its second distinct shape; smoke 1)")
    p.add_argument("--max-length", type=int, default=None, help="tokens per sequence (default 256; smoke 128)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="tokens generated (default 64; smoke 8)")
    p.add_argument("--alignflow-variants", default=None,
                   help="comma list for every case (default per case: default,compile,fp32; SFT adds padded; "
                        "generate: default,fp32): default (bf16 autocast; RL rollouts from a bf16 weight copy), "
                        "fp32, compile (training and RL), padded (SFT/RM/DPO), autocast (generate/RL)")
    p.add_argument("--trl-variants", default=None,
                   help="comma list for every TRL case (default: default,bf16,compile; SFT adds padding_free): "
                        "default (TRL's: bf16 + gradient checkpointing), bf16 (no checkpointing), compile "
                        "(bf16 + torch_compile), padding_free (SFT: bf16 + padding_free), fp32")
    p.add_argument("--hf-variants", default=None,
                   help="plain HF generate (default: default,bf16, and compile on native bf16): default (fp32 "
                        "weights), bf16 (bf16 weights), compile (bf16, static cache, generate's torch.compile), "
                        "autocast (fp32 weights under bf16 autocast: the pre-issue-19 peer)")
    p.add_argument("--shuffle-seed", type=int, default=0, help="the one shuffle of the data both sides share")
    p.add_argument("--model", default=None, help="HF folder (default: alignflow's converted smollm2-135m-instruct)")
    p.add_argument("--source", default=str(ROOT.parent / "shared/data/hh-rlhf/helpful-base.jsonl.gz"))
    p.add_argument("--out", default=str(BENCH / "out"), help="results folder (a time-stamped run folder inside)")
    p.add_argument("--resume", default=None, metavar="RUN_FOLDER",
                   help="continue a stopped run in its folder: the runs in its raw.jsonl are kept, the rest run; "
                        "the same flags as the stopped run (checked against its results.json)")
    p.add_argument("--timeout", type=int, default=None, help="seconds per process (default 1800; smoke 180)")
    p.add_argument("--skip-setup", action="store_true", help="do not create or check bench/.venv-trl")
    p.add_argument("--alignflow-python", default=str(ROOT / ".venv/bin/python"))
    args = p.parse_args()
    smoke = args.smoke
    args.repeats = args.repeats or (1 if smoke else 5)
    args.threads = args.threads or (1 if smoke else 2)
    args.max_length = args.max_length or (128 if smoke else 256)
    args.max_new_tokens = args.max_new_tokens or (8 if smoke else 64)
    args.timeout = args.timeout or (180 if smoke else 1800)
    args.warmup = args.warmup if args.warmup is not None else (1 if smoke else 2)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")
    if args.warmup < 1:
        p.error("--warmup must be >= 1 (the clock starts at the end of a warm-up step)")
    return args


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


log_once = functools.cache(log)  # for notes that every rebuild of the plan would repeat


def run_checked(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    log("$ " + " ".join(map(str, cmd)))
    return subprocess.run(cmd, check=True, **kwargs)


# ----------------------------------------------------------------------------- setup


def torch_pin() -> str:
    """The torch pin of the Makefile (``TORCH_PIN ?= torch==...``), so both venvs run the same build."""
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.replace(" ", "").startswith("TORCH_PIN?="):
            return line.split("=", 1)[1].strip().lstrip("=").strip() or "torch==2.13.0"
    return "torch==2.13.0"


def setup_trl_venv() -> Path:
    """``bench/.venv-trl``: torch pinned first (a CPU build here), then the pinned TRL stack."""
    python = TRL_VENV / "bin/python"
    marker = TRL_VENV / ".bench-installed"
    wanted = torch_pin() + "\n" + TRL_REQUIREMENTS.read_text()
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    log(f"setting up {TRL_VENV} ({torch_pin()}, {TRL_REQUIREMENTS.name})")
    if not python.exists():
        run_checked([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(TRL_VENV)])
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    run_checked([*pip, "--upgrade", "pip"])
    run_checked([*pip, torch_pin()])
    run_checked([*pip, "-r", str(TRL_REQUIREMENTS)])
    marker.write_text(wanted)
    return python


def native_bf16(alignflow_python: str) -> bool:
    """Whether this CPU runs bf16 natively, by alignflow's own test (``alignflow.runtime.native_bf16``:
    AVX512-BF16 or AMX; ``ALIGNFLOW_CPU_BF16=1`` forces it). The TRL scripts make the same test."""
    code = "from alignflow.runtime import native_bf16; print(int(native_bf16('cpu')))"
    out = subprocess.run([alignflow_python, "-c", code], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1] == "1"


def default_model(alignflow_python: str) -> str:
    """alignflow's smollm2-135m-instruct alias as a plain HF folder (converted from GGUF once)."""
    code = ("from alignflow.models.loading import materialize; from alignflow.models.registry import resolve_model; "
            "print(materialize(resolve_model('smollm2-135m-instruct')).path)")
    out = subprocess.run([alignflow_python, "-c", code], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def prepare_data(args: argparse.Namespace, env: dict) -> Path:
    rows = 2 * max(spec["batch"] * spec.get("group", 1) * (args.warmup + steps_of(args, case))
                   for case, spec in sizes(args).items())
    rows = max(rows, 64)
    prompt_budget = args.max_length - args.max_new_tokens if args.max_length > 2 * args.max_new_tokens else \
        args.max_length // 2
    # -S: the shared shuffle's seed; v2: files written shuffled, with meta.json's flop_dims.
    folder = BENCH / ".data" / f"L{args.max_length}-P{prompt_budget}-N{rows}-S{args.shuffle_seed}-v2"
    if not (folder / "meta.json").is_file():
        run_checked([args.alignflow_python, str(CASES_DIR / "prepare_data.py"), "--source", args.source,
                     "--model", args.model, "--out", str(folder), "--max-length", str(args.max_length),
                     "--max-prompt-length", str(prompt_budget), "--rows", str(rows),
                     "--shuffle-seed", str(args.shuffle_seed)], env=env, stdout=subprocess.DEVNULL)
    return folder


def sizes(args: argparse.Namespace) -> dict[str, dict]:
    out = {}
    for case in args.cases:
        spec = {k: v for k, v in CASES[case].items() if k != "smoke"}
        if args.smoke:
            spec.update(CASES[case]["smoke"])
        out[case] = spec
    return out


def steps_of(args: argparse.Namespace, case: str) -> int:
    return 1 if args.smoke else max(1, round(CASES[case]["steps"] * args.scale))


def child_env(threads: int) -> dict:
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(threads)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               WANDB_DISABLED="true", HF_HUB_DISABLE_TELEMETRY="1", PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)
    return env


# ----------------------------------------------------------------------------- running one process


def run_process(cmd: list[str], log_path: Path, env: dict, timeout: int) -> tuple[int, int, float]:
    """Run ``cmd`` in its own process group, output to ``log_path``; returns (exit code, peak RSS KiB
    of that child from ``wait4``, wall seconds). A process past ``timeout`` is killed (its group)."""
    started = time.perf_counter()
    with open(log_path, "w") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                return proc.returncode, usage.ru_maxrss, time.perf_counter() - started
            if time.perf_counter() - started > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = -9
                fh.write(f"\n[bench] killed after {timeout}s\n")
                return 124, usage.ru_maxrss, time.perf_counter() - started
            time.sleep(0.2)


def read_result(log_path: Path) -> dict | None:
    result = None
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
    return result


def tail(log_path: Path, lines: int = 12) -> str:
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


# ----------------------------------------------------------------------------- the plan


def variants_of(args: argparse.Namespace, case: str, framework: str) -> list[str]:
    """The variants ``framework`` runs in ``case``: the flag's list if given, else the case's default."""
    flag = {"alignflow": args.alignflow_variants, "trl": args.trl_variants, "hf": args.hf_variants}[framework]
    if flag is None:
        extra = CASES[case].get("extra_variants", {}).get(framework, [])
        chosen = DEFAULT_VARIANTS[args.native_bf16][framework] + extra
    else:
        chosen = list(dict.fromkeys(v.strip() for v in flag.split(",") if v.strip()))
    if case == "generate" and framework == "alignflow" and "compile" in chosen:
        if flag is not None:
            log_once("generate: skipping alignflow's compile variant (train.compile does not touch generation)")
        chosen.remove("compile")
    return chosen


def plan(args: argparse.Namespace) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """Per case, the (framework, variant, script) runs of one repeat, alignflow first."""
    out = []
    for case in args.cases:
        peer = CASES[case].get("peer", "trl")
        runs = [("alignflow", v, f"alignflow_{case}.py") for v in variants_of(args, case, "alignflow")]
        if peer == "trl":
            runs += [("trl", v, f"trl_{case}.py") for v in variants_of(args, case, "trl")]
        elif peer == "hf":
            runs += [("hf", v, "hf_generate.py") for v in variants_of(args, case, "hf")]
        out.append((case, runs))
    return out


def interleave(runs: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """alignflow and peer processes alternate within every repeat: a, t1, t2 (or a1, t1, a2, t2)."""
    af = [r for r in runs if r[0] == "alignflow"]
    peers = [r for r in runs if r[0] != "alignflow"]
    order = []
    for i in range(max(len(af), len(peers))):
        order += af[i : i + 1] + peers[i : i + 1]
    return order


# ----------------------------------------------------------------------------- aggregation


RATES = ("samples_per_s", "tokens_per_s", "gen_tokens_per_s", "flops_per_s", "rss_mib", "process_rss_mib")


def derive(result: dict, dims: dict) -> dict:
    """Rates of one run: samples/s, non-padding tokens/s, generated tokens/s, model FLOP/s (from the
    run's counted tokens, attention pairs and LM-head rows: ``flops.model_flops``), peak RSS."""
    s = result["seconds"]
    tokens = result[result.get("tokens_key", "tokens")]
    return {"samples_per_s": result["samples"] / s, "tokens_per_s": tokens / s,
            "gen_tokens_per_s": result["generated_tokens"] / s if result["generated_tokens"] else None,
            "flops_per_s": flops.model_flops(dims, result["flop_counts"]) / s,
            "rss_mib": result["maxrss_kib"] / MIB, "process_rss_mib": result["process_maxrss_kib"] / MIB}


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values: list) -> dict:
    """Median, min, max and every value (in repeat order) of one rate over the repeats."""
    present = [v for v in values if v is not None]
    if not present:
        return {"median": None, "min": None, "max": None, "each": values}
    return {"median": statistics.median(present), "min": min(present), "max": max(present), "each": values}


def summarize(results: list[dict], meta: dict) -> dict:
    """(case, framework, variant) -> per rate: median, min, max and each repeat's figure."""
    dims = meta["flop_dims"]
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["case"], r["framework"], r["variant"]), []).append(r)
    summary = {}
    for key, runs in groups.items():
        runs = sorted(runs, key=lambda r: r["repeat"])
        rates = [derive(r, dims) for r in runs]
        summary[key] = {name: spread([x[name] for x in rates]) for name in RATES}
        summary[key].update(runs=len(runs), repeats=[r["repeat"] for r in runs],
                            seconds=spread([r["seconds"] for r in runs]), steps=runs[0]["steps"],
                            settings=runs[0]["settings"],
                            phases=median_phases(runs))
    return summary


def median_phases(runs: list[dict]) -> dict:
    """Per phase, the median seconds of a step over the runs, with 'other' (the step's rest) taken per
    run before the median, so it cannot turn negative when the phases' medians come from different runs."""
    per_run = [{**r["phases"], "other": r["phases"]["time/step_s"]
                - sum(s for p, s in r["phases"].items() if p in PHASES)} for r in runs if r.get("phases")]
    return {p: median([phases.get(p) for phases in per_run]) for p in per_run[0]} if per_run else {}


def headline(case: str) -> str:
    return HEADLINE.get(case, "samples_per_s")


def best_of(summary: dict, case: str, side: str) -> tuple[tuple | None, int]:
    """The best variant of one side (by median samples/s) and how many variants that side ran.
    ``side``: ``alignflow`` or ``peer`` (TRL or HF; PPO's peer is TRL's RLOO)."""
    compare = case if side == "alignflow" else CASES[case].get("compare_with", case)
    keys = [k for k in summary if k[0] == compare and (k[1] == "alignflow") == (side == "alignflow")]
    if not keys:
        return None, 0
    return max(keys, key=lambda k: summary[k]["samples_per_s"]["median"] or 0.0), len(keys)


def fmt(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def ratio_stats(a: dict, p: dict) -> dict | None:
    """alignflow / peer: the ratio of the medians, and its spread over the repeats: the lowest
    (alignflow's slowest repeat over the peer's fastest) and the highest (the reverse)."""
    if a["median"] is None or not p["median"] or not p["min"] or not p["max"]:
        return None
    return {"median": a["median"] / p["median"], "min": a["min"] / p["max"], "max": a["max"] / p["min"]}


def ratio_cell(r: dict | None) -> str:
    return f"{r['median']:.2f}x ({r['min']:.2f}–{r['max']:.2f})" if r else "–"


def comparisons(args, summary: dict) -> list[dict]:
    """Per case: each side's best variant, the variants tried and the ratios (with spreads)."""
    out = []
    for case in args.cases:
        a_key, a_tried = best_of(summary, case, "alignflow")
        p_key, p_tried = best_of(summary, case, "peer")
        row = {"case": case, "headline": headline(case), "alignflow": a_key and a_key[2], "alignflow_tried": a_tried,
               "peer": p_key and f"{p_key[1]}/{p_key[2]}" + (f" ({p_key[0]})" if p_key[0] != case else ""),
               "peer_tried": p_tried, "ratios": {}}
        if a_key and p_key:
            row["ratios"] = {name: ratio_stats(summary[a_key][name], summary[p_key][name]) for name in RATES}
        row["keys"] = (a_key, p_key)
        out.append(row)
    return out


def markdown(args, summary: dict, peaks: list[dict], meta: dict, header: dict, failures: list[str]) -> str:
    bf16 = max(p["bf16_flops"] for p in peaks)

    def flops_cell(stats: dict) -> str:
        f = stats["median"]
        return "–" if f is None else f"{f / 1e9:.1f} ({100 * f / bf16:.0f}%)"

    def value(stats: dict, digits: int = 1) -> str:
        return fmt(stats["median"], digits)

    dims = meta["flop_dims"]
    lines = [f"# alignflow vs TRL benchmark{' (SMOKE: sizes too small to mean anything)' if args.smoke else ''}", ""]
    lines += [f"- {k}: {v}" for k, v in header.items()]
    each = ", ".join(f"{p['when']} {p['fp32_flops'] / 1e9:.1f} / {p['bf16_flops'] / 1e9:.1f}" for p in peaks)
    lines += [f"- matmul peak ({peaks[0]['n']}x{peaks[0]['n']} torch.mm, {peaks[0]['threads']} threads, best of the "
              f"{len(peaks)} measurements): bf16 {bf16 / 1e9:.1f} GFLOP/s, the FLOP fractions' denominator "
              f"(fp32 / bf16 at {each})",
              f"- FLOP count (bench/cases/flops.py): body {dims['params_body']:,} MACs a token, attention "
              f"2 x {dims['layers']} layers x {dims['attention_dim']} a (query, key) pair, LM head "
              f"{dims['hidden_size']} x {dims['vocab_size']:,} a row where it runs; 2 FLOPs a MAC forward, 4 "
              f"backward", ""]
    lines += ["## Medians: alignflow's best variant vs the peer's best variant", "",
              "Each side's best variant is the one with the highest median samples/s; 'of n' is how many variants "
              "that side ran. Cells are medians over repeats; a ratio is alignflow / peer (above 1: alignflow is "
              "faster, or uses more memory for RSS), with its spread over the repeats in brackets (alignflow's "
              "slowest repeat / the peer's fastest – alignflow's fastest / the peer's slowest). GFLOP/s: counted "
              "model FLOP/s (% of the bf16 matmul peak).", "",
              "| case | alignflow | peer | samples/s a | samples/s p | ratio | tokens/s a | tokens/s p | ratio "
              "| gen tok/s a | gen tok/s p | ratio | peak RSS MiB a | p | ratio | GFLOP/s a | GFLOP/s p |",
              "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for row in comparisons(args, summary):
        case = row["case"]
        a_key, p_key = row["keys"]
        if a_key is None:
            lines.append(f"| {case} | failed | | | | | | | | | | | | | | | |")
            continue
        a = summary[a_key]
        p = summary[p_key] if p_key else None
        r = row["ratios"]
        peer = f"{row['peer']} (of {row['peer_tried']})" if p_key else "–"

        def cells(name: str, digits: int = 1) -> str:
            return (f"{value(a[name], digits)} | {value(p[name], digits) if p else '–'} | "
                    f"{ratio_cell(r.get(name)) if p else '–'}")

        lines.append(f"| {case} | {row['alignflow']} (of {row['alignflow_tried']}) | {peer} | "
                     f"{cells('samples_per_s', 3)} | {cells('tokens_per_s')} | {cells('gen_tokens_per_s')} | "
                     f"{cells('rss_mib', 0)} | {flops_cell(a['flops_per_s'])} | "
                     f"{flops_cell(p['flops_per_s']) if p else '–'} |")
    if "ppo" in args.cases:
        lines += ["", "PPO has no TRL counterpart (TRL removed its PPO trainer); its peer is TRL's RLOO and the "
                  "ratio to read is generated tokens/s (rows and tokens per step differ)."]
    lines += ["", "## Every variant", "",
              "Medians, then each repeat's figure in repeat order.", "",
              "| case | framework | variant | runs | steps | median s | samples/s (each run) | tokens/s (each run) "
              "| gen tok/s | peak RSS MiB | whole-process RSS MiB | GFLOP/s (% bf16 peak) | settings |",
              "|---|---|---|--:|--:|--:|---|---|--:|--:|--:|--:|---|"]
    for key in sorted(summary, key=lambda k: (args.cases.index(k[0]), k[1] != "alignflow", k[1], k[2])):
        row = summary[key]

        def with_each(stats: dict, digits: int) -> str:
            return f"{fmt(stats['median'], digits)} ({', '.join(fmt(x, digits) for x in stats['each'])})"

        st = row["settings"]
        brief = ", ".join(f"{k}={st[k]}" for k in ("dtype", "bf16", "gradient_checkpointing", "torch_compile",
                                                      "padding_free", "packing", "weights", "engine_weights",
                                                      "autocast_bf16", "batch", "n", "num_generations") if k in st)
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {row['runs']} | {row['steps']} | "
                     f"{fmt(row['seconds']['median'], 2)} | {with_each(row['samples_per_s'], 3)} | "
                     f"{with_each(row['tokens_per_s'], 1)} | {value(row['gen_tokens_per_s'])} | "
                     f"{value(row['rss_mib'], 0)} | {value(row['process_rss_mib'], 0)} | "
                     f"{flops_cell(row['flops_per_s'])} | {brief} |")
    lines += phase_table(summary, args.cases)
    if failures:
        lines += ["", "## Failures", ""] + [f"- {f}" for f in failures]
    return "\n".join(lines) + "\n"


def results_json(args, summary: dict, peaks: list[dict], meta: dict, header: dict, failures: list[str]) -> dict:
    """What the table shows, as data: every variant's rates (median, min, max, each repeat) and the
    best-against-best comparisons with their spreads."""
    return {
        "header": header, "peaks": peaks, "flop_dims": meta["flop_dims"], "failures": failures,
        "variants": [{"case": k[0], "framework": k[1], "variant": k[2], **v} for k, v in summary.items()],
        "comparisons": [{k: v for k, v in row.items() if k != "keys"} for row in comparisons(args, summary)],
    }


def phase_table(summary: dict, cases: list[str]) -> list[str]:
    """Where alignflow's RL step goes: the controller's clock per phase (median seconds a step)."""
    rows = [(k, summary[k]) for k in sorted(summary, key=lambda k: (cases.index(k[0]), k[2]))
            if k[1] == "alignflow" and summary[k].get("phases")]
    if not rows:
        return []
    phases = [p for p in PHASES if any(p in row["phases"] for _, row in rows)]
    names = [p.removeprefix("time/").removesuffix("_s").replace("_", " ") for p in phases]
    lines = ["", "## Where an alignflow RL step goes", "",
             "Median seconds per phase of one step, from the controller's own clock (share of the step in "
             "brackets); 'other' is the rest of the step (reward shaping, advantages, metrics). Each column is "
             "its own median, so the columns need not add up to the step.", "",
             "| case | variant | step s | " + " | ".join(names) + " | other |",
             "|---|---|--:|" + "--:|" * (len(phases) + 1)]
    for key, row in rows:
        step = row["phases"]["time/step_s"]
        cells = [row["phases"].get(p) for p in phases + ["other"]]  # None: a phase this algorithm lacks
        lines.append(f"| {key[0]} | {key[2]} | {step:.2f} | "
                     + " | ".join("–" if c is None else f"{c:.2f} ({100 * c / step:.0f}%)" for c in cells) + " |")
    return lines


# ----------------------------------------------------------------------------- main


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        kib = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
        mem = f", {kib / 1024**2:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return f"{model}, {os.cpu_count()} logical CPUs{mem}, {platform.system()} {platform.release()}"


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                               text=True).stdout.strip()
        return commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def measure_peak(args: argparse.Namespace, env: dict, when: str) -> dict:
    cmd = [args.alignflow_python, str(CASES_DIR / "peak.py"), "--threads", str(args.threads)]
    if args.smoke:
        cmd += ["--n", "1024", "--seconds", "0.3", "--trials", "1"]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    peak = json.loads(out.stdout.strip().splitlines()[-1])
    peak["when"] = when
    log(f"matmul peak ({when}): fp32 {peak['fp32_flops'] / 1e9:.1f} GFLOP/s, "
        f"bf16 {peak['bf16_flops'] / 1e9:.1f} GFLOP/s")
    return peak


def main() -> int:
    args = parse_args()
    command = " ".join([Path(sys.executable).name, *map(str, sys.argv)])
    load_start = os.getloadavg()
    if load_start[0] > 0.5:
        log(f"WARNING: load average {load_start[0]:.2f}: other processes compete for the cores; with "
            f"{args.threads} threads per process the numbers can be several times too slow")
    trl_python = str(TRL_VENV / "bin/python") if args.skip_setup else str(setup_trl_venv())
    args.model = args.model or default_model(args.alignflow_python)
    args.native_bf16 = native_bf16(args.alignflow_python)
    log(f"this CPU runs bf16 {'natively' if args.native_bf16 else 'emulated (alignflow runs fp32)'}: default variants "
        + "; ".join(f"{fw} {','.join(v)}" for fw, v in DEFAULT_VARIANTS[args.native_bf16].items()))
    env = child_env(args.threads)
    data = prepare_data(args, env)
    meta = json.loads((data / "meta.json").read_text())
    if args.resume:
        out_dir = Path(args.resume)
        earlier = stopped_run(out_dir)
    else:
        out_dir = Path(args.out) / (dt.datetime.now().strftime("%Y%m%d-%H%M%S") + ("-smoke" if args.smoke else ""))
        earlier = {"header": {}, "peaks": [], "results": []}
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    pythons = {"alignflow": args.alignflow_python, "trl": trl_python, "hf": trl_python}
    case_sizes = sizes(args)
    results, failures = list(earlier["results"]), []
    started = time.perf_counter()

    def header_of(repeats_done: int) -> dict:
        """The table's header, as of ``repeats_done`` finished repeats (a resumed run's header keeps
        the stopped run's commit, command and wall time beside this part's)."""
        before = earlier["header"]

        def joined(key: str, now: str) -> str:
            if not before or before[key].endswith(now):
                return before.get(key, now)
            return f"{before[key]}, then (resumed) {now}"

        minutes = (time.perf_counter() - started) / 60 + float(before.get("wall time", "0 min").split()[0])
        return {
            "date": dt.datetime.now().isoformat(timespec="seconds"), "machine": joined("machine", machine()),
            "load average at start / end": f"{load_start[0]:.2f} / {os.getloadavg()[0]:.2f}",
            "versions": versions(results), "alignflow commit": joined("alignflow commit", git_commit()),
            "command": joined("command", f"`{command}`"),
            "workload": (f"{Path(args.model).name} on {Path(args.source).name} ({meta['rows']} rows that fit "
                         f"{meta['max_length'] - meta['slack']} tokens), max length {args.max_length}, "
                         f"{args.max_new_tokens} new tokens, {args.threads} threads per process, {args.warmup} warm-up "
                         f"step(s), {repeats_done} of {args.repeats} repeat(s); sizes: "
                         + "; ".join(f"{c} batch {s['batch']}" + (f"x{s['group']}" if s.get('group', 1) > 1 else "")
                                     + f", {steps_of(args, c)} steps" for c, s in case_sizes.items())),
            "data order": (f"one shared shuffle (seed {meta.get('shuffle_seed')}) written by prepare_data.py; both "
                           "sides take the rows in file order (TRL: sequential sampler / shuffle_dataset=False; "
                           "alignflow: af_common.file_order)"),
            "native bf16": "yes" if args.native_bf16 else "no (AVX2: bf16 emulated; alignflow runs fp32)",
            "variants": "; ".join(f"{case}: alignflow {','.join(r[1] for r in runs if r[0] == 'alignflow')} vs "
                                  + (f"{runs[-1][0]} {','.join(r[1] for r in runs if r[0] != 'alignflow')}"
                                     if any(r[0] != 'alignflow' for r in runs) else "–")
                                  for case, runs in plan(args)),
            "wall time": f"{minutes:.1f} min",
        }

    if earlier["header"]:
        check_resumable(out_dir, earlier["header"], header_of(0))
    done = {(r["case"], r["framework"], r["variant"], r["repeat"]) for r in results}
    raw = open(out_dir / "raw.jsonl", "a")
    peaks = earlier["peaks"] + [measure_peak(args, env, "resumed" if earlier["header"] else "start")]

    # Repeat-major: every case once, then every case again, with the table rewritten after each
    # repeat, so a run stopped early still leaves every case measured the same number of times.
    for repeat in range(args.repeats):
        for case, runs in plan(args):
            spec = case_sizes[case]
            steps = steps_of(args, case)
            for framework, variant, script in interleave(runs):
                if (case, framework, variant, repeat + 1) in done:  # measured before a --resume
                    continue
                workdir = tempfile.mkdtemp(prefix=f"bench-{case}-{framework}-")
                cmd = [pythons[framework], str(CASES_DIR / script), "--model", args.model, "--data", str(data),
                       "--workdir", workdir, "--variant", variant, "--batch", str(spec["batch"]),
                       "--group", str(spec.get("group", 1)), "--max-length", str(args.max_length),
                       "--max-new-tokens", str(args.max_new_tokens), "--warmup", str(args.warmup),
                       "--steps", str(steps), "--lr", str(LEARNING_RATES[case]), "--threads", str(args.threads)]
                log_path = out_dir / "logs" / f"{case}-{framework}-{variant}-{repeat + 1}.log"
                log(f"{case} {framework}/{variant} repeat {repeat + 1}/{args.repeats} ...")
                rc, rss_kib, wall = run_process(cmd, log_path, env, args.timeout)
                shutil.rmtree(workdir, ignore_errors=True)
                result = read_result(log_path)
                if rc != 0 or result is None:
                    failures.append(f"{case} {framework}/{variant} repeat {repeat + 1}: exit {rc}; see {log_path}")
                    log(f"FAILED (exit {rc}); last lines of {log_path}:\n{tail(log_path)}")
                    continue
                result.update(process_maxrss_kib=rss_kib, wall_seconds=wall, repeat=repeat + 1, log=str(log_path))
                raw.write(json.dumps(result) + "\n")
                raw.flush()
                results.append(result)
                rate = result[result["tokens_key"]] / result["seconds"]
                log(f"  {result['samples'] / result['seconds']:.3f} samples/s, {rate:.1f} tok/s, "
                    f"peak RSS {result['maxrss_kib'] / MIB:.0f} MiB (whole process {rss_kib / MIB:.0f} MiB), "
                    f"process {wall:.0f}s")
        later = any(r["repeat"] > repeat + 1 for r in results)  # resumed past this repeat: its table is stale
        if repeat + 1 < args.repeats and results and not later:
            write_outputs(args, out_dir, results, failures, peaks, meta, header_of(repeat + 1))
    raw.close()
    peaks.append(measure_peak(args, env, "end"))
    if not results:
        log("no case produced a result")
        for f in failures:
            print(f, file=sys.stderr)
        return 1
    table = write_outputs(args, out_dir, results, failures, peaks, meta, header_of(args.repeats))
    print(table)
    log(f"written: {out_dir / 'results.md'} and results.json (raw runs: raw.jsonl, logs/)")
    return 1 if failures else 0


def stopped_run(out_dir: Path) -> dict:
    """What a stopped run left in ``out_dir``: its header and matmul peaks (results.json, written
    after each finished repeat) and every run it measured (raw.jsonl)."""
    summary, raw = out_dir / "results.json", out_dir / "raw.jsonl"
    if not summary.is_file() or not raw.is_file():
        raise SystemExit(f"--resume {out_dir}: no results.json / raw.jsonl there (a run writes results.json "
                         "when its first repeat ends); start a new run instead")
    stored = json.loads(summary.read_text())
    results = [json.loads(line) for line in raw.read_text().splitlines() if line.strip()]
    return {"header": stored["header"], "peaks": stored["peaks"], "results": results}


def check_resumable(out_dir: Path, stored: dict, now: dict) -> None:
    """A resumed run must measure the same work: same cases, sizes, data and variants."""
    def same_work(header: dict) -> dict:
        workload = re.sub(r"\d+ of \d+ repeat\(s\)", "", header["workload"])
        return {"workload": workload, **{k: header[k] for k in ("variants", "native bf16", "data order")}}

    differs = [f"  {k}:\n    stopped run: {v}\n    now:         {same_work(now)[k]}"
               for k, v in same_work(stored).items() if v != same_work(now)[k]]
    if differs:
        raise SystemExit(f"--resume {out_dir}: these flags measure other work than the stopped run's "
                         f"(its command: {stored['command']}):\n" + "\n".join(differs))


def write_outputs(args, out_dir: Path, results: list[dict], failures: list[str], peaks: list[dict], meta: dict,
                  header: dict) -> str:
    """results.md / results.json in ``out_dir`` and the latest table beside the run folders."""
    summary = summarize(results, meta)
    table = markdown(args, summary, peaks, meta, header, failures)
    (out_dir / "results.md").write_text(table)
    (out_dir / "results.json").write_text(json.dumps(results_json(args, summary, peaks, meta, header, failures),
                                                     indent=1) + "\n")
    (Path(args.out) / ("latest-smoke.md" if args.smoke else "latest.md")).write_text(table)
    return table


def versions(results: list[dict]) -> str:
    """Library versions as each side reported them (alignflow's venv and bench/.venv-trl)."""
    found: dict[str, dict[str, str]] = {}
    for r in results:
        side = "alignflow venv" if r["framework"] == "alignflow" else "trl venv"
        for key in ("alignflow", "trl", "torch", "transformers"):
            if key in r["settings"]:
                found.setdefault(side, {}).setdefault(key, str(r["settings"][key]))
    parts = [f"python {platform.python_version()}"]
    parts += [f"{side}: " + ", ".join(f"{k} {v}" for k, v in libs.items()) for side, libs in sorted(found.items())]
    return "; ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
