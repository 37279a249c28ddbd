"""The openai backend against a real OpenAI-compatible HTTP server on 127.0.0.1, faults included."""

import asyncio
import logging
import time

import pytest

from reasonrank import Reranker
from reasonrank.core.backends.openai import OpenAIBackend
from reasonrank.core.parsing import parse_response
from reasonrank.core.prompts import build_messages
from reasonrank.core.reranker import default_sampling
from reasonrank.core.types import BackendError, ChatRequest, SamplingParams
from reasonrank.testing import Fault, RankingServer

FAST = {"backoff": 0.001, "timeout": 5.0, "connect_timeout": 1.0}


def request(tag="w0", passages=("cats purr", "dogs bark", "cats sleep"), query="cats", sampling=None):
    return ChatRequest(build_messages(query, list(passages)), sampling or default_sampling("reasoning"), tag)


@pytest.fixture
def server():
    with RankingServer() as srv:
        yield srv


def backend_for(server, **kwargs):
    return OpenAIBackend("m", base_url=server.base_url, **{**FAST, **kwargs})


def test_success_sync_and_request_body(server):
    with backend_for(server, extra_body={"chat_template_kwargs": {"enable_thinking": True}}) as backend:
        [done] = backend.generate([request()])
    assert done.error is None and done.finish_reason == "stop"
    assert parse_response(done.text, 3).order == [0, 2, 1]
    assert done.prompt_tokens > 0 and done.completion_tokens > 0 and done.seconds > 0
    body = server.chat_requests[0]
    assert body["model"] == "m" and body["max_tokens"] == 3172
    assert body["temperature"] == 0.0 and body["top_p"] == 1.0
    assert "top_k" not in body and "min_p" not in body and "seed" not in body
    assert body["chat_template_kwargs"] == {"enable_thinking": True}
    assert body["messages"][0]["role"] == "system"


def test_qwen3_sampling_sends_top_k_and_seed(server):
    sampling = SamplingParams(3172, temperature=0.6, top_p=0.95, top_k=20, min_p=0.05, seed=7)
    with backend_for(server) as backend:
        backend.generate([request(sampling=sampling)])
    body = server.chat_requests[0]
    assert (body["temperature"], body["top_p"], body["top_k"], body["min_p"], body["seed"]) == (0.6, 0.95, 20, 0.05, 7)


async def test_success_async_in_request_order(server):
    # request i has its one relevant passage at position i % 3: each answer must come back at its index
    windows = [["dogs bark", "birds sing"] for _ in range(6)]
    for i, window in enumerate(windows):
        window.insert(i % 3, "cats purr")
    async with backend_for(server) as backend:
        results = await backend.agenerate([request(f"w{i}", passages=w) for i, w in enumerate(windows)])
    assert len(results) == 6 and all(r.error is None for r in results)
    assert [parse_response(done.text, 3).order[0] for done in results] == [i % 3 for i in range(6)]


def test_model_is_asked_from_the_server_once(server):
    with OpenAIBackend(base_url=server.base_url, **FAST) as backend:
        backend.generate([request(), request()])
        assert backend.model_name == "reasonrank-test" and backend.name == "openai:reasonrank-test"
    assert [r["model"] for r in server.chat_requests] == ["reasonrank-test"] * 2


def test_missing_model_list_is_a_clear_error(server):
    backend = OpenAIBackend(base_url=f"http://127.0.0.1:{server.port}/nothing/v1", **FAST)
    with pytest.raises(BackendError, match=r"no model given and GET .*/models answered HTTP 404.*pass model="):
        backend.generate([request()])


def test_500_then_success_is_retried(server):
    server.faults.append(Fault("status", status=500))
    with backend_for(server, max_retries=2) as backend:
        [done] = backend.generate([request()])
    assert done.error is None and len(server.chat_requests) == 2


def test_429_honours_retry_after(server):
    server.faults.append(Fault("status", status=429, headers={"Retry-After": "0.3"}))
    with backend_for(server) as backend:
        start = time.perf_counter()
        [done] = backend.generate([request()])
        waited = time.perf_counter() - start
    assert done.error is None and len(server.chat_requests) == 2
    assert waited >= 0.3  # the server's Retry-After, not the 1 ms backoff


def test_persistent_5xx_gives_an_error_completion_after_retries(server):
    server.faults.extend(Fault("status", status=503) for _ in range(3))
    with backend_for(server, max_retries=2) as backend:
        [done] = backend.generate([request("query 4 round 1 window 2")])
    assert done.text == "" and len(server.chat_requests) == 3
    assert done.error.startswith("query 4 round 1 window 2: POST ")
    assert "after 3 attempts" in done.error and "HTTP 503: injected 503" in done.error


def test_timeout_gives_an_error_after_retries(server):
    server.faults.extend([Fault("delay", seconds=1.0), Fault("delay", seconds=1.0)])
    with backend_for(server, timeout=0.2, max_retries=1) as backend:
        [done] = backend.generate([request()])
    assert "ReadTimeout" in done.error and "after 2 attempts" in done.error


def test_timeout_then_success(server):
    server.faults.append(Fault("delay", seconds=1.0))
    with backend_for(server, timeout=0.2, max_retries=1) as backend:
        [done] = backend.generate([request()])
    assert done.error is None


def test_dropped_connection_is_retried(server):
    server.faults.append(Fault("drop"))
    with backend_for(server, max_retries=1) as backend:
        [done] = backend.generate([request()])
    assert done.error is None and len(server.chat_requests) == 2
    server.faults.append(Fault("drop"))
    with backend_for(server, max_retries=0) as backend:
        [done] = backend.generate([request()])
    assert done.error and "RemoteProtocolError" in done.error


@pytest.mark.parametrize(
    ("kind", "message"),
    [("malformed_json", "not valid JSON"), ("no_choices", "has no choices"), ("no_content", "no message content")],
)
def test_bad_200_bodies_are_errors_and_retried(server, kind, message):
    server.faults.append(Fault(kind))
    with backend_for(server, max_retries=0) as backend:
        [done] = backend.generate([request()])
    assert done.text == "" and message in done.error
    server.faults.append(Fault(kind))
    with backend_for(server, max_retries=1) as backend:
        [done] = backend.generate([request()])
    assert done.error is None and parse_response(done.text, 3).repairs == []


def test_401_bad_key_is_not_retried():
    with RankingServer(api_key="secret") as srv:
        with OpenAIBackend("m", base_url=srv.base_url, api_key="wrong", max_retries=3, **FAST) as backend:
            [done] = backend.generate([request()])
        assert "HTTP 401: invalid api key" in done.error and "attempts" not in done.error
        assert len(srv.chat_requests) == 1


def test_400_context_too_long_is_not_retried(server):
    server.faults.append(Fault("status", status=400))
    with backend_for(server, max_retries=3) as backend:
        [done] = backend.generate([request()])
    assert "HTTP 400: injected 400" in done.error and len(server.chat_requests) == 1


def test_api_key_from_the_environment(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("REASONRANK_API_KEY", "secret")
    with RankingServer(api_key="secret") as srv, OpenAIBackend("m", base_url=srv.base_url, **FAST) as backend:
        [done] = backend.generate([request()])
    assert done.error is None


def test_no_key_no_authorization_header_and_base_url_from_env(monkeypatch, server):
    for var in ("REASONRANK_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("REASONRANK_BASE_URL", server.base_url)
    backend = OpenAIBackend("m", **FAST)
    assert "Authorization" not in backend.headers and backend.base_url == server.base_url
    assert backend.generate([request()])[0].error is None
    backend.close()


def test_connection_refused_gives_an_error(server):
    url = server.base_url
    server.stop()
    with OpenAIBackend("m", base_url=url, max_retries=1, **FAST) as backend:
        [done] = backend.generate([request()])
    assert "ConnectError" in done.error


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_parser_output_is_reassembled(field):
    with RankingServer(reasoning_field=field, reasoning="cats first") as srv, backend_for(srv) as backend:
        [done] = backend.generate([request()])
        assert "content" in srv.chat_requests[0]["messages"][0]
    assert done.text == "<think>cats first</think><answer>[1] > [3] > [2]</answer>"
    parsed = parse_response(done.text, 3)
    assert parsed.order == [0, 2, 1] and parsed.reasoning == "cats first" and parsed.repairs == []


def test_reasoning_with_the_same_ranking_through_the_reranker():
    passages = [f"doc {i} " + "cats " * (i % 5) for i in range(30)]
    with RankingServer(reasoning_field="reasoning_content") as srv:
        res = Reranker(None, base_url=srv.base_url, **FAST).rerank("cats", passages)
    with RankingServer() as srv:
        plain = Reranker(None, base_url=srv.base_url, **FAST).rerank("cats", passages)
    assert res.order == plain.order and res.windows[0].reasoning == plain.windows[0].reasoning


def test_sync_concurrency_is_bounded():
    with RankingServer(latency=0.1) as srv, OpenAIBackend("m", base_url=srv.base_url, concurrency=3, **FAST) as b:
        results = b.generate([request(f"w{i}") for i in range(12)])
        assert all(r.error is None for r in results)
        assert 1 < srv.max_in_flight <= 3


async def test_async_concurrency_is_bounded():
    with RankingServer(latency=0.1) as srv:
        async with OpenAIBackend("m", base_url=srv.base_url, concurrency=2, **FAST) as backend:
            results = await backend.agenerate([request(f"w{i}") for i in range(8)])
        assert all(r.error is None for r in results)
        assert srv.max_in_flight == 2


def test_async_works_across_event_loops(server):
    backend = backend_for(server)
    for _ in range(2):  # a client of a finished loop must not be reused
        [done] = asyncio.run(backend.agenerate([request()]))
        assert done.error is None
    backend.close()


@pytest.fixture
def tokenizing_server():
    with RankingServer(tokenize=True) as srv:
        yield srv


def test_server_truncation_uses_tokenize_and_detokenize(tokenizing_server):
    with backend_for(tokenizing_server, truncation="server") as backend:
        assert backend.truncate(["a b c d e", "x  y"], 3) == ["a b c", "x  y"]  # within budget: unchanged
        assert backend.count_tokens("one two three") == 3
    [detok] = [r for r in tokenizing_server.requests if "tokens" in r]  # only the long text is detokenized
    assert detok["model"] == "m" and len(detok["tokens"]) == 3
    tok = next(r for r in tokenizing_server.requests if "prompt" in r)
    assert tok["add_special_tokens"] is False and tok["model"] == "m"


async def test_async_server_truncation_and_auto_detection(tokenizing_server):
    async with backend_for(tokenizing_server) as backend:
        assert await backend.atruncate(["a b c d e", "x y"], 2) == ["a b", "x y"]
        assert backend._resolved_truncation == "server"


def test_auto_falls_back_to_words_with_one_warning(server, caplog):
    with caplog.at_level(logging.WARNING), backend_for(server) as backend:
        assert backend.truncate(["w " * 100], 8) == [" ".join(["w"] * 6)]  # 8 tokens ~ 6 words
        backend.truncate(["x"], 8)
    warnings = [r for r in caplog.records if "no usable /tokenize" in r.getMessage()]
    assert len(warnings) == 1 and backend.count_tokens("a b") is None


def test_tokenizer_truncation_with_a_local_tokenizer(tmp_path, server):
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    vocab = {w: i for i, w in enumerate(["[UNK]", "a", "b", "c", "d", "e"])}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(tmp_path)
    with backend_for(server, tokenizer=str(tmp_path)) as backend:
        assert backend.truncate(["a b c d e", "a b"], 3) == ["a b c", "a b"]
        assert backend.count_tokens("a b c d") == 4
        assert isinstance(backend._tokenizer, tokenizers.Tokenizer)  # tokenizer.json alone: no transformers
    assert not [r for r in server.requests if "prompt" in r]  # no server tokenization


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="truncation must be one of"):
        OpenAIBackend("m", truncation="chars")
    with pytest.raises(ValueError, match="needs tokenizer="):
        OpenAIBackend("m", truncation="tokenizer")
    with pytest.raises(ValueError, match="concurrency"):
        OpenAIBackend("m", concurrency=0)
    with pytest.raises(ValueError, match="max_retries"):
        OpenAIBackend("m", max_retries=-1)


def test_empty_request_list_makes_no_call(server):
    with backend_for(server) as backend:
        assert backend.generate([]) == [] and backend.truncate([], 5) == []
    assert server.requests == []


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"error": {"message": "overloaded"}},  # some proxies answer errors with a 200
        {"choices": ["text"]},
        {"choices": [{"message": "text"}]},
        {"choices": [{"message": {"role": "assistant", "content": None}}]},
    ],
)
def test_odd_200_bodies_are_never_model_output(body):
    import httpx

    from reasonrank.core.backends import http

    with pytest.raises(http.Transient):
        http.read_completion(httpx.Response(200, json=body), 0.0)


def test_reasoning_cut_at_the_token_cap_keeps_an_open_think():
    import httpx

    from reasonrank.core.backends import http

    message = {"role": "assistant", "content": None, "reasoning_content": "[2] > [1] so far"}
    body = {"choices": [{"message": message, "finish_reason": "length"}], "usage": {"completion_tokens": 3172}}
    done = http.read_completion(httpx.Response(200, json=body), 1.5)
    assert done.text == "<think>[2] > [1] so far" and done.finish_reason == "length"
    assert done.completion_tokens == 3172 and done.seconds == 1.5
    assert parse_response(done.text, 2).order == [1, 0]  # the last chain, flagged as such
