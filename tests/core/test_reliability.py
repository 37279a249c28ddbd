"""Reliability and security of the openai backend, each against a real HTTP server on 127.0.0.1 (issues 10, 11, 13)."""

import asyncio
import logging
import math
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from reasonrank import Reranker
from reasonrank.core.backends.openai import OpenAIBackend
from reasonrank.core.parsing import parse_response
from reasonrank.core.prompts import build_messages
from reasonrank.core.reranker import default_sampling
from reasonrank.core.types import BackendError, ChatRequest
from reasonrank.testing import Fault, RankingServer

FAST = {"backoff": 0.001, "timeout": 5.0, "connect_timeout": 1.0, "max_retries": 0}
ANSWER = "<think>cats</think><answer>[1] > [3] > [2]</answer>"


def request(tag="w0", passages=("cats purr", "dogs bark", "cats sleep")):
    return ChatRequest(build_messages("cats", list(passages)), default_sampling("reasoning"), tag)


@pytest.fixture
def server():
    with RankingServer() as srv:
        yield srv


def backend_for(server_or_url, **kwargs):
    url = server_or_url if isinstance(server_or_url, str) else server_or_url.base_url
    return OpenAIBackend("m", base_url=url, **{**FAST, **kwargs})


def dead_url():
    with RankingServer() as srv:
        return srv.base_url  # nothing listens there once the server stopped


# ---------------------------------------------------------------- 1. content and choices of any shape
@pytest.mark.parametrize(
    "content",
    [
        [{"type": "text", "text": ANSWER}],
        [{"type": "text", "text": "<think>cats</think>"}, {"type": "text", "text": "<answer>[1] > [3] > [2]</answer>"}],
        [ANSWER],
    ],
)
def test_content_parts_are_joined_as_text(server, content):
    server.faults.append(Fault("content", body=content))
    with backend_for(server) as backend:
        [done] = backend.generate([request()])
    assert done.error is None and done.text == ANSWER
    assert parse_response(done.text, 3).order == [0, 2, 1]


@pytest.mark.parametrize(
    ("kind", "body", "message"),
    [
        ("content", 42, "message content is not text: 42"),
        ("content", {"text": "[1]"}, "message content is not text"),
        ("content", [{"type": "image_url", "image_url": {"url": "x"}}], "message content is not text"),
        ("content", [1, 2], "message content is not text"),
        ("choices", {"0": {"message": {"content": "[1]"}}}, "has no choices"),
        ("choices", 3, "has no choices"),
        ("choices", "[1] > [2]", "has no choices"),
        ("choices", [[{"message": {"content": "[1]"}}]], "has no choices"),
    ],
)
async def test_malformed_content_or_choices_is_a_window_failure(server, kind, body, message):
    server.faults.extend([Fault(kind, body=body), Fault(kind, body=body)])
    with backend_for(server) as backend:
        [done] = backend.generate([request()])
    assert done.text == "" and message in done.error and not done.fatal
    async with backend_for(server) as backend:
        [done] = await backend.agenerate([request()])
    assert message in done.error


def test_one_malformed_window_loses_nothing_else_in_a_batch(server):
    server.faults.append(Fault("content", body=7))
    queries = ["cats", "dogs", "birds", "fish"]
    passages = [[f"{q} doc {i} " + "cats " * (i % 4) for i in range(30)] for q in queries]
    with Reranker("m", base_url=server.base_url, on_error="keep", **FAST) as reranker:
        results = reranker.rerank_batch(queries, passages)
    assert len(results) == 4 and all(sorted(r.order) == list(range(30)) for r in results)
    windows = [w for r in results for w in r.windows]
    failed = [w for w in windows if w.error]
    assert len(failed) == 1 and "message content is not text: 7" in failed[0].error
    assert len(windows) == len(server.chat_requests) and all(w.answer for w in windows if not w.error)


# ---------------------------------------------------------------- 3b. response bodies are capped
async def test_a_body_over_the_cap_is_a_window_failure_and_not_retried(server):
    server.faults.append(Fault("huge", size=5 * 1024 * 1024))  # no Content-Length: read as a stream
    with backend_for(server, max_retries=2) as backend:
        [done] = backend.generate([request()])
    assert "over max_response_bytes=4194304" in done.error and len(server.chat_requests) == 1
    server.faults.append(Fault("huge", size=200_000))
    async with backend_for(server, max_response_bytes=100_000) as backend:
        [done] = await backend.agenerate([request()])
    assert "over max_response_bytes=100000" in done.error


def test_a_declared_length_over_the_cap_fails_before_reading(server):
    with backend_for(server, max_response_bytes=64) as backend:
        [done] = backend.generate([request()])
    assert "response body of" in done.error and "over max_response_bytes=64" in done.error


# ---------------------------------------------------------------- 4. timeout is per request, deadline per call
def test_timeout_bounds_the_whole_request_not_each_read(server):
    # the answer arrives one byte every 40 ms (~25 s in all): each read is quick, the request is not
    server.faults.append(Fault("trickle", seconds=0.04))
    with backend_for(server, timeout=1) as backend:
        [done] = backend.generate([request()])
    assert "ReadTimeout: no complete response within 1 s" in done.error and not done.fatal


async def test_timeout_bounds_the_whole_request_async(server):
    server.faults.append(Fault("trickle", seconds=0.04))
    async with backend_for(server, timeout=1) as backend:
        [done] = await backend.agenerate([request()])
    assert "no complete response within 1 s" in done.error


def test_a_past_deadline_sends_nothing(server):
    with backend_for(server) as backend:
        results = backend.generate([request("a"), request("b")], deadline=time.monotonic() - 1)
    assert [r.status for r in results] == ["skipped", "skipped"]
    assert all(r.error.startswith("deadline exceeded") and not r.fatal for r in results)
    assert server.chat_requests == []


@pytest.mark.parametrize("use_async", [False, True])
def test_the_deadline_cuts_a_request_in_flight(server, use_async):
    server.faults.append(Fault("delay", seconds=3.0))  # the answer would come, 3 s late
    backend = backend_for(server, timeout=60)
    deadline = time.monotonic() + 0.3
    if use_async:
        [done] = asyncio.run(backend.agenerate([request("w7")], deadline=deadline))
    else:
        [done] = backend.generate([request("w7")], deadline=deadline)
    backend.close()
    assert done.status == "skipped" and done.error.startswith("deadline exceeded: w7 after 1 attempts")


def test_no_retry_starts_past_the_deadline(server):
    server.faults.append(Fault("status", status=503, headers={"Retry-After": "30"}))
    with backend_for(server, max_retries=3) as backend:
        [done] = backend.generate([request()], deadline=time.monotonic() + 2)
    assert done.status == "skipped" and "no time left for retry 1" in done.error and "HTTP 503" in done.error
    assert len(server.chat_requests) == 1


# ---------------------------------------------------------------- 6. credentials: only REASONRANK_API_KEY
def test_openai_api_key_is_never_sent(monkeypatch, server):
    monkeypatch.delenv("REASONRANK_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-another-service")
    with backend_for(server) as backend:
        [done] = backend.generate([request()])
        assert backend.api_key is None
    assert done.error is None and "authorization" not in server.request_headers[0]


def test_reasonrank_api_key_is_sent(monkeypatch, server):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-another-service")
    monkeypatch.setenv("REASONRANK_API_KEY", "rr-key")
    with backend_for(server) as backend:
        backend.generate([request()])
    assert server.request_headers[0]["authorization"] == "Bearer rr-key"


# ---------------------------------------------------------------- 7. credentials in base_url are redacted
def with_credentials(url: str) -> str:
    return url.replace("http://", "http://alice:SECRET@")


def test_base_url_credentials_are_redacted_in_repr_and_errors(server, caplog):
    backend = backend_for(with_credentials(server.base_url))
    assert "SECRET" not in repr(backend) and "***@127.0.0.1" in repr(backend)
    server.faults.append(Fault("status", status=500))
    with caplog.at_level(logging.WARNING):
        backend.truncate(["a b c"], 2)  # the server has no /tokenize: a warning naming the URL
        [done] = backend.generate([request()])
    assert "SECRET" not in done.error and "http://***@127.0.0.1" in done.error
    [warning] = [r.getMessage() for r in caplog.records if "/tokenize" in r.getMessage()]
    assert "SECRET" not in warning and "***@" in warning
    assert server.request_headers[-1]["authorization"].startswith("Basic ")  # still used, never shown
    backend.close()


def test_base_url_credentials_are_redacted_in_backend_errors(server):
    url = with_credentials(f"http://127.0.0.1:{server.port}/nothing/v1")
    with pytest.raises(BackendError) as caught:
        OpenAIBackend(base_url=url, **FAST).generate([request()])
    assert "SECRET" not in str(caught.value) and "***@" in str(caught.value)


def test_base_url_credentials_are_redacted_when_the_server_is_down():
    backend = OpenAIBackend(base_url=with_credentials(dead_url()), **FAST)
    [done] = backend.generate([request()])
    assert done.fatal and "SECRET" not in done.error and "***@" in done.error
    with pytest.raises(BackendError) as caught:
        backend.model_name  # noqa: B018
    assert "SECRET" not in str(caught.value)


# ---------------------------------------------------------------- 9. redirects
@pytest.mark.parametrize(
    ("location", "shown"),
    [
        ("http://bob:PASSWORD@elsewhere.test/v1/chat/completions", "http://***@elsewhere.test/v1/chat/completions"),
        ("/v2/chat/completions", "/v2/chat/completions"),
    ],
)
def test_redirects_are_not_followed_nor_retried(server, location, shown):
    server.faults.append(Fault("status", status=302, headers={"Location": location}))
    with backend_for(server, max_retries=3) as backend:
        [done] = backend.generate([request()])
    assert f"HTTP 302 redirect to {shown.split('/v')[0] if shown[0] == '/' else shown}" in done.error
    assert shown in done.error and "not followed" in done.error and "PASSWORD" not in done.error
    assert done.fatal and len(server.chat_requests) == 1


# ---------------------------------------------------------------- 10. options are validated at construction
@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("backoff", -1),
        ("backoff", math.nan),
        ("timeout", 0),
        ("timeout", math.nan),
        ("timeout", math.inf),
        ("timeout", "5"),
        ("connect_timeout", -0.5),
        ("concurrency", 0),
        ("concurrency", 2.0),
        ("max_retries", -1),
        ("max_retries", True),
        ("max_response_bytes", 0),
        ("circuit_cooldown", -1),
        ("headers", "Authorization: x"),
        ("extra_body", ["x"]),
    ],
)
def test_bad_options_are_rejected_at_construction(option, value):
    with pytest.raises(ValueError, match=rf"^{option} must be"):
        OpenAIBackend("m", **{option: value})
    with pytest.raises(ValueError, match=rf"^{option} must be"):
        OpenAIBackend.validate_options(**{option: value})


def test_the_reranker_checks_backend_options_before_building_the_backend():
    with pytest.raises(ValueError, match="^timeout must be"):
        Reranker("m", base_url="http://127.0.0.1:9/v1", timeout=0)


def test_validate_options_is_quiet_for_good_options():
    OpenAIBackend.validate_options(timeout=1, backoff=0, concurrency=3, max_retries=0, headers={}, tokenizer=None)


# ---------------------------------------------------------------- 11 and 13. clients, limits and pools
LEAK_CHECK = """
import asyncio, gc, sys, warnings
import aiohttp, httpx
from reasonrank import Reranker
from reasonrank.testing import RankingServer

warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    with RankingServer() as server:
        reranker = Reranker("m", base_url=server.base_url, truncation="words", http_client=sys.argv[1])
        for _ in range(6):
            asyncio.run(reranker.arerank("cats", [f"doc {i} cats" for i in range(30)]))
            reranker.rerank("cats", [f"doc {i} cats" for i in range(30)])  # on the reranker's loop thread
        reranker.close()
        gc.collect()
        clients = [o for o in gc.get_objects() if isinstance(o, (httpx.AsyncClient, aiohttp.ClientSession))]
        gc.collect()
leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
print("ResourceWarnings", len(leaks), [str(w.message)[:80] for w in leaks[:3]])
print("open clients", sum(not (c.is_closed if isinstance(c, httpx.AsyncClient) else c.closed) for c in clients))
"""


@pytest.mark.parametrize("client", ["aiohttp", "httpx"])
def test_repeated_asyncio_run_leaks_no_client(client):
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", textwrap.dedent(LEAK_CHECK), client],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "ResourceWarnings 0 []" in done.stdout and "open clients 0" in done.stdout, done.stdout + done.stderr
    assert "unclosed" not in done.stderr.lower(), done.stderr


def test_one_client_and_limit_per_event_loop(server):
    backend = backend_for(server, http_client="httpx")  # (aiohttp's twin: tests/core/test_http_clients.py)

    async def twice():
        await backend.agenerate([request()])
        first = backend.aclient
        await backend.agenerate([request()])
        return first, backend.aclient

    first, second = asyncio.run(twice())
    assert first is second and first.is_closed  # reused on its loop, closed when asyncio.run ended it
    asyncio.run(backend.agenerate([request()]))
    assert len(backend._aclients) <= 1  # the finished loop's state is not kept
    backend.close()


async def test_concurrent_calls_share_one_limit():
    with RankingServer(latency=0.1) as srv:
        async with OpenAIBackend("m", base_url=srv.base_url, concurrency=2, **FAST) as backend:
            results = await asyncio.gather(*(backend.agenerate([request(f"w{i}")]) for i in range(8)))
        assert all(done.error is None for [done] in results)
        assert srv.max_in_flight == 2  # one semaphore per backend and loop, not one per call


async def test_each_connection_has_its_own_small_pool_behind_the_one_limit():
    # httpcore's pool costs CPU quadratic in its connections per request: one client per connection
    with RankingServer(latency=0.05) as srv:
        async with OpenAIBackend("m", base_url=srv.base_url, concurrency=5, http_client="httpx", **FAST) as backend:
            results = await asyncio.gather(*(backend.agenerate([request(f"w{i}")]) for i in range(20)))
            state = backend._aclients[asyncio.get_running_loop()]
            clients = list(state.clients)
            assert len(clients) == 5 and all(c._transport._pool._max_connections == 1 for c in clients)
            assert all(len(c._transport._pool.connections) == 1 for c in clients)  # every pool was used
        assert all(done.error is None for [done] in results) and srv.max_in_flight == 5
    assert all(c.is_closed for c in clients)


def test_the_sync_path_reuses_one_bounded_thread_pool():
    def pool_threads():
        return [t for t in threading.enumerate() if t.name.startswith("reasonrank-openai")]

    with RankingServer(latency=0.02) as srv, OpenAIBackend("m", base_url=srv.base_url, concurrency=3, **FAST) as b:
        for _ in range(4):
            assert all(done.error is None for done in b.generate([request(f"w{i}") for i in range(6)]))
        assert 1 < len(pool_threads()) <= 3 and srv.max_in_flight <= 3


# ---------------------------------------------------------------- issue 11: fatal failures and the circuit breaker
@pytest.mark.parametrize(("status", "fatal"), [(401, True), (403, True), (404, True), (400, False), (500, False)])
def test_fatal_marks_failures_that_repeat_for_every_window(server, status, fatal):
    server.faults.append(Fault("status", status=status))
    with backend_for(server) as backend:
        [done] = backend.generate([request()])
    assert f"HTTP {status}" in done.error and done.fatal is fatal


def test_the_circuit_opens_after_a_fatal_failure_and_fails_fast(server):
    server.faults.append(Fault("status", status=401))
    with backend_for(server, circuit_cooldown=600) as backend:
        [first] = backend.generate([request()])
        second = backend.generate([request("a"), request("b")])
    assert first.fatal and len(server.chat_requests) == 1  # no request while the circuit is open
    assert all(done.fatal and done.error.startswith("a: circuit open: POST ") for done in second[:1])
    assert "HTTP 401" in second[1].error


def test_after_the_cooldown_one_probe_closes_the_circuit(server):
    server.faults.append(Fault("status", status=404))
    with backend_for(server, circuit_cooldown=0) as backend:
        [first] = backend.generate([request()])
        [probe] = backend.generate([request()])
        [after] = backend.generate([request()])
    assert first.fatal and probe.error is None and after.error is None and len(server.chat_requests) == 3


async def test_connection_refused_after_retries_is_fatal_and_opens_the_circuit():
    url = dead_url()
    async with OpenAIBackend("m", base_url=url, **{**FAST, "max_retries": 1}) as backend:
        [done] = await backend.agenerate([request()])
        assert done.fatal and "ConnectError" in done.error and "after 2 attempts" in done.error
        rest = await backend.agenerate([request(f"w{i}") for i in range(5)])
    assert all(r.fatal and "circuit open: POST" in r.error and "ConnectError" in r.error for r in rest)


def test_model_lookup_on_a_dead_server_fails_every_window_fatally():
    backend = OpenAIBackend(base_url=dead_url(), **FAST)
    results = backend.generate([request("a"), request("b")])
    assert all(r.fatal and r.error.startswith("cannot reach http://127.0.0.1") for r in results)
    [again] = backend.generate([request()])
    assert again.fatal and again.error.startswith("circuit open: cannot reach")


@pytest.mark.parametrize("model", ["m", None])
def test_a_dead_server_costs_one_window_of_retries(caplog, model):
    passages = [f"doc {i} cats" for i in range(100)]
    with caplog.at_level(logging.WARNING), Reranker(model, base_url=dead_url(), on_error="keep") as reranker:
        result = reranker.rerank("cats", passages)  # default retries and backoff
    assert result.order == list(range(100))
    tried = [w for w in result.windows if w.error and "circuit open" not in w.error and w.status != "skipped"]
    assert len(tried) <= 1  # one window's retries; the rest fail fast or are skipped by the reranker
    assert any("Connection refused" in r.getMessage() and "windows" in r.getMessage() for r in caplog.records)
