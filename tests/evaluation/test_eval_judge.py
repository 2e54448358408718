"""The LLM judge against a fake OpenAI-compatible server on 127.0.0.1 (no network)."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alignflow.evaluation.judge import (
    JudgeConfig,
    JudgeError,
    LLMJudge,
    judge_win_rate,
    parse_verdict,
)

ANSWERS = re.compile(r"Assistant A's Answer\]\n(.*?)\n\[The End.*?Assistant B's Answer\]\n(.*?)\n\[The End", re.S)


class FakeJudge(BaseHTTPRequestHandler):
    """Replies like a chat model. ``mode``: "fair" prefers the answer containing GOOD (a tie when
    neither or both do); "first" always says [[A]]; "mute" gives no verdict; "flaky" fails once
    with HTTP 503, then is fair; "broken" answers HTTP 400."""

    mode = "fair"
    requests: list[dict] = []
    failed_once = False

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeJudge.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
        if self.mode == "broken" or (self.mode == "flaky" and not FakeJudge.failed_once):
            FakeJudge.failed_once = True
            self.send_error(400 if self.mode == "broken" else 503, "nope")
            return
        first, second = ANSWERS.search(body["messages"][1]["content"]).groups()
        if self.mode == "first":
            verdict = "[[A]]"
        elif self.mode == "mute":
            verdict = "I like both."
        else:
            verdict = {(True, False): "[[A]]", (False, True): "[[B]]"}.get(("GOOD" in first, "GOOD" in second), "[[C]]")
        reply = {"choices": [{"message": {"role": "assistant", "content": f"Explanation. {verdict}"}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def server():
    FakeJudge.mode, FakeJudge.requests, FakeJudge.failed_once = "fair", [], False
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeJudge)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def judge(url: str, **kwargs) -> LLMJudge:
    return LLMJudge(JudgeConfig(base_url=url, model="judge-model", backoff_s=0.01, **kwargs))


def test_parse_verdict():
    assert parse_verdict("A is clearer. [[A]]") == "A"
    assert parse_verdict("First [[A]], on reflection [[B]]") == "B"
    assert parse_verdict("[[C]]") == "tie" and parse_verdict("[[ tie ]]") == "tie"
    assert parse_verdict(" B. ") == "B"
    assert parse_verdict("Both are fine.") is None


def test_fair_judge_wins_and_request_format(server):
    verdict = judge(server, api_key="secret").compare("Q?", "a GOOD answer", "a bad answer")
    assert verdict.outcome == 1.0 and verdict.consistent and (verdict.a_first, verdict.b_first) == ("A", "A")
    first, swapped = FakeJudge.requests
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer secret"
    assert first["model"] == "judge-model" and first["temperature"] == 0.0
    assert first["messages"][0]["role"] == "system" and "[[A]]" in first["messages"][0]["content"]
    assert first["messages"][1]["content"].index("GOOD") < first["messages"][1]["content"].index("bad answer")
    assert swapped["messages"][1]["content"].index("GOOD") > swapped["messages"][1]["content"].index("bad answer")


def test_position_swapping_cancels_a_first_position_bias(server):
    FakeJudge.mode = "first"
    verdict = judge(server).compare("Q?", "a GOOD answer", "a bad answer")
    assert verdict.outcome == 0.5 and not verdict.consistent and (verdict.a_first, verdict.b_first) == ("A", "B")


def test_judge_win_rate(server):
    questions = ["q1", "q2", "q3", "q4"]
    policy = ["GOOD", "GOOD", "meh", "GOOD too"]
    reference = ["bad", "bad", "GOOD", "GOOD"]
    result = judge_win_rate(judge(server, workers=3), questions, policy, reference, n_bootstrap=50)
    assert [v.outcome for v in result.verdicts] == [1.0, 1.0, 0.0, 0.5]
    assert result.win_rate.value == pytest.approx(2.5 / 4)
    assert (result.win_rate.wins, result.win_rate.ties, result.win_rate.losses) == (2, 1, 1)
    assert result.unparsed == 0 and result.inconsistent == 0
    assert len(FakeJudge.requests) == 8


def test_unparsed_replies_are_left_out_and_counted(server):
    FakeJudge.mode = "mute"
    result = judge_win_rate(judge(server), ["q"], ["GOOD"], ["bad"])
    assert result.win_rate is None and result.unparsed == 1
    assert result.verdicts[0].raw == ("Explanation. I like both.", "Explanation. I like both.")


def test_retries_server_errors_then_succeeds(server):
    FakeJudge.mode = "flaky"
    assert judge(server).compare("Q?", "GOOD", "bad").outcome == 1.0
    assert len(FakeJudge.requests) == 3  # the failed one and the two that answered


def test_client_errors_and_unreachable_servers_raise(server):
    FakeJudge.mode = "broken"
    with pytest.raises(JudgeError, match="HTTP 400"):
        judge(server).compare("Q?", "a", "b")
    assert len(FakeJudge.requests) == 1  # a 400 is not retried
    with pytest.raises(JudgeError, match="cannot reach the judge"):
        judge("http://127.0.0.1:9/v1", retries=0, timeout_s=2).compare("Q?", "a", "b")


def test_config_is_checked():
    with pytest.raises(ValueError, match="base_url"):
        LLMJudge(JudgeConfig(base_url="127.0.0.1:8000", model="m"))
    with pytest.raises(ValueError, match="model"):
        LLMJudge(JudgeConfig(base_url="http://x", model=""))
