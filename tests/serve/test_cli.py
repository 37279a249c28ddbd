"""``reasonrank serve``'s command line: the reranker flags of ``reasonrank rerank`` and the offline default."""

from __future__ import annotations

import httpx
import pytest

from reasonrank.cli import main as cli_main
from reasonrank.cli.serve import DEMO_MAX_NEW_TOKENS, use_demo_model


def _args(*argv: str):
    return cli_main.build_parser().parse_args(["serve", *argv])


def test_serve_takes_the_rerank_flags_and_its_own():
    args = _args("--base-url", "http://gpu:8000/v1", "--strategy", "tournament", "--port", "9000",
                 "--max-queue", "5", "--default-deadline", "2.5")  # fmt: skip
    assert (args.base_url, args.strategy, args.port, args.max_queue, args.default_deadline) == (
        "http://gpu:8000/v1", "tournament", 9000, 5, 2.5,
    )  # fmt: skip
    assert not use_demo_model(args)


def test_without_upstream_or_model_it_serves_the_demo_model(monkeypatch):
    monkeypatch.delenv("REASONRANK_BASE_URL", raising=False)
    assert use_demo_model(_args())
    assert not use_demo_model(_args("--model", "liuwenhan/reasonrank-7B", "--backend", "vllm"))
    monkeypatch.setenv("REASONRANK_BASE_URL", "http://gpu:8000/v1")
    assert not use_demo_model(_args())


@pytest.mark.slow
def test_the_demo_model_answers_a_tei_request(serve, monkeypatch):
    """The offline default end to end: the embedded SmolLM2 on CPU behind the service (a plumbing check)."""
    pytest.importorskip("transformers")
    from reasonrank.cli.rerank import build_reranker
    from reasonrank.cli.serve import _demo_settings

    monkeypatch.delenv("REASONRANK_BASE_URL", raising=False)
    args = _args("--max-new-tokens", "8")
    _demo_settings(args)
    assert (args.backend, args.model, args.max_new_tokens) == ("transformers", "SmolLM2-135M-Instruct", 8)
    try:
        reranker = build_reranker(args)
        _ = reranker.backend
    except ImportError as err:
        pytest.skip(f"the demo model is not installed: {err}")
    service = serve(reranker, close_reranker=True)
    texts = ["the moon orbits the earth", "bread is baked", "tides follow the moon"]
    body = httpx.post(service.url + "/rerank", json={"query": "moon", "texts": texts}, timeout=300).json()
    assert sorted(item["index"] for item in body) == [0, 1, 2]
    assert httpx.get(service.url + "/v1/models").json()["data"][0]["id"] == "SmolLM2-135M-Instruct"


def test_default_demo_budget_is_short():
    args = _args()
    from reasonrank.cli.serve import _demo_settings

    _demo_settings(args)
    assert args.max_new_tokens == DEMO_MAX_NEW_TOKENS
