"""Auth, limits, error shapes, backpressure, deadlines, metrics and access logs of the running service."""

from __future__ import annotations

import inspect
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from reasonrank import Reranker
from reasonrank.serve import ServeOptions
from reasonrank.testing import Fault, RankingServer, lexical_ranking

from .conftest import upstream_settings, wait_until

QUERY = "which planet has the most moons"
DOCS = ["saturn has the most moons of any planet", "mars has two moons", "the sun is a star"]
DEADLINE_SUPPORTED = "deadline" in inspect.signature(Reranker.arerank_batch).parameters


def _post(url: str, path: str, body: dict, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(url + path, json=body, headers=headers, timeout=60)


# ---------------------------------------------------------------- auth
def test_api_keys_guard_the_rerank_endpoints_only(serve, upstream):
    service = serve(upstream_settings(upstream), api_keys=["key-one", "key-two"])
    body = {"query": QUERY, "documents": DOCS}
    missing = _post(service.url, "/v2/rerank", body)
    assert missing.status_code == 401 and missing.json() == {"message": "invalid api token"}
    assert _post(service.url, "/v2/rerank", body, key="key-three").status_code == 401
    basic = httpx.post(service.url + "/v2/rerank", json=body, headers={"Authorization": "Basic key-one"})
    assert basic.status_code == 401
    tei = _post(service.url, "/rerank", {"query": QUERY, "texts": DOCS})
    assert tei.status_code == 401 and tei.json() == {"error": "invalid api token", "error_type": "Unauthorized"}
    assert httpx.get(service.url + "/v1/models").status_code == 401
    assert _post(service.url, "/v2/rerank", body, key="key-two").status_code == 200
    models = httpx.get(service.url + "/v1/models", headers={"Authorization": "Bearer key-one"})
    assert models.json()["data"][0]["object"] == "model"
    assert httpx.get(service.url + "/health").json() == {"status": "ok"}
    assert httpx.get(service.url + "/metrics").status_code == 200


def test_api_keys_come_from_the_environment(serve, upstream, monkeypatch):
    monkeypatch.setenv("REASONRANK_SERVE_API_KEYS", " env-key , other ")
    service = serve(upstream_settings(upstream), api_keys=None)
    assert _post(service.url, "/v2/rerank", {"query": QUERY, "documents": DOCS}).status_code == 401
    assert _post(service.url, "/v2/rerank", {"query": QUERY, "documents": DOCS}, key="env-key").status_code == 200


# ---------------------------------------------------------------- limits and validation
def test_request_limits_answer_400_and_413_with_a_clear_message(serve, upstream):
    service = serve(upstream_settings(upstream), ServeOptions(max_documents=3, max_chars=60))
    too_many = _post(service.url, "/v2/rerank", {"query": "q", "documents": ["a", "b", "c", "d"]})
    assert too_many.status_code == 400
    assert too_many.json() == {"message": "too many documents: 4 (this service's limit is 3)"}
    assert _post(service.url, "/rerank", {"query": "q", "texts": ["a"] * 4}).json()["error_type"] == "Validation"
    too_long = _post(service.url, "/v1/rerank", {"query": "q", "documents": ["x" * 40, "y" * 40]})
    assert too_long.status_code == 413 and "81 characters" in too_long.json()["message"]
    assert _post(service.url, "/rerank", {"query": "q", "texts": ["x" * 80]}).status_code == 413


def test_invalid_bodies_answer_in_the_reference_shapes(serve, upstream):
    service = serve(upstream_settings(upstream))
    no_query = _post(service.url, "/v2/rerank", {"documents": DOCS})
    assert no_query.status_code == 400 and no_query.json() == {"message": "invalid request: query: Field required"}
    tei = _post(service.url, "/rerank", {"query": QUERY})
    assert tei.status_code == 422 and tei.json() == {
        "error": "invalid request: texts: Field required",
        "error_type": "Validation",
    }
    assert _post(service.url, "/v2/rerank", {"query": QUERY, "documents": DOCS, "top_n": 0}).status_code == 400
    no_text = _post(service.url, "/v1/rerank", {"query": QUERY, "documents": [{"title": "t"}]})
    assert no_text.status_code == 400 and no_text.json()["message"].startswith("invalid request: documents[0]")
    blank = _post(service.url, "/v2/rerank", {"query": "  ", "documents": DOCS})
    assert blank.status_code == 400
    broken = httpx.post(service.url + "/v2/rerank", content=b"{not json", headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and broken.json()["message"].startswith("invalid request")


def test_top_n_beyond_the_documents_returns_all_and_v1_rank_fields(serve, upstream):
    service = serve(upstream_settings(upstream))
    body = {"query": QUERY, "documents": DOCS, "top_n": 10}
    assert [r["index"] for r in _post(service.url, "/v2/rerank", body).json()["results"]] == lexical_ranking(
        QUERY, DOCS
    )
    objects = [{"body": text, "id": i} for i, text in enumerate(DOCS)]
    ranked = _post(
        service.url,
        "/v1/rerank",
        {"query": QUERY, "documents": objects, "rank_fields": ["body"], "return_documents": True},
    ).json()["results"]
    assert [r["index"] for r in ranked] == lexical_ranking(QUERY, DOCS)
    assert ranked[0]["document"] == objects[ranked[0]["index"]]  # the object as sent, every field kept


def test_a_failing_upstream_answers_502(serve, upstream):
    upstream.faults.append(Fault("status", status=400))
    service = serve(upstream_settings(upstream))
    failed = _post(service.url, "/v2/rerank", {"query": QUERY, "documents": DOCS})
    assert failed.status_code == 502 and failed.json()["message"].startswith("the model backend failed")


# ---------------------------------------------------------------- backpressure
def test_a_full_queue_answers_429_with_retry_after():
    gate = threading.Event()

    def held_ranking(query: str, passages: list[str]) -> list[int]:
        gate.wait(60)
        return lexical_ranking(query, passages)

    from .conftest import ServiceThread, create_app

    with RankingServer(held_ranking) as upstream:
        service = ServiceThread(create_app(upstream_settings(upstream), ServeOptions(max_queue=1), api_keys=())).start()
        try:
            with ThreadPoolExecutor(1) as pool:
                first = pool.submit(_post, service.url, "/v2/rerank", {"query": QUERY, "documents": DOCS})
                wait_until(lambda: upstream.in_flight >= 1, "the first request to reach the upstream")
                rejected = _post(service.url, "/v2/rerank", {"query": QUERY, "documents": DOCS})
                tei = _post(service.url, "/rerank", {"query": QUERY, "texts": DOCS})
                gate.set()
                assert first.result().status_code == 200
            assert rejected.status_code == 429 and rejected.headers["Retry-After"] == "1"
            assert "at capacity" in rejected.json()["message"]
            assert tei.status_code == 429 and tei.json()["error_type"] == "Overloaded"
            assert _post(service.url, "/v2/rerank", {"query": QUERY, "documents": DOCS}).status_code == 200
        finally:
            gate.set()
            service.stop()


# ---------------------------------------------------------------- deadline
def _held_after_first_window(gate: threading.Event):
    calls = []

    def rank(query: str, passages: list[str]) -> list[int]:
        calls.append(query)
        if len(calls) > 1:
            gate.wait(60)
        return lexical_ranking(query, passages)

    return rank


@pytest.mark.skipif(
    not DEADLINE_SUPPORTED, reason="Reranker.arerank_batch has no deadline= yet (the latency-controls issue adds it)"
)
@pytest.mark.parametrize("where", ["request", "service default"])
def test_deadline_returns_the_best_order_so_far(where):
    from .conftest import ServiceThread, create_app

    gate = threading.Event()
    docs = [f"passage {i} about moons" if i % 3 else f"passage {i}" for i in range(30)]  # two windows, two rounds
    options = ServeOptions(default_deadline=0.5 if where == "service default" else None)
    body = {"query": "moons", "documents": docs, **({"deadline": 0.5} if where == "request" else {})}
    with RankingServer(_held_after_first_window(gate)) as upstream:
        service = ServiceThread(create_app(upstream_settings(upstream, on_error="keep"), options, api_keys=())).start()
        try:
            response = _post(service.url, "/v2/rerank", body)
        finally:
            gate.set()
            service.stop()
    assert response.status_code == 200
    meta = response.json()["meta"]["reasonrank"]
    assert meta["complete"] is False and meta["deadline"] == 0.5
    assert sorted(r["index"] for r in response.json()["results"]) == list(range(30))


@pytest.mark.skipif(DEADLINE_SUPPORTED, reason="this reasonrank version supports deadlines")
def test_deadline_without_core_support_is_ignored_with_a_warning(serve, upstream):
    service = serve(upstream_settings(upstream))
    body = _post(service.url, "/v2/rerank", {"query": QUERY, "documents": DOCS, "deadline": 5}).json()
    assert body["meta"]["warnings"] == ["deadline ignored: this reasonrank version has no deadline support"]


def test_deadline_must_be_positive(serve, upstream):
    service = serve(upstream_settings(upstream))
    assert _post(service.url, "/v2/rerank", {"query": QUERY, "documents": DOCS, "deadline": 0}).status_code == 400


# ---------------------------------------------------------------- observability
def test_metrics_count_requests_windows_tokens_and_batches(serve, upstream):
    service = serve(upstream_settings(upstream))
    assert _post(service.url, "/v2/rerank", {"query": QUERY, "documents": DOCS}).status_code == 200
    assert _post(service.url, "/v2/rerank", {"documents": DOCS}).status_code == 400
    text = httpx.get(service.url + "/metrics").text
    assert 'reasonrank_serve_requests_total{endpoint="/v2/rerank",status="200"} 1.0' in text
    assert 'reasonrank_serve_requests_total{endpoint="/v2/rerank",status="400"} 1.0' in text
    assert "reasonrank_serve_windows_total 1.0" in text
    assert "reasonrank_serve_cache_hits_total 0.0" in text
    assert "reasonrank_serve_batches_total 1.0" in text
    assert 'reasonrank_serve_tokens_total{kind="prompt"}' in text
    assert 'reasonrank_serve_request_seconds_count{endpoint="/v2/rerank"} 2.0' in text


def test_access_log_is_one_json_line_per_request_without_text_or_keys(serve, upstream, caplog):
    service = serve(upstream_settings(upstream), api_keys=["secret-key-123"])
    with caplog.at_level(logging.INFO, logger="reasonrank.serve.access"):
        _post(service.url, "/v2/rerank", {"query": QUERY, "documents": DOCS}, key="secret-key-123")
        _post(service.url, "/rerank", {"query": QUERY, "texts": DOCS}, key="wrong-key-456")
    lines = [r.getMessage() for r in caplog.records if r.name == "reasonrank.serve.access"]
    assert len(lines) == 2
    ok, denied = (json.loads(line) for line in lines)
    assert ok["endpoint"] == "/v2/rerank" and ok["status"] == 200 and ok["documents"] == 3
    assert ok["windows"] == 1 and ok["prompt_tokens"] > 0 and ok["latency_ms"] >= 0
    assert denied["endpoint"] == "/rerank" and denied["status"] == 401
    joined = "\n".join(lines)
    for secret in ("secret-key-123", "wrong-key-456", "saturn", QUERY):
        assert secret not in joined
