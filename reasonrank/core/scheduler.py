"""The async engine: each query's windows go out as soon as they are ready, under one limit per backend.

A query's next window starts when its own previous round returns, not when every query's round does
(:func:`run_call` steps each query's plan in its own task). Windows reach the backend through one
:class:`Dispatcher` per backend and event loop, which holds the backend's limit: ``backend.concurrency``
single-window requests in flight for an HTTP backend, or one batch at a time (every window ready by
then) for a local backend that batches (``concurrency`` None). A deadline or a fatal error cancels
the call's windows in flight; they are traced as skipped and their order is kept.

The sync path runs this engine too for backends of independent requests (HTTP): on a
:class:`LoopThread`, one event loop in a daemon thread per reranker. Imported on first use, so
``import reasonrank`` does not import asyncio.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from reasonrank.core.backends.base import Backend, accepts_deadline
from reasonrank.core.cache import MemoryCache
from reasonrank.core.driver import DEADLINE, CallState, QueryState
from reasonrank.core.types import BackendError, ChatRequest, Completion

if TYPE_CHECKING:
    from reasonrank.core.reranker import Reranker

__all__ = ["Dispatcher", "LoopThread", "dispatcher_for", "independent_requests", "run_call"]

T = TypeVar("T")


@dataclass(eq=False)
class _Item:
    request: ChatRequest
    deadline: float | None
    future: asyncio.Future
    handed: Callable[[], None] | None = None  # called once the window waits for a slot or its call starts
    batch: list[_Item] = field(default_factory=list)
    task: asyncio.Task | None = None


def _resolve(handed: Callable[[], None] | None) -> None:
    if handed is not None:
        handed()


class _Release:
    """Releases a query's turn, once: when its window's call starts, waits for a slot, or is given up."""

    __slots__ = ("lock",)

    def __init__(self, lock: asyncio.Lock) -> None:
        self.lock: asyncio.Lock | None = lock

    def __call__(self, *_: Any) -> None:
        lock, self.lock = self.lock, None
        if lock is not None:
            lock.release()


def independent_requests(backend: Backend) -> bool:
    """Whether the backend takes windows as independent requests (``concurrency`` an int, as HTTP backends)."""
    concurrency = getattr(backend, "concurrency", None)
    return isinstance(concurrency, int) and not isinstance(concurrency, bool) and concurrency >= 1


class LoopThread:
    """An event loop in a daemon thread, where sync callers run coroutines (:meth:`run`).

    A daemon thread, so a reranker that is never closed does not hold the interpreter at exit. With an
    ``owner``, the loop is closed (its HTTP clients with it) when the owner is garbage-collected or at
    interpreter exit, whichever comes first, if nobody closed it: no thread left behind, and no
    "Unclosed client session" from aiohttp at exit.
    """

    def __init__(self, owner: object | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="reasonrank-loop", daemon=True)
        self.thread.start()
        self.pid = os.getpid()
        if owner is not None:
            weakref.finalize(owner, _close_left_open, self)

    @property
    def alive(self) -> bool:
        """False in a forked child (the thread did not come along) or once closed."""
        return self.pid == os.getpid() and self.thread.is_alive() and not self.loop.is_closed()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for it; an interrupt (Ctrl-C) cancels it."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    @property
    def here(self) -> bool:
        """Whether the caller runs on this loop (where :meth:`run` would wait for itself)."""
        return threading.current_thread() is self.thread

    def close(self) -> None:
        """Close the loop's async generators (its HTTP clients among them), then stop the loop."""
        if self.loop.is_closed():
            return
        try:
            self.run(self.loop.shutdown_asyncgens())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            if not self.thread.is_alive():
                self.loop.close()


def _close_left_open(loop_thread: LoopThread) -> None:
    """Close a loop thread its owner left open (from another thread when called on the loop's own)."""
    if not loop_thread.alive:  # closed already, or the parent's thread in a forked child
        return
    if loop_thread.here:  # (a garbage collection that ran on the loop thread: it cannot wait for itself)
        threading.Thread(target=loop_thread.close, name="reasonrank-loop-close", daemon=True).start()
    else:
        loop_thread.close()


class Dispatcher:
    """Sends windows to one backend on one event loop, at most ``slots`` calls at a time.

    ``max_batch`` windows go in one ``agenerate`` call (1 for HTTP backends, every ready window for
    local ones). A submitted window that is cancelled leaves the queue; a call whose windows were all
    cancelled is cancelled too (its HTTP request is dropped).
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        independent = independent_requests(backend)
        self.slots: int = backend.concurrency if independent else 1  # type: ignore[assignment]
        self.max_batch: int | None = 1 if independent else None
        self.running = 0
        #: held by a query from preparing a window to its request starting (see :func:`_run_query`)
        self.turn = asyncio.Lock() if independent else None
        self._queue: deque[_Item] = deque()
        self._pump_due = False
        self._with_deadline = accepts_deadline(backend.agenerate)

    def submit(
        self, request: ChatRequest, deadline: float | None, handed: Callable[[], None] | None = None
    ) -> asyncio.Future:
        """A future of the window's :class:`Completion`; cancel it to withdraw the window.

        ``handed()`` is called once the window waits for a slot or its backend call has started.
        """
        item = _Item(request, deadline, asyncio.get_running_loop().create_future(), handed)
        item.future.add_done_callback(lambda _: self._withdrawn(item))
        self._queue.append(item)
        if self.running + len(self._queue) > self.slots:  # it waits for a slot: handed to the queue
            _resolve(handed)
        if self.max_batch == 1 and self.running < self.slots:  # single requests: no need to wait for company
            self._pump()
        elif not self._pump_due:  # on the next turn of the loop: the windows submitted together go together
            self._pump_due = True
            asyncio.get_running_loop().call_soon(self._pump)
        return item.future

    def _pump(self) -> None:
        self._pump_due = False
        loop = asyncio.get_running_loop()
        while self.running < self.slots and self._queue:
            batch: list[_Item] = []
            while self._queue and (self.max_batch is None or len(batch) < self.max_batch):
                item = self._queue.popleft()
                if not item.future.done():
                    batch.append(item)
            if not batch:
                return
            self.running += 1
            task = loop.create_task(self._run(batch))
            for item in batch:
                item.batch, item.task = batch, task

    def _withdrawn(self, item: _Item) -> None:
        if item.future.cancelled() and item.task is not None and all(i.future.done() for i in item.batch):
            item.task.cancel()

    async def _run(self, batch: list[_Item]) -> None:
        for item in batch:  # the call has started: the next query may take its turn
            _resolve(item.handed)
        try:
            completions = await self._generate([item.request for item in batch], _batch_deadline(batch))
            if len(completions) != len(batch):
                raise BackendError(f"backend returned {len(completions)} outputs for {len(batch)} windows")
            for item, completion in zip(batch, completions):
                if not item.future.done():
                    item.future.set_result(completion)
        except asyncio.CancelledError:
            for item in batch:
                item.future.cancel()
            raise
        except Exception as err:
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(err)
        finally:
            self.running -= 1
            self._pump()

    async def _generate(self, requests: list[ChatRequest], deadline: float | None) -> list[Completion]:
        if deadline is not None and self._with_deadline:
            return await self.backend.agenerate(requests, deadline=deadline)
        return await self.backend.agenerate(requests)


def _batch_deadline(batch: Sequence[_Item]) -> float | None:
    """The latest deadline of a batch (None when any window has none): nobody's window is cut early."""
    deadlines = [item.deadline for item in batch]
    return None if any(d is None for d in deadlines) else max(deadlines)  # type: ignore[type-var]


def dispatcher_for(backend: Backend) -> Dispatcher:
    """The dispatcher of ``backend`` on the running event loop (made on first use)."""
    loop = asyncio.get_running_loop()
    registry = backend.__dict__.get("_dispatchers")
    if registry is None:
        registry = backend.__dict__.setdefault("_dispatchers", weakref.WeakKeyDictionary())
    dispatcher = registry.get(loop)
    if dispatcher is None:
        dispatcher = registry[loop] = Dispatcher(backend)
    return dispatcher


# ---------------------------------------------------------------------- one call
async def run_call(reranker: Reranker, call: CallState) -> None:
    """Run every query of ``call`` to its end, each on its own; stop all at the deadline or a fatal error."""
    loop = asyncio.get_running_loop()
    in_flight: set[asyncio.Future] = set()

    def cancel_in_flight() -> None:
        for future in list(in_flight):
            future.cancel()

    call.on_stop = cancel_in_flight
    timer = None
    if call.deadline is not None:
        timer = loop.call_later(call.remaining() or 0.0, call.stop, DEADLINE)
    tasks = [loop.create_task(_run_query(reranker, call, query, in_flight)) for query in call.queries]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        call.on_stop = None
        cancel_in_flight()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        if timer is not None:
            timer.cancel()


async def _run_query(reranker: Reranker, call: CallState, query: QueryState, in_flight: set) -> None:
    """Step one query's plan: send its ready windows, read each as it returns, then the next round.

    A window's passages are prepared (cleaned, truncated) just before it is sent. With a backend of
    independent requests, preparing a window and starting its request is one query's work at a time
    (the dispatcher's ``turn``). Without it the event loop interleaves every query's steps: when many
    windows return together, each next window would leave only once all of them had been prepared,
    and every round would lose the whole burst.
    """
    dispatcher = dispatcher_for(reranker.backend)
    while windows := query.plan.pending():
        if not call.stopped and call.expired():
            call.stop(DEADLINE)
        if call.stopped:
            call.skip(query, windows)
            return
        traced = len(query.windows)
        requests: list[ChatRequest] = []
        futures: list[asyncio.Future] = []
        try:
            for k, window in enumerate(windows):
                request, future = await _send(reranker, call, dispatcher, query, k, window, in_flight)
                requests.append(request)
                futures.append(future)
            position = {future: k for k, future in enumerate(futures)}
            rankings: list[list[int] | None] = [None] * len(windows)
            pending: set[Any] = set(futures)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    k = position[future]
                    rankings[k] = _read(reranker, call, query, windows[k], requests[k], future)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        finally:
            in_flight.difference_update(futures)
        # traces in window order, as the sync driver keeps them (they were recorded as windows returned)
        query.windows[traced:] = sorted(query.windows[traced:], key=lambda trace: windows.index(trace.passages))
        query.finish_round(rankings)


async def _send(reranker: Reranker, call: CallState, dispatcher: Dispatcher, query: QueryState, k: int,
                window: list[int], in_flight: set) -> tuple[ChatRequest, asyncio.Future]:  # fmt: skip
    """Prepare window ``k`` of the query's round and send it: its request and the future of its completion
    (in ``in_flight`` from the start, so that a stop cancels it).

    A window not sent because the call stopped gets a cancelled future (read as skipped).
    """
    loop = asyncio.get_running_loop()
    turn = dispatcher.turn
    waits = turn is not None and reranker.backend.truncation_waits  # no turn held while waiting on I/O
    if waits and not call.stopped:
        await reranker._aprepare([(query, query.unprepared([window]))])
    if turn is not None:
        await turn.acquire()
    release = _Release(turn) if turn is not None else None
    try:
        if not waits and not call.stopped:
            await reranker._aprepare([(query, query.unprepared([window]))])
        if call.stopped:
            _resolve(release)
            cancelled = loop.create_future()
            cancelled.cancel()
            return ChatRequest(messages=[], sampling=reranker.sampling, tag=f"window {k}"), cancelled
        request = reranker._request(query, k, window)
        if reranker.cache is None:  # straight to the dispatcher
            future = dispatcher.submit(request, call.deadline, release)
        else:
            future = asyncio.ensure_future(_window(reranker, call, dispatcher, request, release))
    except BaseException:
        _resolve(release)
        raise
    in_flight.add(future)
    if release is not None:
        future.add_done_callback(release)  # withdrawn before its call started: the turn is still given back
    return request, future


def _read(reranker: Reranker, call: CallState, query: QueryState, window: list[int], request: ChatRequest,
          future: asyncio.Future) -> list[int] | None:  # fmt: skip
    """Read one returned (or cancelled) window into the query's traces; stop the call on a fatal error."""
    if future.cancelled():
        completion = Completion(error=call.skip_reason(), status="skipped")
    else:
        completion = future.result()  # a backend exception ends the call
    local, trace = reranker._read(query, window, request, completion)
    call.record(query, trace)
    if completion.fatal and completion.error is not None:
        call.stop(completion.error, fatal=True)
    return local


async def _window(reranker: Reranker, call: CallState, dispatcher: Dispatcher, request: ChatRequest,
                  handed: Callable[[], None] | None) -> Completion:  # fmt: skip
    """One window: from the cache, else from the backend through its dispatcher (then stored).

    ``handed()`` is called once the window needs no more of the turn: its call started or queued (a hit
    gives the turn back when this task is done, see :func:`_send`).
    """
    key = await reranker._acache_key(request)
    if key is not None:
        if not isinstance(reranker.cache, MemoryCache):  # no turn held across the cache's I/O
            _resolve(handed)
        cached = await reranker._acache_get(key)
        if cached is not None:
            return cached
    completion = await dispatcher.submit(request, call.deadline, handed)
    if key is not None:
        await reranker._acache_set(key, completion)
    return completion
