"""The evaluation plots, drawn from ``metrics.json`` data and ``samples.jsonl`` rows as PNG bytes.

Bytes rather than files so the same image is both saved and embedded in ``report.html``. Every
plot uses a bare :class:`~matplotlib.figure.Figure` (no pyplot: no global state, no GUI backend).
"""

from __future__ import annotations

import io
import textwrap
from typing import Any

import numpy as np

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf"]


def draw_plots(metrics: dict[str, Any], samples: list[dict[str, Any]]) -> dict[str, bytes]:
    """``{file name: PNG bytes}`` for every plot the data supports, in report order."""
    names = list(metrics["models"])
    colors = {name: COLORS[i % len(COLORS)] for i, name in enumerate(names)}
    main = [row for row in samples if row["set"] == "prompts"]
    plots = {"reward_comparison.png": reward_comparison(metrics, main, colors)}
    if len(names) > 1:
        plots["win_rates.png"] = win_rates(metrics, colors)
    plots["length_vs_reward.png"] = length_vs_reward(main, colors)
    if any(m["kl"] or m["kl_bound"] is not None for m in metrics["models"].values()):
        plots["reward_vs_kl.png"] = reward_vs_kl(metrics, colors)
    if any(m["sweep"] for m in metrics["models"].values()):
        plots["sweep.png"] = sweep(metrics, colors)
    return plots


def reward_comparison(metrics: dict[str, Any], rows: list[dict[str, Any]], colors: dict[str, str]) -> bytes:
    """Per-prompt reward distributions per model (violin + points) with the mean and its interval."""
    models = metrics["models"]
    panels = [("proxy", "proxy_reward", "proxy reward model")]
    if any(m["judge_reward"] for m in models.values()):
        panels.append(("judge", "judge_reward", "judge reward model (independent)"))
    fig = new_figure((max(6.0, 1.3 * len(models) + 2), 4.2 * len(panels)))
    for ax, (score, key, title) in zip(np.atleast_1d(fig.subplots(len(panels), 1)), panels):
        for x, name in enumerate(models):
            values = [r["responses"][name][score] for r in rows
                      if name in r["responses"] and r["responses"][name][score] is not None]
            if not values:
                continue
            color = colors[name]
            if len(set(values)) > 1:  # a KDE needs spread
                body = ax.violinplot([values], positions=[x], widths=0.8, showextrema=False)["bodies"][0]
                body.set_facecolor(color)
                body.set_alpha(0.25)
            jitter = np.random.default_rng(x).uniform(-0.12, 0.12, len(values))
            ax.scatter(x + jitter, values, s=8, color=color, alpha=0.5, linewidths=0)
            estimate = models[name][key]
            if estimate:
                err = [[estimate["value"] - estimate["low"]], [estimate["high"] - estimate["value"]]]
                ax.errorbar([x], [estimate["value"]], yerr=err, fmt="D", color="black", markersize=6, capsize=6,
                            label=f"mean, {estimate['level']:.0%} CI" if x == 0 else None)
        ax.set_xticks(range(len(models)), list(models), rotation=15 if len(models) > 4 else 0)
        ax.set_ylabel("reward")
        fit_title(ax, f"reward per prompt under the {title}")
        ax.grid(alpha=0.3, axis="y")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    return png_bytes(fig)


def win_rates(metrics: dict[str, Any], colors: dict[str, str]) -> bytes:
    """Win rate of each model over the reference, one bar per judge, with interval whiskers."""
    reference = metrics["reference"]
    others = [name for name in metrics["models"] if name != reference]
    kinds = [("proxy", "proxy RM", lambda m: m["win_rate"]["proxy"]),
             ("lc", "proxy RM, length-controlled", lambda m: m["lc_win_rate"]["proxy"]),
             ("judge", "judge RM", lambda m: m["win_rate"]["judge"]),
             ("llm", "LLM judge", lambda m: m["win_rate"]["llm_judge"])]
    kinds = [k for k in kinds if any(k[2](metrics["models"][n]) for n in others)]
    fig = new_figure((8.0, max(2.5, 0.55 * len(others) * len(kinds) + 1.5)))
    ax = fig.subplots()
    height = 0.8 / len(kinds)
    hatches = ["", "//", "..", "xx"]
    for k, (_, label, get) in enumerate(kinds):
        for y, name in enumerate(others):
            estimate = get(metrics["models"][name])
            if not estimate:
                continue
            pos = y + (k - (len(kinds) - 1) / 2) * height  # the first kind on top (the y axis is inverted)
            err = [[estimate["value"] - estimate["low"]], [estimate["high"] - estimate["value"]]]
            ax.barh(pos, estimate["value"], height=height * 0.9, xerr=err, capsize=3, color=colors[name],
                    alpha=0.45 + 0.15 * k, hatch=hatches[k], edgecolor="black", linewidth=0.5,
                    label=label if y == 0 else None)
    ax.axvline(0.5, color="black", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(others)), others)
    ax.invert_yaxis()  # models top to bottom in report order
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"win rate over {reference} (ties count half; whiskers: confidence interval)")
    fit_title(ax, f"win rate against the reference ({reference})")
    ax.grid(alpha=0.3, axis="x")
    fig.legend(fontsize=8, loc="outside lower center", ncols=len(kinds))
    return png_bytes(fig)


def length_vs_reward(rows: list[dict[str, Any]], colors: dict[str, str]) -> bytes:
    """Response length against proxy reward, one point per response: a reward that follows length."""
    fig = new_figure((7.5, 4.8))
    ax = fig.subplots()
    for name, color in colors.items():
        points = [(r["responses"][name]["tokens"], r["responses"][name]["proxy"]) for r in rows
                  if name in r["responses"]]
        if points:
            lengths, rewards = zip(*points)
            ax.scatter(lengths, rewards, s=12, alpha=0.45, color=color, linewidths=0)
            ax.scatter([np.mean(lengths)], [np.mean(rewards)], s=120, marker="X", color=color, edgecolor="black",
                       label=f"{name} (mean)")
    ax.set_xlabel("response length (tokens)")
    ax.set_ylabel("proxy reward")
    fit_title(ax, "length vs reward (X: each model's mean)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return png_bytes(fig)


def reward_vs_kl(metrics: dict[str, Any], colors: dict[str, str]) -> bytes:
    """Mean reward against KL to the reference: the distance each model travelled for its reward."""
    fig = new_figure((7.0, 4.5))
    ax = fig.subplots()
    for name, m in metrics["models"].items():
        if name == metrics["reference"]:
            kl, label = 0.0, f"{name} (reference)"
        elif m["kl"] and m["kl"]["value"]:
            kl, label = m["kl"]["value"]["value"], name
        elif m["kl_bound"] is not None:
            kl, label = m["kl_bound"], f"{name} (analytic KL bound)"
        else:
            continue
        for key, marker in (("proxy_reward", "o"), ("judge_reward", "s")):
            if m[key]:
                ax.scatter([kl], [m[key]["value"]], s=70, marker=marker, color=colors[name],
                           label=f"{label}, {key.split('_')[0]}")
    ax.set_xlabel("KL to the reference (nats per response)")
    ax.set_ylabel("mean reward")
    fit_title(ax, "reward vs KL (o: proxy RM, s: judge RM)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return png_bytes(fig)


def sweep(metrics: dict[str, Any], colors: dict[str, str]) -> bytes:
    """Sampling sweep: mean proxy reward against distinct-2, one labelled point per setting."""
    fig = new_figure((8.0, 5.0))
    ax = fig.subplots()
    for name, m in metrics["models"].items():
        points = [(p["distinct_2"], p["reward"]["value"], p["label"]) for p in m["sweep"] if p["reward"]]
        if not points:
            continue
        xs, ys, labels = zip(*points)
        ax.plot(xs, ys, "o-", color=colors[name], label=name, alpha=0.8)
        for x, y, label in points:
            ax.annotate(label, (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("distinct-2 (diversity)")
    ax.set_ylabel("mean proxy reward")
    fit_title(ax, "sampling sweep: reward vs diversity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return png_bytes(fig)


def fit_title(ax, text: str, fontsize: float = 12.0) -> None:
    """A title wrapped onto as many lines as the figure's width needs (matplotlib clips, never wraps)."""
    # A character of the default sans-serif font is ~0.6 em wide on average; keep a margin for the axes.
    per_line = max(20, int(0.9 * ax.figure.get_figwidth() * 72 / (0.6 * fontsize)))
    ax.set_title(textwrap.fill(text, per_line), fontsize=fontsize)


def new_figure(size: tuple[float, float]):
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained")


def png_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
