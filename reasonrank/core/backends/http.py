"""Sans-IO HTTP for OpenAI-compatible servers: exchanges as generators, one sync and one async runner.

An exchange (a chat completion under the retry policy, a JSON call) is a generator that yields what
to do, ``("GET" | "POST", url, json)`` or ``("sleep", seconds, None)``, receives the outcome of each
request as ``(response or httpx error, seconds)`` and returns its result. :func:`run` and
:func:`arun` do the I/O with an ``httpx.Client`` / ``httpx.AsyncClient``, so the sync and async
paths share one policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import random
import time
from collections.abc import Generator
from typing import Any, TypeVar

import httpx

from reasonrank.core.types import BackendError, Completion

__all__ = [
    "Steps",
    "Fatal",
    "Transient",
    "arun",
    "chat_with_retries",
    "json_call",
    "read_completion",
    "run",
    "server_message",
]

MAX_RETRY_AFTER = 60.0  # never wait longer than this on a server's Retry-After

T = TypeVar("T")
#: what an exchange asks its runner: ("GET" | "POST", url, json body or None) or ("sleep", seconds, None)
Action = tuple[str, Any, Any]
#: an exchange: yields actions, receives ``(response or httpx.HTTPError, seconds)`` (None after a sleep)
Steps = Generator[Action, Any, T]


class Transient(Exception):
    """A failure worth retrying."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Fatal(Exception):
    """A failure that retrying cannot fix (401, 400 context too long, ...)."""


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
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def read_completion(response: httpx.Response, seconds: float) -> Completion:
    """Read a chat completion response; raise :class:`Transient` / :class:`Fatal` when it is not one."""
    status = response.status_code
    if status == 429 or status == 408 or status >= 500:
        raise Transient(f"HTTP {status}: {server_message(response)}", retry_after_seconds(response))
    if status >= 400:
        raise Fatal(f"HTTP {status}: {server_message(response)}")
    try:
        body = response.json()
    except ValueError:
        raise Transient(f"HTTP {status} with a body that is not valid JSON: {response.text[:200]!r}") from None
    choices = body.get("choices") if isinstance(body, dict) else None
    if not choices or not isinstance(choices[0], dict):
        raise Transient(f"HTTP {status} response has no choices: {str(body)[:200]}")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise Transient(f"HTTP {status} response has no message: {str(choices[0])[:200]}")
    content = message.get("content")
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if content is None and not reasoning:
        raise Transient(f"HTTP {status} response has no message content: {str(choices[0])[:200]}")
    if reasoning:
        # A reasoning parser (vLLM/SGLang --reasoning-parser) split the output; put it back together so the
        # answer is parsed exactly as the model wrote it. Without content the reasoning hit the token cap.
        text = f"<think>{reasoning}</think>{content}" if content is not None else f"<think>{reasoning}"
    else:
        text = content
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    return Completion(
        text=text,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        seconds=seconds,
        finish_reason=choices[0].get("finish_reason"),
    )


def attempt_result(response: httpx.Response | httpx.HTTPError, seconds: float) -> Completion | Transient | Fatal:
    """One attempt's completion, or its failure: :class:`Transient` when worth retrying, else :class:`Fatal`."""
    if isinstance(response, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
        return Fatal(repr(response))
    if isinstance(response, httpx.TransportError):  # connect errors, timeouts, dropped connections
        return Transient(f"{type(response).__name__}: {response}")
    if isinstance(response, httpx.HTTPError):  # e.g. too many redirects, an undecodable body
        return Fatal(repr(response))
    try:
        return read_completion(response, seconds)
    except (Transient, Fatal) as err:
        return err


def chat_with_retries(
    url: str, body: dict[str, Any], *, tag: str, max_retries: int, backoff: float
) -> Steps[Completion]:
    """POST one chat request under the retry policy; a failure comes back as ``Completion(error=...)`` naming ``tag``.

    Transient failures are retried after ``backoff * 2**attempt`` seconds plus jitter (at least the
    server's ``Retry-After``); the others fail at once.
    """
    start = time.perf_counter()
    attempt = 0
    while True:
        result = attempt_result(*(yield ("POST", url, body)))
        if isinstance(result, Completion):
            return result
        if isinstance(result, Fatal) or attempt == max_retries:
            tries = f" after {attempt + 1} attempts" if attempt else ""
            where = f"{tag}: " if tag else ""
            return Completion(error=f"{where}POST {url} failed{tries}: {result}", seconds=time.perf_counter() - start)
        delay = backoff * (2**attempt) + random.uniform(0, backoff)
        yield ("sleep", delay if result.retry_after is None else max(delay, result.retry_after), None)
        attempt += 1


def json_call(url: str, payload: dict[str, Any], key: str) -> Steps[Any]:
    """POST ``payload`` and read ``key`` from the JSON answer (``BackendError`` when that fails)."""
    response, _ = yield ("POST", url, payload)
    if isinstance(response, httpx.HTTPError):
        raise BackendError(f"POST {url} failed: {response!r}") from response
    if response.status_code != 200:
        raise BackendError(f"POST {url} answered HTTP {response.status_code}: {server_message(response)}")
    try:
        return response.json()[key]
    except (ValueError, KeyError, TypeError):
        raise BackendError(f"POST {url} answered without {key!r}: {response.text[:200]!r}") from None


def run(steps: Steps[T], client: httpx.Client) -> T:
    """Run an exchange with a sync client."""
    reply = None
    try:
        while True:
            verb, target, payload = steps.send(reply)
            if verb == "sleep":
                time.sleep(target)
                reply = None
                continue
            started = time.perf_counter()
            try:
                response: httpx.Response | httpx.HTTPError = client.request(verb, target, json=payload)
            except httpx.HTTPError as err:
                response = err
            reply = (response, time.perf_counter() - started)
    except StopIteration as done:
        return done.value


async def arun(steps: Steps[T], client: httpx.AsyncClient, limit: asyncio.Semaphore | None = None) -> T:
    """Run an exchange with an async client; ``limit`` is held while a request is in flight, not while sleeping."""
    reply = None
    try:
        while True:
            verb, target, payload = steps.send(reply)
            if verb == "sleep":
                await asyncio.sleep(target)
                reply = None
                continue
            async with limit or contextlib.nullcontext():
                started = time.perf_counter()
                try:
                    response: httpx.Response | httpx.HTTPError = await client.request(verb, target, json=payload)
                except httpx.HTTPError as err:
                    response = err
                reply = (response, time.perf_counter() - started)
    except StopIteration as done:
        return done.value
