"""ReasonRankCompressor in real LangChain pipelines (ContextualCompressionRetriever), against RankingServer."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_classic")

from langchain_classic.retrievers import ContextualCompressionRetriever  # noqa: E402
from langchain_core.callbacks import (  # noqa: E402
    BaseCallbackHandler,
    CallbackManagerForRetrieverRun,
    get_usage_metadata_callback,
)
from langchain_core.documents import BaseDocumentCompressor, Document  # noqa: E402
from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langchain_core.load import dumpd, dumps  # noqa: E402
from langchain_core.retrievers import BaseRetriever  # noqa: E402
from langchain_core.tracers.base import BaseTracer  # noqa: E402
from langchain_core.tracers.schemas import Run  # noqa: E402
from langchain_core.vectorstores import InMemoryVectorStore  # noqa: E402

import reasonrank.core.reranker as core_reranker  # noqa: E402
from reasonrank import Reranker  # noqa: E402
from reasonrank.core.types import BackendError, Completion  # noqa: E402
from reasonrank.integrations.langchain import ReasonRankCompressor  # noqa: E402
from reasonrank.testing import Fault, FunctionBackend, RankingServer, format_answer, lexical_ranking  # noqa: E402

QUERY = "why do moths fly towards bright lights at night"
TEXTS = [
    "Cats sleep most of the day.",  # 0 shared words
    "Moths fly at night.",  # moths fly at night -> 4
    "Bright lights at night attract moths that fly towards them.",  # 7
    "Why do moths fly towards bright lights?",  # why do moths fly towards bright lights -> 7 (ties: input order)
    "Street lights are bright.",  # 2
    "Birds fly south in winter.",  # 1
    "Moths are insects.",  # 1
    "Lights at night towards the sea.",  # lights at night towards -> 4
]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langchain_rag.py"


def make_docs() -> list[Document]:
    return [
        Document(page_content=t, id=f"d{i}", metadata={"score": round(1.0 - i / 10, 2), "source": f"s{i}"})
        for i, t in enumerate(TEXTS)
    ]


class FixedRetriever(BaseRetriever):
    """Returns the same Document objects every time (so input mutation would show)."""

    docs: list[Document]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return self.docs


class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def on_retriever_start(self, serialized, query, *, run_id: UUID, parent_run_id=None, **kw) -> None:
        self.events.append(("retriever_start", {"run_id": run_id, "query": query}))

    def on_retriever_end(self, documents, *, run_id: UUID, parent_run_id=None, **kw) -> None:
        self.events.append(("retriever_end", {"run_id": run_id, "documents": documents}))

    def on_retriever_error(self, error, *, run_id: UUID, parent_run_id=None, **kw) -> None:
        self.events.append(("retriever_error", {"run_id": run_id, "error": error}))

    def on_chain_start(self, serialized, inputs, *, run_id: UUID, parent_run_id=None, **kw) -> None:
        self.events.append(("chain_start", {"run_id": run_id, "parent": parent_run_id, "inputs": inputs, **kw}))

    def on_chain_end(self, outputs, *, run_id: UUID, parent_run_id=None, **kw) -> None:
        self.events.append(("chain_end", {"run_id": run_id, "outputs": outputs}))

    def on_chain_error(self, error, *, run_id: UUID, parent_run_id=None, **kw) -> None:
        self.events.append(("chain_error", {"run_id": run_id, "error": error}))

    def named(self, kind: str) -> list[dict[str, Any]]:
        return [e for k, e in self.events if k == kind]


@pytest.fixture
def server():
    with RankingServer() as s:
        yield s


@pytest.fixture
def docs() -> list[Document]:
    return make_docs()


def compressor(server: RankingServer, **kw: Any) -> ReasonRankCompressor:
    return ReasonRankCompressor(backend="openai", base_url=server.base_url, **kw)


def pipeline(server: RankingServer, docs: list[Document], **kw: Any) -> ContextualCompressionRetriever:
    return ContextualCompressionRetriever(
        base_compressor=compressor(server, **kw), base_retriever=FixedRetriever(docs=docs)
    )


def expected_ids(docs: list[Document], query: str = QUERY) -> list[str]:
    return [docs[i].id for i in lexical_ranking(query, [d.page_content for d in docs])]


def check_output(out: list[Document], docs: list[Document], snapshot: list[dict], n: int) -> None:
    assert [d.id for d in out] == expected_ids(docs)[:n]
    scores = [d.metadata["relevance_score"] for d in out]
    assert all(a > b for a, b in zip(scores, scores[1:])) and scores[0] == 1.0
    assert [d.metadata["reasonrank_rank"] for d in out] == list(range(n))
    by_id = {d.id: d for d in docs}
    for d in out:
        src = by_id[d.id]
        assert d is not src and d.metadata is not src.metadata
        assert d.page_content == src.page_content
        assert d.metadata["retrieval_score"] == src.metadata["score"] == d.metadata["score"]
        assert d.metadata["source"] == src.metadata["source"]
        assert "reasonrank_reasoning" not in d.metadata
    assert [d.model_dump() for d in docs] == snapshot  # inputs untouched


# ---------------------------------------------------------------------------------------------- pipelines
def test_is_a_langchain_compressor(server):
    assert isinstance(compressor(server), BaseDocumentCompressor)
    assert ReasonRankCompressor.model_fields["top_n"].default == 3


def test_invoke_reranks_like_the_server(server, docs):
    snapshot = copy.deepcopy([d.model_dump() for d in docs])
    out = pipeline(server, docs, window_size=20).invoke(QUERY)
    check_output(out, docs, snapshot, 3)
    assert len(server.chat_requests) == 1  # one window holds all 8


async def test_ainvoke_is_native_async(server, docs, monkeypatch):
    def no_sync(*a, **k):
        raise AssertionError("acompress_documents must not fall back to compress_documents")

    monkeypatch.setattr(ReasonRankCompressor, "compress_documents", no_sync)
    snapshot = copy.deepcopy([d.model_dump() for d in docs])
    out = await pipeline(server, docs, window_size=20, top_n=5).ainvoke(QUERY)
    check_output(out, docs, snapshot, 5)
    assert len(server.chat_requests) == 1


async def test_sliding_windows_match_the_core(server, docs):
    comp = compressor(server, window_size=4, step=2, top_n=None)
    out = comp.compress_documents(docs, QUERY)
    sync_calls = len(server.chat_requests)
    core = Reranker(backend="openai", base_url=server.base_url, window_size=4, step=2).rerank(QUERY, TEXTS)
    assert sync_calls == core.calls == 3
    assert [d.id for d in out] == [docs[i].id for i in core.order]
    assert [d.metadata["relevance_score"] for d in out] == core.scores
    assert [d.id for d in out][:2] == expected_ids(docs)[:2]  # window - step = 2 best are exact
    aout = await comp.acompress_documents(docs, QUERY)
    assert [d.id for d in aout] == [d.id for d in out]


async def test_vector_store_retriever(server):
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=32))
    store.add_documents(make_docs())
    base = store.as_retriever(search_kwargs={"k": 6})
    first = base.invoke(QUERY)
    assert len(first) == 6 and all(d.id for d in first)
    retriever = ContextualCompressionRetriever(
        base_compressor=compressor(server, window_size=20, top_n=4), base_retriever=base
    )
    for out in (retriever.invoke(QUERY), await retriever.ainvoke(QUERY)):
        assert [d.id for d in out] == expected_ids(first)[:4]
        assert all(
            "retrieval_score" not in d.metadata or d.metadata["retrieval_score"] == d.metadata["score"] for d in out
        )


def test_relevance_score_input_becomes_retrieval_score(server):
    docs = [
        Document("bright lights", id="a", metadata={"relevance_score": 0.9}),
        Document("moths fly towards bright lights", id="b", metadata={"relevance_score": 0.2, "score": 7.0}),
        Document("moths", id="c", metadata={"retrieval_score": 5.0, "relevance_score": 0.1}),
        Document("nothing here", id="d"),
    ]
    snapshot = copy.deepcopy([d.model_dump() for d in docs])
    out = compressor(server, top_n=None).compress_documents(docs, QUERY)
    meta = {d.id: d.metadata for d in out}
    assert [d.id for d in out] == ["b", "a", "c", "d"]
    assert meta["b"]["retrieval_score"] == 0.2 and meta["b"]["score"] == 7.0  # relevance_score wins over score
    assert meta["a"]["retrieval_score"] == 0.9
    assert meta["c"]["retrieval_score"] == 5.0  # an existing retrieval_score is kept
    assert "retrieval_score" not in meta["d"]
    assert [m["relevance_score"] for m in meta.values()] == [1.0, 0.5, 1 / 3, 0.25]
    assert [d.model_dump() for d in docs] == snapshot


# ---------------------------------------------------------------------------------------------- edge cases
@pytest.mark.parametrize("query", ["", "   ", None])
async def test_empty_query_raises(server, docs, query):
    comp = compressor(server)
    with pytest.raises(ValueError, match="query is empty"):
        comp.compress_documents(docs, query)
    with pytest.raises(ValueError, match="query is empty"):
        await comp.acompress_documents(docs, query)
    assert server.requests == []


@pytest.mark.parametrize("top_n", [0, -2, True, 1.5])
def test_bad_top_n_raises(server, top_n):
    with pytest.raises(ValueError, match="top_n"):
        compressor(server, top_n=top_n)


async def test_top_n_changed_after_init_is_checked(server, docs):
    comp = compressor(server)
    comp.top_n = 0
    with pytest.raises(ValueError, match="top_n must be >= 1"):
        comp.compress_documents(docs, QUERY)
    with pytest.raises(ValueError, match="top_n must be >= 1"):
        await comp.acompress_documents(docs, QUERY)


async def test_zero_and_one_document_make_no_llm_call(server):
    comp = compressor(server)
    assert comp.compress_documents([], QUERY) == []
    assert await comp.acompress_documents([], QUERY) == []
    empty = ContextualCompressionRetriever(base_compressor=comp, base_retriever=FixedRetriever(docs=[]))
    assert empty.invoke(QUERY) == []
    one = Document("lonely", id="x", metadata={"score": 0.4})
    for out in (comp.compress_documents([one], QUERY), await comp.acompress_documents([one], QUERY)):
        assert len(out) == 1 and out[0] is not one and out[0].id == "x"
        assert out[0].metadata == {"score": 0.4, "retrieval_score": 0.4, "relevance_score": 1.0, "reasonrank_rank": 0}
    assert one.metadata == {"score": 0.4}
    assert server.requests == []
    assert not comp._core.built  # nothing built for trivial inputs


def test_top_n_larger_than_input_and_none_return_all(server, docs):
    assert len(compressor(server, top_n=50).compress_documents(docs, QUERY)) == len(docs)
    assert [
        d.id for d in compressor(server, top_n=None, window_size=20).compress_documents(docs, QUERY)
    ] == expected_ids(docs)


def test_duplicate_ids_are_kept(server):
    docs = [
        Document("moths fly", id="same"),
        Document("moths fly towards bright lights", id="same"),
        Document("cats", id="other"),
    ]
    out = compressor(server, top_n=None).compress_documents(docs, QUERY)
    assert [(d.id, d.page_content) for d in out] == [
        ("same", "moths fly towards bright lights"),
        ("same", "moths fly"),
        ("other", "cats"),
    ]


def test_rejects_non_documents(server):
    with pytest.raises(TypeError, match="documents"):
        compressor(server).compress_documents("moths", QUERY)
    with pytest.raises(TypeError, match=r"documents\[1\]"):
        compressor(server).compress_documents([Document("a"), "b"], QUERY)


def test_unknown_field_is_an_error(server):
    with pytest.raises(TypeError, match="'windowsize'.*did you mean 'window_size'"):
        ReasonRankCompressor(base_url=server.base_url, windowsize=4)


def test_invalid_core_setting_fails_at_construction(server):
    with pytest.raises(ValueError, match="step must be smaller"):
        compressor(server, window_size=4, step=9)


# ---------------------------------------------------------------------------------------------- callbacks
def test_callbacks_reach_the_retriever_and_compressor_runs(server, docs):
    rec = Recorder()
    out = pipeline(server, docs, window_size=4, step=2).invoke(QUERY, config={"callbacks": [rec]})
    retriever_runs = rec.named("retriever_start")
    assert retriever_runs and retriever_runs[0]["query"] == QUERY
    outer = retriever_runs[0]["run_id"]  # the ContextualCompressionRetriever run (FixedRetriever's is a child)
    ends = {e["run_id"]: e for e in rec.named("retriever_end")}
    assert [d.id for d in ends[outer]["documents"]] == [d.id for d in out]
    (start,) = rec.named("chain_start")
    assert start["name"] == "ReasonRankCompressor" and start["parent"] == outer
    assert start["inputs"]["query"] == QUERY and len(start["inputs"]["documents"]) == len(docs)
    (end,) = rec.named("chain_end")
    assert end["run_id"] == start["run_id"]
    assert end["outputs"]["llm_calls"] == 3 and [d.id for d in end["outputs"]["documents"]] == [d.id for d in out]


async def test_callbacks_async_and_errors(server, docs):
    rec = Recorder()
    out = await pipeline(server, docs).ainvoke(QUERY, config={"callbacks": [rec]})
    (start,) = rec.named("chain_start")
    assert start["parent"] == rec.named("retriever_start")[0]["run_id"]
    assert rec.named("chain_end")[0]["outputs"]["documents"] == out

    failing = Recorder()
    server.faults.append(Fault("status", status=400))
    with pytest.raises(BackendError):
        await pipeline(server, docs, window_size=20).ainvoke(QUERY, config={"callbacks": [failing]})
    (err,) = failing.named("chain_error")
    assert isinstance(err["error"], BackendError)
    assert failing.named("retriever_error")


def test_plain_handler_list_to_compress_documents(server, docs):
    rec = Recorder()
    compressor(server).compress_documents(docs, QUERY, callbacks=[rec])
    (start,) = rec.named("chain_start")
    assert start["parent"] is None and rec.named("chain_end")


# ---------------------------------------------------------------------------------------------- build once, reasoning
async def test_reranker_and_backend_built_once(server, docs, monkeypatch):
    built = []
    real = core_reranker.make_backend

    def counting(*a, **k):
        built.append(a)
        return real(*a, **k)

    monkeypatch.setattr(core_reranker, "make_backend", counting)
    comp = compressor(server, window_size=20)
    retriever = ContextualCompressionRetriever(base_compressor=comp, base_retriever=FixedRetriever(docs=docs))
    assert not comp._core.built
    first = retriever.invoke(QUERY)
    rr = comp.get_reranker()
    assert retriever.invoke("moths at night") and await retriever.ainvoke(QUERY) == first
    assert comp.get_reranker() is rr and len(built) == 1
    assert len(server.chat_requests) == 3


def test_ready_reranker_is_used(server, docs):
    rr = Reranker(backend="openai", base_url=server.base_url, window_size=20)
    comp = ReasonRankCompressor(reranker=rr, top_n=2)
    assert comp.get_reranker() is rr
    assert [d.id for d in comp.compress_documents(docs, QUERY)] == expected_ids(docs)[:2]
    with pytest.raises(ValueError, match="not both"):
        ReasonRankCompressor(reranker=rr, window_size=4)
    with pytest.raises(ValueError):
        ReasonRankCompressor(reranker="not a reranker")


async def test_include_reasoning(docs):
    with RankingServer(reasoning="Passage two names moths and lights.") as server:
        comp = compressor(server, include_reasoning=True, window_size=20)
        for out in (comp.compress_documents(docs, QUERY), await comp.acompress_documents(docs, QUERY)):
            assert [d.metadata["reasonrank_reasoning"] for d in out] == ["Passage two names moths and lights."] * 3
        single = comp.compress_documents(docs[:1], QUERY)
        assert "reasonrank_reasoning" not in single[0].metadata  # no LLM call, no reasoning


def test_title_key_reaches_the_prompt(server, docs):
    titled = [d.model_copy(update={"metadata": {**d.metadata, "title": f"Title{i}"}}) for i, d in enumerate(docs)]
    compressor(server, title_key="title", window_size=20).compress_documents(titled, QUERY)
    prompt = server.chat_requests[0]["messages"][-1]["content"]
    assert all(f"Title{i}" in prompt for i in range(len(docs)))


def test_api_key_is_used_but_never_shown(docs):
    secret = "sk-very-secret-123"
    with RankingServer(api_key=secret) as server:
        comp = compressor(server, api_key=secret, window_size=20)
        retriever = ContextualCompressionRetriever(base_compressor=comp, base_retriever=FixedRetriever(docs=docs))
        assert [d.id for d in retriever.invoke(QUERY)] == expected_ids(docs)[:3]  # the key was sent
        shown = [
            repr(comp),
            str(comp),
            repr(comp.model_dump()),
            comp.model_dump_json(),
            json.dumps(dumpd(comp)),
            dumps(comp),
            repr(retriever),
            dumps(retriever),
            repr(comp.get_reranker()),
        ]
        assert all(secret not in s for s in shown)
        assert "api_key" not in comp.model_dump()
        assert comp.api_key.get_secret_value() == secret
        with pytest.raises(BackendError, match="401|api key"):
            compressor(server, api_key="wrong", window_size=20, backend_kwargs={"max_retries": 0}).compress_documents(
                docs, QUERY
            )


# ---------------------------------------------------------------------------------------------- token usage
class RunCollector(BaseTracer):
    """A LangSmith-style tracer: keeps every finished root run with its tree of child runs."""

    def __init__(self) -> None:
        super().__init__()
        self.roots: list[Run] = []

    def _persist_run(self, run: Run) -> None:
        self.roots.append(run)

    def find(self, run: Run, name: str) -> list[Run]:
        found = [run] if run.name == name else []
        return found + [r for child in run.child_runs for r in self.find(child, name)]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_each_window_is_a_child_llm_run_with_token_usage(server, docs, served_usage, mode):
    tracer = RunCollector()
    retriever = pipeline(server, docs, window_size=4, step=2, model="reasonrank-test")
    with get_usage_metadata_callback() as usage_callback:
        if mode == "sync":
            retriever.invoke(QUERY, config={"callbacks": [tracer]})
        else:
            await retriever.ainvoke(QUERY, config={"callbacks": [tracer]})
    served = served_usage(server)
    assert usage_callback.usage_metadata == {
        "reasonrank-test": {
            "input_tokens": served["prompt_tokens"],
            "output_tokens": served["completion_tokens"],
            "total_tokens": served["prompt_tokens"] + served["completion_tokens"],
        }
    }
    (root,) = tracer.roots
    (chain,) = tracer.find(root, "ReasonRankCompressor")
    llm_runs = [r for r in chain.child_runs if r.run_type == "llm"]
    assert len(llm_runs) == served["calls"] == len(server.chat_requests) == 3
    assert all(r.name == "ReasonRankCompressor.window" and r.error is None for r in llm_runs)
    assert sum(r.outputs["llm_output"]["token_usage"]["prompt_tokens"] for r in llm_runs) == served["prompt_tokens"]
    assert {r.extra["metadata"]["ls_model_name"] for r in llm_runs} == {"reasonrank-test"}
    assert chain.outputs["usage"]["completion_tokens"] == served["completion_tokens"]
    assert chain.outputs["complete"] is True and chain.outputs["calls"] == 3


def test_failed_window_is_an_errored_llm_run_and_the_rerank_is_incomplete(docs):
    def respond(query: str, passages: list[str], order: list[int]) -> object:
        return Completion(error="model fell over") if "Cats sleep" in " ".join(passages) else format_answer(order)

    core = Reranker(backend=FunctionBackend(respond=respond), window_size=4, step=2, on_error="keep")
    tracer = RunCollector()
    out = ReasonRankCompressor(reranker=core, top_n=None).compress_documents(docs, QUERY, callbacks=[tracer])
    assert sorted(d.id for d in out) == sorted(d.id for d in docs)  # nothing lost
    (chain,) = tracer.roots
    assert chain.outputs["complete"] is False and chain.outputs["usage"]["failed_calls"] == 1
    errored = [r for r in chain.child_runs if r.error]
    assert len(errored) == 1 and "model fell over" in errored[0].error


# ---------------------------------------------------------------------------------------------- example
def test_example_runs_against_a_server(server, capsys):
    spec = importlib.util.spec_from_file_location("langchain_rag_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(["--base-url", server.base_url, "--model", "reasonrank-test", "--top-n", "3"])
    printed = capsys.readouterr().out
    assert len(out) == 3 and "BM25 first stage" in printed and "ReasonRank top 3" in printed
    first = module.BM25Retriever(documents=module.DOCS).invoke(module.QUERY)
    titled = [f"Title: {d.metadata['title']} Content: {d.page_content}" for d in first]
    assert [d.id for d in out] == [first[i].id for i in lexical_ranking(module.QUERY, titled)][:3]
    assert all(d.metadata["reasonrank_reasoning"] for d in out)
    assert all(d.id in printed for d in out)
