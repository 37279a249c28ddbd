"""A real OpenAI-compatible HTTP server on 127.0.0.1 that ranks windows deterministically.

:class:`RankingServer` reads the ReasonRank prompt, ranks the window by word overlap with the query (or
any function you give it) and answers in the model's format. It can inject faults (:class:`Fault`: HTTP
errors, delays, dropped connections, malformed JSON, malformed answers) and offers vLLM's ``/tokenize``
and ``/detokenize`` (whitespace words <-> ids of a vocabulary that grows as words are seen).
``max_in_flight`` reports the most concurrent chat requests. :class:`LocalServer` is the base of every
local fake server (also :class:`~reasonrank.testing.teacher.TeacherServer`).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from reasonrank.testing.answers import RankFn, format_answer, lexical_ranking, parse_window_prompt

__all__ = ["Fault", "JSONHandler", "LocalServer", "RankingServer"]


@dataclass
class Fault:
    """One injected failure, consumed by the next chat request.

    kind: "status" (HTTP ``status`` with an error body and ``headers``, e.g. a 302 with a ``Location``),
    "delay" (sleep ``seconds`` then answer), "drop" (close the connection without a response),
    "malformed_json" (200 with a broken body), "text" (200 with ``text`` as the model output),
    "no_choices" (200 with an empty choices list), "no_content" (200 whose message has no content),
    "content" (200 whose message content is ``body``, any JSON value: content parts, an int, ...),
    "choices" (200 whose ``choices`` is ``body``), "trickle" (the real answer, one byte every
    ``seconds``), "huge" (200 with a body of ``size`` bytes, streamed without a ``Content-Length``).
    """

    kind: str
    status: int = 500
    seconds: float = 0.0
    text: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    size: int = 0


class _QuietServer(ThreadingHTTPServer):
    """Says nothing when a client goes away mid-reply (a cancelled or timed-out request: expected)."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class LocalServer:
    """An HTTP server on 127.0.0.1 (a free port) in a daemon thread; subclasses give ``_handler()``."""

    _server: ThreadingHTTPServer | None = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self) -> Self:
        server = _QuietServer(("127.0.0.1", 0), self._handler())
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
    applied to the next chat requests in order. ``requests`` records the JSON bodies received and
    ``request_headers`` their headers (names in lower case).

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
        self.request_headers: list[dict[str, str]] = []
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
            self.request_headers.clear()
            self.max_in_flight = self.in_flight

    def _completion(self, body: dict[str, Any], text: str) -> dict[str, Any]:
        prompt_tokens = sum(len(m["content"].split()) for m in body.get("messages", []))
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(text.split()),
                "total_tokens": prompt_tokens + len(text.split()),
            },
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_RankingHandler,), {"owner": self})


class JSONHandler(BaseHTTPRequestHandler):
    """A quiet HTTP/1.1 handler that answers JSON."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave at once: no 40 ms delayed-ACK stall per reply

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, status: int, payload: Any, raw: bytes | None = None, headers: dict | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _trickle(self, payload: Any, seconds: float) -> None:
        """Send ``payload`` one byte every ``seconds`` (its Content-Length up front)."""
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            for i in range(len(data)):
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
                time.sleep(seconds)
        except OSError:  # the client gave up
            self.close_connection = True

    def _stream_unsized(self, size: int) -> None:
        """A 200 body of ``size`` bytes with no Content-Length: only the end of the connection ends it."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        chunk = b" " * 65536
        try:
            for start in range(0, size, len(chunk)):
                self.wfile.write(chunk[: size - start])
        except OSError:  # the client stopped reading
            pass

    def _drop(self) -> None:
        """Close the connection without a response."""
        self.close_connection = True
        self.connection.shutdown(2)


class _RankingHandler(JSONHandler):
    owner: RankingServer

    def _authorized(self) -> bool:
        if self.owner.api_key is None:
            return True
        if self.headers.get("Authorization") == f"Bearer {self.owner.api_key}":
            return True
        self._send(401, {"error": {"message": "invalid api key", "type": "auth"}})
        return False

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/v1/models":
            self._send(404, {"error": {"message": "not found"}})
        elif self._authorized():
            self._send(200, {"object": "list", "data": [{"id": self.owner.model, "object": "model"}]})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send(400, {"error": {"message": "invalid JSON body"}})
            return
        outer = self.owner
        with outer._lock:
            outer.requests.append(body)
            outer.request_headers.append({k.lower(): v for k, v in self.headers.items()})
        path = self.path.rstrip("/")
        if path in ("/tokenize", "/detokenize"):
            self._tokens(path, body)
        elif path != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}"}})
        elif self._authorized():
            outer._track(+1)
            try:
                self._chat(body)
            finally:
                outer._track(-1)

    def _tokens(self, path: str, body: dict[str, Any]) -> None:
        """vLLM's ``/tokenize`` and ``/detokenize``."""
        if not self.owner.tokenize:
            self._send(404, {"detail": "Not Found"})
        elif path == "/tokenize":
            words = body.get("prompt", "").split()
            tokens = self.owner.tokenize_text(body.get("prompt", ""))
            self._send(200, {"tokens": tokens, "count": len(tokens), "max_model_len": 32768, "words": words})
        else:
            try:
                self._send(200, {"prompt": self.owner.detokenize_ids(body.get("tokens") or [])})
            except IndexError as err:
                self._send(400, {"detail": str(err)})

    def _fault(self, fault: Fault, body: dict[str, Any]) -> bool:
        """Apply an injected fault; True when it answered (or dropped) the request."""
        if fault.kind == "delay":
            time.sleep(fault.seconds)
            return False
        if fault.kind == "status":
            self._send(fault.status, {"error": {"message": f"injected {fault.status}"}}, headers=fault.headers)
        elif fault.kind == "drop":
            self._drop()
        elif fault.kind in _BODY_FAULTS:
            self._send(200, _BODY_FAULTS[fault.kind](self.owner, body, fault))
        elif fault.kind == "malformed_json":
            self._send(200, None, raw=b'{"choices": [{"message": {"content": "[1] > ')
        elif fault.kind == "trickle":
            self._trickle(self.owner.complete(body), fault.seconds)
        elif fault.kind == "huge":
            self._stream_unsized(fault.size)
        else:
            return False
        return True

    def _chat(self, body: dict[str, Any]) -> None:
        fault = self.owner._next_fault()
        if fault is not None and self._fault(fault, body):
            return
        if self.owner.latency:
            time.sleep(self.owner.latency)
        try:
            payload = self.owner.complete(body)
        except Exception as err:  # a bug in a test's rank function: report it, don't hang
            self._send(500, {"error": {"message": f"rank function failed: {err!r}"}})
            return
        try:
            self._send(200, payload)
        except (BrokenPipeError, ConnectionResetError):  # client gave up (timeout test)
            pass


def _with_message(owner: RankingServer, body: dict[str, Any], **message: Any) -> dict[str, Any]:
    payload = owner._completion(body, "")
    payload["choices"][0]["message"] = {"role": "assistant", **message}
    return payload


def _with_choices(owner: RankingServer, body: dict[str, Any], choices: Any) -> dict[str, Any]:
    payload = owner._completion(body, "")
    payload["choices"] = choices
    return payload


#: faults answered by a 200 whose JSON is built from the request: kind -> (server, request body, fault) -> JSON
_BODY_FAULTS = {
    "no_choices": lambda owner, body, fault: {"id": "x", "choices": []},
    "no_content": lambda owner, body, fault: _with_message(owner, body),
    "text": lambda owner, body, fault: owner._completion(body, fault.text),
    "content": lambda owner, body, fault: _with_message(owner, body, content=fault.body),
    "choices": lambda owner, body, fault: _with_choices(owner, body, fault.body),
}
