"""The reranker: passages in, a full ranking out, one LLM call per window."""

from __future__ import annotations

import difflib
import inspect
import itertools
import threading
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tqdm.auto import tqdm

from reasonrank.core.backends import Backend, backend_class, make_backend
from reasonrank.core.config import RerankerConfig, default_sampling, setting_fields
from reasonrank.core.parsing import KEPT_WINDOW_ORDER, parse_response
from reasonrank.core.passages import Passage, passage_contents, passage_text
from reasonrank.core.prompts import PromptMode, build_messages
from reasonrank.core.types import (
    BackendError,
    ChatRequest,
    Completion,
    RerankResult,
    WindowTrace,
    rank_scores,
)
from reasonrank.core.windows import Plan, make_strategy

__all__ = ["Reranker", "default_sampling"]


@dataclass
class _Query:
    index: int
    query: str
    passages: Sequence[Passage]
    plan: Plan
    contents: list[str] = field(default_factory=list)  # prompt contents of the reranked head
    windows: list[WindowTrace] = field(default_factory=list)

    @property
    def head(self) -> Sequence[Passage]:
        """The passages that are reranked (the first ``depth``)."""
        return self.passages[: self.plan.n]


# A window of one query in a round: the query and the input indices it shows.
_Window = tuple[_Query, list[int]]
# What the driver asks its runner to do: truncate texts, or generate completions for requests.
_Step = tuple[Literal["truncate"], list[str]] | tuple[Literal["generate"], list[ChatRequest]]


class Reranker:
    """Reasoning-intensive listwise reranking (ReasonRank) over a window schedule.

    >>> rr = Reranker("liuwenhan/reasonrank-7B", backend="openai", base_url="http://localhost:8000/v1")
    >>> res = rr.rerank("what is a flea's life cycle?", ["passage one", "passage two"])
    >>> res.order, res.scores

    ``backend`` is ``"openai"`` (any OpenAI-compatible server), ``"transformers"``, ``"vllm"`` or a
    ready :class:`~reasonrank.core.backends.Backend`. Keywords that are settings of
    :class:`~reasonrank.core.config.RerankerConfig` (``window_size``, ``temperature``, ...) configure the
    reranker; every other keyword goes to the backend's constructor (``timeout=``, ``device=``, ...) and
    is checked against it now. The backend is built once, on first use. The first ``depth`` passages
    are reranked; the rest follow in input order. ``on_error="raise"`` raises when a window fails;
    ``"keep"`` keeps that window's order and flags it in the trace.
    """

    def __init__(self, model: str | None = None, backend: str | Backend = "openai", **kwargs: Any) -> None:
        settings, extra = RerankerConfig.split(kwargs)
        backend_kwargs = {**settings.pop("backend_kwargs", {}), **extra}
        _check_backend_keywords(backend, backend_kwargs)
        self._setup(RerankerConfig(model=model, backend=backend, backend_kwargs=backend_kwargs, **settings))

    @classmethod
    def from_config(cls, config: RerankerConfig) -> Reranker:
        """A reranker with these settings (its ``backend_kwargs`` are checked like keywords)."""
        _check_backend_keywords(config.backend, config.backend_kwargs)
        reranker = cls.__new__(cls)
        reranker._setup(config)
        return reranker

    def _setup(self, config: RerankerConfig) -> None:
        self.config = config
        self.prompt_mode = PromptMode.parse(config.prompt_mode)
        self.strategy = make_strategy(config.strategy, config.window_size, config.step)
        self.model = config.model
        self.depth = config.depth
        self.max_passage_tokens = config.max_passage_tokens
        self.on_error = config.on_error
        self.show_progress = config.show_progress
        self.sampling = config.sampling
        if isinstance(config.backend, Backend):
            self._backend: Backend | None = config.backend
            self.backend_name = config.backend.name
        else:
            self._backend = None
            self.backend_name = config.backend_name
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ backend
    @property
    def backend(self) -> Backend:
        """The backend, built on first use (never per call)."""
        if self._backend is None:
            with self._lock:
                if self._backend is None:
                    self._backend = make_backend(self.backend_name, self.model, **self._backend_options())
        return self._backend

    def _backend_options(self) -> dict[str, Any]:
        options = dict(self.config.backend_kwargs)
        if self.backend_name == "openai":
            options.update(base_url=self.config.base_url, api_key=self.config.api_key)
        return options

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

    def __enter__(self) -> Reranker:
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
        reply: Any = None
        try:
            while True:
                kind, payload = driver.send(reply)
                if kind == "truncate":
                    reply = self.backend.truncate(payload, self.max_passage_tokens)
                else:
                    reply = self.backend.generate(payload)
        except StopIteration as stop:
            return stop.value

    async def arerank_batch(
        self, queries: Sequence[str], passages_per_query: Sequence[Sequence[Passage]]
    ) -> list[RerankResult]:
        driver = self._drive(queries, passages_per_query)
        reply: Any = None
        try:
            while True:
                kind, payload = driver.send(reply)
                if kind == "truncate":
                    reply = await self.backend.atruncate(payload, self.max_passage_tokens)
                else:
                    reply = await self.backend.agenerate(payload)
        except StopIteration as stop:
            return stop.value

    # ------------------------------------------------------------------ the driver (no I/O)
    def _drive(
        self, queries: Sequence[str], passages_per_query: Sequence[Sequence[Passage]]
    ) -> Generator[_Step, Any, list[RerankResult]]:
        jobs = self._jobs(queries, passages_per_query)
        yield from self._prepare_contents(jobs)
        progress = tqdm(disable=not self.show_progress, unit="window", desc="reranking")
        try:
            for round_ in itertools.count():
                batch = [(job, window) for job in jobs for window in job.plan.pending()]
                if not batch:
                    break
                requests = self._round_requests(batch, round_)
                completions = yield ("generate", requests)
                if len(completions) != len(requests):
                    raise BackendError(f"backend returned {len(completions)} outputs for {len(requests)} windows")
                self._read_round(batch, requests, completions, round_)
                progress.update(len(batch))
        finally:
            progress.close()
        return [self._result(job) for job in jobs]

    def _jobs(self, queries: Sequence[str], passages_per_query: Sequence[Sequence[Passage]]) -> list[_Query]:
        """Validate the inputs (naming the query and passage at fault) and plan each query's windows."""
        if isinstance(queries, str):
            raise TypeError("rerank_batch takes a list of queries; use rerank() for one query")
        if len(queries) != len(passages_per_query):
            raise ValueError(f"got {len(queries)} queries but {len(passages_per_query)} passage lists; they must match")
        jobs = []
        for qi, (query, passages) in enumerate(zip(queries, passages_per_query)):
            if not isinstance(query, str) or not query.strip():
                raise ValueError(f"query {qi} is empty; a query must be a non-empty string")
            if isinstance(passages, (str, bytes)) or not isinstance(passages, Sequence):
                raise TypeError(f"passages of query {qi} must be a list, got {type(passages).__name__}")
            for pi, passage in enumerate(passages):
                try:
                    passage_text(passage)
                except (TypeError, ValueError) as err:
                    raise type(err)(f"query {qi}, passage {pi}: {err}") from None
            jobs.append(_Query(qi, query, passages, self.strategy.plan(min(self.depth, len(passages)))))
        return jobs

    def _prepare_contents(self, jobs: list[_Query]) -> Generator[_Step, Any, None]:
        """Prompt contents of every query's head, truncated in one batch (skipped when no window is due)."""
        heads = [passage for job in jobs for passage in job.head]
        due = any(job.plan.pending() for job in jobs)
        steps = passage_contents(heads, self.max_passage_tokens if due else None)
        try:
            texts = next(steps)
            while True:
                truncated = yield ("truncate", texts)
                if len(truncated) != len(texts):
                    raise BackendError(f"backend truncated {len(truncated)} of {len(texts)} passages")
                texts = steps.send(truncated)
        except StopIteration as done:
            contents = iter(done.value)
        for job in jobs:
            job.contents = list(itertools.islice(contents, job.plan.n))

    def _round_requests(self, batch: list[_Window], round_: int) -> list[ChatRequest]:
        return [
            ChatRequest(
                messages=build_messages(job.query, [job.contents[i] for i in window], self.prompt_mode),
                sampling=self.sampling,
                tag=f"query {job.index} round {round_} window {k}",
            )
            for k, (job, window) in enumerate(batch)
        ]

    def _read_round(
        self, batch: list[_Window], requests: list[ChatRequest], completions: list[Completion], round_: int
    ) -> None:
        """Read each window's output into its trace, then move every query's plan on by the round's rankings."""
        rankings: dict[int, tuple[_Query, list[list[int]]]] = {}
        for (job, window), request, done in zip(batch, requests, completions):
            local, trace = self._read_window(job, window, request, done, round_)
            job.windows.append(trace)
            rankings.setdefault(job.index, (job, []))[1].append(local)
        for job, local_orders in rankings.values():
            job.plan.apply(local_orders)

    def _read_window(
        self, job: _Query, window: list[int], request: ChatRequest, done: Completion, round_: int
    ) -> tuple[list[int], WindowTrace]:
        """The window's order (0-based within the window) and its trace; a failed window per ``on_error``."""
        if done.error is not None:
            if self.on_error == "raise":
                raise BackendError(
                    f"{self.backend_name}: {request.tag} (query {job.query[:80]!r}) failed: {done.error}"
                )
            local, reasoning, answer, repairs = list(range(len(window))), "", None, [KEPT_WINDOW_ORDER]
        else:
            parsed = parse_response(done.text, len(window), direct=self.prompt_mode is PromptMode.DIRECT)
            local, reasoning, answer, repairs = parsed.order, parsed.reasoning, parsed.answer, parsed.repairs
        trace = WindowTrace(
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
        return local, trace

    @staticmethod
    def _result(job: _Query) -> RerankResult:
        n = len(job.passages)
        return RerankResult(
            query=job.query,
            order=job.plan.order + list(range(job.plan.n, n)),
            scores=rank_scores(n),
            windows=job.windows,
            rounds=job.plan.rounds,
        )


def _check_backend_keywords(backend: Any, kwargs: Mapping[str, Any]) -> None:
    """``TypeError`` for a backend option that the backend's constructor does not take.

    Skipped for a backend name that is unknown (the config says so) or whose module cannot be imported
    (the import error comes when the backend is built).
    """
    if not kwargs:
        return
    settings = {f.name for f in setting_fields()}
    accepted = _constructor_keywords(backend)
    if accepted is None:
        return
    for key in kwargs:
        if key in settings:
            raise TypeError(f"{key!r} is a reranker setting, not a backend option: pass it as {key}=")
        if key not in accepted:
            close = difflib.get_close_matches(key, sorted(accepted | settings), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            note = " (a ready Backend takes no backend options)" if isinstance(backend, Backend) else ""
            raise TypeError(f"Reranker got an unexpected keyword argument {key!r}{hint}{note}")


def _constructor_keywords(backend: Any) -> set[str] | None:
    """The keywords a backend's constructor takes besides ``model``; None when anything goes (or unknown)."""
    if isinstance(backend, Backend):
        return set()
    try:
        parameters = inspect.signature(backend_class(backend)).parameters.values()
    except (ImportError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    settings = {f.name for f in setting_fields()}
    return {p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL} - {"model"} - settings
