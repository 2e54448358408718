"""``report.html``: one self-contained page a person reads to judge an evaluation.

Order: title, weak-judge warnings and what each judge can support, reward-hacking alerts (or a
green "no alerts" line), notes, run info, the judges' pair accuracy, the metrics table, plots,
probes, sampling sweep, custom categories, then samples side by side per prompt.
Plots are embedded as base64 PNG and the CSS is inline: no external asset and no JavaScript, so
the file can be mailed or archived as it is.

Built from ``metrics.json`` data and ``samples.jsonl`` rows with small functions rather than a
template engine (jinja2 is only a transitive dependency, through torch). Every piece of text
from outside this module (model names, prompts, responses, paths, messages) goes through
:func:`esc`; the tests put ``<script>`` into each of them.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Sequence
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1400px;
 padding:0 1rem;color:#222;line-height:1.4}
h1{margin-bottom:.2rem} h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.88rem} th,td{border:1px solid #ddd;padding:.3rem .5rem;
 text-align:right;vertical-align:top} th{background:#f4f4f4} td:first-child,th:first-child{text-align:left}
tr.ref td{background:#f7fbff} tr.flag td:first-child{border-left:4px solid #c0392b}
.alerts{border:2px solid #c0392b;background:#fdecea;padding:.6rem 1rem;border-radius:6px}
.alerts li{margin:.3rem 0} .critical{color:#a00;font-weight:600} .warning{color:#9a6700;font-weight:600}
.ok{border:2px solid #2e7d32;background:#e8f5e9;color:#1b5e20;padding:.6rem 1rem;border-radius:6px;font-weight:600}
.weak{border:2px solid #b26a00;background:#fff3e0;padding:.6rem 1rem;border-radius:6px;margin:.6rem 0}
.verdict{border-left:4px solid #2e7d32;padding:.2rem .8rem;margin:.6rem 0} .noevid{color:#b26a00;font-weight:600}
.notes{border:1px solid #e0c060;background:#fff8e1;padding:.5rem 1rem;border-radius:6px}
.muted{color:#777;font-size:.85rem} img{max-width:100%;border:1px solid #eee;margin:.5rem 0}
.sample{border:1px solid #ddd;border-radius:6px;margin:1rem 0;padding:.5rem .8rem}
.prompt{white-space:pre-wrap;background:#f7f7f7;padding:.4rem;border-radius:4px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:.6rem;margin-top:.5rem}
.resp{border:1px solid #e4e4e4;border-radius:4px;padding:.4rem} .resp pre{white-space:pre-wrap;
 word-break:break-word;font-family:inherit;margin:.3rem 0} .resp h4{margin:0;font-size:.9rem}
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def render_report(metrics: dict[str, Any], samples: list[dict[str, Any]], images: dict[str, bytes],
                  *, max_samples: int = 20) -> str:
    """The whole page as a string; ``images`` maps plot file names to PNG bytes."""
    title = metrics.get("title") or "alignflow evaluation"
    body = [f"<h1>{esc(title)}</h1>", f"<p class='muted'>{esc(metrics.get('created', ''))}</p>",
            judge_warnings(metrics), alerts_section(metrics), notes_section(metrics), run_info(metrics),
            judges_table(metrics), metrics_table(metrics),
            plots_section(images), probes_section(metrics), sweep_section(metrics), categories_section(metrics),
            samples_section(metrics, samples, max_samples)]
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(part for part in body if part) + "\n</body></html>\n")


# ----------------------------------------------------------------------------- sections


def judge_warnings(metrics: dict[str, Any]) -> str:
    """A box per weak scorer (its accuracy interval does not clear the length rule), then one sentence per
    scorer on what its numbers can and cannot support."""
    judges = metrics.get("judges", {})
    if not judges:
        return ""
    weak = [(role, j) for role, j in judges.items() if j["weak"]]
    items = "".join(f"<li><b>Weak {esc(role)}</b> ({esc(j['model'])}): {esc(j['verdict'])} Its win rates and "
                    "shifts below are marked <span class='noevid'>not evidence</span>.</li>" for role, j in weak)
    box = (f"<section id='weak-judges' class='weak'><h2 style='margin-top:0;border:0'>Weak judge warning "
           f"({len(weak)})</h2><ul>{items}</ul></section>") if weak else ""
    sentences = "".join(f"<p class='verdict'>{esc(j['verdict'])}</p>" for role, j in judges.items()
                        if not j["weak"])
    return box + sentences


def judges_table(metrics: dict[str, Any]) -> str:
    judges = metrics.get("judges", {})
    if not judges:
        return ""
    rows = []
    for role, j in judges.items():
        q = j["quality"] or {}
        labels = q.get("kind") == "labels"  # a classifier: labelled texts and the majority label, not pairs
        count = f"{q['texts']} texts" if labels else q.get("pairs", "–")
        baseline = f"majority {pct1_est(q['majority_rule'])}" if labels else pct1_est(q.get("length_rule"))
        status = "weak: not evidence" if j["weak"] else ("not measured" if j["weak"] is None else "clears the rule")
        rows.append(f"<tr class='{'flag' if j['weak'] else ''}'><td>{esc(role)}</td>"
                    f"<td style='text-align:left'>{esc(j['model'])}</td>"
                    f"<td style='text-align:left'>{esc(j['measured_on'] or '–')}</td>"
                    f"<td>{esc(count)}</td><td>{esc(pct1_est(q.get('accuracy')))}</td><td>{esc(baseline)}</td>"
                    f"<td>{esc(status)}</td></tr>")
    return ("<section id='judges'><h2>Judges</h2><p class='muted'>Each scorer's accuracy on held-out preference "
            "pairs (ties half) beside \"the longer response wins\" on the same pairs; a classifier's on held-out "
            "labelled texts beside always answering the majority label. A scorer whose interval does not clear "
            "its baseline is weak: its preferences may be length (or chance).</p><table><tr><th>role</th>"
            "<th>model</th><th>measured on</th><th>pairs / texts</th><th>accuracy [CI]</th><th>baseline</th>"
            f"<th>verdict</th></tr>{''.join(rows)}</table></section>")


def alerts_section(metrics: dict[str, Any]) -> str:
    alerts = metrics.get("alerts", [])
    if not alerts:
        return ("<section id='alerts'><p class='ok'>No reward-hacking alerts: no model's length, diversity, "
                "repetition or proxy-vs-judge gap crossed a threshold against the reference.</p></section>")
    items = "".join(f"<li><span class='{esc(a['severity'])}'>{esc(a['severity'].upper())}</span> "
                    f"[{esc(a['kind'])}] {esc(a['message'])}</li>" for a in alerts)
    return (f"<section id='alerts' class='alerts'><h2 style='margin-top:0;border:0'>Reward-hacking alerts "
            f"({len(alerts)})</h2><ul>{items}</ul></section>")


def notes_section(metrics: dict[str, Any]) -> str:
    notes = list(metrics.get("notes", []))
    notes += [f"{name}: {note}" for name, m in metrics["models"].items() for note in m.get("notes", [])]
    if not notes:
        return ""
    return "<section id='notes' class='notes'><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul></section>"


def run_info(metrics: dict[str, Any]) -> str:
    config, prompts = metrics.get("config", {}), metrics.get("prompts", {})
    rows = [("reference", metrics["reference"]),
            ("prompts", f"{prompts.get('count')} from {prompts.get('source')}"
                        + (" (held out)" if prompts.get("held_out") else "")),
            ("sampling", metrics.get("sampling", "")),
            ("proxy reward model", _scorer(config, "proxy") or "none"),
            ("judge reward model", _scorer(config, "judge") or "none"),
            ("LLM judge", (config.get("judge") or {}).get("model") if (config.get("judge") or {}).get("enabled")
             else "off"),
            ("bootstrap", f"{(config.get('bootstrap') or {}).get('n')} resamples of the prompts, "
                          f"{(config.get('bootstrap') or {}).get('level', 0.95):.0%} intervals"),
            ("time", f"{metrics.get('seconds', 0):.0f} s")]
    models = "".join(f"<tr><td>{esc(name)}</td><td style='text-align:left'>{esc(m['path'])}</td></tr>"
                     for name, m in metrics["models"].items())
    info = "".join(f"<tr><th>{esc(k)}</th><td style='text-align:left'>{esc(v)}</td></tr>" for k, v in rows)
    return (f"<section id='run'><h2>Run</h2><table>{info}</table>"
            f"<table><tr><th>model</th><th>from</th></tr>{models}</table></section>")


# (header, tooltip, getter, formatter)
Column = tuple[str, str, Callable[[dict[str, Any]], Any], Callable[[Any], str]]


def _columns() -> list[Column]:
    def probe(name: str, key: str) -> Callable[[dict[str, Any]], Any]:
        return lambda m: (m["probes"].get(name) or {}).get(key)

    return [
        ("proxy reward", "mean score of the proxy reward model [CI]", lambda m: m["proxy_reward"], est),
        ("judge reward", "mean score of the independent judge reward model [CI]", lambda m: m["judge_reward"], est),
        ("proxy shift", "proxy reward minus the reference's on the same prompts [paired CI]",
         lambda m: m["reward_shift"]["proxy"], est),
        ("judge shift", "judge reward minus the reference's on the same prompts [paired CI]",
         lambda m: m["reward_shift"]["judge"], est),
        ("win (proxy)", "win rate over the reference by the proxy RM, ties half [CI]",
         lambda m: m["win_rate"]["proxy"], pct_est),
        ("win (judge)", "win rate over the reference by the judge RM [CI]", lambda m: m["win_rate"]["judge"], pct_est),
        ("win (LLM)", "win rate over the reference by the LLM judge, both orders [CI]",
         lambda m: m["win_rate"]["llm_judge"], pct_est),
        ("LC win (proxy)", "length-controlled win rate (proxy RM), at equal length [CI]",
         lambda m: m["lc_win_rate"]["proxy"], pct_est),
        ("KL", "sequence KL to the reference, nats per response [CI]; ~ = best-of-n's analytic bound "
         "log n - (n-1)/n", _kl, str),
        ("length", "mean response tokens (EOS included)", lambda m: m["length"]["mean"], num1),
        ("EOS", "share of responses that ended before max_new_tokens", lambda m: m["eos_rate"], pct),
        ("distinct-1", "unique unigrams / all unigrams", lambda m: m["distinct_1"], num3),
        ("distinct-2", "unique bigrams / all bigrams", lambda m: m["distinct_2"], num3),
        ("repetition", "mean share of 3-grams repeating within a response", lambda m: m["repeated_ngram_rate"], pct),
        ("refusal (red team)", "refusal rate on harmful requests: higher is safer [CI]",
         probe("red_team", "refusal_rate"), pct_est),
        ("refusal (XSTest unsafe)", "refusal rate on XSTest unsafe prompts [CI]", probe("xstest", "refusal_rate"),
         pct_est),
        ("over-refusal (XSTest safe)", "refusal rate on safe prompts that sound unsafe: lower is better [CI]",
         probe("xstest", "over_refusal_rate"), pct_est),
        ("TruthfulQA MC1", "accuracy picking the true answer by log-likelihood [CI]",
         probe("truthfulqa", "accuracy"), pct_est),
        ("ROUGE-L", "F1 against the prompts' references [CI]", lambda m: m["rouge_l"], est),
    ]


def metrics_table(metrics: dict[str, Any]) -> str:
    models, reference = metrics["models"], metrics["reference"]
    columns = [c for c in _columns() if any(_present(c[2](m)) for m in models.values())]
    flagged = {a["model"] for a in metrics.get("alerts", [])}
    weak = [role for role, j in metrics.get("judges", {}).items() if j["weak"]]
    head = "".join(f"<th title='{esc(tip)}'>{esc(name)}"
                   + ("<br><span class='noevid'>not evidence</span>" if _scored_by(name, weak) else "") + "</th>"
                   for name, tip, _, _ in columns)
    rows = []
    for name, m in models.items():
        cls = "ref" if name == reference else ("flag" if name in flagged else "")
        label = esc(name) + (" <span class='muted'>(reference)</span>" if name == reference else "")
        cells = "".join(f"<td>{esc(fmt(get(m))) if _present(get(m)) else '&ndash;'}</td>"
                        for _, _, get, fmt in columns)
        rows.append(f"<tr class='{cls}'><td>{label}</td>{cells}</tr>")
    n = next(iter(models.values()))["n"]
    return (f"<section id='metrics'><h2>Metrics</h2><p class='muted'>{n} held-out prompts; brackets are "
            "bootstrap confidence intervals over prompts; hover a header for its definition.</p>"
            f"<table><tr><th>model</th>{head}</tr>{''.join(rows)}</table></section>")


def plots_section(images: dict[str, bytes]) -> str:
    if not images:
        return ""
    figures = "".join(
        f"<figure><img alt='{esc(name)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
        f"<figcaption class='muted'>{esc(name)}</figcaption></figure>" for name, png in images.items())
    return f"<section id='plots'><h2>Plots</h2>{figures}</section>"


def probes_section(metrics: dict[str, Any]) -> str:
    models = metrics["models"]
    parts = []
    for probe, title in (("red_team", "Red-team prompts (harmful requests)"), ("xstest", "XSTest")):
        rows = [(name, m["probes"][probe]) for name, m in models.items() if probe in m["probes"]]
        if not rows:
            continue
        categories = sorted({c for _, p in rows for c in p["by_category"]})
        head = "<tr><th>model</th><th>n</th><th>refusal (unsafe)</th><th>over-refusal (safe)</th>" + "".join(
            f"<th>{esc(c)}</th>" for c in categories) + "</tr>"
        body = "".join(
            f"<tr><td>{esc(name)}</td><td>{p['n']}</td><td>{esc(pct_est(p['refusal_rate']))}</td>"
            f"<td>{esc(pct_est(p['over_refusal_rate']))}</td>"
            + "".join(f"<td>{esc(pct(p['by_category'].get(c)))}</td>" for c in categories) + "</tr>"
            for name, p in rows)
        parts.append(f"<h3>{esc(title)}</h3><p class='muted'>Keyword refusal detector over the first 200 "
                     f"characters; per-category columns are refusal rates.</p><table>{head}{body}</table>")
    rows = [(name, m["probes"]["truthfulqa"]) for name, m in models.items() if "truthfulqa" in m["probes"]]
    if rows:
        body = "".join(f"<tr><td>{esc(name)}</td><td>{t['n']}</td><td>{esc(pct_est(t['accuracy']))}</td>"
                       f"<td>{esc(pct(t['chance']))}</td></tr>" for name, t in rows)
        parts.append("<h3>TruthfulQA MC1</h3><table><tr><th>model</th><th>questions</th><th>accuracy</th>"
                     f"<th>chance</th></tr>{body}</table>")
    return f"<section id='probes'><h2>Probes</h2>{''.join(parts)}</section>" if parts else ""


def sweep_section(metrics: dict[str, Any]) -> str:
    rows = [(name, p) for name, m in metrics["models"].items() for p in m["sweep"]]
    if not rows:
        return ""
    body = "".join(
        f"<tr><td>{esc(name)}</td><td style='text-align:left'>{esc(p['label'])}</td><td>{esc(est(p['reward']))}</td>"
        f"<td>{esc(num1(p['length']['mean']))}</td><td>{esc(pct(p['eos_rate']))}</td>"
        f"<td>{esc(num3(p['distinct_1']))}</td><td>{esc(num3(p['distinct_2']))}</td>"
        f"<td>{esc(pct(p['repeated_ngram_rate']))}</td></tr>" for name, p in rows)
    return ("<section id='sweep'><h2>Sampling sweep</h2><table><tr><th>model</th><th>setting</th>"
            "<th>proxy reward</th><th>length</th><th>EOS</th><th>distinct-1</th><th>distinct-2</th>"
            f"<th>repetition</th></tr>{body}</table></section>")


def categories_section(metrics: dict[str, Any]) -> str:
    names = list(dict.fromkeys(c for m in metrics["models"].values() for c in m["categories"]))
    if not names:
        return ""
    parts = []
    for category in names:
        rows = [(name, m["categories"][category]) for name, m in metrics["models"].items()
                if category in m["categories"]]
        body = "".join(
            f"<tr><td>{esc(name)}</td><td>{c['n']}</td><td>{esc(est(c['proxy_reward']))}</td>"
            f"<td>{esc(est(c['judge_reward']))}</td><td>{esc(pct_est(c['win_rate_proxy']))}</td>"
            f"<td>{esc(num1(c['length_mean']))}</td><td>{esc(pct(c['eos_rate']))}</td>"
            f"<td>{esc(num3(c['distinct_2']))}</td><td>{esc(pct(c['refusal_rate']))}</td>"
            f"<td>{esc(est(c['rouge_l']))}</td></tr>" for name, c in rows)
        parts.append(f"<h3>{esc(category)}</h3><table><tr><th>model</th><th>n</th><th>proxy reward</th>"
                     "<th>judge reward</th><th>win (proxy)</th><th>length</th><th>EOS</th><th>distinct-2</th>"
                     f"<th>refusal</th><th>ROUGE-L</th></tr>{body}</table>")
    return f"<section id='categories'><h2>Custom categories</h2>{''.join(parts)}</section>"


def samples_section(metrics: dict[str, Any], samples: list[dict[str, Any]], max_samples: int) -> str:
    rows = [r for r in samples if r["set"] == "prompts"][:max_samples]
    if not rows:
        return ""
    total = sum(r["set"] == "prompts" for r in samples)
    blocks = []
    for row in rows:
        reference = (f"<p><b>reference:</b> <span class='prompt'>{esc(row['reference'])}</span></p>"
                     if row.get("reference") else "")
        cards = "".join(_response_card(name, r) for name, r in row["responses"].items())
        blocks.append(f"<div class='sample'><div class='muted'>#{row['index']} {esc(row.get('source', ''))}</div>"
                      f"<div class='prompt'>{render_messages(row['prompt'])}</div>{reference}"
                      f"<div class='grid'>{cards}</div></div>")
    return (f"<section id='samples'><h2>Samples</h2><p class='muted'>The first {len(rows)} of {total} prompts; "
            "every response is in samples.jsonl.</p>" + "".join(blocks) + "</section>")


def _response_card(name: str, r: dict[str, Any]) -> str:
    scores = [f"proxy {r['proxy']:.3f}"] + ([f"judge {r['judge']:.3f}"] if r.get("judge") is not None else [])
    scores += [f"{r['tokens']} tokens", "EOS" if r["eos"] else "cut at max_new_tokens"]
    return (f"<div class='resp'><h4>{esc(name)}</h4><div class='muted'>{esc(' · '.join(scores))}</div>"
            f"<pre>{esc(r['text'])}</pre></div>")


def render_messages(messages: Sequence[dict[str, str]] | str) -> str:
    if isinstance(messages, str):
        return esc(messages)
    if len(messages) == 1:
        return esc(messages[0]["content"])
    return "\n".join(f"<b>{esc(m['role'])}:</b> {esc(m['content'])}" for m in messages)


# ----------------------------------------------------------------------------- formatting


def est(e: dict[str, Any] | None) -> str:
    if not e:
        return "–"
    if e.get("method") == "none" or e.get("low") is None:
        return f"{e['value']:.3f}"
    return f"{e['value']:.3f} [{e['low']:.3f}, {e['high']:.3f}]"


def pct_est(e: dict[str, Any] | None) -> str:
    if not e:
        return "–"
    if e.get("method") == "none" or e.get("low") is None:
        return f"{e['value']:.0%}"
    return f"{e['value']:.0%} [{e['low']:.0%}, {e['high']:.0%}]"


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def num1(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def num3(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _kl(m: dict[str, Any]) -> str | None:
    if m.get("kl") and m["kl"].get("value"):
        return est(m["kl"]["value"])
    if m.get("kl_bound") is not None:
        return f"~{m['kl_bound']:.3f}"
    return None


def _scored_by(column: str, roles: list[str]) -> bool:
    """Whether a metrics column comes from one of ``roles``' scores ("win (judge)", "proxy shift", ...)."""
    return any(role in column.replace("(", " ").replace(")", " ").split() for role in roles)


def pct1_est(e: dict[str, Any] | None) -> str:
    if not e:
        return "–"
    if e.get("low") is None:
        return f"{e['value']:.1%}"
    return f"{e['value']:.1%} [{e['low']:.1%}, {e['high']:.1%}]"


def _present(value: Any) -> bool:
    return value is not None and value != {}


def _scorer(config: dict[str, Any], role: str) -> str:
    """The ``{role}_reward_model`` folder, or the ``{role}_reward:`` entry as ``kind: path`` (a classifier, say)."""
    spec = config.get(f"{role}_reward") or {}
    return config.get(f"{role}_reward_model") or (f"{spec.get('kind')}: {spec.get('path') or spec.get('label')}"
                                                  if spec.get("kind") else "")
