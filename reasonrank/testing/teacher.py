"""A deterministic stand-in teacher for the synthesis pipeline: a real OpenAI-compatible HTTP server on
127.0.0.1 that understands both teacher prompts (positive mining and RankGPT multi-turn ranking).

- Mining: a passage is relevant when ``judge(query, answer, passage)`` says so (default: it shares at
  least two content words with the gold answer, or with the query when there is none).
- Ranking: passages ordered by ``rank(query, passages)`` (default: word overlap with the query), with
  a short reasoning chain in ``<think>`` -- or, with ``reasoning_content=True``, in the
  ``reasoning_content`` field the way DeepSeek's API returns it.

Fault injection: ``answers["mining" | "ranking"]`` queues raw outputs to return instead (malformed
answers), ``faults`` queues ``"500"``/``"drop"`` for the next requests, and ``failing_queries`` makes
every request about those queries fail with HTTP 500; ``delay`` slows every answer. It is not a model: it exercises everything in
the pipeline except the language model.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler
from typing import Any

from reasonrank.core.format import format_id_chain
from reasonrank.testing.answers import lexical_ranking
from reasonrank.testing.server import JSONHandler, LocalServer

__all__ = ["TeacherServer", "answer_overlap_judge", "parse_teacher_request"]

_WORD = re.compile(r"\w{4,}")
_COMMON = frozenset(
    "from that with their into this which than they them were have been more rather every also what".split()
)
_MINING_QUERY = re.compile(r"^Query: (.*)$", re.MULTILINE)
_MINING_ANSWER = re.compile(r"^Reference answer: (.*?)\n\nCandidate passages:", re.MULTILINE | re.DOTALL)
_PASSAGE_LINE = re.compile(r"^\[(\d+)\] (.*)$", re.MULTILINE)
_RANK_QUERY = re.compile(r"Rank the passages based on their relevance to query: (.*)\.$", re.DOTALL)
_PASSAGE_TURN = re.compile(r"^\[(\d+)\] (.*)$", re.DOTALL)

Judge = Callable[[str, str | None, str], bool]
RankFn = Callable[[str, list[str]], list[int]]


def answer_overlap_judge(query: str, answer: str | None, passage: str) -> bool:
    """Relevant when the passage shares two or more words (4+ letters, not common) with the answer, else the query."""

    def words(text: str) -> set[str]:
        return {w.lower() for w in _WORD.findall(text)} - _COMMON

    return len(words(answer or query) & words(passage)) >= 2


def parse_teacher_request(messages: Sequence[dict[str, str]]) -> tuple[str, str, str | None, list[str]]:
    """``(kind, query, answer, passages)`` of a synthesis prompt; kind is "mining" or "ranking"."""
    first = messages[0]["content"] if messages else ""
    if len(messages) == 1 and "Candidate passages:" in first:
        query = _MINING_QUERY.search(first)
        answer = _MINING_ANSWER.search(first)
        body = first.split("Candidate passages:\n", 1)[1]
        passages = [m.group(2) for m in _PASSAGE_LINE.finditer(body)]
        return "mining", query.group(1) if query else "", answer.group(1) if answer else None, passages
    match = _RANK_QUERY.search(first)
    if match is None:
        raise ValueError("not a synthesis prompt (neither mining nor RankGPT ranking)")
    passages = []
    for message in messages[2:-1]:
        turn = _PASSAGE_TURN.match(message["content"]) if message["role"] == "user" else None
        if turn:
            passages.append(turn.group(2))
    return "ranking", match.group(1), None, passages


class TeacherServer(LocalServer):
    """An OpenAI-compatible chat server that answers the two synthesis prompts deterministically."""

    def __init__(
        self,
        judge: Judge = answer_overlap_judge,
        rank: RankFn = lexical_ranking,
        *,
        model: str = "teacher-test",
        reasoning_content: bool = False,
        reasoning: str = "Passage by passage, I compare what each says with what the query asks.",
        delay: float = 0.0,
    ) -> None:
        self.judge = judge
        self.rank = rank
        self.model = model
        self.reasoning_content = reasoning_content
        self.reasoning = reasoning
        self.delay = delay  # seconds to wait before each answer (to keep requests in flight)
        self.answers: dict[str, deque[str]] = {"mining": deque(), "ranking": deque()}
        self.faults: deque[str] = deque()  # "500" or "drop", for the next requests of any kind
        self.failing_queries: set[str] = set()
        self.requests: list[tuple[str, dict[str, Any]]] = []  # (kind, body)
        self.in_flight = 0
        self.max_in_flight = 0  # the most chat requests handled at once
        self._lock = threading.Lock()

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.requests if k == kind)

    # -------------------------------------------------------------- behaviour
    def answer(self, kind: str, query: str, answer: str | None, passages: list[str]) -> tuple[str, str]:
        """``(reasoning, final text)`` for one request."""
        if kind == "mining":
            ids = [f"[{i}]" for i, p in enumerate(passages, 1) if self.judge(query, answer, p)]
            return "I check each passage against the reference answer.", f"Relevant: {', '.join(ids) or 'none'}"
        order = self.rank(query, passages)
        return self.reasoning, format_id_chain([i + 1 for i in order])

    def _reply(self, body: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        kind, query, answer, passages = parse_teacher_request(body["messages"])
        with self._lock:
            self.requests.append((kind, body))
            fault = self.faults.popleft() if self.faults else None
            scripted = self.answers[kind].popleft() if self.answers[kind] else None
        if self.delay:
            time.sleep(self.delay)
        if fault is not None:
            return (500, {"error": {"message": "injected failure"}}) if fault == "500" else (0, None)
        if query in self.failing_queries:
            return 500, {"error": {"message": f"injected failure for query {query!r}"}}
        message: dict[str, Any] = {"role": "assistant"}
        if scripted is not None:
            message["content"] = scripted
        else:
            reasoning, final = self.answer(kind, query, answer, passages)
            if self.reasoning_content:
                message.update(content=final, reasoning_content=reasoning)
            else:
                message["content"] = f"<think>\n{reasoning}\n</think>\n\n{final}"
        prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
        completion_tokens = len(message["content"].split()) + len(message.get("reasoning_content", "").split())
        return 200, {
            "id": "chatcmpl-teacher",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_TeacherHandler,), {"owner": self})


class _TeacherHandler(JSONHandler):
    owner: TeacherServer

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": self.owner.model, "object": "model"}]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        outer = self.owner
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        with outer._lock:
            outer.in_flight += 1
            outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
        try:
            status, payload = outer._reply(json.loads(raw or b"{}"))
        except (ValueError, KeyError, IndexError) as err:
            self._send(400, {"error": {"message": f"bad request: {err}"}})
            return
        finally:
            with outer._lock:
                outer.in_flight -= 1
        if payload is None:  # "drop": close without answering
            self._drop()
            return
        try:
            self._send(status, payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
