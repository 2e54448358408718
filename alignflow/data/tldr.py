"""The summarisation rows of Stiennon et al. 2020 ("Learning to summarize from human feedback").

Two layouts:

* comparisons (OpenAI's summarize-from-feedback batches): ``{info: {id, post, title, subreddit},
  summaries: [{text, policy, note}, ...], choice, split, worker, batch}``; CNN/DailyMail batches
  have ``info: {id, article, site, title}``. ``summaries[choice]`` is the preferred summary.
* TL;DR SFT rows: ``{subreddit, title, post, summary}`` (JSONL or CSV).

Both become one user message in the paper's layout, ``SUBREDDIT: r/{subreddit}\\n\\nTITLE:
{title}\\n\\nPOST: {post}`` (``SITE`` / ``ARTICLE`` for CNN/DM), so that every template can render
it: a chat model reads it as a request, and the ``tldr`` template of
:class:`~alignflow.data.formatting.ChatFormatter` appends ``\\n\\nTL;DR:`` and fits the post to a
token budget. Summaries keep no leading space: the template puts exactly one before each.
"""

from __future__ import annotations

import re
from typing import Any

from alignflow.data.hh import IDENTICAL_PAIR
from alignflow.data.types import Message, PreferenceExample, PromptExample, SFTExample

BODY_LABELS = ("POST", "ARTICLE")
BODY_START = re.compile(r"^(?:POST|ARTICLE): ", re.MULTILINE)  # where the part that may be cut begins


def is_comparison(fields: dict[str, Any]) -> bool:
    return "summaries" in fields and "info" in fields


def is_tldr_sft(fields: dict[str, Any]) -> bool:
    return "post" in fields and "summary" in fields


def tldr_message(subreddit: Any, title: Any, post: Any, *, body_label: str = "POST", site_label: str = "SUBREDDIT",
                 ) -> list[Message]:
    """The paper's prompt as one user message; a missing title or subreddit drops its line."""
    if not isinstance(post, str) or not post.strip():
        raise ValueError(f"missing {body_label.lower()}: the {body_label.lower()} text is absent or empty")
    prefix = "r/" if site_label == "SUBREDDIT" else ""
    head = [f"{site_label}: {prefix}{_clean(subreddit)}" if _clean(subreddit) else "",
            f"TITLE: {_clean(title)}" if _clean(title) else ""]
    sections = [*filter(None, head), f"{body_label}: {post.strip()}"]
    return [{"role": "user", "content": "\n\n".join(sections)}]


def comparison_prompt(fields: dict[str, Any]) -> list[Message]:
    info = fields["info"]
    if not isinstance(info, dict):
        raise ValueError("field 'info' must be an object with id, post, title, subreddit")
    if "article" in info:  # CNN/DailyMail
        return tldr_message(info.get("site"), info.get("title"), info.get("article"), body_label="ARTICLE",
                            site_label="SITE")
    return tldr_message(info.get("subreddit"), info.get("title"), info.get("post"))


def comparison_to_preference(fields: dict[str, Any], source: str) -> PreferenceExample:
    prompt = comparison_prompt(fields)
    chosen, rejected = _chosen_and_rejected(fields)
    return PreferenceExample(prompt=prompt, chosen=chosen, rejected=rejected, source=source)


def comparison_to_sft(fields: dict[str, Any], source: str) -> SFTExample:
    """The preferred summary as the SFT target (in these files mostly a model's, not a human's)."""
    prompt = comparison_prompt(fields)
    chosen, _ = _chosen_and_rejected(fields)
    return SFTExample(prompt=prompt, response=chosen, source=source)


def comparison_to_prompt(fields: dict[str, Any], source: str) -> PromptExample:
    """The post, with its preferred summary as the reference (for ROUGE)."""
    prompt = comparison_prompt(fields)
    chosen, _ = _chosen_and_rejected(fields)
    return PromptExample(prompt=prompt, reference=chosen, source=source)


def tldr_sft_prompt(fields: dict[str, Any]) -> list[Message]:
    return tldr_message(fields.get("subreddit"), fields.get("title"), fields.get("post"))


def tldr_summary(fields: dict[str, Any]) -> str:
    summary = fields.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        raise ValueError("missing summary: field 'summary' is absent or empty")
    return summary.strip()


def post_id(fields: dict[str, Any]) -> str | None:
    """``info.id`` of a comparison row (one post is compared many times), else None."""
    info = fields.get("info")
    return str(info["id"]) if isinstance(info, dict) and info.get("id") is not None else None


def _chosen_and_rejected(fields: dict[str, Any]) -> tuple[str, str]:
    summaries, choice = fields.get("summaries"), fields.get("choice")
    if not isinstance(summaries, list) or len(summaries) != 2:
        raise ValueError("field 'summaries' must be a list of two {text, policy} objects")
    texts = [s.get("text") if isinstance(s, dict) else None for s in summaries]
    if not all(isinstance(text, str) and text.strip() for text in texts):
        raise ValueError("a summary has no text: each of 'summaries' needs a non-empty 'text'")
    if choice is None:
        raise ValueError("missing field 'choice': which summary was preferred is unknown")
    if isinstance(choice, bool) or not isinstance(choice, int) or choice not in (0, 1):
        raise ValueError(f"choice out of range: {choice!r}, expected 0 or 1 (an index into 'summaries')")
    chosen, rejected = texts[choice].strip(), texts[1 - choice].strip()
    if chosen == rejected:
        raise ValueError(IDENTICAL_PAIR)
    return chosen, rejected


def _clean(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""
