"""The machine-readable results: ``metrics.json``, ``samples.jsonl`` and TensorBoard scalars.

``metrics.json`` holds every aggregate (estimates with their intervals, probes, sweeps, alerts,
notes, the config); ``samples.jsonl`` one row per prompt with every model's response and scores.
Plots and the HTML report are drawn from these two alone, so a report can be rebuilt from files.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from alignflow.data.types import PromptExample
from alignflow.evaluation.compare import Comparison, ModelStats
from alignflow.evaluation.inputs import EvalInputs
from alignflow.evaluation.judge import JudgeResult
from alignflow.evaluation.pair_quality import baseline
from alignflow.evaluation.per_model import ModelEval
from alignflow.evaluation.probes import RefusalReport, is_refusal


def model_metrics(model: ModelEval, stats: ModelStats, comparison: Comparison | None,
                  llm: JudgeResult | None) -> dict[str, Any]:
    """One model's entry of ``metrics.json`` (comparisons are null for the reference)."""
    s = stats.summary
    entry: dict[str, Any] = {
        "path": model.path, "kind": model.kind, "n": s.n, "seconds": round(model.seconds, 2),
        "proxy_reward": _plain(stats.proxy), "judge_reward": _plain(stats.judge),
        "reward_shift": {"proxy": None, "judge": None},  # vs the reference, paired over prompts
        "win_rate": {"proxy": None, "judge": None, "llm_judge": None},
        "lc_win_rate": {"proxy": None, "judge": None},
        "llm_judge": None,
        "kl": None if model.kl is None else {"value": _plain(model.kl.kl), "k3": model.kl.kl_k3,
                                             "mean_tokens": model.kl.mean_tokens},
        "kl_bound": model.kl_bound,
        "length": _plain(s.length), "eos_rate": s.eos_rate, "distinct_1": s.distinct_1, "distinct_2": s.distinct_2,
        "repeated_ngram_rate": s.repeated_ngram_rate, "repeated_ngram_n": s.repeated_ngram_n,
        "rouge_l": _plain(stats.rouge_l),
        "probes": {name: _refusals(report) for name, report in model.refusals.items()},
        "categories": {},
        "sweep": [_plain(point) for point in model.sweep],
        "notes": list(model.notes),
    }
    if model.truthfulqa is not None:
        t = model.truthfulqa
        entry["probes"]["truthfulqa"] = {"accuracy": _plain(t.accuracy), "chance": t.chance,
                                         "normalize": t.normalize, "n": len(t.picks)}
    if comparison is not None:
        entry["reward_shift"].update(proxy=_plain(comparison.proxy_shift), judge=_plain(comparison.judge_shift))
        entry["win_rate"].update(proxy=_plain(comparison.proxy), judge=_plain(comparison.judge))
        entry["lc_win_rate"].update(proxy=_plain(comparison.lc_proxy), judge=_plain(comparison.lc_judge))
    if llm is not None:
        entry["win_rate"]["llm_judge"] = _plain(llm.win_rate)
        entry["llm_judge"] = {"unparsed": llm.unparsed, "inconsistent": llm.inconsistent, "n": len(llm.verdicts)}
    for name, responses in model.categories.items():
        c = stats.categories[name]
        win = comparison.categories.get(name) if comparison else None
        entry["categories"][name] = {
            "n": len(responses.texts), "proxy_reward": _plain(c["proxy"]), "judge_reward": _plain(c["judge"]),
            "win_rate_proxy": _plain(win), "length_mean": c["summary"].length.mean, "eos_rate": c["summary"].eos_rate,
            "distinct_2": c["summary"].distinct_2, "rouge_l": _plain(c["rouge_l"]),
            "refusal_rate": sum(map(is_refusal, responses.texts)) / len(responses.texts),
        }
    return entry


def sample_rows(inputs: EvalInputs, models: dict[str, ModelEval]) -> list[dict[str, Any]]:
    """Per prompt of every set: the prompt and each model's response with its scores."""
    rows = _prompt_rows("prompts", inputs.prompts, {name: m.main for name, m in models.items()})
    for category, prompts in inputs.categories.items():
        sets = {name: m.categories[category] for name, m in models.items() if category in m.categories}
        rows += _prompt_rows(f"category:{category}", prompts, sets)
    for probe, prompts in (("red_team", inputs.red_team), ("xstest", inputs.xstest)):
        reports = {name: m.refusals[probe] for name, m in models.items() if probe in m.refusals}
        for index, prompt in enumerate(prompts):
            rows.append({"set": probe, "index": index, "source": prompt.source, "prompt": prompt.prompt,
                         "unsafe": prompt.unsafe, "category": prompt.category,
                         "responses": {name: {"text": r.rows[index].response, "refused": r.rows[index].refused}
                                       for name, r in reports.items()}})
    return rows


def _prompt_rows(set_name: str, prompts: list[PromptExample], sets: dict) -> list[dict[str, Any]]:
    rows = []
    for index, prompt in enumerate(prompts):
        responses = {}
        for name, r in sets.items():
            responses[name] = {"text": r.texts[index], "tokens": r.num_tokens[index], "eos": r.has_eos[index],
                               "proxy": r.proxy[index], "judge": r.judge[index] if r.judge else None}
        rows.append({"set": set_name, "index": index, "source": prompt.source, "prompt": prompt.prompt,
                     "reference": prompt.reference, "responses": responses})
    return rows


def flat_scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """``{"<model>/<metric>": value}``: the headline numbers for TensorBoard, wandb and MLflow."""
    out: dict[str, float] = {}
    for name, m in metrics["models"].items():
        values = {
            "proxy_reward": _value(m["proxy_reward"]), "judge_reward": _value(m["judge_reward"]),
            "reward_shift_proxy": _value(m["reward_shift"]["proxy"]),
            "reward_shift_judge": _value(m["reward_shift"]["judge"]),
            "win_rate_proxy": _value(m["win_rate"]["proxy"]), "win_rate_judge": _value(m["win_rate"]["judge"]),
            "win_rate_llm_judge": _value(m["win_rate"]["llm_judge"]),
            "lc_win_rate_proxy": _value(m["lc_win_rate"]["proxy"]), "kl": _value((m["kl"] or {}).get("value")),
            "length_mean": m["length"]["mean"], "eos_rate": m["eos_rate"], "distinct_1": m["distinct_1"],
            "distinct_2": m["distinct_2"], "repeated_ngram_rate": m["repeated_ngram_rate"],
            "rouge_l": _value(m["rouge_l"]),
        }
        for probe, result in m["probes"].items():
            for key in ("refusal_rate", "over_refusal_rate", "accuracy"):
                values[f"{probe}_{key}"] = _value(result.get(key))
        out.update({f"{name}/{k}": float(v) for k, v in values.items()
                    if isinstance(v, (int, float)) and math.isfinite(v)})
    for role, entry in metrics.get("judges", {}).items():
        if entry["quality"]:
            out[f"judges/{role}/accuracy"] = float(entry["quality"]["accuracy"]["value"])
            name, rule = baseline(entry["quality"])
            out[f"judges/{role}/{name}"] = float(rule["value"])
    out["alerts"] = float(len(metrics["alerts"]))
    return out


def write_tensorboard(out: Path, scalars: dict[str, float]) -> Path | None:
    """Scalars at step 0 under ``out/tensorboard`` (None when tensorboard is not installed)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    folder = out / "tensorboard"
    writer = SummaryWriter(str(folder))
    try:
        for key, value in scalars.items():
            writer.add_scalar(f"eval/{key}", value, 0)
    finally:
        writer.close()
    return folder


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2, default=_default, allow_nan=False) + "\n")
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row, default=_default, ensure_ascii=False) + "\n")
    return path


def _refusals(report: RefusalReport) -> dict[str, Any]:
    return {"refusal_rate": _plain(report.refusal_rate), "over_refusal_rate": _plain(report.over_refusal_rate),
            "by_category": report.by_category, "n": len(report.rows),
            "n_unsafe": sum(r.unsafe for r in report.rows), "n_safe": sum(not r.unsafe for r in report.rows)}


def _plain(value: Any) -> Any:
    """A result dataclass as JSON-ready data; non-finite floats (a degenerate interval) become null."""
    if value is None:
        return None
    return _finite(asdict(value) if is_dataclass(value) else value)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _value(estimate: Any) -> float | None:
    return estimate.get("value") if isinstance(estimate, dict) else None


def _default(value: Any) -> Any:
    if is_dataclass(value):
        return asdict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
