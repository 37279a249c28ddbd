"""Sans-IO HTTP for OpenAI-compatible servers: exchanges as generators, run by one sync and one async runner.

An exchange (a chat completion under the retry policy, a JSON call) is a generator that yields what
to do, a :class:`Call` (one HTTP request) or a :class:`Sleep`, receives the outcome of each request
as ``(response or error, seconds)`` and returns its result. :func:`~reasonrank.core.backends.runners.run`
and :func:`~reasonrank.core.backends.runners.arun` do the I/O, so the sync and async paths share one
policy. Redirects are never followed. Error texts pass through :func:`redact`, so credentials in a
URL never reach a message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import os
import random
import re
import ssl
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from reasonrank.core.types import BackendError, Completion

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "Call",
    "CircuitBreaker",
    "DeadlineExceeded",
    "Permanent",
    "Policy",
    "ResponseTooLarge",
    "Sleep",
    "Steps",
    "Transient",
    "chat_with_retries",
    "completion",
    "json_call",
    "read_completion",
    "redact",
    "server_message",
]

MAX_RETRY_AFTER = 60.0  # never wait longer than this on a server's Retry-After
DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024  # a window's answer is a few kB; 4 MiB is far beyond any

T = TypeVar("T")
_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#@'\"]+@")


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it (``scheme://user:password@``) replaced by ``***``."""
    return _CREDENTIALS.sub(r"\1***@", str(text))


def completion(**fields: Any) -> Completion:
    """A :class:`Completion` from the fields this version of it has (``fatal``/``status`` are recent)."""
    known = {f.name for f in dataclasses.fields(Completion)}
    return Completion(**{k: v for k, v in fields.items() if k in known})


# ---------------------------------------------------------------------- what exchanges ask for
@dataclass(frozen=True)
class Call:
    """One HTTP request: ``timeout`` bounds it from connect to last byte; none starts past ``deadline``."""

    method: str
    url: str
    json: Any = None
    timeout: float | None = None
    connect_timeout: float | None = None
    deadline: float | None = None  # an absolute time.monotonic() instant
    max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    def seconds(self) -> float | None:
        """Seconds this request may take from now: its timeout, cut to the deadline."""
        if self.deadline is None:
            return self.timeout
        left = self.deadline - time.monotonic()
        return left if self.timeout is None else min(self.timeout, left)


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds`` (a retry's backoff)."""

    seconds: float


@dataclass(frozen=True)
class Policy:
    """How a backend's requests are bounded and retried."""

    timeout: float | None = None
    connect_timeout: float | None = None
    max_retries: int = 0
    backoff: float = 0.0
    max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    def call(self, method: str, url: str, json: Any = None, deadline: float | None = None) -> Call:
        return Call(method, url, json, self.timeout, self.connect_timeout, deadline, self.max_bytes)

    def delay(self, attempt: int) -> float:
        """The backoff before retry ``attempt + 1``: ``backoff * 2**attempt`` plus up to ``backoff`` of jitter."""
        return self.backoff * (2**attempt) + random.uniform(0, self.backoff)


#: an exchange: yields Call/Sleep, receives ``(response or exception, seconds)`` after a Call (None after a Sleep)
Steps = Generator[Call | Sleep, Any, T]


# ---------------------------------------------------------------------- failures
class Transient(Exception):
    """A failure worth retrying; ``fatal``: it would repeat for every request when it persists (no connection)."""

    def __init__(self, message: str, retry_after: float | None = None, fatal: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.fatal = fatal


class Permanent(Exception):
    """A failure that retrying cannot fix (400 context too long, ...); ``fatal``: every request gets it (401)."""

    def __init__(self, message: str, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


class DeadlineExceeded(Exception):
    """The caller's deadline came before the request could start."""


class ResponseTooLarge(Exception):
    """The response body passed ``max_bytes``."""


class CircuitBreaker:
    """Fails fast after a failure that would repeat for every request; lets one probe through per cool-down."""

    def __init__(self, cooldown: float) -> None:
        self.cooldown = cooldown
        self.cause: str | None = None
        self._retry_at = 0.0
        self._lock = threading.Lock()

    def admit(self) -> str | None:
        """None: go ahead (closed, or this request is the probe); else the cause the circuit is open for."""
        with self._lock:
            if self.cause is None:
                return None
            now = time.monotonic()
            if now < self._retry_at:
                return self.cause
            self._retry_at = now + self.cooldown  # this request probes; the others wait one more cool-down
            return None

    def trip(self, cause: str) -> None:
        with self._lock:
            self.cause = cause
            self._retry_at = time.monotonic() + self.cooldown

    def reset(self) -> None:
        with self._lock:
            self.cause = None


# ---------------------------------------------------------------------- reading responses
def server_message(response: httpx.Response) -> str:
    """The error message in a server's error body (OpenAI, vLLM and FastAPI shapes), else the raw text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:500]
        for key in ("message", "detail", "error"):
            if body.get(key):
                return str(body[key])[:500]
    return str(body)[:500]


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), capped."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def redirect_message(response: httpx.Response) -> str:
    """What a redirect said, and where to: redirects are never followed (a credential must not travel on)."""
    location = response.headers.get("Location", "")
    with contextlib.suppress(RuntimeError, httpx.InvalidURL):  # a response built without its request
        location = str(response.request.url.join(location)) if location else location
    return (
        f"HTTP {response.status_code} redirect to {location or '(no Location)'}; redirects are not followed: "
        "point base_url at the final address"
    )


def check_status(response: httpx.Response) -> None:
    """Raise :class:`Transient` / :class:`Permanent` for a status that is not a usable answer."""
    status = response.status_code
    if 300 <= status < 400:
        raise Permanent(redirect_message(response), fatal=True)
    if status in (408, 429) or status >= 500:
        raise Transient(f"HTTP {status}: {server_message(response)}", retry_after_seconds(response))
    if status >= 400:
        raise Permanent(f"HTTP {status}: {server_message(response)}", fatal=status in (401, 403, 404))


def message_text(value: Any, field: str) -> str | None:
    """A message field as text: a string, or OpenAI content parts (``[{"type": "text", "text": ...}]``) joined."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = [p if isinstance(p, str) else p.get("text") if isinstance(p, dict) else None for p in value]
        if all(isinstance(p, str) for p in parts):
            return "".join(parts)
    raise Transient(f"message {field} is not text: {str(value)[:200]}")


def _first_choice(body: Any, status: int) -> dict[str, Any]:
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise Transient(f"HTTP {status} response has no choices: {str(body)[:200]}")
    return choices[0]


def _token_count(usage: Any, key: str) -> int | None:
    value = usage.get(key) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def read_completion(response: httpx.Response, seconds: float) -> Completion:
    """Read a chat completion response; raise :class:`Transient` / :class:`Permanent` when it is not one."""
    check_status(response)
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        raise Transient(f"HTTP {status} with a body that is not valid JSON: {response.text[:200]!r}") from None
    choice = _first_choice(body, status)
    message = choice.get("message")
    if not isinstance(message, dict):
        raise Transient(f"HTTP {status} response has no message: {str(choice)[:200]}")
    content = message_text(message.get("content"), "content")
    reasoning = message_text(message.get("reasoning_content") or message.get("reasoning"), "reasoning")
    if content is None and not reasoning:
        raise Transient(f"HTTP {status} response has no message content: {str(choice)[:200]}")
    if reasoning:
        # A reasoning parser (vLLM/SGLang --reasoning-parser) split the output; put it back together so the
        # answer is parsed exactly as the model wrote it. Without content the reasoning hit the token cap.
        text = f"<think>{reasoning}</think>{content}" if content is not None else f"<think>{reasoning}"
    else:
        text = content
    finish_reason = choice.get("finish_reason")
    return Completion(
        text=text,
        prompt_tokens=_token_count(body.get("usage"), "prompt_tokens"),
        completion_tokens=_token_count(body.get("usage"), "completion_tokens"),
        seconds=seconds,
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
    )


def describe(error: BaseException) -> str:
    """``"TypeName: message"`` of a failed request, with the OS's reason where the message hides it.

    (The async transport says only "All connection attempts failed"; its cause says "Connection refused".)
    """
    message = str(error)
    cause, seen = error.__cause__ or error.__context__, 0
    while cause is not None and seen < 8:
        if isinstance(cause, ssl.SSLError) or isinstance(cause, OSError) and isinstance(cause.errno, int):
            # a TLS error's errno is the TLS library's code ("1"), not the OS's: its own text is the reason
            reason = str(cause) if isinstance(cause, ssl.SSLError) else os.strerror(cause.errno)  # type: ignore[arg-type]
            message = message if reason in message else f"{message} ({reason})" if message else reason
            break
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def attempt_result(reply: httpx.Response | Exception, seconds: float) -> Completion | Transient | Permanent:
    """One attempt's completion, or its failure: :class:`Transient` when worth retrying, else :class:`Permanent`."""
    if isinstance(reply, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
        return Permanent(describe(reply), fatal=True)  # a base_url or header no request can use
    if isinstance(reply, (httpx.ConnectError, httpx.ConnectTimeout)):
        return Transient(describe(reply), fatal=True)  # nothing listens there (after retries: every window)
    if isinstance(reply, (httpx.TransportError, DeadlineExceeded)):  # timeouts, dropped connections
        return Transient(describe(reply))
    if isinstance(reply, Exception):  # a body over the cap, one that cannot be decoded
        return Permanent(describe(reply))
    try:
        return read_completion(reply, seconds)
    except (Transient, Permanent) as err:
        return err
    except Exception as err:  # noqa: BLE001 - a reply nobody foresaw fails its window, never the batch
        return Permanent(f"unreadable response: {err!r}")


# ---------------------------------------------------------------------- exchanges
def _past(deadline: float | None, wait: float = 0.0) -> bool:
    return deadline is not None and time.monotonic() + wait >= deadline


def chat_with_retries(
    url: str,
    body: dict[str, Any],
    policy: Policy,
    *,
    tag: str = "",
    deadline: float | None = None,
    breaker: CircuitBreaker | None = None,
) -> Steps[Completion]:
    """POST one chat request under the retry policy; a failure comes back as ``Completion(error=...)`` naming ``tag``.

    Transient failures are retried after :meth:`Policy.delay` (at least the server's ``Retry-After``);
    the others fail at once. No attempt or retry starts past ``deadline`` (then the completion is
    ``status="skipped"``); an open ``breaker`` fails at once with ``fatal=True``.
    """
    start = time.perf_counter()
    where = f"{tag}: " if tag else ""
    call = policy.call("POST", url, body, deadline)
    attempt = 0
    failure: Transient | Permanent | None = None
    while True:
        if _past(deadline):
            return _skipped(where, attempt, failure, start)
        refusal = breaker.admit() if breaker is not None else None
        if refusal is not None:
            return completion(error=redact(f"{where}circuit open: {refusal}"), fatal=True)
        result = attempt_result(*(yield call))
        if isinstance(result, Completion):
            if breaker is not None:
                breaker.reset()
            return result
        failure, attempt = result, attempt + 1
        if isinstance(result, Transient) and attempt <= policy.max_retries:
            delay = policy.delay(attempt - 1)
            delay = delay if result.retry_after is None else max(delay, result.retry_after)
            if _past(deadline, delay):
                return _skipped(f"{where}no time left for retry {attempt}", attempt, failure, start)
            yield Sleep(delay)
            continue
        if _past(deadline):
            return _skipped(where, attempt, failure, start)
        return _failed(where, f"POST {url} failed", attempt, result, start, breaker)


def _skipped(what: str, attempts: int, failure: Exception | None, start: float) -> Completion:
    """``deadline exceeded: <tag>: ...``: the request was cut (or never started) by the caller's deadline."""
    last = f" after {attempts} attempts, the last: {failure}" if failure is not None else " before it started"
    head = f"deadline exceeded: {what.rstrip(': ')}" if what else "deadline exceeded"
    error = redact(head + last)
    return completion(error=error, status="skipped", seconds=time.perf_counter() - start)


def _failed(
    where: str, what: str, attempts: int, failure: Transient | Permanent, start: float, breaker: CircuitBreaker | None
) -> Completion:
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    cause = redact(f"{what}{tries}: {failure}")
    if breaker is not None and failure.fatal:
        breaker.trip(cause)
    elif breaker is not None:
        breaker.reset()  # the server answered: whatever went wrong is this window's, not everyone's
    return completion(error=where + cause, fatal=failure.fatal, seconds=time.perf_counter() - start)


def json_call(call: Call, key: str) -> Steps[Any]:
    """Make ``call`` and read ``key`` from the JSON answer (``BackendError`` when that fails)."""
    response, _ = yield call
    where = f"{call.method} {call.url}"
    if isinstance(response, Exception):
        raise BackendError(redact(f"{where} failed: {describe(response)}")) from None
    if 300 <= response.status_code < 400:
        raise BackendError(redact(f"{where} answered {redirect_message(response)}"))
    if response.status_code != 200:
        raise BackendError(redact(f"{where} answered HTTP {response.status_code}: {server_message(response)}"))
    try:
        return response.json()[key]
    except (ValueError, KeyError, TypeError, IndexError):
        raise BackendError(redact(f"{where} answered without {key!r}: {response.text[:200]!r}")) from None
