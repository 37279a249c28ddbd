"""Deterministic stand-ins for a ReasonRank model, for tests and offline pipelines.

- :class:`RankingServer`: a real OpenAI-compatible HTTP server on 127.0.0.1 that reads the ReasonRank
  prompt, ranks the window by word overlap with the query (or any function you give it) and answers in
  the model's format. It can inject faults (HTTP errors, delays, dropped connections, malformed JSON,
  malformed answers) and offers vLLM's ``/tokenize`` and ``/detokenize`` (whitespace words <-> ids of a
  vocabulary that grows as words are seen). ``max_in_flight`` reports the most concurrent chat requests.
- :class:`FunctionBackend`: the same idea in-process, as a :class:`~reasonrank.core.backends.Backend`.

Neither is a model: they exercise every part of the pipeline except the language model itself.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from reasonrank.core.backends.base import Backend
from reasonrank.core.types import ChatRequest, Completion

__all__ = [
    "RankingServer",
    "FunctionBackend",
    "LocalServer",
    "Fault",
    "parse_window_prompt",
    "lexical_ranking",
    "format_answer",
]

RankFn = Callable[[str, list[str]], list[int]]

_QUERY = re.compile(r"relevance to the search query: (.*?)\.\n", re.DOTALL)
_WORD = re.compile(r"\w+")


def parse_window_prompt(messages: Sequence[dict[str, str]]) -> tuple[str, list[str]]:
    """Recover (query, passages) from the messages built by :func:`reasonrank.build_messages`."""
    user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    match = _QUERY.search(user)
    query = match.group(1) if match else ""
    body = user.split("\n\n", 1)[1] if "\n\n" in user else user
    body = body.rsplit("Search Query:", 1)[0]
    # Passages may span lines: cut at the next marker in sequence ("\n[2] ", "\n[3] ", ...).
    passages: list[str] = []
    start = body.find("[1] ")
    while start != -1:
        k = len(passages) + 1
        begin = start + len(f"[{k}] ")
        nxt = body.find(f"\n[{k + 1}] ", begin)
        passages.append(body[begin : nxt if nxt != -1 else len(body)].rstrip("\n"))
        start = nxt + 1 if nxt != -1 else -1
    return query, passages


def lexical_ranking(query: str, passages: list[str]) -> list[int]:
    """0-based order by the number of distinct query words in each passage; ties keep input order."""
    q = {w.lower() for w in _WORD.findall(query)}
    overlap = [len(q & {w.lower() for w in _WORD.findall(p)}) for p in passages]
    return sorted(range(len(passages)), key=lambda i: (-overlap[i], i))


def format_answer(order: Sequence[int], reasoning: str = "Comparing each passage with the query.") -> str:
    """The model's output format for a 0-based order: ``<think>..</think> <answer>[a] > [b]</answer>``."""
    ranked = " > ".join(f"[{i + 1}]" for i in order)
    return f"<think>{reasoning}</think> <answer>{ranked}</answer>"


class FunctionBackend(Backend):
    """An in-process backend that ranks each window with ``rank(query, passages) -> 0-based order``.

    ``respond(query, passages, order) -> str`` may replace the formatting of the output (to produce
    malformed answers, for instance). ``calls`` records every batch it received.
    """

    def __init__(
        self,
        rank: RankFn = lexical_ranking,
        respond: Callable[[str, list[str], list[int]], str] | None = None,
        name: str = "function",
    ) -> None:
        self.rank = rank
        self.respond = respond or (lambda q, p, order: format_answer(order))
        self.name = name
        self.calls: list[list[ChatRequest]] = []

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        self.calls.append(list(requests))
        out = []
        for request in requests:
            query, passages = parse_window_prompt(request.messages)
            order = list(self.rank(query, passages))
            out.append(Completion(text=self.respond(query, passages, order), finish_reason="stop"))
        return out


@dataclass
class Fault:
    """One injected failure, consumed by the next chat request.

    kind: "status" (HTTP ``status`` with an error body), "delay" (sleep ``seconds`` then answer),
    "drop" (close the connection without a response), "malformed_json" (200 with a broken body),
    "text" (200 with ``text`` as the model output), "no_choices" (200 with an empty choices list),
    "no_content" (200 whose message has no content).
    """

    kind: str
    status: int = 500
    seconds: float = 0.0
    text: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class LocalServer:
    """An HTTP server on 127.0.0.1 (a free port) in a daemon thread; subclasses give ``_handler()``."""

    _server: ThreadingHTTPServer | None = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self) -> Self:
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        server.daemon_threads = True
        self._server = server
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name=type(self).__name__, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


class RankingServer(LocalServer):
    """An OpenAI-compatible chat server on 127.0.0.1 that ranks windows deterministically.

    Use as a context manager; ``base_url`` ends in ``/v1``. ``faults`` is a queue of :class:`Fault`
    applied to the next chat requests in order. ``requests`` records the JSON bodies received.

    ``latency`` delays every chat answer (to overlap requests); ``reasoning_field`` (e.g.
    ``"reasoning_content"``) answers as a vLLM/SGLang server with a reasoning parser: the reasoning in
    that field, only the ``<answer>`` part in ``content``. ``tokenize=True`` serves ``/tokenize`` and
    ``/detokenize`` with vLLM's request and response shapes.
    """

    def __init__(
        self,
        rank: RankFn = lexical_ranking,
        *,
        model: str = "reasonrank-test",
        api_key: str | None = None,
        tokenize: bool = False,
        reasoning: str = "Comparing each passage with the query.",
        latency: float = 0.0,
        reasoning_field: str | None = None,
    ) -> None:
        self.rank = rank
        self.model = model
        self.api_key = api_key
        self.tokenize = tokenize
        self.reasoning = reasoning
        self.latency = latency
        self.reasoning_field = reasoning_field
        self.in_flight = 0
        self.max_in_flight = 0
        self._vocab: dict[str, int] = {}
        self._words: list[str] = []
        self.faults: deque[Fault] = deque()
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if "messages" in r]

    # -------------------------------------------------------------- behaviour
    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self.faults.popleft() if self.faults else None

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        query, passages = parse_window_prompt(body["messages"])
        text = format_answer(self.rank(query, passages), self.reasoning)
        if self.reasoning_field:
            reasoning, _, answer = text.partition("</think>")
            payload = self._completion(body, answer.strip())
            payload["choices"][0]["message"][self.reasoning_field] = reasoning.removeprefix("<think>")
            return payload
        return self._completion(body, text)

    # -------------------------------------------------------------- vLLM's /tokenize and /detokenize
    def tokenize_text(self, text: str) -> list[int]:
        """Whitespace words -> ids (new words get the next id)."""
        with self._lock:
            ids = []
            for word in text.split():
                if word not in self._vocab:
                    self._vocab[word] = len(self._words)
                    self._words.append(word)
                ids.append(self._vocab[word])
            return ids

    def detokenize_ids(self, ids: Sequence[int]) -> str:
        """Ids -> words joined by single spaces; an unknown id raises ``IndexError``."""
        with self._lock:
            if any(not isinstance(i, int) or not 0 <= i < len(self._words) for i in ids):
                raise IndexError("token id out of vocabulary")
            return " ".join(self._words[i] for i in ids)

    def _track(self, delta: int) -> None:
        with self._lock:
            self.in_flight += delta
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def reset_stats(self) -> None:
        """Forget the recorded requests and the in-flight maximum."""
        with self._lock:
            self.requests.clear()
            self.max_in_flight = self.in_flight

    def _completion(self, body: dict[str, Any], text: str) -> dict[str, Any]:
        prompt_tokens = sum(len(m["content"].split()) for m in body.get("messages", []))
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(text.split()),
                "total_tokens": prompt_tokens + len(text.split()),
            },
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, payload: Any, raw: bytes | None = None, headers=None) -> None:
                data = raw if raw is not None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if outer.api_key is None:
                    return True
                if self.headers.get("Authorization") == f"Bearer {outer.api_key}":
                    return True
                self._send(401, {"error": {"message": "invalid api key", "type": "auth"}})
                return False

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models" and self._authorized():
                    self._send(200, {"object": "list", "data": [{"id": outer.model, "object": "model"}]})
                elif self.path.rstrip("/") != "/v1/models":
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    self._send(400, {"error": {"message": "invalid JSON body"}})
                    return
                with outer._lock:
                    outer.requests.append(body)
                path = self.path.rstrip("/")
                if path in ("/tokenize", "/detokenize"):
                    if not outer.tokenize:
                        self._send(404, {"detail": "Not Found"})
                    elif path == "/tokenize":
                        words = body.get("prompt", "").split()
                        tokens = outer.tokenize_text(body.get("prompt", ""))
                        self._send(
                            200, {"tokens": tokens, "count": len(tokens), "max_model_len": 32768, "words": words}
                        )
                    else:
                        try:
                            self._send(200, {"prompt": outer.detokenize_ids(body.get("tokens") or [])})
                        except IndexError as err:
                            self._send(400, {"detail": str(err)})
                    return
                if path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                if not self._authorized():
                    return
                outer._track(+1)
                try:
                    self._chat(body)
                finally:
                    outer._track(-1)

            def _chat(self, body: dict[str, Any]) -> None:
                fault = outer._next_fault()
                if fault is not None:
                    if fault.kind == "status":
                        self._send(fault.status, {"error": {"message": f"injected {fault.status}"}}, headers=fault.headers)
                        return
                    if fault.kind == "drop":
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    if fault.kind == "malformed_json":
                        self._send(200, None, raw=b'{"choices": [{"message": {"content": "[1] > ')
                        return
                    if fault.kind == "no_choices":
                        self._send(200, {"id": "x", "choices": []})
                        return
                    if fault.kind == "no_content":
                        payload = outer._completion(body, "")
                        del payload["choices"][0]["message"]["content"]
                        self._send(200, payload)
                        return
                    if fault.kind == "text":
                        self._send(200, outer._completion(body, fault.text))
                        return
                    if fault.kind == "delay":
                        time.sleep(fault.seconds)
                if outer.latency:
                    time.sleep(outer.latency)
                try:
                    payload = outer.complete(body)
                except Exception as err:  # a bug in a test's rank function: report it, don't hang
                    self._send(500, {"error": {"message": f"rank function failed: {err!r}"}})
                    return
                try:
                    self._send(200, payload)
                except (BrokenPipeError, ConnectionResetError):  # client gave up (timeout test)
                    pass

        return Handler
