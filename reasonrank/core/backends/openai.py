"""Any OpenAI-compatible ``/v1/chat/completions`` server (``vllm serve``, SGLang, TGI, hosted APIs), over httpx.

No ``openai`` or ``vllm`` package is needed. Every request gets explicit timeouts and bounded retries
with exponential backoff and jitter on transient failures (connection errors, timeouts, dropped
connections, 429 with ``Retry-After``, 5xx, a 200 whose body is not a usable completion). Other 4xx
(bad key, context too long) fail at once. A request that still fails comes back as
``Completion(error=...)``: an error body is never taken for model output.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from reasonrank.core.backends.base import Backend
from reasonrank.core.types import BackendError, ChatRequest, Completion

__all__ = ["OpenAIBackend", "DEFAULT_BASE_URL"]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://localhost:8000/v1"
TRUNCATION_MODES = ("auto", "tokenizer", "server", "words")
_MAX_RETRY_AFTER = 60.0  # never wait longer than this on a server's Retry-After


class _Transient(Exception):
    """A failure worth retrying."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Fatal(Exception):
    """A failure that retrying cannot fix (401, 400 context too long, ...)."""


def _server_message(response: httpx.Response) -> str:
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


def _retry_after(response: httpx.Response) -> float | None:
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
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


def _completion(response: httpx.Response, seconds: float) -> Completion:
    """Read a chat completion response; raise :class:`_Transient` / :class:`_Fatal` when it is not one."""
    status = response.status_code
    if status == 429 or status == 408 or status >= 500:
        raise _Transient(f"HTTP {status}: {_server_message(response)}", _retry_after(response))
    if status >= 400:
        raise _Fatal(f"HTTP {status}: {_server_message(response)}")
    try:
        body = response.json()
    except ValueError:
        raise _Transient(f"HTTP {status} with a body that is not valid JSON: {response.text[:200]!r}") from None
    choices = body.get("choices") if isinstance(body, dict) else None
    if not choices or not isinstance(choices[0], dict):
        raise _Transient(f"HTTP {status} response has no choices: {str(body)[:200]}")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise _Transient(f"HTTP {status} response has no message: {str(choices[0])[:200]}")
    content = message.get("content")
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if content is None and not reasoning:
        raise _Transient(f"HTTP {status} response has no message content: {str(choices[0])[:200]}")
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


class OpenAIBackend(Backend):
    """Windows ranked by a model behind an OpenAI-compatible chat API.

    >>> backend = OpenAIBackend("liuwenhan/reasonrank-7B", base_url="http://localhost:8000/v1")

    ``model=None`` asks the server (``GET /models``) and uses its first model, which is what ``vllm
    serve`` offers. ``base_url`` defaults to ``$REASONRANK_BASE_URL`` or ``http://localhost:8000/v1``;
    ``api_key`` to ``$REASONRANK_API_KEY`` or ``$OPENAI_API_KEY`` (no ``Authorization`` header without
    one). ``concurrency`` bounds the requests in flight; ``max_retries`` retries transient failures
    after ``backoff * 2**attempt`` seconds plus jitter (or the server's ``Retry-After``).

    ``truncation`` decides how passages are cut to ``max_passage_tokens``: ``"tokenizer"`` with a local
    Hugging Face tokenizer (``tokenizer=`` path or id), ``"server"`` with vLLM's ``/tokenize`` and
    ``/detokenize``, ``"words"`` with the word approximation of :class:`Backend`, and ``"auto"``: the
    tokenizer if given, else the server if it answers ``/tokenize``, else words (with a warning).
    ``extra_body`` is merged into every request body (e.g. ``{"chat_template_kwargs": {...}}``).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 600.0,
        connect_timeout: float = 10.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        concurrency: int = 8,
        truncation: str = "auto",
        tokenizer: str | None = None,
        extra_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if truncation not in TRUNCATION_MODES:
            raise ValueError(f"truncation must be one of {', '.join(TRUNCATION_MODES)}, got {truncation!r}")
        if truncation == "tokenizer" and not tokenizer:
            raise ValueError("truncation='tokenizer' needs tokenizer= (a local path or a Hugging Face id)")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if timeout <= 0 or connect_timeout <= 0:
            raise ValueError("timeout and connect_timeout must be > 0 seconds")
        self.base_url = (base_url or os.environ.get("REASONRANK_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.api_key = api_key or os.environ.get("REASONRANK_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self.max_retries = max_retries
        self.backoff = backoff
        self.concurrency = concurrency
        self.truncation = truncation
        self.tokenizer_name = tokenizer
        self.extra_body = dict(extra_body or {})
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        if self.api_key:
            self.headers.setdefault("Authorization", f"Bearer {self.api_key}")
        self._model = model
        self._lock = threading.RLock()
        self._client: httpx.Client | None = None
        self._aclient: httpx.AsyncClient | None = None
        self._aclient_loop: asyncio.AbstractEventLoop | None = None
        self._tokenizer: Any = None
        # "auto" with a local tokenizer is decided now; without one, the first truncation probes the server.
        self._resolved_truncation: str | None = (
            truncation if truncation != "auto" else ("tokenizer" if tokenizer else None)
        )

    # ------------------------------------------------------------------ naming and clients
    @property
    def name(self) -> str:  # type: ignore[override]
        return f"openai:{self._model or '?'}"

    @property
    def server_root(self) -> str:
        """``base_url`` without its trailing ``/v1``: where vLLM serves ``/tokenize``."""
        return self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url

    def _limits(self) -> httpx.Limits:
        return httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = httpx.Client(timeout=self.timeout, headers=self.headers, limits=self._limits())
        return self._client

    @property
    def aclient(self) -> httpx.AsyncClient:
        """The async client of the running event loop (a new one if the loop changed since the last call)."""
        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aclient_loop is not loop:
            # An AsyncClient's pooled connections belong to the loop that opened them; a client from a
            # finished loop (an earlier asyncio.run) cannot be reused, nor closed from here.
            self._aclient = httpx.AsyncClient(timeout=self.timeout, headers=self.headers, limits=self._limits())
            self._aclient_loop = loop
        return self._aclient

    @property
    def model(self) -> str:
        """The model name sent with each request (asked from the server once when not given)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._first_model(self._get(f"{self.base_url}/models"))
        return self._model

    async def amodel(self) -> str:
        if self._model is None:
            response = await self._aget(f"{self.base_url}/models")
            self._model = self._model or self._first_model(response)
        return self._model

    def _get(self, url: str) -> httpx.Response:
        try:
            return self.client.get(url)
        except httpx.HTTPError as err:
            raise BackendError(f"cannot reach {url}: {err!r}") from err

    async def _aget(self, url: str) -> httpx.Response:
        try:
            return await self.aclient.get(url)
        except httpx.HTTPError as err:
            raise BackendError(f"cannot reach {url}: {err!r}") from err

    def _first_model(self, response: httpx.Response) -> str:
        url = f"{self.base_url}/models"
        if response.status_code != 200:
            raise BackendError(
                f"no model given and GET {url} answered HTTP {response.status_code}: {_server_message(response)}; "
                "pass model= explicitly"
            )
        try:
            data = response.json().get("data") or []
            return str(data[0]["id"])
        except (ValueError, AttributeError, IndexError, KeyError, TypeError):
            raise BackendError(f"no model given and GET {url} lists no model; pass model= explicitly") from None

    # ------------------------------------------------------------------ requests
    def request_body(self, request: ChatRequest, model: str) -> dict[str, Any]:
        """The JSON body for one window (top_k/min_p only when set: vLLM and SGLang read them top-level)."""
        s = request.sampling
        body: dict[str, Any] = {
            "model": model,
            "messages": request.messages,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_new_tokens,
        }
        if s.seed is not None:
            body["seed"] = s.seed
        if s.top_k is not None and s.top_k > 0:
            body["top_k"] = s.top_k
        if s.min_p:
            body["min_p"] = s.min_p
        body.update(self.extra_body)
        return body

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        delay = self.backoff * (2**attempt) + random.uniform(0, self.backoff)
        return max(delay, retry_after) if retry_after is not None else delay

    def _failed(self, request: ChatRequest, attempts: int, error: str, seconds: float) -> Completion:
        where = f"{request.tag}: " if request.tag else ""
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return Completion(error=f"{where}POST {self.base_url}/chat/completions failed{tries}: {error}", seconds=seconds)

    def _post_one(self, request: ChatRequest, model: str) -> Completion:
        body = self.request_body(request, model)
        url = f"{self.base_url}/chat/completions"
        start = time.perf_counter()
        error = ""
        for attempt in range(self.max_retries + 1):
            t0 = time.perf_counter()
            try:
                return _completion(self.client.post(url, json=body), time.perf_counter() - t0)
            except _Fatal as err:
                return self._failed(request, attempt + 1, str(err), time.perf_counter() - start)
            except _Transient as err:
                error, retry_after = str(err), err.retry_after
            except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as err:
                return self._failed(request, attempt + 1, repr(err), time.perf_counter() - start)
            except httpx.TransportError as err:  # connect errors, timeouts, dropped connections
                error, retry_after = f"{type(err).__name__}: {err}", None
            except httpx.HTTPError as err:  # e.g. too many redirects, an undecodable body
                return self._failed(request, attempt + 1, repr(err), time.perf_counter() - start)
            if attempt < self.max_retries:
                time.sleep(self._delay(attempt, retry_after))
        return self._failed(request, self.max_retries + 1, error, time.perf_counter() - start)

    async def _apost_one(self, request: ChatRequest, model: str, limit: asyncio.Semaphore) -> Completion:
        body = self.request_body(request, model)
        url = f"{self.base_url}/chat/completions"
        client = self.aclient
        start = time.perf_counter()
        error = ""
        for attempt in range(self.max_retries + 1):
            try:
                async with limit:  # not held while backing off
                    t0 = time.perf_counter()
                    response = await client.post(url, json=body)
                return _completion(response, time.perf_counter() - t0)
            except _Fatal as err:
                return self._failed(request, attempt + 1, str(err), time.perf_counter() - start)
            except _Transient as err:
                error, retry_after = str(err), err.retry_after
            except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as err:
                return self._failed(request, attempt + 1, repr(err), time.perf_counter() - start)
            except httpx.TransportError as err:
                error, retry_after = f"{type(err).__name__}: {err}", None
            except httpx.HTTPError as err:
                return self._failed(request, attempt + 1, repr(err), time.perf_counter() - start)
            if attempt < self.max_retries:
                await asyncio.sleep(self._delay(attempt, retry_after))
        return self._failed(request, self.max_retries + 1, error, time.perf_counter() - start)

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """One completion per request, in order; at most ``concurrency`` requests in flight."""
        if not requests:
            return []
        model = self.model
        if len(requests) == 1 or self.concurrency == 1:
            return [self._post_one(r, model) for r in requests]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(lambda r: self._post_one(r, model), requests))

    async def agenerate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        if not requests:
            return []
        model = await self.amodel()
        limit = asyncio.Semaphore(self.concurrency)  # per call: never bound to another call's loop
        return list(await asyncio.gather(*(self._apost_one(r, model, limit) for r in requests)))

    # ------------------------------------------------------------------ truncation
    def _load_tokenizer(self) -> Any:
        if self._tokenizer is None:
            try:
                from transformers import AutoTokenizer
            except ImportError as err:
                raise ImportError(
                    "truncation with tokenizer= needs transformers: pip install 'reasonrank[transformers]'"
                ) from err
            self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_name)
        return self._tokenizer

    def _probe_failed(self, err: Exception | str) -> str:
        log.warning(
            "%s: the server has no usable /tokenize (%s); truncating passages by words, an approximation of "
            "the model's tokens (pass tokenizer= for exact truncation)",
            self.name,
            err,
        )
        return "words"

    def _truncation_mode(self) -> str:
        if self._resolved_truncation is None:
            with self._lock:  # threads sharing this backend probe the server once
                if self._resolved_truncation is None:
                    try:
                        self._tokenize("probe")
                        self._resolved_truncation = "server"
                    except BackendError as err:
                        self._resolved_truncation = self._probe_failed(err)
        return self._resolved_truncation

    async def _atruncation_mode(self) -> str:
        if self._resolved_truncation is None:
            try:
                await self._atokenize("probe")
                self._resolved_truncation = "server"
            except BackendError as err:
                self._resolved_truncation = self._probe_failed(err)
        return self._resolved_truncation

    def _server_call(self, path: str, payload: dict[str, Any], key: str) -> Any:
        url = f"{self.server_root}{path}"
        try:
            response = self.client.post(url, json=payload)
        except httpx.HTTPError as err:
            raise BackendError(f"POST {url} failed: {err!r}") from err
        return self._server_reply(url, response, key)

    async def _aserver_call(self, path: str, payload: dict[str, Any], key: str) -> Any:
        url = f"{self.server_root}{path}"
        try:
            response = await self.aclient.post(url, json=payload)
        except httpx.HTTPError as err:
            raise BackendError(f"POST {url} failed: {err!r}") from err
        return self._server_reply(url, response, key)

    @staticmethod
    def _server_reply(url: str, response: httpx.Response, key: str) -> Any:
        if response.status_code != 200:
            raise BackendError(f"POST {url} answered HTTP {response.status_code}: {_server_message(response)}")
        try:
            return response.json()[key]
        except (ValueError, KeyError, TypeError):
            raise BackendError(f"POST {url} answered without {key!r}: {response.text[:200]!r}") from None

    def _tokenize_payload(self, text: str) -> dict[str, Any]:
        return {"model": self.model, "prompt": text, "add_special_tokens": False}

    def _tokenize(self, text: str) -> list[int]:
        return self._server_call("/tokenize", self._tokenize_payload(text), "tokens")

    async def _atokenize(self, text: str) -> list[int]:
        payload = {"model": await self.amodel(), "prompt": text, "add_special_tokens": False}
        return await self._aserver_call("/tokenize", payload, "tokens")

    def _server_truncate_one(self, text: str, max_tokens: int) -> str:
        tokens = self._tokenize(text)
        if len(tokens) <= max_tokens:
            return text
        return self._server_call("/detokenize", {"model": self.model, "tokens": tokens[:max_tokens]}, "prompt")

    async def _aserver_truncate_one(self, text: str, max_tokens: int, limit: asyncio.Semaphore) -> str:
        async with limit:
            tokens = await self._atokenize(text)
            if len(tokens) <= max_tokens:
                return text
            payload = {"model": await self.amodel(), "tokens": tokens[:max_tokens]}
            return await self._aserver_call("/detokenize", payload, "prompt")

    def truncate(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        """The first ``max_tokens`` tokens of each text (see ``truncation`` in the class docstring)."""
        if not texts:
            return []
        mode = self._truncation_mode()
        if mode == "tokenizer":
            from reasonrank.core.truncation import truncate_with_tokenizer

            return truncate_with_tokenizer(self._load_tokenizer(), texts, max_tokens)
        if mode == "server":
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(texts))) as pool:
                return list(pool.map(lambda t: self._server_truncate_one(t, max_tokens), texts))
        return super().truncate(texts, max_tokens)

    async def atruncate(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        if not texts:
            return []
        mode = await self._atruncation_mode()
        if mode == "tokenizer":
            return await asyncio.to_thread(self.truncate, texts, max_tokens)
        if mode == "server":
            limit = asyncio.Semaphore(self.concurrency)
            return list(await asyncio.gather(*(self._aserver_truncate_one(t, max_tokens, limit) for t in texts)))
        return super().truncate(texts, max_tokens)

    def count_tokens(self, text: str) -> int | None:
        mode = self._truncation_mode()
        if mode == "tokenizer":
            return len(self._load_tokenizer()(text, add_special_tokens=False)["input_ids"])
        if mode == "server":
            return len(self._tokenize(text))
        return None

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        # An AsyncClient can only be closed on its own loop; aclose() does that. Drop it here.
        self._aclient = None
        self._aclient_loop = None

    async def aclose(self) -> None:
        client, loop = self._aclient, self._aclient_loop
        self._aclient = None
        self._aclient_loop = None
        if client is not None and loop is asyncio.get_running_loop():
            await client.aclose()
        self.close()

    async def __aenter__(self) -> "OpenAIBackend":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self._model!r}, base_url={self.base_url!r}, concurrency={self.concurrency})"
