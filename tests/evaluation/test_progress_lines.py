"""Progress for output that is not a terminal, and plot titles that fit their figure."""

from __future__ import annotations

import io

from matplotlib.figure import Figure
from rich.console import Console

from alignflow.evaluation.per_model import Stages
from alignflow.reporting.eval_plots import fit_title
from alignflow.reporting.progress_lines import duration, progress_line


def test_a_progress_line_has_position_metrics_and_eta():
    line = progress_line("train", 40, 200, 80.0, {"loss": 0.61234, "lr": 1e-5, "other": 3.0}, ["loss", "lr"])
    assert line == "train 40/200 (20%) loss=0.6123 lr=1e-05 elapsed 1m20s eta 5m20s"
    assert progress_line("train", 60, 200, 20.0, start=40).endswith("eta 2m20s")  # a resume counts its own steps
    assert "eta" not in progress_line("grpo: prompts", 8, 8, 5.0)
    assert (duration(59), duration(75), duration(3725)) == ("59s", "1m15s", "1h02m")


def test_stages_print_lines_when_the_console_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr(Stages, "LINE_EVERY_S", 0.0)
    out = io.StringIO()
    with Stages.live(Console(file=out, force_terminal=False, width=200)) as stages:
        with stages.stage("base: prompts", 3) as advance:
            advance(1)
            advance(2)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("base: prompts 1/3 (33%)") and "eta" in lines[0]
    assert lines[-1].startswith("base: prompts 3/3 (100%) elapsed")


def test_a_long_title_is_wrapped_to_the_figure_width():
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.subplots()
    fit_title(ax, "reward per prompt under the judge reward model (independent) of a long name")
    fig.canvas.draw()
    title = ax.title
    assert "\n" in title.get_text()
    assert title.get_window_extent().width <= fig.bbox.width
