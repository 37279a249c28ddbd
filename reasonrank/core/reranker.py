"""The reranker: passages in, a full ranking out, one LLM call per window.

The async path (:meth:`Reranker.arerank_batch`) steps each query on its own
(:mod:`reasonrank.core.scheduler`); the sync path runs it too, on the reranker's own event-loop thread,
for backends of independent requests (HTTP). For local backends, which batch, the sync path runs the
sans-IO generator :meth:`Reranker._drive`, which sends the ready windows of all queries to the backend
together, round by round. Both honour a deadline, stop a call on a fatal backend error and
answer repeated windows from the window cache (:mod:`reasonrank.core.cache`).
"""

from __future__ import annotations

import difflib
import inspect
import logging
import threading
from collections.abc import Generator, Mapping, Sequence
from typing import Any, Literal

from reasonrank.core.backends import Backend, backend_class, make_backend
from reasonrank.core.backends.base import accepts_deadline
from reasonrank.core.cache import Cache, MemoryCache, decode_completion, encode_completion, make_cache, window_key
from reasonrank.core.config import RerankerConfig, default_sampling, setting_fields
from reasonrank.core.driver import DEADLINE, CallState, QueryState, WindowCallback, check_deadline, read_window
from reasonrank.core.passages import Passage, passage_contents, passage_text
from reasonrank.core.prompts import PromptMode, build_messages
from reasonrank.core.types import BackendError, ChatRequest, Completion, RerankResult
from reasonrank.core.windows import make_strategy

__all__ = ["Reranker", "default_sampling"]

log = logging.getLogger(__name__)

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
    ``"keep"`` keeps that window's order and flags it in the trace (and logs one warning per call).

    ``deadline`` (seconds, also per call) bounds a call: windows in flight are then cancelled, the
    rest skipped, and the best order so far returned with ``complete=False``. A fatal backend error
    (bad key, dead server) skips the call's remaining windows. ``cache`` answers a repeated window
    (same model, prompt and sampling) without a call.
    """

    def __init__(self, model: str | None = None, backend: str | Backend = "openai", **kwargs: Any) -> None:
        settings, extra = RerankerConfig.split(kwargs)
        backend_kwargs = {**settings.pop("backend_kwargs", {}), **extra}
        _check_backend_keywords(backend, backend_kwargs)
        self._setup(RerankerConfig(model=model, backend=backend, backend_kwargs=backend_kwargs, **settings))

    @classmethod
    def from_config(cls, config: RerankerConfig) -> Reranker:
        """A reranker with these settings (its ``backend_kwargs`` are checked like keywords)."""
        cls.check_config(config)
        reranker = cls.__new__(cls)
        reranker._setup(config)
        return reranker

    @staticmethod
    def check_config(config: RerankerConfig) -> None:
        """``TypeError``/``ValueError`` for ``backend_kwargs`` the backend does not take (names, then values),
        as constructing a reranker from ``config`` would raise; for those who build it later."""
        _check_backend_keywords(config.backend, config.backend_kwargs)

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
        self.cache: Cache | None = make_cache(config.cache)
        self._cache_identity: str | None = None
        self._cache_warned = False
        self._loop_thread: Any = None  # a scheduler.LoopThread, made by the first sync call that needs it

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
        loop_thread, self._loop_thread = self._loop_thread, None
        if loop_thread is not None:
            if self._backend is not None:
                loop_thread.run(self._backend.aclose())
            loop_thread.close()
        if self._backend is not None:
            self._backend.close()
        if self.cache is not None and not isinstance(self.config.cache, Cache) and hasattr(self.cache, "close"):
            self.cache.close()  # a cache this reranker opened (not one passed in)

    async def aclose(self) -> None:
        """Close this event loop's clients, then all the rest (:meth:`close`: the loop thread, the cache)."""
        if self._backend is not None:
            await self._backend.aclose()
        self.close()

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
    def rerank(self, query: str, passages: Sequence[Passage], *, deadline: float | None = None) -> RerankResult:
        """Rerank one query's passages (str, or dicts with "text"/"content" and an optional "title").

        ``deadline`` (seconds) overrides the configured one for this call (``math.inf``: none).
        """
        return self.rerank_batch([query], [passages], deadline=deadline)[0]

    async def arerank(self, query: str, passages: Sequence[Passage], *, deadline: float | None = None) -> RerankResult:
        return (await self.arerank_batch([query], [passages], deadline=deadline))[0]

    def rerank_batch(
        self,
        queries: Sequence[str],
        passages_per_query: Sequence[Sequence[Passage]],
        *,
        deadline: float | None = None,
        on_window: WindowCallback | None = None,
    ) -> list[RerankResult]:
        """Rerank many queries; at each round the ready windows of all queries go to the backend together.

        ``deadline``: seconds for the whole call (default: the configured ``deadline``); ``on_window``
        is called with each window's trace as it finishes (or is skipped). With an HTTP backend this
        runs the async engine (each query moves on as its own window returns) on the reranker's
        event-loop thread, where ``on_window`` is then called.
        """
        loop_thread = self._sync_loop()
        if loop_thread is not None:
            coro = self.arerank_batch(queries, passages_per_query, deadline=deadline, on_window=on_window)
            return loop_thread.run(coro)
        call = self._start(queries, passages_per_query, deadline, on_window)
        driver = self._drive(call)
        reply: Any = None
        try:
            while True:
                kind, payload = driver.send(reply)
                if kind == "truncate":
                    reply = self.backend.truncate(payload, self.max_passage_tokens)
                else:
                    reply = self._generate(payload, call)
        except StopIteration:
            return call.results()
        finally:
            call.close()

    def _sync_loop(self) -> Any:
        """The event-loop thread that runs sync calls on a backend of independent requests (else None)."""
        from reasonrank.core.scheduler import LoopThread, independent_requests

        if not independent_requests(self.backend):
            return None
        with self._lock:
            if self._loop_thread is None or not self._loop_thread.alive:  # (a forked child starts its own)
                self._loop_thread = LoopThread(owner=self)  # closed with this reranker if close() is never called
            return None if self._loop_thread.here else self._loop_thread

    async def arerank_batch(
        self,
        queries: Sequence[str],
        passages_per_query: Sequence[Sequence[Passage]],
        *,
        deadline: float | None = None,
        on_window: WindowCallback | None = None,
    ) -> list[RerankResult]:
        """Async :meth:`rerank_batch`: each query's next window is sent as soon as its previous one returns."""
        from reasonrank.core.scheduler import run_call

        call = self._start(queries, passages_per_query, deadline, on_window)
        try:
            await run_call(self, call)
            return call.results()
        finally:
            call.close()

    async def _aprepare(self, work: list[tuple[QueryState, list[int]]]) -> None:
        """:meth:`_prepare` with the backend's async truncation."""
        steps = self._prepare(work)
        reply: Any = None
        try:
            while True:
                _, texts = steps.send(reply)
                reply = await self.backend.atruncate(texts, self.max_passage_tokens)
        except StopIteration:
            pass

    def _start(self, queries: Sequence[str], passages_per_query: Sequence[Sequence[Passage]],
               deadline: float | None, on_window: WindowCallback | None) -> CallState:  # fmt: skip
        budget = check_deadline(deadline) if deadline is not None else self.config.deadline
        return CallState(
            self._jobs(queries, passages_per_query),
            deadline=budget,
            on_window=on_window,
            show_progress=self.show_progress,
            backend_name=self.backend_name,
        )

    # ------------------------------------------------------------------ the sync driver (no I/O)
    def _drive(self, call: CallState) -> Generator[_Step, Any, None]:
        """Round by round, the ready windows of every query in one ``generate`` step.

        The passages a round shows for the first time are prepared (one truncation batch) just before it.
        """
        while due := [(query, query.plan.pending()) for query in call.queries if not query.plan.done]:
            if not call.stopped and call.expired():
                call.stop(DEADLINE)
            if call.stopped:
                for query, windows in due:
                    call.skip(query, windows)
                return
            yield from self._prepare([(query, query.unprepared(windows)) for query, windows in due])
            batch = [(query, window, request) for query, windows in due
                     for window, request in zip(windows, self._requests(query, windows))]  # fmt: skip
            completions = yield ("generate", [request for _, _, request in batch])
            if len(completions) != len(batch):
                raise BackendError(f"backend returned {len(completions)} outputs for {len(batch)} windows")
            rankings: dict[int, list[list[int] | None]] = {}
            for (query, window, request), done in zip(batch, completions):
                local, trace = self._read(query, window, request, done)
                call.record(query, trace)
                rankings.setdefault(query.index, []).append(local)
                if done.fatal and done.error is not None:
                    call.stop(done.error, fatal=True)
            for query, _ in due:
                query.finish_round(rankings[query.index])

    def _jobs(self, queries: Sequence[str], passages_per_query: Sequence[Sequence[Passage]]) -> list[QueryState]:
        """Validate the inputs (naming the query and passage at fault), read each passage's text, and plan
        each query's windows."""
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
            texts = []
            for pi, passage in enumerate(passages):
                try:
                    texts.append(passage_text(passage))
                except (TypeError, ValueError) as err:
                    raise type(err)(f"query {qi}, passage {pi}: {err}") from None
            # the texts read here are the ones prepared: each passage is read once
            jobs.append(QueryState(qi, query, texts, self.strategy.plan(min(self.depth, len(passages)))))
        return jobs

    def _prepare(self, work: list[tuple[QueryState, list[int]]]) -> Generator[_Step, Any, None]:
        """Prompt contents of the given head passages of each query, truncated in one batch.

        Contents are made when a window first shows a passage (so the first windows leave before the
        other passages are cleaned, and a call stopped early cleans only what it showed), once per query.
        """
        passages = [query.passages[i] for query, indices in work for i in indices]  # (indices are in the head)
        if not passages:
            return
        steps = passage_contents(passages, self.max_passage_tokens)
        try:
            texts = next(steps)
            while True:
                truncated = yield ("truncate", texts)
                if len(truncated) != len(texts):
                    raise BackendError(f"backend truncated {len(truncated)} of {len(texts)} passages")
                texts = steps.send(truncated)
        except StopIteration as done:
            contents = iter(done.value)
        for query, indices in work:
            for i in indices:
                query.contents[i] = next(contents)

    def _requests(self, query: QueryState, windows: list[list[int]]) -> list[ChatRequest]:
        """The chat requests of a query's ready windows (tagged for errors and traces)."""
        return [self._request(query, k, window) for k, window in enumerate(windows)]

    def _request(self, query: QueryState, k: int, window: list[int]) -> ChatRequest:
        """The chat request of window ``k`` of a query's round; its passages' contents must be prepared."""
        return ChatRequest(
            messages=build_messages(query.query, [query.contents[i] for i in window], self.prompt_mode),  # type: ignore[misc]
            sampling=self.sampling,
            tag=f"query {query.index} round {query.plan.rounds} window {k}",
        )

    def _read(self, query: QueryState, window: list[int], request: ChatRequest, done: Completion):
        return read_window(query, window, request, done, direct=self.prompt_mode is PromptMode.DIRECT,
                           raise_errors=self.on_error == "raise", backend_name=self.backend_name)  # fmt: skip

    # ------------------------------------------------------------------ generation through the cache (sync)
    def _generate(self, requests: list[ChatRequest], call: CallState) -> list[Completion]:
        """Completions for a round: cache hits first, the rest from the backend (successes then stored)."""
        keys = self._cache_keys(requests)
        out: list[Completion | None] = [self._cache_get(key) if key else None for key in keys]
        todo = [i for i, completion in enumerate(out) if completion is None]
        if todo:
            backend = self.backend
            batch = [requests[i] for i in todo]
            if call.deadline is not None and accepts_deadline(backend.generate):
                fresh = backend.generate(batch, deadline=call.deadline)
            else:
                fresh = backend.generate(batch)
            if len(fresh) != len(batch):
                raise BackendError(f"backend returned {len(fresh)} outputs for {len(batch)} windows")
            for i, completion in zip(todo, fresh):
                out[i] = completion
                self._cache_set(keys[i], completion)
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------ the window cache
    def _cacheable(self, request: ChatRequest) -> bool:
        return self.cache is not None and (request.sampling.greedy or self.config.cache_sampled)

    def _cache_keys(self, requests: Sequence[ChatRequest]) -> list[str | None]:
        if not any(self._cacheable(r) for r in requests):
            return [None] * len(requests)
        if self._cache_identity is None:
            try:
                self._cache_identity = _model_identity(self.backend, None)
            except BackendError:  # the model's name is unknown (server down): no caching this time
                return [None] * len(requests)
        return [window_key(self._cache_identity, r) if self._cacheable(r) else None for r in requests]

    def _cache_get(self, key: str | None) -> Completion | None:
        if key is None or self.cache is None:
            return None
        try:
            value = self.cache.get(key)
        except Exception as err:  # a cache that is down must not fail the rerank
            self._cache_failed("read", err)
            return None
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return decode_completion(value) if isinstance(value, str) else None

    def _cache_set(self, key: str | None, completion: Completion) -> None:
        """Store a successful, model-made window (never a failure, a skip or a hit)."""
        if key is None or self.cache is None or completion.error is not None or completion.status or completion.cached:
            return
        try:
            self.cache.set(key, encode_completion(completion))
        except Exception as err:
            self._cache_failed("write", err)

    def _cache_failed(self, action: str, err: Exception) -> None:
        if not self._cache_warned:
            self._cache_warned = True
            log.warning("window cache %r: %s failed (%r); going on without it where it fails", self.cache, action, err)

    async def _acache_key(self, request: ChatRequest) -> str | None:
        if not self._cacheable(request):
            return None
        if self._cache_identity is None:
            backend = self.backend
            try:
                model = await backend.amodel_name() if hasattr(backend, "amodel_name") else None
                self._cache_identity = _model_identity(backend, model)
            except BackendError:  # the model's name is unknown (server down): no caching this time
                return None
        return window_key(self._cache_identity, request)

    async def _acache_get(self, key: str) -> Completion | None:
        if isinstance(self.cache, MemoryCache):
            return self._cache_get(key)
        import asyncio

        return await asyncio.to_thread(self._cache_get, key)

    async def _acache_set(self, key: str, completion: Completion) -> None:
        if isinstance(self.cache, MemoryCache):
            return self._cache_set(key, completion)
        import asyncio

        await asyncio.to_thread(self._cache_set, key, completion)


def _model_identity(backend: Backend, model: str | None) -> str:
    """``backend.name``, with the model asked from the backend when the name does not know it yet."""
    name = backend.name
    if name.endswith(":?"):
        return f"{backend.kind}:{model if model is not None else backend.model_name}"
    return name


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
    getattr(backend_class(backend), "validate_options", lambda **_: None)(**kwargs)  # values, e.g. timeout=0


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
