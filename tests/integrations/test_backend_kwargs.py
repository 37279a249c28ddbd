"""What adapter settings may carry (issue 10, items 6 and 8), through each framework's own serialization.

``backend_kwargs`` can come from a saved pipeline, so a credential there is refused at construction
(it belongs in the ``api_key`` secret), ``headers`` are used but never serialized, and
``trust_remote_code`` is refused from settings (a loaded pipeline cannot switch it on); a ``Reranker``
built in code and passed as ``reranker=`` may still use it.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from reasonrank import Reranker

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

FRAMEWORKS = ["llama_index", "langchain", "haystack"]
CREDENTIALS = [
    {"api_key": "sk-x"},
    {"hf_token": "hf_x"},
    {"password": "pw"},
    {"client_secret": "s"},
    {"headers": {"Authorization": "Bearer sk-x"}},
    {"headers": {"X-API-Key": "sk-x"}},
    {"headers": {"Proxy-Authorization": "Basic eA=="}},
]


def adapter_class(framework: str) -> type:
    if framework == "llama_index":
        pytest.importorskip("llama_index.core")
        from reasonrank.integrations.llama_index import ReasonRankRerank

        return ReasonRankRerank
    if framework == "langchain":
        pytest.importorskip("langchain_core")
        from reasonrank.integrations.langchain import ReasonRankCompressor

        return ReasonRankCompressor
    pytest.importorskip("haystack")
    from haystack_integrations.components.rankers.reasonrank import ReasonRankRanker

    return ReasonRankRanker


def dump(framework: str, adapter: Any) -> dict[str, Any]:
    """The framework's own serialized form of ``adapter``."""
    if framework == "llama_index":
        return json.loads(adapter.to_json())
    if framework == "langchain":
        return json.loads(adapter.model_dump_json())
    return adapter.to_dict()


def load(framework: str, data: dict[str, Any]) -> Any:
    """The framework's own way back from a serialized form."""
    cls = adapter_class(framework)
    if framework == "llama_index":
        return cls.from_json(json.dumps(data))
    if framework == "langchain":
        return cls.model_validate(data)
    return cls.from_dict(data)


def settings_of(framework: str, data: dict[str, Any]) -> dict[str, Any]:
    return data["init_parameters"] if framework == "haystack" else data


def reranker_of(adapter: Any) -> Reranker:
    return adapter.get_reranker() if hasattr(adapter, "get_reranker") else adapter.reranker


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("backend_kwargs", CREDENTIALS, ids=lambda kw: json.dumps(kw))
def test_credentials_in_backend_kwargs_are_refused(framework, backend_kwargs):
    with pytest.raises(ValueError, match="looks like a credential.*api_key="):
        adapter_class(framework)(backend_kwargs=backend_kwargs)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_plain_backend_kwargs_are_accepted(framework):
    plain = {"timeout": 5, "truncation": "words", "tokenizer": None, "max_retries": 1}
    adapter = adapter_class(framework)(backend_kwargs=plain)
    assert settings_of(framework, dump(framework, adapter))["backend_kwargs"] == plain


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_http_client_setting_survives_serialization_and_reaches_the_backend(framework):
    adapter = adapter_class(framework)(base_url="http://127.0.0.1:9/v1", backend_kwargs={"http_client": "httpx"})
    loaded = load(framework, dump(framework, adapter))
    assert loaded.backend_kwargs == {"http_client": "httpx"}
    assert reranker_of(loaded).backend.http_client == "httpx"
    assert reranker_of(adapter_class(framework)(base_url="http://127.0.0.1:9/v1")).backend.http_client == "aiohttp"


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_backend_kwargs_are_checked_at_construction_as_the_core_checks_them(framework):
    # the adapter builds its reranker on first use; a wrong option still fails when the adapter is made
    with pytest.raises(ValueError, match="http_client must be one of httpx, aiohttp, got 'curl'"):
        adapter_class(framework)(backend_kwargs={"http_client": "curl"})
    with pytest.raises(TypeError, match="unexpected keyword argument 'timeuot' \\(did you mean 'timeout'\\?\\)"):
        adapter_class(framework)(backend_kwargs={"timeuot": 5})


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_headers_are_used_but_never_serialized(framework):
    adapter = adapter_class(framework)(backend_kwargs={"timeout": 5, "headers": {"X-Tenant": "acme"}})
    assert reranker_of(adapter).config.backend_kwargs["headers"] == {"X-Tenant": "acme"}  # used in memory
    data = dump(framework, adapter)
    assert "acme" not in json.dumps(data) and "X-Tenant" not in json.dumps(data)
    assert settings_of(framework, data)["backend_kwargs"] == {"timeout": 5}
    assert load(framework, data).backend_kwargs == {"timeout": 5}


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_trust_remote_code_cannot_come_from_serialized_data(framework):
    cls = adapter_class(framework)
    data = dump(framework, cls(model="some/model", backend="transformers"))
    settings_of(framework, data)["backend_kwargs"] = {"trust_remote_code": True}
    with pytest.raises(ValueError, match="trust_remote_code=True is refused.*reranker="):
        load(framework, data)
    with pytest.raises(ValueError, match="trust_remote_code"):
        cls(backend="transformers", backend_kwargs={"trust_remote_code": True})
    own = Reranker("some/model", backend="transformers", trust_remote_code=True)  # built in code: allowed
    assert reranker_of(cls(reranker=own)) is own


def test_haystack_pipeline_yaml_cannot_switch_on_trust_remote_code():
    pytest.importorskip("haystack")
    import yaml
    from haystack import Pipeline

    from haystack_integrations.components.rankers.reasonrank import ReasonRankRanker

    pipe = Pipeline()
    pipe.add_component("ranker", ReasonRankRanker(model="some/model", backend="transformers"))
    data = pipe.to_dict()
    data["components"]["ranker"]["init_parameters"]["backend_kwargs"]["trust_remote_code"] = True
    with pytest.raises(Exception, match="trust_remote_code") as refused:
        Pipeline.loads(yaml.safe_dump(data))
    assert "reranker=" in str(refused.value) + str(refused.value.__cause__)


def test_haystack_default_key_never_reads_openai_api_key(monkeypatch):
    """Issue 10 item 6: another service's key is never sent to the reranker's server."""
    pytest.importorskip("haystack")
    from haystack import Document

    from haystack_integrations.components.rankers.reasonrank import ReasonRankRanker
    from reasonrank.core.types import BackendError
    from reasonrank.testing import RankingServer

    monkeypatch.delenv("REASONRANK_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-secret")
    ranker = ReasonRankRanker()
    assert ranker.api_key.resolve_value() is None
    assert ranker.to_dict()["init_parameters"]["api_key"]["env_vars"] == ["REASONRANK_API_KEY"]
    docs = [Document(content="store honey"), Document(content="bees make honey")]
    with RankingServer(api_key="sk-openai-secret") as secured:  # it would accept the key, were it sent
        ranker = ReasonRankRanker(model="reasonrank-test", base_url=secured.base_url, backend_kwargs={"max_retries": 0})
        with pytest.raises(BackendError, match="401"):
            ranker.run(query="bees", documents=docs)
