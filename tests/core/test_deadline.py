"""Deadlines, fail-fast, usage and progress, and the async engine's scheduling (issues 10, 11 and 13).

Nothing here asserts on elapsed time: outcomes are checked by what the server saw, the traces'
statuses and ``complete``.
"""

import asyncio
import logging
import socket
import subprocess
import sys

import pytest

from reasonrank import Reranker, RerankResult
from reasonrank.core.backends.base import Backend
from reasonrank.core.types import BackendError, Completion
from reasonrank.core.windows import make_strategy
from reasonrank.testing import FunctionBackend, RankingServer
from reasonrank.testing.answers import format_answer, parse_window_prompt
from reasonrank.testing.answers import score_ranking as by_score
from reasonrank.testing.answers import scored_passages as scored


def check_result(res: RerankResult, n: int):
    assert sorted(res.order) == list(range(n))
    assert len(res.scores) == n
    assert all(a > b for a, b in zip(res.scores, res.scores[1:]))


RELEVANCE = [(i * 37) % 100 for i in range(100)]


def replay(strategy: str, n: int, result: RerankResult) -> list[int]:
    """The order a plan reaches when only the result's ranked windows are applied (the rest keep theirs)."""
    plan = make_strategy(strategy).plan(n)
    ranked = [w for w in result.windows if w.status in ("ok", "repaired")]
    while ranked and (windows := plan.pending()):
        step = []
        for window in windows:
            trace = next((w for w in ranked if w.passages == window), None)
            step.append(None if trace is None else [window.index(i) for i in trace.order])
        ranked = [w for w in ranked if w.passages not in windows]
        plan.stop(step) if None in step else plan.apply(step)
    return plan.order


# ---------------------------------------------------------------------------- deadlines
@pytest.fixture(scope="module")
def slow_server():
    with RankingServer(by_score, latency=0.3) as srv:
        yield srv


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_deadline_returns_a_partial_ranking_at_300ms_per_call(slow_server, mode):
    slow_server.reset_stats()
    with Reranker("m", base_url=slow_server.base_url, max_passage_tokens=None, on_error="keep") as rr:
        if mode == "sync":
            res = rr.rerank("q", scored(RELEVANCE), deadline=1.0)
        else:
            res = asyncio.run(rr.arerank("q", scored(RELEVANCE), deadline=1.0))
    check_result(res, 100)
    assert res.complete is False
    sent = len(slow_server.chat_requests)
    assert 1 <= sent < 9  # 9 sequential windows need 2.7 s
    statuses = [w.status for w in res.windows]
    assert statuses.count("ok") == res.usage.calls - res.usage.failed_calls <= sent
    assert res.usage.skipped_windows == 9 - statuses.count("ok") and "skipped" in statuses
    assert res.order == replay("sliding", 100, res)  # finished windows applied, the rest kept their order


@pytest.mark.parametrize("strategy", ["sliding", "tournament"])
def test_a_generous_deadline_changes_nothing(strategy):
    with RankingServer(by_score) as server, Reranker("m", base_url=server.base_url, strategy=strategy) as rr:
        free = rr.rerank("q", scored(RELEVANCE))
        bounded = rr.rerank("q", scored(RELEVANCE), deadline=600)
        abounded = asyncio.run(rr.arerank("q", scored(RELEVANCE), deadline=600))
    for res in (free, bounded, abounded):
        assert res.complete and res.usage.skipped_windows == 0 and res.usage.calls == 9
    assert free.order == bounded.order == abounded.order
    assert [w.raw_output for w in free.windows] == [w.raw_output for w in bounded.windows]


class HangingBackend(FunctionBackend):
    """Answers at once, except the windows of the given round, which never return (until cancelled)."""

    def __init__(self, hang_round: int, **kwargs):
        super().__init__(by_score, concurrency=8, **kwargs)
        self.hang_round = hang_round
        self.cancelled = 0

    async def agenerate(self, requests, *, deadline=None):
        if any(f"round {self.hang_round} " in r.tag for r in requests):
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        return await super().agenerate(requests, deadline=deadline)


def test_async_deadline_cancels_windows_in_flight_and_keeps_the_finished_round():
    backend = HangingBackend(hang_round=1)
    rr = Reranker(backend=backend, strategy="tournament")
    res = asyncio.run(rr.arerank("q", scored(RELEVANCE), deadline=0.5))
    check_result(res, 100)
    assert [w.status for w in res.windows] == ["ok"] * 5 + ["skipped"] * 2
    assert backend.cancelled == 2 and not res.complete
    assert (res.usage.calls, res.usage.skipped_windows) == (5, 4)  # round 1's 2, rounds 2 and 3's 1 each
    # Tournament's first round covered every passage: its top 10 is already the best of the first 20.
    assert res.order[:10] == sorted(range(20), key=lambda i: -RELEVANCE[i])[:10]
    assert res.order == replay("tournament", 100, res)


class OldStyleBackend(Backend):
    """A custom backend written before deadlines: ``generate(requests)`` with no ``deadline=``."""

    def __init__(self):
        self.inner = FunctionBackend(by_score)
        self.calls = 0

    def generate(self, requests):
        self.calls += 1
        if self.calls == 3:
            import time

            time.sleep(0.6)  # the deadline passes during the third round
        return self.inner.generate(requests)


def test_sync_deadline_works_with_a_backend_that_takes_no_deadline():
    backend = OldStyleBackend()
    res = Reranker(backend=backend).rerank("q", scored(RELEVANCE), deadline=0.3)
    check_result(res, 100)
    assert backend.calls == 3 and not res.complete
    assert [w.status for w in res.windows] == ["ok"] * 3 + ["skipped"]  # checked between rounds
    assert res.usage.skipped_windows == 6


def test_deadline_is_a_setting_and_a_per_call_override():
    assert Reranker(backend=FunctionBackend(), deadline=2.5).config.deadline == 2.5
    with pytest.raises(ValueError, match="deadline"):
        Reranker(backend=FunctionBackend(), deadline=0)
    rr = Reranker(backend=FunctionBackend(by_score), deadline=1e-9)
    res = rr.rerank("q", scored(RELEVANCE))  # expired before the first round: nothing is sent
    assert res.order == list(range(100)) and res.usage.calls == 0 and res.usage.skipped_windows == 9
    assert rr.rerank("q", scored(RELEVANCE), deadline=float("inf")).complete  # inf: no limit for this call
    with pytest.raises(ValueError, match="deadline must be"):
        rr.rerank("q", ["a", "b"], deadline=-1)


# ---------------------------------------------------------------------------- fail fast
def fatal_401(query, passages, order):
    return Completion(error="POST http://x/v1/chat/completions failed: HTTP 401: invalid api key", fatal=True)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_fatal_error_stops_the_call_with_one_warning(mode, caplog):
    backend = FunctionBackend(respond=fatal_401)
    rr = Reranker(backend=backend, on_error="keep")
    queries, passages = ["a", "b", "c"], [scored(RELEVANCE)] * 3
    with caplog.at_level(logging.WARNING):
        if mode == "sync":
            results = rr.rerank_batch(queries, passages)
        else:
            results = asyncio.run(rr.arerank_batch(queries, passages))
    assert sum(len(batch) for batch in backend.calls) <= 3  # the first window of each query at most
    for res in results:
        check_result(res, 100)
        assert res.order == list(range(100)) and not res.complete
        assert {w.status for w in res.windows} <= {"failed", "skipped"}
    assert sum(r.usage.failed_calls + r.usage.skipped_windows for r in results) == 27
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "fatal" in message and "HTTP 401" in message and "of 27 windows failed" in message


def test_a_fatal_error_raises_with_on_error_raise():
    with pytest.raises(BackendError, match="HTTP 401"):
        Reranker(backend=FunctionBackend(respond=fatal_401)).rerank("q", scored(range(30)))


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again: nothing listens there


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_dead_server_costs_one_windows_retries_not_nine(mode, caplog):
    options = dict(on_error="keep", max_retries=2, backoff=0.01, max_passage_tokens=None)
    with (
        Reranker("m", base_url=f"http://127.0.0.1:{dead_port()}/v1", **options) as rr,
        caplog.at_level(logging.WARNING),
    ):
        if mode == "sync":
            res = rr.rerank("q", scored(RELEVANCE))
        else:
            res = asyncio.run(rr.arerank("q", scored(RELEVANCE)))
    check_result(res, 100)
    assert res.order == list(range(100)) and not res.complete
    failed = [w for w in res.windows if w.status == "failed"]
    assert len(failed) == 1 and "after 3 attempts" in failed[0].error  # one window's retries
    assert res.usage.calls == 1 and res.usage.skipped_windows == 8
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "fatal" in warning.getMessage() and "127.0.0.1" in warning.getMessage()


def test_a_revoked_key_sends_one_request_and_warns(caplog):
    with RankingServer(by_score, api_key="right") as server, caplog.at_level(logging.WARNING):
        with Reranker("m", base_url=server.base_url, api_key="revoked", on_error="keep") as rr:
            res = rr.rerank("q", scored(RELEVANCE))
        assert len(server.chat_requests) == 1
    assert not res.complete and res.usage.failed_calls == 1 and res.usage.skipped_windows == 8
    assert any("HTTP 401" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_failed_windows_with_keep_are_never_silent(caplog):
    def fail_some(query, passages, order):
        if "score9" in " ".join(passages):  # windows showing doc 9 fail (not fatal)
            return Completion(error="HTTP 400: context too long")
        return format_answer(order)

    with caplog.at_level(logging.WARNING):
        res = Reranker(backend=FunctionBackend(by_score, respond=fail_some), on_error="keep").rerank(
            "q", scored(range(30))
        )
    check_result(res, 30)
    assert [w.status for w in res.windows] == ["ok", "failed"] and res.usage.failed_calls == 1
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "HTTP 400: context too long" in warning.getMessage() and "1 of 2 windows failed" in warning.getMessage()
    assert not res.complete and res.repaired


# ---------------------------------------------------------------------------- usage, status, progress
def test_usage_sums_the_tokens_the_server_reported():
    with RankingServer(by_score) as server, Reranker("m", base_url=server.base_url, max_passage_tokens=None) as rr:
        res = rr.rerank("q", scored(RELEVANCE))
        sent = server.chat_requests
    served = [sum(len(m["content"].split()) for m in body["messages"]) for body in sent]  # the server's count
    assert res.usage.prompt_tokens == sum(served) > 0
    assert res.usage.completion_tokens == sum(w.completion_tokens for w in res.windows) > 0
    assert (res.usage.calls, res.usage.cached_calls, res.usage.failed_calls) == (9, 0, 0)
    assert all(w.status == "ok" and not w.cached for w in res.windows) and res.complete
    data = res.to_dict()
    assert data["complete"] is True and data["usage"]["calls"] == 9 and data["windows"][0]["status"] == "ok"


def test_repaired_windows_are_marked():
    backend = FunctionBackend(respond=lambda q, p, order: "<answer>[2] > [2] > [1]")
    res = Reranker(backend=backend).rerank("q", ["a", "b", "c"])
    assert [w.status for w in res.windows] == ["repaired"] and res.complete and res.repaired


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_on_window_sees_every_window_as_it_finishes(mode):
    seen = []
    rr = Reranker(backend=FunctionBackend(by_score), strategy="tournament")
    args = (["a", "b"], [scored(RELEVANCE), scored(range(30))])
    if mode == "sync":
        results = rr.rerank_batch(*args, on_window=seen.append)
    else:
        results = asyncio.run(rr.arerank_batch(*args, on_window=seen.append))
    assert len(seen) == 9 + 2 and sorted(map(id, seen)) == sorted(id(w) for r in results for w in r.windows)


def test_progress_counts_windows_against_the_planned_total(capsys):
    Reranker(backend=FunctionBackend(by_score), show_progress=True).rerank_batch(
        ["a", "b"], [scored(RELEVANCE), scored(range(57))]
    )
    err = capsys.readouterr().err
    assert "14/14" in err and "window" in err  # 9 + 5 windows, known up front


# ---------------------------------------------------------------------------- the async engine
class GatedBackend(FunctionBackend):
    """Query "slow"'s first window waits until query "fast" has finished all of its windows."""

    def __init__(self):
        super().__init__(by_score, concurrency=8)
        self.fast_done = None
        self.fast_windows = 0

    async def agenerate(self, requests, *, deadline=None):
        self.fast_done = self.fast_done or asyncio.Event()
        for request in requests:
            query, _ = parse_window_prompt(request.messages)
            if query == "slow":
                await self.fast_done.wait()
            else:
                self.fast_windows += 1
                if self.fast_windows == 9:
                    self.fast_done.set()
        return await super().agenerate(requests, deadline=deadline)


def test_async_windows_are_scheduled_per_query_not_per_round():
    backend = GatedBackend()

    async def main():
        rr = Reranker(backend=backend)
        return await asyncio.wait_for(rr.arerank_batch(["slow", "fast"], [scored(RELEVANCE)] * 2), 30)

    slow, fast = asyncio.run(main())  # with round batching, "fast" would wait for "slow": a deadlock
    assert slow.complete and fast.complete and slow.order[:10] == fast.order[:10]


def test_sync_batches_on_an_http_like_backend_run_the_same_per_query_engine():
    import concurrent.futures

    backend = GatedBackend()
    rr = Reranker(backend=backend)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # round batching would deadlock: bound the wait
        slow, fast = pool.submit(rr.rerank_batch, ["slow", "fast"], [scored(RELEVANCE)] * 2).result(timeout=30)
    assert slow.complete and fast.complete and slow.order[:10] == fast.order[:10]
    assert [w.round for w in slow.windows] == sorted(w.round for w in slow.windows)  # traces in plan order
    loop_thread = rr._loop_thread
    rr.close()
    assert loop_thread.loop.is_closed() and not loop_thread.thread.is_alive()
    rr.rerank_batch(["fast"], [scored(RELEVANCE)])  # a closed reranker starts a new loop thread when used
    loop_thread = rr._loop_thread
    asyncio.run(rr.aclose())  # and aclose stops it too
    assert loop_thread.loop.is_closed() and not loop_thread.thread.is_alive()


@pytest.mark.parametrize("concurrency", [8, 1])
def test_each_window_starts_its_request_before_the_next_one_is_prepared(concurrency):
    """The turn: when windows return together, each query's next window leaves before the next is made."""
    events = []
    passages = [f"passage {i} about topic {i % 7}" for i in range(40)]
    with RankingServer(latency=0.02) as server:
        rr = Reranker("m", base_url=server.base_url, concurrency=concurrency, window_size=10, step=5,
                      truncation="words")  # fmt: skip
        prepare, generate = rr._aprepare, rr.backend.agenerate

        async def counted_prepare(work):
            events.append("prepare")
            await prepare(work)

        async def counted_generate(requests, *, deadline=None):
            events.append("request")
            return await generate(requests, deadline=deadline)

        rr._aprepare, rr.backend.agenerate = counted_prepare, counted_generate
        results = asyncio.run(rr.arerank_batch(["topic 1", "topic 2", "topic 3"], [passages] * 3))
        assert all(r.complete for r in results) and server.max_in_flight <= concurrency
    assert events.count("prepare") == events.count("request") == 3 * 7  # one per window
    if concurrency == 8:  # no window waits for a slot: prepare, request, prepare, request, ...
        assert events == ["prepare", "request"] * 21


@pytest.mark.parametrize("cache", [None, "memory"])
def test_windows_withdrawn_at_a_deadline_give_their_turn_back(cache):
    """Queued windows cancelled by a deadline (or a fatal error) must not keep the loop's turn."""
    backend = FunctionBackend(by_score, latency=0.05, concurrency=1)
    rr = Reranker(backend=backend, strategy="tournament", cache=cache)
    queries, passages = [f"q{i}" for i in range(6)], [scored(RELEVANCE)] * 6

    async def main():
        cut = await rr.arerank_batch(queries, passages, deadline=0.12)
        return cut, await asyncio.wait_for(rr.arerank_batch(["again"], [scored(RELEVANCE)]), 30)

    cut, (again,) = asyncio.run(main())
    assert not any(r.complete for r in cut) and again.complete  # a leaked turn would hang the second call


def test_a_window_withdrawn_before_its_call_starts_gives_the_turn_back():
    from reasonrank.core.scheduler import _send, dispatcher_for

    rr = Reranker(backend=FunctionBackend(by_score, concurrency=1))
    call = rr._start(["q"], [scored(RELEVANCE)], None, None)
    query = call.queries[0]

    async def main():
        dispatcher = dispatcher_for(rr.backend)
        _, future = await _send(rr, call, dispatcher, query, 0, query.plan.pending()[0], set())
        assert dispatcher.turn.locked()  # its call's task is made but has not started
        future.cancel()  # withdrawn (a stop) before the call started: its task never runs
        await asyncio.sleep(0)
        return dispatcher.turn.locked()

    assert asyncio.run(main()) is False


def test_no_turn_is_held_while_a_tokenizer_server_truncates():
    active, most = [0], [0]
    passages = [f"passage {i} about topic {i % 7} " + "word " * 30 for i in range(40)]
    with RankingServer(tokenize=True) as server:
        rr = Reranker("m", base_url=server.base_url, truncation="server", max_passage_tokens=8)
        truncate = rr.backend.atruncate

        async def counted(texts, max_tokens):
            active[0] += 1
            most[0] = max(most[0], active[0])
            try:
                return await truncate(texts, max_tokens)
            finally:
                active[0] -= 1

        rr.backend.atruncate = counted
        results = asyncio.run(rr.arerank_batch(["topic 1", "topic 2", "topic 3"], [passages] * 3))
        prompts = [r["messages"][1]["content"] for r in server.chat_requests]
    assert all(r.complete for r in results) and most[0] == 3  # the three queries' /tokenize calls overlap
    assert len(prompts) == 3 * 3 and not any("word " * 10 in p for p in prompts)  # and the passages were cut


def test_the_first_window_leaves_once_its_own_passages_are_prepared(monkeypatch):
    from reasonrank.core import passages as passages_module

    cleaned = []
    fix = passages_module.fix_text
    monkeypatch.setattr(
        passages_module, "fix_text", lambda text, *a, **k: (cleaned.append(text), fix(text, *a, **k))[1]
    )
    seen_at_call = []

    def rank(query, texts):
        seen_at_call.append(len(cleaned))
        return list(range(len(texts)))

    for concurrency in (None, 4):  # the sync driver (round by round) and the async engine
        cleaned.clear(), seen_at_call.clear()
        Reranker(backend=FunctionBackend(rank, concurrency=concurrency)).rerank("q", [f"p{i}" for i in range(100)])
        assert seen_at_call == [20, 30, 40, 50, 60, 70, 80, 90, 100]  # back to front, 10 new passages a window
        assert sorted(cleaned) == sorted(f"p{i}" for i in range(100))  # each once


def test_the_loop_thread_is_a_daemon_so_an_unclosed_reranker_lets_the_interpreter_exit():
    code = (
        "from reasonrank import Reranker\n"
        "from reasonrank.testing import FunctionBackend\n"
        "rr = Reranker(backend=FunctionBackend(lambda q, p: list(range(len(p))), concurrency=4))\n"
        "print(rr.rerank('q', ['a', 'b', 'c']).complete)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "True"


def test_a_forked_child_reranks_on_its_own_loop_thread():
    import multiprocessing

    rr = Reranker(backend=FunctionBackend(by_score, concurrency=4))
    assert rr.rerank("q", scored(RELEVANCE)).complete  # the parent's loop thread exists now

    def child():
        raise SystemExit(0 if rr.rerank("q", scored(RELEVANCE)).complete else 1)

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(60)  # (a hang guard: the parent's loop thread does not exist in the child)
    alive = process.is_alive()
    process.kill()
    rr.close()
    assert not alive and process.exitcode == 0


class CountingBackend(FunctionBackend):
    def __init__(self, concurrency):
        super().__init__(by_score, latency=0.01, concurrency=concurrency)
        self.in_flight = self.most = 0
        self.batches = []

    async def agenerate(self, requests, *, deadline=None):
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        self.batches.append(len(requests))
        try:
            return await super().agenerate(requests, deadline=deadline)
        finally:
            self.in_flight -= 1


def test_one_concurrency_limit_per_backend_and_loop():
    backend = CountingBackend(concurrency=3)
    rr, other = Reranker(backend=backend), Reranker(backend=backend, strategy="tournament")

    async def main():
        return await asyncio.gather(*(r.arerank(f"q{i}", scored(RELEVANCE)) for i in range(4) for r in (rr, other)))

    results = asyncio.run(main())
    assert all(r.complete for r in results)
    assert backend.most == 3 and set(backend.batches) == {1}  # an HTTP-like backend: one window per call


def test_a_local_backend_gets_the_ready_windows_as_batches():
    backend = CountingBackend(concurrency=None)
    results = asyncio.run(Reranker(backend=backend).arerank_batch(["a", "b", "c"], [scored(RELEVANCE)] * 3))
    assert all(r.complete for r in results)
    assert backend.most == 1 and backend.batches[0] == 3 and sum(backend.batches) == 27


def test_import_reasonrank_loads_neither_asyncio_nor_tqdm():
    code = "import sys, reasonrank; print(sorted(m for m in ('asyncio', 'tqdm', 'sqlite3') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
