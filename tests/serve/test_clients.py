"""Real clients nobody here wrote, against the running service; the upstream ranks by word overlap."""

from __future__ import annotations

import httpx
import pytest

from reasonrank.testing import lexical_ranking

from .conftest import API_KEY, upstream_settings

QUERY = "how do solar panels convert sunlight into electricity"
DOCUMENTS = [
    "bananas are a yellow fruit",
    "solar panels convert sunlight",
    "electricity from sunlight",
    "solar panels convert sunlight into electricity",
    "wooden panels for a fence",
]
EXPECTED = lexical_ranking(QUERY, DOCUMENTS)  # [3, 1, 2, 4, 0]


@pytest.fixture
def service(serve, upstream):
    return serve(upstream_settings(upstream), api_keys=[API_KEY])


def test_expected_order_is_not_input_order():
    assert EXPECTED == [3, 1, 2, 4, 0]


def test_cohere_sdk_client_v2(service):
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(api_key=API_KEY, base_url=service.url)
    response = client.rerank(model="rerank-v3.5", query=QUERY, documents=DOCUMENTS, top_n=3)
    assert [r.index for r in response.results] == EXPECTED[:3]
    scores = [r.relevance_score for r in response.results]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 3
    assert response.meta.api_version.version == "2"
    assert response.meta.billed_units.input_tokens > 0


async def test_cohere_sdk_async_client_v2(service):
    cohere = pytest.importorskip("cohere")
    client = cohere.AsyncClientV2(api_key=API_KEY, base_url=service.url)
    response = await client.rerank(model="rerank-v3.5", query=QUERY, documents=DOCUMENTS)
    assert [r.index for r in response.results] == EXPECTED


def test_cohere_sdk_wrong_key_is_unauthorized(service):
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(api_key="wrong", base_url=service.url)
    with pytest.raises(cohere.UnauthorizedError) as caught:
        client.rerank(model="m", query=QUERY, documents=DOCUMENTS)
    assert caught.value.body == {"message": "invalid api token"}


def test_langchain_cohere_rerank(service):
    pytest.importorskip("langchain_cohere")
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    reranker = CohereRerank(model="rerank-v3.5", cohere_api_key=API_KEY, base_url=service.url, top_n=3)
    docs = [Document(page_content=text, metadata={"n": i}) for i, text in enumerate(DOCUMENTS)]
    compressed = reranker.compress_documents(docs, QUERY)
    assert [d.metadata["n"] for d in compressed] == EXPECTED[:3]
    scores = [d.metadata["relevance_score"] for d in compressed]
    assert scores == sorted(scores, reverse=True)


def test_llama_index_cohere_rerank(service):
    pytest.importorskip("llama_index.postprocessor.cohere_rerank")
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from llama_index.postprocessor.cohere_rerank import CohereRerank

    reranker = CohereRerank(model="rerank-v3.5", api_key=API_KEY, base_url=service.url, top_n=3)
    nodes = [NodeWithScore(node=TextNode(text=text, id_=str(i)), score=0.0) for i, text in enumerate(DOCUMENTS)]
    ranked = reranker.postprocess_nodes(nodes, QueryBundle(QUERY))
    assert [int(n.node.node_id) for n in ranked] == EXPECTED[:3]


def test_haystack_cohere_ranker(service):
    pytest.importorskip("haystack_integrations.components.rankers.cohere")
    from haystack import Document
    from haystack.utils import Secret
    from haystack_integrations.components.rankers.cohere import CohereRanker

    ranker = CohereRanker(model="rerank-v3.5", api_key=Secret.from_token(API_KEY), api_base_url=service.url, top_k=3)
    result = ranker.run(query=QUERY, documents=[Document(content=text, id=str(i)) for i, text in enumerate(DOCUMENTS)])
    assert [int(d.id) for d in result["documents"]] == EXPECTED[:3]


def test_tei_rerank_raw_request(service):
    response = httpx.post(
        f"{service.url}/rerank",
        json={"query": QUERY, "texts": DOCUMENTS, "return_text": True, "raw_scores": False, "truncate": True},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert response.status_code == 200
    body = response.json()
    assert [item["index"] for item in body] == EXPECTED
    assert [item["text"] for item in body] == [DOCUMENTS[i] for i in EXPECTED]
    assert all(a["score"] > b["score"] for a, b in zip(body, body[1:]))


def test_jina_shaped_v1_request_with_document_objects(service):
    response = httpx.post(
        f"{service.url}/v1/rerank",
        json={
            "model": "jina-reranker-v2-base-multilingual",
            "query": QUERY,
            "documents": [{"text": text} for text in DOCUMENTS],
            "top_n": 2,
            "return_documents": True,
            "return_reasoning": True,
        },
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert response.status_code == 200
    body = response.json()
    assert [r["index"] for r in body["results"]] == EXPECTED[:2]
    assert body["results"][0]["document"] == {"text": DOCUMENTS[EXPECTED[0]]}
    assert body["results"][0]["reasoning"] == "Comparing each passage with the query."
    assert body["usage"]["total_tokens"] > 0
    assert body["meta"]["api_version"] == {"version": "1"}
