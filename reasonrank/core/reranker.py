"""The reranker: passages in, a full ranking out, one LLM call per window."""

from __future__ import annotations

import threading
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tqdm.auto import tqdm

from reasonrank.core.backends import Backend, make_backend
from reasonrank.core.parsing import KEPT_WINDOW_ORDER, parse_response
from reasonrank.core.prompts import PromptMode, build_messages, clean_passage, finish_passage
from reasonrank.core.types import (
    BackendError,
    ChatRequest,
    Completion,
    RerankResult,
    SamplingParams,
    WindowTrace,
    rank_scores,
)
from reasonrank.core.windows import Plan, Strategy, make_strategy

__all__ = ["Reranker", "default_sampling"]

Passage = str | Mapping[str, Any]

# Reasoning budget of the published scripts: reasoning_maxlen 3072 + 100.
REASONING_MAX_NEW_TOKENS = 3172


def default_sampling(mode: PromptMode | str, window_size: int = 20) -> SamplingParams:
    """The authors' decoding settings for a prompt mode (recipe section 1.4)."""
    mode = PromptMode.parse(mode)
    if mode is PromptMode.QWEN3:
        return SamplingParams(REASONING_MAX_NEW_TOKENS, temperature=0.6, top_p=0.95, top_k=20, min_p=0.0)
    if mode is PromptMode.DIRECT:
        # Room for "[1] > [2] > ... > [w]": a few tokens per id.
        return SamplingParams(max_new_tokens=6 * window_size + 8, temperature=0.0)
    return SamplingParams(REASONING_MAX_NEW_TOKENS, temperature=0.0)


@dataclass
class _Query:
    index: int
    query: str
    n: int  # all passages
    contents: list[str]  # prompt contents of the reranked head (first `depth`)
    plan: Plan
    windows: list[WindowTrace] = field(default_factory=list)


# What the driver asks its runner to do: truncate texts, or generate completions for requests.
_Step = tuple[Literal["truncate"], list[str]] | tuple[Literal["generate"], list[ChatRequest]]


class Reranker:
    """Reasoning-intensive listwise reranking (ReasonRank) over a window schedule.

    >>> rr = Reranker("liuwenhan/reasonrank-7B", backend="openai", base_url="http://localhost:8000/v1")
    >>> res = rr.rerank("what is a flea's life cycle?", ["passage one", "passage two"])
    >>> res.order, res.scores

    ``backend`` is ``"openai"`` (any OpenAI-compatible server), ``"transformers"``, ``"vllm"`` or a
    ready :class:`~reasonrank.core.backends.Backend`; extra keyword arguments go to its constructor.
    The backend is built once, on first use. The first ``depth`` passages are reranked; the rest
    follow in input order. ``on_error="raise"`` raises when a window fails; ``"keep"`` keeps that
    window's order and flags it in the trace.
    """

    def __init__(
        self,
        model: str | None = None,
        backend: str | Backend = "openai",
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        prompt_mode: PromptMode | str = PromptMode.REASONING,
        window_size: int = 20,
        step: int = 10,
        depth: int = 100,
        strategy: str | Strategy = "sliding",
        max_passage_tokens: int | None = 512,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        min_p: float | None = None,
        seed: int | None = None,
        on_error: Literal["raise", "keep"] = "raise",
        show_progress: bool = False,
        **backend_kwargs: Any,
    ) -> None:
        self.prompt_mode = PromptMode.parse(prompt_mode)
        self.strategy = make_strategy(strategy, window_size, step)
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if max_passage_tokens is not None and max_passage_tokens < 1:
            raise ValueError(f"max_passage_tokens must be >= 1 or None, got {max_passage_tokens}")
        if on_error not in ("raise", "keep"):
            raise ValueError(f"on_error must be 'raise' or 'keep', got {on_error!r}")
        self.model = model
        self.depth = depth
        self.max_passage_tokens = max_passage_tokens
        self.on_error = on_error
        self.show_progress = show_progress
        base = default_sampling(self.prompt_mode, self.strategy.window_size)
        overrides = {
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "top_k": top_k,
            "min_p": min_p,
            "seed": seed,
        }
        self.sampling = SamplingParams(
            **{**base.__dict__, **{k: v for k, v in overrides.items() if v is not None}}
        )
        if isinstance(backend, Backend):
            if backend_kwargs or base_url or api_key:
                raise ValueError("backend options cannot be combined with a ready Backend instance")
            self._backend: Backend | None = backend
            self.backend_name = backend.name
        else:
            self._backend = None
            self.backend_name = str(backend).lower()
            if self.backend_name == "openai":
                backend_kwargs.update(base_url=base_url, api_key=api_key)
            elif base_url or api_key:
                raise ValueError(f"base_url and api_key apply to the openai backend, not {self.backend_name!r}")
        self._backend_kwargs = backend_kwargs
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ backend
    @property
    def backend(self) -> Backend:
        """The backend, built on first use (never per call)."""
        if self._backend is None:
            with self._lock:
                if self._backend is None:
                    self._backend = make_backend(self.backend_name, self.model, **self._backend_kwargs)
        return self._backend

    @property
    def window_size(self) -> int:
        return self.strategy.window_size

    @property
    def step(self) -> int:
        return self.strategy.step

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()

    async def aclose(self) -> None:
        if self._backend is not None:
            await self._backend.aclose()

    def __enter__(self) -> "Reranker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Reranker(model={self.model!r}, backend={self.backend_name!r}, prompt_mode={self.prompt_mode.value!r}, "
            f"strategy={self.strategy!r}, depth={self.depth})"
        )

    # ------------------------------------------------------------------ public API
    def rerank(self, query: str, passages: Sequence[Passage]) -> RerankResult:
        """Rerank one query's passages (str, or dicts with "text"/"content" and an optional "title")."""
        return self.rerank_batch([query], [passages])[0]

    async def arerank(self, query: str, passages: Sequence[Passage]) -> RerankResult:
        return (await self.arerank_batch([query], [passages]))[0]

    def rerank_batch(
        self, queries: Sequence[str], passages_per_query: Sequence[Sequence[Passage]]
    ) -> list[RerankResult]:
        """Rerank many queries; at each round the ready windows of all queries go to the backend together."""
        driver = self._drive(queries, passages_per_query)
        backend = None
        try:
            step = next(driver)
            while True:
                backend = backend or self.backend
                kind, payload = step
                if kind == "truncate":
                    reply: Any = backend.truncate(payload, self.max_passage_tokens)
                else:
                    reply = backend.generate(payload)
                step = driver.send(reply)
        except StopIteration as stop:
            return stop.value

    async def arerank_batch(
        self, queries: Sequence[str], passages_per_query: Sequence[Sequence[Passage]]
    ) -> list[RerankResult]:
        driver = self._drive(queries, passages_per_query)
        backend = None
        try:
            step = next(driver)
            while True:
                backend = backend or self.backend
                kind, payload = step
                if kind == "truncate":
                    reply: Any = await backend.atruncate(payload, self.max_passage_tokens)
                else:
                    reply = await backend.agenerate(payload)
                step = driver.send(reply)
        except StopIteration as stop:
            return stop.value

    # ------------------------------------------------------------------ the driver (no I/O)
    def _drive(
        self, queries: Sequence[str], passages_per_query: Sequence[Sequence[Passage]]
    ) -> Generator[_Step, Any, list[RerankResult]]:
        if isinstance(queries, str):
            raise TypeError("rerank_batch takes a list of queries; use rerank() for one query")
        if len(queries) != len(passages_per_query):
            raise ValueError(
                f"got {len(queries)} queries but {len(passages_per_query)} passage lists; they must match"
            )
        jobs: list[_Query] = []
        head_texts: list[str] = []
        for qi, (query, passages) in enumerate(zip(queries, passages_per_query)):
            if not isinstance(query, str) or not query.strip():
                raise ValueError(f"query {qi} is empty; a query must be a non-empty string")
            if isinstance(passages, (str, bytes)) or not isinstance(passages, Sequence):
                raise TypeError(f"passages of query {qi} must be a list, got {type(passages).__name__}")
            m = min(self.depth, len(passages))
            cleaned = []
            for pi, passage in enumerate(passages):
                try:
                    text = clean_passage(passage)
                except (TypeError, ValueError) as err:
                    raise type(err)(f"query {qi}, passage {pi}: {err}") from None
                if pi < m:
                    cleaned.append(text)
            head_texts.extend(cleaned)
            jobs.append(_Query(qi, query, len(passages), cleaned, self.strategy.plan(m)))

        if self.max_passage_tokens is not None and head_texts and any(j.plan.pending() for j in jobs):
            truncated = yield ("truncate", head_texts)
            if len(truncated) != len(head_texts):
                raise BackendError(f"backend truncated {len(truncated)} of {len(head_texts)} passages")
            it = iter(truncated)
            for job in jobs:
                job.contents = [next(it) for _ in job.contents]
        for job in jobs:
            job.contents = [finish_passage(c) for c in job.contents]

        direct = self.prompt_mode is PromptMode.DIRECT
        progress = tqdm(disable=not self.show_progress, unit="window", desc="reranking")
        try:
            round_ = 0
            while True:
                batch: list[tuple[_Query, list[int]]] = []
                for job in jobs:
                    batch.extend((job, window) for window in job.plan.pending())
                if not batch:
                    break
                requests = [
                    ChatRequest(
                        messages=build_messages(job.query, [job.contents[i] for i in window], self.prompt_mode),
                        sampling=self.sampling,
                        tag=f"query {job.index} round {round_} window {k}",
                    )
                    for k, (job, window) in enumerate(batch)
                ]
                completions: list[Completion] = yield ("generate", requests)
                if len(completions) != len(requests):
                    raise BackendError(f"backend returned {len(completions)} outputs for {len(requests)} windows")
                rankings: dict[int, list[list[int]]] = {}
                for (job, window), request, done in zip(batch, requests, completions):
                    if done.error is not None:
                        if self.on_error == "raise":
                            raise BackendError(
                                f"{self.backend_name}: {request.tag} (query {job.query[:80]!r}) failed: {done.error}"
                            )
                        local, reasoning, answer, repairs = list(range(len(window))), "", None, [KEPT_WINDOW_ORDER]
                    else:
                        parsed = parse_response(done.text, len(window), direct=direct)
                        local, reasoning, answer, repairs = parsed.order, parsed.reasoning, parsed.answer, parsed.repairs
                    rankings.setdefault(job.index, []).append(local)
                    job.windows.append(
                        WindowTrace(
                            query_index=job.index,
                            round=round_,
                            passages=list(window),
                            order=[window[i] for i in local],
                            raw_output=done.text,
                            reasoning=reasoning,
                            answer=answer,
                            repairs=repairs,
                            error=done.error,
                            prompt_tokens=done.prompt_tokens,
                            completion_tokens=done.completion_tokens,
                            seconds=done.seconds,
                            finish_reason=done.finish_reason,
                        )
                    )
                for job in jobs:
                    if job.index in rankings:
                        job.plan.apply(rankings[job.index])
                progress.update(len(batch))
                round_ += 1
        finally:
            progress.close()

        results = []
        for job in jobs:
            order = job.plan.order + list(range(job.plan.n, job.n))
            results.append(
                RerankResult(
                    query=job.query,
                    order=order,
                    scores=rank_scores(job.n),
                    windows=job.windows,
                    rounds=job.plan.rounds,
                )
            )
        return results
