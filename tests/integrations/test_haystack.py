"""ReasonRankRanker in real Haystack 3 pipelines, against the local RankingServer (lexical ranking)."""

from __future__ import annotations

import contextlib
import contextvars
import copy
import importlib.util
import inspect
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

haystack = pytest.importorskip("haystack")

from haystack import Document, Pipeline, tracing  # noqa: E402
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever  # noqa: E402
from haystack.dataclasses import ByteStream  # noqa: E402
from haystack.document_stores.in_memory import InMemoryDocumentStore  # noqa: E402
from haystack.utils import Secret  # noqa: E402

import reasonrank.integrations.adapter as common  # noqa: E402
from haystack_integrations.components.rankers.reasonrank import ReasonRankRanker  # noqa: E402
from reasonrank import Reranker  # noqa: E402
from reasonrank.core.types import BackendError  # noqa: E402
from reasonrank.integrations.haystack import ReasonRankRanker as ReExported  # noqa: E402
from reasonrank.testing import (  # noqa: E402
    Fault,
    FunctionBackend,
    RankingServer,
    lexical_ranking,
    parse_window_prompt,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "haystack_rag.py"
QUERY = "bees collect nectar from flowers to make honey"
# Distinct word overlaps with QUERY (8 down to 1), written in a scrambled order, so the lexical
# ranking is unique whatever the window schedule.
TEXTS = [
    "Honey honey honey: bees love honey.",  # 2
    "Bees collect nectar from flowers to feed the hive.",  # 6
    "Store honey in a cool dry place.",  # 1
    # 8, but long: BM25 ranks it second
    "In summer, bees collect nectar from many flowers, fly it back to the hive in a second stomach and slowly "
    "make it into honey over several days of work.",
    "Flowers produce nectar to attract insects.",  # 3
    "Worker bees collect nectar from flowers and make it into honey.",  # 7
    "Honey is made from nectar by bees.",  # 4
    "Bees visit flowers to collect pollen and make wax.",  # 5
]
SETTINGS = dict(model="reasonrank-test", window_size=5, step=2, backend_kwargs={"truncation": "words"})


@pytest.fixture(scope="module")
def server():
    with RankingServer() as srv:
        yield srv


@pytest.fixture()
def srv(server):
    server.reset_stats()
    server.faults.clear()
    return server


@pytest.fixture()
def store():
    store = InMemoryDocumentStore()
    store.write_documents([Document(content=t, meta={"n": i}) for i, t in enumerate(TEXTS)])
    return store


def make(srv: RankingServer, **kw) -> ReasonRankRanker:
    return ReasonRankRanker(**{**SETTINGS, "base_url": srv.base_url, **kw})


def pipeline(store: InMemoryDocumentStore, ranker: ReasonRankRanker) -> Pipeline:
    p = Pipeline()
    p.add_component("retriever", InMemoryBM25Retriever(document_store=store, top_k=8))
    p.add_component("ranker", ranker)
    p.connect("retriever.documents", "ranker.documents")
    return p


def pipeline_input(query: str = QUERY) -> dict:
    return {"retriever": {"query": query}, "ranker": {"query": query}}


def lexical(docs: list[Document]) -> list[str]:
    return [docs[i].id for i in lexical_ranking(QUERY, [d.content for d in docs])]


def check_ranked(retrieved: list[Document], ranked: list[Document], top_k: int) -> None:
    assert [d.id for d in ranked] == lexical(retrieved)[:top_k]
    scores = [d.score for d in ranked]
    assert all(a > b for a, b in zip(scores, scores[1:]))
    by_id = {d.id: d for d in retrieved}
    for rank, doc in enumerate(ranked):
        original = by_id[doc.id]
        assert doc.content == original.content
        assert doc.meta["n"] == original.meta["n"]
        assert doc.meta["retrieval_score"] == original.score
        assert doc.meta["reasonrank_rank"] == rank


# ---------------------------------------------------------------------------- pipelines
def test_pipeline_run_ranks_like_the_server_and_keeps_the_store_intact(srv, store):
    before = copy.deepcopy(store.filter_documents())
    out = pipeline(store, make(srv, top_k=5)).run(pipeline_input(), include_outputs_from={"retriever"})
    retrieved, ranked = out["retriever"]["documents"], out["ranker"]["documents"]
    assert len(retrieved) == 8 and len(ranked) == 5
    assert [d.id for d in retrieved] != lexical(retrieved)  # the reranker changed the order
    check_ranked(retrieved, ranked, 5)
    assert [d.content for d in ranked] == [TEXTS[i] for i in (3, 5, 1, 7, 6)]
    assert len(srv.chat_requests) > 1  # several windows
    assert store.filter_documents() == before
    assert all(d.score is not None and "retrieval_score" not in d.meta for d in retrieved)


async def test_pipeline_run_async_awaits_arerank(srv, store, monkeypatch):
    ranker = make(srv, top_k=4)
    ranker.warm_up()

    def no_sync(*args, **kwargs):
        raise AssertionError("run_async must not call the sync rerank")

    monkeypatch.setattr(ranker.reranker, "rerank", no_sync)
    out = await pipeline(store, ranker).run_async(pipeline_input(), include_outputs_from={"retriever"})
    check_ranked(out["retriever"]["documents"], out["ranker"]["documents"], 4)


def test_run_async_is_a_native_coroutine_with_the_same_signature():
    import inspect

    assert inspect.iscoroutinefunction(ReasonRankRanker.run_async)
    assert list(inspect.signature(ReasonRankRanker.run).parameters) == list(
        inspect.signature(ReasonRankRanker.run_async).parameters
    )
    assert ReExported is ReasonRankRanker


def test_warm_up_builds_the_reranker_once(srv, store, monkeypatch):
    built = []

    class Counting(Reranker):
        @classmethod
        def from_config(cls, config):
            built.append(config)
            return super().from_config(config)

    monkeypatch.setattr(common, "Reranker", Counting)
    ranker = make(srv, top_k=3)
    assert built == []  # __init__ is cheap
    ranker.warm_up()
    ranker.warm_up()
    backend = ranker.reranker.backend
    p = pipeline(store, ranker)
    first = p.run(pipeline_input())["ranker"]["documents"]
    second = p.run(pipeline_input())["ranker"]["documents"]
    ranker.run(query=QUERY, documents=first)
    assert len(built) == 1 and ranker.reranker.backend is backend
    assert [d.id for d in first] == [d.id for d in second]
    assert built[0].window_size == 5 and built[0].backend_kwargs == {"truncation": "words"}

    ranker.close()  # releases the backend; the next run builds again
    ranker.run(query=QUERY, documents=first)
    assert len(built) == 2


def test_standalone_run_builds_lazily_and_top_k_overrides(srv, store):
    docs = store.filter_documents()
    ranker = make(srv)
    out = ranker.run(query=QUERY, documents=docs, top_k=2)["documents"]
    assert [d.id for d in out] == lexical(docs)[:2]
    assert len(ranker.run(query=QUERY, documents=docs)["documents"]) == 8  # default top_k=10 > 8
    assert len(make(srv, top_k=None).run(query=QUERY, documents=docs)["documents"]) == 8


# ---------------------------------------------------------------------------- edge cases
def test_window_size_minus_step_documents_are_ranked(srv):
    docs = [Document(content=t) for t in TEXTS[:3]]  # 3 == window_size 5 - step 2
    out = make(srv).run(query=QUERY, documents=docs)["documents"]
    assert [d.id for d in out] == lexical(docs)


@pytest.mark.parametrize("query", ["", "   ", None])
def test_empty_query_raises(srv, query):
    with pytest.raises(ValueError, match="query"):
        make(srv).run(query=query, documents=[Document(content="a"), Document(content="b")])


@pytest.mark.parametrize("top_k", [0, -1, True])
def test_bad_top_k_raises_at_init_and_run(srv, top_k):
    with pytest.raises(ValueError, match="top_k"):
        make(srv, top_k=top_k)
    with pytest.raises(ValueError, match="top_k"):
        make(srv).run(query=QUERY, documents=[Document(content="a")], top_k=top_k)


async def test_run_async_checks_inputs_too(srv):
    with pytest.raises(ValueError, match="query"):
        await make(srv).run_async(query=" ", documents=[])
    with pytest.raises(ValueError, match="top_k"):
        await make(srv).run_async(query=QUERY, documents=[], top_k=0)
    one = Document(content="honey", score=0.5)
    assert (await make(srv).run_async(query=QUERY, documents=[one]))["documents"][0].score == 1.0


def test_zero_and_one_document_need_no_model(srv):
    ranker = make(srv)
    empty = {"calls": 0, "cached_calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "failed_calls": 0,
             "skipped_windows": 0, "total_tokens": 0}  # fmt: skip
    assert ranker.run(query=QUERY, documents=[]) == {
        "documents": [],
        "meta": {"usage": empty, "complete": True, "calls": 0},
    }
    one = Document(content="bees", score=3.5, meta={"k": "v"})
    (out,) = ranker.run(query=QUERY, documents=[one])["documents"]
    assert srv.chat_requests == [] and not ranker._core.built
    assert out.id == one.id and out.content == "bees" and out.score == 1.0
    assert out.meta == {"k": "v", "retrieval_score": 3.5, "reasonrank_rank": 0}
    assert one.score == 3.5 and one.meta == {"k": "v"}


def test_duplicate_ids_are_kept_and_no_score_means_no_retrieval_score(srv):
    docs = [Document(id="same", content="store honey"), Document(id="same", content="bees make honey from nectar")]
    out = make(srv).run(query=QUERY, documents=docs)["documents"]
    assert [d.content for d in out] == ["bees make honey from nectar", "store honey"]
    assert [d.id for d in out] == ["same", "same"]
    assert all("retrieval_score" not in d.meta for d in out)


def test_documents_without_text_are_ranked_last(srv):
    docs = [
        Document(blob=ByteStream(b"\x89PNG"), score=9.0),
        Document(content="store honey"),
        Document(content="   "),
        Document(content="bees collect nectar from flowers"),
    ]
    out = make(srv).run(query=QUERY, documents=docs)["documents"]
    assert [d.id for d in out] == [docs[3].id, docs[1].id, docs[0].id, docs[2].id]
    assert out[2].blob == docs[0].blob and out[2].meta["retrieval_score"] == 9.0
    assert all(a.score > b.score for a, b in zip(out, out[1:]))
    (request,) = srv.chat_requests  # one window with the two documents that have text
    assert len(parse_window_prompt(request["messages"])[1]) == 2
    # one text document (+ one without): no LLM call
    srv.reset_stats()
    out = make(srv).run(query=QUERY, documents=docs[:2])["documents"]
    assert [d.id for d in out] == [docs[1].id, docs[0].id] and srv.chat_requests == []


def test_non_documents_are_rejected(srv):
    with pytest.raises(TypeError, match="documents\\[1\\]"):
        make(srv).run(query=QUERY, documents=[Document(content="a"), "b"])


def test_meta_fields_to_embed_are_read_by_the_model(srv):
    docs = [
        Document(content="A short note.", meta={"title": "Storage"}),
        Document(content="Another short note.", meta={"title": "How bees make honey from nectar"}),
    ]
    out = make(srv, meta_fields_to_embed=["title"], embedding_separator=" | ").run(query=QUERY, documents=docs)
    assert [d.id for d in out["documents"]] == [docs[1].id, docs[0].id]
    assert "How bees make honey from nectar | Another short note." in srv.chat_requests[0]["messages"][-1]["content"]
    assert out["documents"][0].content == "Another short note."  # the text sent is not written back


def test_include_reasoning(srv, store):
    docs = store.filter_documents()
    out = make(srv, include_reasoning=True, top_k=3).run(query=QUERY, documents=docs)["documents"]
    assert all(d.meta["reasonrank_reasoning"] == srv.reasoning for d in out)
    plain = make(srv, top_k=3).run(query=QUERY, documents=docs)["documents"]
    assert all("reasonrank_reasoning" not in d.meta for d in plain)


def test_malformed_answers_keep_every_document_and_errors_raise(srv, store):
    docs = store.filter_documents()
    ranker = make(srv, window_size=8, top_k=None)
    srv.faults.append(Fault("text", text="I cannot decide."))
    out = ranker.run(query=QUERY, documents=docs)["documents"]
    assert sorted(d.id for d in out) == sorted(d.id for d in docs)
    srv.faults.append(Fault("status", status=400))
    with pytest.raises(BackendError):
        ranker.run(query=QUERY, documents=docs)


def test_api_key_secret_from_the_environment_reaches_the_server(monkeypatch):
    monkeypatch.setenv("REASONRANK_API_KEY", "sk-test-secret")
    docs = [Document(content="store honey"), Document(content="bees make honey")]
    with RankingServer(api_key="sk-test-secret") as secured:
        out = ReasonRankRanker(**SETTINGS, base_url=secured.base_url).run(query=QUERY, documents=docs)
        assert out["documents"][0].content == "bees make honey"
        token = ReasonRankRanker(**SETTINGS, base_url=secured.base_url, api_key=Secret.from_token("sk-test-secret"))
        assert token.run(query=QUERY, documents=docs)["documents"][0].content == "bees make honey"


def test_default_key_is_not_passed_to_local_backends(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-unrelated")
    ranker = ReasonRankRanker(model="some/local-model", backend="transformers")
    assert ranker.reranker.backend_name == "transformers"  # Reranker() would reject an api_key here


# ---------------------------------------------------------------------------- serialization
def test_to_dict_holds_env_var_names_never_the_key(srv, monkeypatch):
    monkeypatch.setenv("REASONRANK_API_KEY", "sk-very-secret")
    ranker = make(srv, top_k=3, include_reasoning=True, meta_fields_to_embed=["title"])
    data = ranker.to_dict()
    assert data["type"] == "haystack_integrations.components.rankers.reasonrank.ranker.ReasonRankRanker"
    assert data["init_parameters"]["api_key"] == {
        "type": "env_var",
        "env_vars": ["REASONRANK_API_KEY"],  # never OPENAI_API_KEY: another service's key
        "strict": False,
    }
    assert "sk-very-secret" not in repr(data)
    again = ReasonRankRanker.from_dict(data)
    assert again.to_dict() == data and again.top_k == 3 and again.backend_kwargs == {"truncation": "words"}


def test_token_secret_and_ready_reranker_do_not_serialize(srv, store):
    token = make(srv, api_key=Secret.from_token("sk-token"))
    with pytest.raises(ValueError, match="token"):
        token.to_dict()
    with pytest.raises(ValueError, match="token"):
        pipeline(store, token).dumps()
    rr = Reranker("reasonrank-test", base_url=srv.base_url, truncation="words")
    ready = ReasonRankRanker(reranker=rr)
    with pytest.raises(ValueError, match="cannot be serialized"):
        ready.to_dict()
    out = ready.run(query=QUERY, documents=store.filter_documents())["documents"]
    assert [d.id for d in out] == lexical(store.filter_documents())[:8]
    with pytest.raises(ValueError, match="not both"):
        ReasonRankRanker(reranker=Reranker("x", base_url=srv.base_url), window_size=4)
    ready.close()  # the caller's reranker is not closed or replaced
    assert ready.reranker is rr


def test_pipeline_dumps_loads_round_trip_under_the_default_allowlist(srv, store, monkeypatch):
    monkeypatch.delenv("HAYSTACK_DESERIALIZATION_ALLOWLIST", raising=False)
    original = pipeline(store, make(srv, top_k=4))
    first = original.run(pipeline_input())["ranker"]["documents"]
    text = original.dumps()
    assert "haystack_integrations.components.rankers.reasonrank.ranker.ReasonRankRanker" in text
    loaded = Pipeline.loads(text)  # no allowed_modules, no unsafe=True
    ranker = loaded.get_component("ranker")
    assert isinstance(ranker, ReasonRankRanker) and ranker.to_dict() == original.get_component("ranker").to_dict()
    second = loaded.run(pipeline_input())["ranker"]["documents"]
    assert [d.id for d in second] == [d.id for d in first]
    assert loaded.dumps() == text


# ---------------------------------------------------------------------------- usage, tracing, deadline
class CollectedSpan(tracing.Span):
    def __init__(self, name: str, tags: dict[str, Any] | None, parent: CollectedSpan | None) -> None:
        self.name, self.tags, self.parent = name, dict(tags or {}), parent

    def set_tag(self, key: str, value: Any) -> None:
        self.tags[key] = value


class CollectingTracer(tracing.Tracer):
    """A real Haystack tracer: every span, its tags and its parent (the active span in a context variable)."""

    def __init__(self) -> None:
        self.spans: list[CollectedSpan] = []
        self._current: contextvars.ContextVar[CollectedSpan | None] = contextvars.ContextVar("span", default=None)

    @contextlib.contextmanager
    def trace(self, operation_name: str, tags: dict[str, Any] | None = None, parent_span: Any = None):
        span = CollectedSpan(operation_name, tags, parent_span or self._current.get())
        self.spans.append(span)
        token = self._current.set(span)
        try:
            yield span
        finally:
            self._current.reset(token)

    def current_span(self) -> CollectedSpan | None:
        return self._current.get()

    def named(self, name: str) -> list[CollectedSpan]:
        return [s for s in self.spans if s.name == name]


@pytest.fixture()
def tracer():
    collecting = CollectingTracer()
    tracing.enable_tracing(collecting)
    try:
        yield collecting
    finally:
        tracing.disable_tracing()


def check_usage_traced(srv: RankingServer, tracer: CollectingTracer, meta: dict, served: dict) -> None:
    """The meta output and the spans hold the tokens the server reported, one child span per model call."""
    usage = meta["usage"]
    assert meta["complete"] is True and meta["calls"] == served["calls"] == len(srv.chat_requests) > 1
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (
        served["prompt_tokens"],
        served["completion_tokens"],
    )
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    (component,) = [s for s in tracer.named("haystack.component.run") if "reasonrank.calls" in s.tags]
    assert component.tags["haystack.component.name"] == "ranker"
    assert component.tags["reasonrank.usage.prompt_tokens"] == usage["prompt_tokens"]
    assert component.tags["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert component.tags["reasonrank.complete"] is True
    windows = tracer.named("reasonrank.window")
    assert len(windows) == meta["calls"] and all(w.parent is component for w in windows)
    assert sum(w.tags["gen_ai.usage.input_tokens"] for w in windows) == usage["prompt_tokens"]
    assert {w.tags["gen_ai.request.model"] for w in windows} == {"reasonrank-test"}


def test_usage_in_meta_and_tracing_spans(srv, store, tracer, served_usage):
    out = pipeline(store, make(srv, top_k=3)).run(pipeline_input())
    assert len(out["ranker"]["documents"]) == 3
    check_usage_traced(srv, tracer, out["ranker"]["meta"], served_usage(srv))


async def test_usage_traced_in_async_pipelines(srv, store, tracer, served_usage):
    out = await pipeline(store, make(srv, top_k=3)).run_async(pipeline_input())
    check_usage_traced(srv, tracer, out["ranker"]["meta"], served_usage(srv))


def test_failed_window_is_reported_incomplete(srv, tracer):
    docs = [Document(content=t) for t in TEXTS]
    srv.faults.append(Fault("status", status=400))
    alone = Pipeline()  # the component's tracing span comes from the pipeline
    alone.add_component("ranker", make(srv, on_error="keep"))
    out = alone.run({"ranker": {"query": QUERY, "documents": docs}})["ranker"]
    assert out["meta"]["complete"] is False and out["meta"]["usage"]["failed_calls"] == 1
    assert sorted(d.id for d in out["documents"]) == sorted(d.id for d in docs)  # nothing lost
    statuses = [w.tags["reasonrank.status"] for w in tracer.named("reasonrank.window")]
    assert statuses.count("failed") == 1 and "reasonrank.error" in tracer.named("reasonrank.window")[0].tags


@pytest.mark.skipif("deadline" not in inspect.signature(Reranker.rerank).parameters, reason="core lacks deadline")
async def test_deadline_per_run_returns_the_order_so_far():
    docs = [Document(content=t) for t in TEXTS]
    ranker = ReasonRankRanker(reranker=Reranker(backend=FunctionBackend(latency=0.1), window_size=3, step=1))
    assert "deadline" in inspect.signature(ReasonRankRanker.run_async).parameters
    cut = ranker.run(query=QUERY, documents=docs, top_k=None, deadline=0.01)
    assert cut["meta"]["complete"] is False and cut["meta"]["usage"]["skipped_windows"] > 0
    assert sorted(d.id for d in cut["documents"]) == sorted(d.id for d in docs)
    full = await ranker.run_async(query=QUERY, documents=docs, top_k=None)
    assert full["meta"]["complete"] is True and full["meta"]["usage"]["skipped_windows"] == 0
    core = Reranker(backend=FunctionBackend(), window_size=3, step=1).rerank(QUERY, TEXTS)
    assert [d.id for d in full["documents"]] == [docs[i].id for i in core.order]
    with pytest.raises(ValueError, match="deadline"):
        ranker.run(query=QUERY, documents=docs, deadline=-1)


# ---------------------------------------------------------------------------- example
def test_example_runs_against_a_server(srv, capsys):
    spec = importlib.util.spec_from_file_location("haystack_rag_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ranked = module.main(["--base-url", srv.base_url, "--model", "reasonrank-test", "--top-k", "2"])
    printed = capsys.readouterr().out
    assert len(ranked) == 2 and ranked[0].score > ranked[1].score
    assert "ReasonRank top 2" in printed and ranked[0].content in printed
    assert srv.chat_requests
