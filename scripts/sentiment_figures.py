"""The sentiment run's headline numbers and figures for docs/figures (README, "Sentiment").

    python scripts/sentiment_figures.py runs/sentiment [--out docs/figures]

Reads the run's stage records and eval outputs, adds what the evaluation does not measure itself
(the perplexity of each model's responses under the frozen reference, i.e. fluency as the starting
model sees it), and writes ``sentiment_summary.json``, ``sentiment_positive_rate.png`` and copies of
the GRPO curves and the reward comparison as ``sentiment_*.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from alignflow.data.formatting import ChatFormatter  # noqa: E402
from alignflow.models import load_tokenizer, resolve_model  # noqa: E402
from alignflow.models.loading import materialize  # noqa: E402


@torch.no_grad()
def reference_perplexity(reference: str, rows: list[dict], model_name: str, template: str = "auto") -> float:
    """exp(mean negative log-likelihood per response token) of ``model_name``'s responses under ``reference``,
    the prompts rendered with the evaluation's ``template``."""
    path = materialize(resolve_model(reference)).path  # the embedded SmolLM2 is a GGUF, converted once
    tokenizer = load_tokenizer(reference)
    formatter = ChatFormatter(tokenizer, template=template)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    nll, tokens = 0.0, 0
    for row in rows:
        text = formatter.prompt_text(row["prompt"])
        prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
        response = tokenizer(row["responses"][model_name]["text"], add_special_tokens=False)["input_ids"]
        if not response:
            continue
        ids = torch.tensor([prompt + response])
        log_probs = torch.log_softmax(model(ids).logits[0, len(prompt) - 1 : -1].float(), dim=-1)
        nll -= log_probs.gather(1, torch.tensor(response)[:, None]).sum().item()
        tokens += len(response)
    return math.exp(nll / tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/figures"))
    args = parser.parse_args()
    run, out = args.run, args.out
    out.mkdir(parents=True, exist_ok=True)
    summary = json.loads((run / "summary.json").read_text())
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    samples = [json.loads(line) for line in (run / "eval" / "samples.jsonl").read_text().splitlines()]
    samples = [row for row in samples if row["set"] == "prompts"]
    reference = metrics["reference"]
    reference_path = metrics["models"][reference]["path"]

    result = {"stages_wall_s": {stage: record["wall_s"] for stage, record in summary["stages"].items()},
              "run_wall_s": summary["wall_s"], "prompts": len(samples),
              "classifier": _accuracies(summary["stages"]["classifier"]["metrics"]),
              "judge_clf": _accuracies(summary["stages"]["judge_clf"]["metrics"]), "models": {}}
    for name, m in metrics["models"].items():
        result["models"][name] = {
            "judge_positive_rate": m["judge_reward"], "proxy_logit": m["proxy_reward"],
            "kl": (m["kl"] or {}).get("value"), "reference_perplexity": round(
                reference_perplexity(reference_path, samples, name, metrics["config"]["chat_template"]), 2),
            "length": m["length"], "eos_rate": m["eos_rate"], "distinct_1": m["distinct_1"],
            "distinct_2": m["distinct_2"]}
    result["alerts"] = metrics["alerts"]
    (out / "sentiment_summary.json").write_text(json.dumps(result, indent=2))
    _positive_rate_figure(result, out / "sentiment_positive_rate.png")
    for source, name in ((run / "grpo" / "rlhf_training_curves.png", "sentiment_grpo_curves.png"),
                         (run / "eval" / "reward_comparison.png", "sentiment_reward_comparison.png")):
        if source.is_file():
            shutil.copyfile(source, out / name)
    print(json.dumps(result, indent=2))


def _accuracies(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k.startswith("test_accuracy") or k.endswith("seconds")}


def _positive_rate_figure(result: dict, path: Path) -> None:
    names = list(result["models"])
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    rates = [result["models"][n]["judge_positive_rate"] for n in names]
    axes[0].bar(names, [r["value"] for r in rates], color=["#999", "#2a7"][: len(names)],
                yerr=[[r["value"] - r["low"] for r in rates], [r["high"] - r["value"] for r in rates]], capsize=6)
    axes[0].set_ylim(0, 1)
    axes[0].set_title("judge (TF-IDF) positive rate, 95% CI", fontsize=10)
    for i, r in enumerate(rates):
        axes[0].text(i, r["value"] / 2, f"{r['value']:.0%}", ha="center", color="white", fontweight="bold")
    ppl = [result["models"][n]["reference_perplexity"] for n in names]
    axes[1].bar(names, ppl, color=["#999", "#2a7"][: len(names)])
    axes[1].set_title("perplexity under the reference", fontsize=10)
    kl = result["models"][names[-1]]["kl"]
    if kl:
        axes[1].set_xlabel(f"KL({names[-1]} || {names[0]}) = {kl['value']:.1f} nats", fontsize=9)
    fig.suptitle(f"IMDB continuations, {result['prompts']} held-out prompts", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
