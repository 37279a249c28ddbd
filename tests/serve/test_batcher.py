"""The micro-batcher: requests arriving together share one arerank_batch (and so each round)."""

from __future__ import annotations

import asyncio

import pytest

from reasonrank import Reranker
from reasonrank.serve import MicroBatcher, QueueFull
from reasonrank.testing import FunctionBackend, lexical_ranking

QUERIES = ["red apples", "green pears", "yellow bananas", "purple plums"]
DOCS = ["red apples and green pears", "yellow bananas", "purple plums are red", "nothing here"]


def _reranker() -> tuple[Reranker, FunctionBackend]:
    backend = FunctionBackend()
    return Reranker(backend=backend, max_passage_tokens=None), backend


async def test_concurrent_requests_share_one_backend_call_per_round():
    reranker, backend = _reranker()
    batcher = MicroBatcher(reranker, max_batch=4, max_wait=30.0)  # a full batch leaves at once
    try:
        results = await asyncio.gather(*(batcher.submit(q, DOCS) for q in QUERIES))
    finally:
        await batcher.close()
    assert [r.order for r in results] == [lexical_ranking(q, DOCS) for q in QUERIES]
    assert [len(call) for call in backend.calls] == [4]
    assert batcher.admitted == 0


async def test_requests_with_different_deadlines_run_as_separate_calls_but_share_backend_rounds():
    reranker, backend = _reranker()
    batcher = MicroBatcher(reranker, max_batch=4, max_wait=30.0)
    seen: list[float | None] = []
    arerank_batch = reranker.arerank_batch

    async def recording(queries, passages, **options):
        seen.append(options.get("deadline"))
        return await arerank_batch(queries, passages, **options)

    reranker.arerank_batch = recording  # type: ignore[method-assign]
    try:
        results = await asyncio.gather(
            *(batcher.submit(q, DOCS, deadline=None if i < 2 else 100.0) for i, q in enumerate(QUERIES))
        )
    finally:
        await batcher.close()
    # One arerank_batch per deadline group, each with its own budget ...
    assert len(seen) == 2 and seen.count(None) == 1 and 99.0 < max(s or 0 for s in seen) <= 100.0
    # ... while the core's dispatcher still sends every ready window of both calls in one backend call.
    assert [len(call) for call in backend.calls] == [4]
    assert [r.order for r in results] == [lexical_ranking(q, DOCS) for q in QUERIES]


async def test_admission_is_bounded():
    reranker, _ = _reranker()
    batcher = MicroBatcher(reranker, max_batch=8, max_wait=0.0, max_queue=2, retry_after=3)
    first = asyncio.ensure_future(batcher.submit(QUERIES[0], DOCS))
    second = asyncio.ensure_future(batcher.submit(QUERIES[1], DOCS))
    await asyncio.sleep(0)  # both are admitted (waiting or running) now
    with pytest.raises(QueueFull) as caught:
        await batcher.submit(QUERIES[2], DOCS)
    assert caught.value.retry_after == 3
    await asyncio.gather(first, second)
    await batcher.close()
    assert batcher.admitted == 0


async def test_one_bad_request_does_not_fail_its_batch_neighbours():
    reranker, _ = _reranker()
    batcher = MicroBatcher(reranker, max_batch=2, max_wait=30.0)
    try:
        good, bad = await asyncio.gather(
            batcher.submit(QUERIES[0], DOCS), batcher.submit(QUERIES[1], [{"no": "text"}]), return_exceptions=True
        )
    finally:
        await batcher.close()
    assert good.order == lexical_ranking(QUERIES[0], DOCS)
    assert isinstance(bad, ValueError)
