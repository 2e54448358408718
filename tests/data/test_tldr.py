"""Summarisation data (Stiennon et al. 2020): comparison and TL;DR SFT rows, the paper's prompt
template, and splits by post."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignflow.data import ChatFormatter, detect_kind, explore, read_preferences, read_prompts, read_sft
from alignflow.data.splits import prompt_key, train_val_split
from alignflow.data.tokenize import PromptResponseEncoder

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "summarize-from-feedback-comparisons"


def comparison(post_id="t3_a", choice=0, texts=(" short summary", " another summary"), post="my post text"):
    row = {"info": {"id": post_id, "post": post, "title": "A title", "subreddit": "relationships"},
           "summaries": [{"text": t, "policy": "sup4", "note": None} for t in texts],
           "choice": choice, "split": "valid1", "worker": "w1", "batch": "batch13"}
    if choice is None:
        del row["choice"]
    return row


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_a_comparison_is_a_preference_pair_in_the_papers_layout(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [comparison(choice=1)])
    assert detect_kind(path) == "preference"
    [pair] = read_preferences(path).examples
    content = "SUBREDDIT: r/relationships\n\nTITLE: A title\n\nPOST: my post text"
    assert pair.prompt == [{"role": "user", "content": content}]
    assert (pair.chosen, pair.rejected, pair.source) == ("another summary", "short summary", f"{path}:1")
    assert read_sft(path).examples[0].response == "another summary"


def test_malformed_comparisons_are_reported_with_file_line_and_reason(tmp_path):
    rows = [comparison(choice=None), comparison(choice=2), comparison(texts=(" same", "same ")),
            comparison(post=""), comparison()]
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    result = read_preferences(path)
    assert len(result.examples) == 1
    reasons = {issue.source: issue.reason for issue in result.issues}
    assert reasons[f"{path}:1"].startswith("missing field 'choice'")
    assert reasons[f"{path}:2"].startswith("choice out of range: 2")
    assert "identical" in reasons[f"{path}:3"]
    assert reasons[f"{path}:4"].startswith("missing post")


def test_prompts_are_read_once_per_post_with_the_preferred_summary_as_reference(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [comparison("t3_a"), comparison("t3_a", choice=1), comparison("t3_b")])
    result = read_prompts(path)
    assert [p.reference for p in result.examples] == ["short summary", "short summary"]
    assert result.duplicates == 1 and not result.issues
    assert explore(path, kind="prompt").duplicates == 1


def test_tldr_sft_rows_from_jsonl_and_csv(tmp_path):
    row = {"subreddit": "AskReddit", "title": "Why?", "post": "Because.", "summary": " it is so"}
    jsonl = write_jsonl(tmp_path / "t.jsonl", [row, {**row, "post": " "}])
    csv = tmp_path / "t.csv"
    csv.write_text("subreddit,title,post,summary\nAskReddit,Why?,Because.,it is so\n")
    for path in (jsonl, csv):
        assert detect_kind(path) == "sft"
        example = read_sft(path).examples[0]
        assert example.prompt[0]["content"] == "SUBREDDIT: r/AskReddit\n\nTITLE: Why?\n\nPOST: Because."
        assert example.response == "it is so"
        assert read_prompts(path).examples[0].reference == "it is so"
    [issue] = read_sft(jsonl).issues
    assert issue.reason.startswith("missing post") and issue.source == f"{jsonl}:2"


def test_the_tldr_template_fits_the_post_at_a_word_boundary(plain_tokenizer):
    tokenizer = plain_tokenizer  # one token per word or punctuation mark
    formatter = ChatFormatter(tokenizer, template="tldr")
    messages = [{"role": "user", "content": "SUBREDDIT: r/x\n\nTITLE: t\n\nPOST: hello world how are you"}]
    full = formatter.prompt_text(messages)
    assert full == "SUBREDDIT: r/x\n\nTITLE: t\n\nPOST: hello world how are you\n\nTL;DR:"
    # header: SUBREDDIT : r / x TITLE : t POST : (10 tokens); TL ; DR : (4): 14 + kept words
    assert formatter.prompt_text(messages, max_tokens=16) == "SUBREDDIT: r/x\n\nTITLE: t\n\nPOST: hello world\n\nTL;DR:"
    assert formatter.prompt_text(messages, max_tokens=100) == full
    assert formatter.response_text(" a summary") == formatter.response_text("a summary") == " a summary"


def test_encoded_tldr_prompts_keep_the_header_and_responses_end_at_eos(plain_tokenizer):
    tokenizer = plain_tokenizer
    formatter = ChatFormatter(tokenizer, template="tldr")
    encoder = PromptResponseEncoder(tokenizer, formatter, max_length=40, max_prompt_length=16)
    messages = [{"role": "user", "content": "SUBREDDIT: r/x\n\nTITLE: t\n\nPOST: hello world how are you"}]
    encoded = encoder.encode(messages, "fine")
    fitted = "SUBREDDIT: r/x\n\nTITLE: t\n\nPOST: hello world\n\nTL;DR:"  # no token cut from its left
    assert encoded.prompt_ids == tokenizer(fitted, add_special_tokens=False)["input_ids"]
    assert encoded.response_ids[-1] == tokenizer.eos_token_id and not encoded.truncated_prompt


def test_a_split_by_prompt_holds_out_the_same_posts_for_every_kind(tmp_path):
    rows = [comparison(f"t3_{i % 40}", post=f"post {i % 40}", choice=i % 2) for i in range(120)]
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    pairs, prompts = read_preferences(path).examples, read_prompts(path).examples
    train, val = train_val_split(pairs, 0.2, seed=3, key=prompt_key)
    assert not {prompt_key(e) for e in train} & {prompt_key(e) for e in val}
    _, val_prompts = train_val_split(prompts, 0.2, seed=3, key=prompt_key)
    assert {prompt_key(e) for e in val} == {prompt_key(e) for e in val_prompts} != set()
    assert train_val_split(pairs, 0.2, seed=4, key=prompt_key)[1] != val


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} is absent (the shared real-data folder)")
def test_the_real_comparison_files():
    batch13 = SHARED / "comparisons_batch13.jsonl"
    pairs = read_preferences(batch13)
    assert len(pairs.examples) == 1097 and not pairs.issues
    assert pairs.examples[0].source == f"{batch13}:1"
    assert pairs.examples[0].prompt[0]["content"].startswith("SUBREDDIT: r/")
    prompts = read_prompts(batch13)
    assert len(prompts.examples) == 905 and prompts.duplicates == 192
    cnndm = read_preferences(SHARED / "comparisons_cnndm0.jsonl")
    assert cnndm.examples[0].prompt[0]["content"].startswith("SITE: dailymail\n\nTITLE: ")
    assert len(cnndm.issues) == 12 and all("summary has no text" in i.reason for i in cnndm.issues)
    assert len(read_prompts(str(SHARED / "comparisons_batch1*.jsonl")).examples) == 1003
