"""Any OpenAI-compatible ``/v1/chat/completions`` server (``vllm serve``, SGLang, TGI, hosted APIs), over httpx.

No ``openai`` or ``vllm`` package is needed. Every request gets explicit timeouts and bounded retries
with exponential backoff and jitter on transient failures (connection errors, timeouts, dropped
connections, 429 with ``Retry-After``, 5xx, a 200 whose body is not a usable completion). Other 4xx
(bad key, context too long) fail at once. A request that still fails comes back as
``Completion(error=...)``: an error body is never taken for model output.

Every exchange with the server is a sans-IO generator (:mod:`reasonrank.core.backends.http`) run by
one sync and one async runner, so both paths share one retry policy.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx

from reasonrank.core.backends.base import Backend
from reasonrank.core.backends.http import Steps, arun, chat_with_retries, json_call, run, server_message
from reasonrank.core.truncation import truncate_with_tokenizer
from reasonrank.core.types import BackendError, ChatRequest, Completion

__all__ = ["OpenAIBackend", "DEFAULT_BASE_URL"]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://localhost:8000/v1"
TRUNCATION_MODES = ("auto", "tokenizer", "server", "words")

T = TypeVar("T")


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

    kind = "openai"

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
        return f"openai:{self._model or '?'}"  # never asks the server

    @property
    def model_name(self) -> str:  # type: ignore[override]
        """The model name sent with each request (asked from the server once when not given)."""
        if self._model is None:
            with self._lock:
                return self._run(self._model_steps())
        return self._model

    async def amodel_name(self) -> str:
        """:attr:`model_name` without blocking the event loop."""
        return self._model or await self._arun(self._model_steps())

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

    # ------------------------------------------------------------------ running exchanges (the only I/O)
    def _run(self, steps: Steps[T]) -> T:
        return run(steps, self.client)

    async def _arun(self, steps: Steps[T], limit: asyncio.Semaphore | None = None) -> T:
        return await arun(steps, self.aclient, limit)

    def _run_all(self, exchanges: list[Steps[T]]) -> list[T]:
        """Run exchanges on threads, at most ``concurrency`` at a time; results in order."""
        if len(exchanges) == 1 or self.concurrency == 1:
            return [self._run(e) for e in exchanges]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(exchanges))) as pool:
            return list(pool.map(self._run, exchanges))

    async def _arun_all(self, exchanges: list[Steps[T]]) -> list[T]:
        limit = asyncio.Semaphore(self.concurrency)  # per call: never bound to another call's loop
        return list(await asyncio.gather(*(self._arun(e, limit) for e in exchanges)))

    # ------------------------------------------------------------------ exchanges (no I/O)
    def _model_steps(self) -> Steps[str]:
        if self._model is None:
            url = f"{self.base_url}/models"
            response, _ = yield ("GET", url, None)
            if isinstance(response, httpx.HTTPError):
                raise BackendError(f"cannot reach {url}: {response!r}") from response
            self._model = self._model or self._first_model(response)
        return self._model

    def _first_model(self, response: httpx.Response) -> str:
        url = f"{self.base_url}/models"
        if response.status_code != 200:
            raise BackendError(
                f"no model given and GET {url} answered HTTP {response.status_code}: {server_message(response)}; "
                "pass model= explicitly"
            )
        try:
            data = response.json().get("data") or []
            return str(data[0]["id"])
        except (ValueError, AttributeError, IndexError, KeyError, TypeError):
            raise BackendError(f"no model given and GET {url} lists no model; pass model= explicitly") from None

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

    def _chat(self, request: ChatRequest, model: str) -> Steps[Completion]:
        url = f"{self.base_url}/chat/completions"
        body = self.request_body(request, model)
        return chat_with_retries(url, body, tag=request.tag, max_retries=self.max_retries, backoff=self.backoff)

    def _tokenize(self, text: str, model: str) -> Steps[list[int]]:
        payload = {"model": model, "prompt": text, "add_special_tokens": False}
        return json_call(f"{self.server_root}/tokenize", payload, "tokens")

    def _server_truncate(self, text: str, max_tokens: int, model: str) -> Steps[str]:
        tokens = yield from self._tokenize(text, model)
        if len(tokens) <= max_tokens:
            return text
        payload = {"model": model, "tokens": tokens[:max_tokens]}
        return (yield from json_call(f"{self.server_root}/detokenize", payload, "prompt"))

    def _probe(self) -> Steps[str]:
        """Decide ``truncation="auto"`` once: the server's ``/tokenize`` if it answers, else words."""
        if self._resolved_truncation is None:
            try:
                model = yield from self._model_steps()
                yield from self._tokenize("probe", model)
                self._resolved_truncation = "server"
            except BackendError as err:
                log.warning(
                    "%s: the server has no usable /tokenize (%s); truncating passages by words, an approximation "
                    "of the model's tokens (pass tokenizer= for exact truncation)",
                    self.name,
                    err,
                )
                self._resolved_truncation = "words"
        return self._resolved_truncation

    # ------------------------------------------------------------------ Backend API
    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """One completion per request, in order; at most ``concurrency`` requests in flight."""
        if not requests:
            return []
        model = self.model_name
        return self._run_all([self._chat(r, model) for r in requests])

    async def agenerate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        if not requests:
            return []
        model = await self.amodel_name()
        return await self._arun_all([self._chat(r, model) for r in requests])

    def _truncation_mode(self) -> str:
        if self._resolved_truncation is None:
            with self._lock:  # threads sharing this backend probe the server once
                return self._run(self._probe())
        return self._resolved_truncation

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

    def truncate(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        """The first ``max_tokens`` tokens of each text (see ``truncation`` in the class docstring)."""
        if not texts:
            return []
        mode = self._truncation_mode()
        if mode == "tokenizer":
            return truncate_with_tokenizer(self._load_tokenizer(), texts, max_tokens)
        if mode == "server":
            model = self.model_name
            return self._run_all([self._server_truncate(t, max_tokens, model) for t in texts])
        return super().truncate(texts, max_tokens)

    async def atruncate(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        if not texts:
            return []
        mode = self._resolved_truncation or await self._arun(self._probe())
        if mode == "tokenizer":
            return await asyncio.to_thread(self.truncate, texts, max_tokens)
        if mode == "server":
            model = await self.amodel_name()
            return await self._arun_all([self._server_truncate(t, max_tokens, model) for t in texts])
        return super().truncate(texts, max_tokens)

    def count_tokens(self, text: str) -> int | None:
        mode = self._truncation_mode()
        if mode == "tokenizer":
            return len(self._load_tokenizer()(text, add_special_tokens=False)["input_ids"])
        if mode == "server":
            return len(self._run(self._tokenize(text, self.model_name)))
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

    async def __aenter__(self) -> OpenAIBackend:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self._model!r}, base_url={self.base_url!r}, concurrency={self.concurrency})"
