"""An async micro-batcher: requests arriving together share the reranker's rounds.

Requests wait a few milliseconds (``max_wait``) for company, up to ``max_batch`` of them, then go to
one :meth:`~reasonrank.Reranker.arerank_batch` call, which sends the ready windows of all of them to
the backend together at every round. Only requests with the same deadline share an ``arerank_batch``
call (the core's dispatcher still sends the ready windows of concurrent calls in one backend call). At
most ``max_queue`` requests are admitted (waiting or running); beyond that :class:`QueueFull` is raised at
once, so the service answers 429 instead of growing a backlog.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from reasonrank.core.types import BackendError

__all__ = ["MicroBatcher", "QueueFull", "supports_deadline"]

log = logging.getLogger(__name__)


class QueueFull(RuntimeError):
    """The service already holds ``max_queue`` requests; retry after ``retry_after`` seconds."""

    def __init__(self, max_queue: int, retry_after: int) -> None:
        super().__init__(f"the service is at capacity ({max_queue} requests queued or running); retry later")
        self.retry_after = retry_after


def supports_deadline(reranker: Any) -> bool:
    """Whether ``reranker.arerank_batch`` takes a ``deadline=`` keyword."""
    try:
        return "deadline" in inspect.signature(reranker.arerank_batch).parameters
    except (TypeError, ValueError, AttributeError):
        return False


@dataclass
class _Job:
    query: str
    passages: Sequence[Any]
    deadline: float | None
    future: asyncio.Future
    enqueued: float = field(default=0.0)


# Called after every arerank_batch with (number of requests, seconds).
BatchHook = Callable[[int, float], None]


class MicroBatcher:
    """Collects concurrent rerank requests into shared ``arerank_batch`` calls (see the module docstring).

    ``max_running`` bounds the batches in flight at once; while all are busy, arriving requests
    gather into the next batch (so a local model sees one large batch instead of many small ones).
    """

    def __init__(
        self,
        reranker: Any,
        *,
        max_batch: int = 32,
        max_wait: float = 0.005,
        max_queue: int = 256,
        max_running: int = 4,
        retry_after: int = 1,
        on_batch: BatchHook | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_running < 1:
            raise ValueError("max_batch, max_queue and max_running must be >= 1")
        if max_wait < 0:
            raise ValueError(f"max_wait must be >= 0, got {max_wait}")
        self.reranker = reranker
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.max_queue = max_queue
        self.max_running = max_running
        self.retry_after = retry_after
        self.on_batch = on_batch
        self.deadline_supported = supports_deadline(reranker)
        self.admitted = 0  # requests waiting or running
        self._pending: deque[_Job] = deque()
        self._running: set[asyncio.Task] = set()
        self._loop_task: asyncio.Task | None = None
        self._arrived: asyncio.Event
        self._slots: asyncio.Semaphore

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start collecting on the running event loop (done by the first :meth:`submit`)."""
        if self._loop_task is None:
            self._arrived = asyncio.Event()
            self._slots = asyncio.Semaphore(self.max_running)
            self._loop_task = asyncio.get_running_loop().create_task(self._collect_forever(), name="micro-batcher")

    async def close(self) -> None:
        """Finish the running batches, then stop collecting."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None

    # ------------------------------------------------------------------ submitting
    async def submit(self, query: str, passages: Sequence[Any], deadline: float | None = None) -> Any:
        """Rerank one request in the next batch; raises :class:`QueueFull` when at capacity."""
        if self.admitted >= self.max_queue:
            raise QueueFull(self.max_queue, self.retry_after)
        self.start()
        loop = asyncio.get_running_loop()
        job = _Job(query, passages, deadline, loop.create_future(), loop.time())
        self.admitted += 1
        self._pending.append(job)
        self._arrived.set()
        return await job.future

    # ------------------------------------------------------------------ collecting
    async def _collect_forever(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                batch = await self._collect()
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _collect(self) -> list[_Job]:
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        batch = [self._pending.popleft()]
        loop = asyncio.get_running_loop()
        end = loop.time() + self.max_wait
        while len(batch) < self.max_batch:
            if self._pending:
                batch.append(self._pending.popleft())
                continue
            remaining = end - loop.time()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        return batch

    # ------------------------------------------------------------------ running
    async def _run(self, batch: list[_Job]) -> None:
        try:
            groups: dict[float | None, list[_Job]] = {}
            for job in batch:
                groups.setdefault(job.deadline, []).append(job)
            await asyncio.gather(*(self._run_group(jobs, deadline) for deadline, jobs in groups.items()))
        finally:
            self.admitted -= len(batch)
            self._slots.release()

    def _options(self, live: list[_Job], deadline: float | None) -> dict[str, Any]:
        """``deadline=`` for arerank_batch: the budget left to the group's oldest request."""
        if deadline is None or not self.deadline_supported:
            return {}
        waited = asyncio.get_running_loop().time() - min(job.enqueued for job in live)
        return {"deadline": max(deadline - waited, 0.001)}

    async def _run_group(self, jobs: list[_Job], deadline: float | None) -> None:
        live = [job for job in jobs if not job.future.done()]  # a cancelled client needs no work
        if not live:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            results = await self.reranker.arerank_batch(
                [job.query for job in live], [job.passages for job in live], **self._options(live, deadline)
            )
        except Exception as err:
            if len(live) > 1 and not isinstance(err, BackendError):
                # One request's bad input must not fail its neighbours: run each alone.
                log.debug("batch of %d failed (%r); retrying its requests one by one", len(live), err)
                await asyncio.gather(*(self._run_group([job], deadline) for job in live))
                return
            _settle(live, error=err)
        else:
            _settle(live, results=results)
        finally:
            if self.on_batch is not None:
                self.on_batch(len(live), loop.time() - started)


def _settle(jobs: list[_Job], *, results: Sequence[Any] = (), error: Exception | None = None) -> None:
    """Answer the jobs still waiting with their result, or with ``error``."""
    for i, job in enumerate(jobs):
        if job.future.done():
            continue
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(results[i])
