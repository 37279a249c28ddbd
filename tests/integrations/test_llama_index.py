"""ReasonRankRerank against real LlamaIndex machinery and a real OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import copy
import json
import pickle
import runpy
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import VectorStoreIndex  # noqa: E402
from llama_index.core.callbacks import (  # noqa: E402
    CallbackManager,
    CBEventType,
    EventPayload,
    LlamaDebugHandler,
    TokenCountingHandler,
)
from llama_index.core.embeddings import MockEmbedding  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # noqa: E402
from llama_index.core.instrumentation.event_handlers import BaseEventHandler  # noqa: E402
from llama_index.core.instrumentation.events import BaseEvent  # noqa: E402
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMChatStartEvent  # noqa: E402
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent  # noqa: E402
from llama_index.core.instrumentation.span_handlers import SimpleSpanHandler  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.postprocessor.types import BaseNodePostprocessor  # noqa: E402
from llama_index.core.query_engine import RetrieverQueryEngine  # noqa: E402
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode  # noqa: E402

from reasonrank import Reranker  # noqa: E402
from reasonrank.core.types import Completion  # noqa: E402
from reasonrank.integrations.llama_index import ReasonRankRerank  # noqa: E402
from reasonrank.testing import FunctionBackend, RankingServer, format_answer, lexical_ranking  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llama_index_rag.py"

QUERY = "how do bees make honey from nectar"
# Distinct word overlaps with QUERY (5, 1, 2, 0, 4, 3), so the server's ranking has no ties.
TEXTS = [
    "bees make honey from nectar",
    "honey is sweet",
    "bees collect nectar",
    "the weather today",
    "how bees make honey",
    "nectar from flowers feeds bees",
]
EXPECTED = [TEXTS[i] for i in lexical_ranking(QUERY, TEXTS)]


@pytest.fixture
def server():
    with RankingServer(reasoning="Passage overlap decides.") as s:
        yield s


class Capture(BaseEventHandler):
    """A real instrumentation event handler keeping the events of the given kinds."""

    kinds: tuple[type, ...] = (BaseEvent,)
    seen: list[Any] = []

    @classmethod
    def class_name(cls) -> str:
        return "Capture"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, self.kinds):
            self.seen.append(event)


@pytest.fixture
def traced():
    """Every instrumentation event and span seen by the root dispatcher during the test."""
    events, spans, root = Capture(), SimpleSpanHandler(), get_dispatcher()
    root.add_event_handler(events)
    root.add_span_handler(spans)
    try:
        yield events.seen, spans
    finally:
        root.event_handlers.remove(events)
        root.span_handlers.remove(spans)


@pytest.fixture
def events():
    """The ReRank instrumentation events seen by the root dispatcher during the test."""
    capture, root = Capture(kinds=(ReRankStartEvent, ReRankEndEvent)), get_dispatcher()
    root.add_event_handler(capture)
    try:
        yield capture.seen
    finally:
        root.event_handlers.remove(capture)


def make_nodes(texts=TEXTS, scores=None) -> list[NodeWithScore]:
    scores = scores if scores is not None else [round(0.9 - 0.1 * i, 2) for i in range(len(texts))]
    return [
        NodeWithScore(
            node=TextNode(text=t, id_=f"n{i}", metadata={"doc": i}, excluded_embed_metadata_keys=["doc"]), score=s
        )
        for i, (t, s) in enumerate(zip(texts, scores))
    ]


def rerank_for(server: RankingServer, **kw: Any) -> ReasonRankRerank:
    return ReasonRankRerank(model="reasonrank-test", base_url=server.base_url, **kw)


def texts(nodes) -> list[str]:
    return [n.node.get_content() for n in nodes]


def assert_decreasing(nodes) -> None:
    scores = [n.score for n in nodes]
    assert all(a > b for a, b in zip(scores, scores[1:])), scores


# ---------------------------------------------------------------------------- ranking, sync and async
def test_postprocess_nodes_ranks_like_the_server(server):
    rr = rerank_for(server, top_n=4)
    nodes = make_nodes()
    out = rr.postprocess_nodes(nodes, query_bundle=QueryBundle(QUERY))
    assert texts(out) == EXPECTED[:4]
    assert_decreasing(out)
    assert [n.score for n in out] == [1.0, 1 / 2, 1 / 3, 1 / 4]
    by_text = {n.node.get_content(): n.score for n in nodes}
    assert [n.node.metadata["retrieval_score"] for n in out] == [by_text[t] for t in EXPECTED[:4]]
    assert len(server.chat_requests) == 1


async def test_apostprocess_nodes_is_native_async(server):
    assert ReasonRankRerank._apostprocess_nodes is not BaseNodePostprocessor._apostprocess_nodes
    rr = rerank_for(server, top_n=None)

    def no_sync(*a, **k):
        raise AssertionError("the async path must not call the sync rerank")

    rr.reranker.rerank = no_sync
    out = await rr.apostprocess_nodes(make_nodes(), query_str=QUERY)
    assert texts(out) == EXPECTED
    assert_decreasing(out)


def test_sliding_windows_match_the_core(server):
    """Several windows: the adapter returns exactly the core's order, mapped back onto the nodes."""
    nodes = make_nodes()
    core = Reranker(backend=FunctionBackend(), window_size=3, step=1).rerank(QUERY, texts(nodes))
    out = rerank_for(server, top_n=None, window_size=3, step=1).postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in out] == [nodes[i].node.node_id for i in core.order]
    assert len(server.chat_requests) == 4


# ---------------------------------------------------------------------------- a real query engine
def make_engine(rr: ReasonRankRerank, **kw: Any) -> RetrieverQueryEngine:
    index = VectorStoreIndex(
        [TextNode(text=t, id_=f"n{i}") for i, t in enumerate(TEXTS)], embed_model=MockEmbedding(embed_dim=8)
    )
    retriever = index.as_retriever(similarity_top_k=len(TEXTS))
    return RetrieverQueryEngine.from_args(retriever, llm=MockLLM(), node_postprocessors=[rr], **kw)


def test_query_engine_uses_the_reranked_nodes(server):
    debug = LlamaDebugHandler()
    engine = make_engine(rerank_for(server, top_n=3), callback_manager=CallbackManager([debug]))
    response = engine.query(QUERY)
    assert texts(response.source_nodes) == EXPECTED[:3]
    assert_decreasing(response.source_nodes)
    # the synthesizer's prompt (MockLLM echoes it) holds the reranked context, without our metadata
    prompt = str(response)
    assert prompt.index(EXPECTED[0]) < prompt.index(EXPECTED[1]) < prompt.index(EXPECTED[2])
    assert "retrieval_score" not in prompt
    # the legacy callback manager saw one RERANKING start/end pair
    (pair,) = debug.get_event_pairs(CBEventType.RERANKING)
    assert pair[0].payload[EventPayload.TOP_K] == 3
    assert pair[0].payload[EventPayload.QUERY_STR] == QUERY
    assert texts(pair[1].payload[EventPayload.NODES]) == EXPECTED[:3]


async def test_async_query_engine(server):
    response = await make_engine(rerank_for(server, top_n=2)).aquery(QUERY)
    assert texts(response.source_nodes) == EXPECTED[:2]


# ---------------------------------------------------------------------------- events
def test_instrumentation_events(server, events):
    rr = rerank_for(server, top_n=None)
    nodes = make_nodes()
    out = rr.postprocess_nodes(nodes, query_str=QUERY)
    start, end = events
    assert isinstance(start, ReRankStartEvent) and isinstance(end, ReRankEndEvent)
    assert start.top_n == len(nodes)  # top_n=None is reported as an int
    assert start.model_name == "reasonrank-test"
    assert start.query.query_str == QUERY
    assert texts(start.nodes) == TEXTS
    assert end.nodes == out


async def test_async_events_and_top_n(server, events):
    await rerank_for(server, top_n=2).apostprocess_nodes(make_nodes(), query_str=QUERY)
    assert [type(e) for e in events] == [ReRankStartEvent, ReRankEndEvent]
    assert events[0].top_n == 2 and texts(events[1].nodes) == EXPECTED[:2]


def test_events_name_a_ready_rerankers_model(events):
    rr = ReasonRankRerank(reranker=Reranker(backend=FunctionBackend(name="fn")))
    rr.postprocess_nodes(make_nodes(), query_str=QUERY)
    assert events[0].model_name == "fn"


# ---------------------------------------------------------------------------- model calls and token usage
def of_type(events: list[Any], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_each_model_call_is_an_llm_event_with_token_counts(server, traced, served_usage, mode):
    events, spans = traced
    counter = TokenCountingHandler(tokenizer=str.split)
    rr = rerank_for(server, top_n=2, window_size=3, step=1, callback_manager=CallbackManager([counter]))
    if mode == "sync":
        rr.postprocess_nodes(make_nodes(), query_str=QUERY)
    else:
        await rr.apostprocess_nodes(make_nodes(), query_str=QUERY)
    served = served_usage(server)
    starts, ends = of_type(events, LLMChatStartEvent), of_type(events, LLMChatEndEvent)
    assert len(starts) == len(ends) == served["calls"] == len(server.chat_requests) == 4
    assert [s.span_id for s in starts] == [e.span_id for e in ends] and len({s.span_id for s in starts}) == 4
    assert sum(e.response.additional_kwargs["prompt_tokens"] for e in ends) == served["prompt_tokens"]
    assert sum(e.response.raw["usage"]["completion_tokens"] for e in ends) == served["completion_tokens"]
    assert all(e.response.message.content.startswith("<think>") for e in ends)
    assert {s.model_dict["model"] for s in starts} == {"reasonrank-test"}
    # each call is its own span, a child of the postprocess span
    window_spans = [s for s in spans.completed_spans if s.id_.startswith("ReasonRankRerank._model_call")]
    assert {s.id_ for s in window_spans} == {s.span_id for s in starts}
    (parent,) = {s.parent_id for s in window_spans}
    assert parent.startswith(("ReasonRankRerank._postprocess_nodes", "ReasonRankRerank._apostprocess_nodes"))
    (end,) = of_type(events, ReRankEndEvent)
    assert end.tags["reasonrank.complete"] is True
    assert end.tags["reasonrank.usage"]["prompt_tokens"] == served["prompt_tokens"]
    # the legacy callback manager's token counter sees the same tokens
    assert counter.prompt_llm_token_count == served["prompt_tokens"]
    assert counter.completion_llm_token_count == served["completion_tokens"]


def test_failed_window_is_an_llm_event_and_the_rerank_is_incomplete(traced):
    events, _ = traced

    def respond(query: str, passages: list[str], order: list[int]) -> Any:
        return Completion(error="model fell over") if "weather" in " ".join(passages) else format_answer(order)

    core = Reranker(backend=FunctionBackend(respond=respond, name="fn"), window_size=3, step=1, on_error="keep")
    out = ReasonRankRerank(reranker=core, top_n=None).postprocess_nodes(make_nodes(), query_str=QUERY)
    assert sorted(n.node.node_id for n in out) == sorted(n.node.node_id for n in make_nodes())
    (end,) = of_type(events, ReRankEndEvent)
    assert end.tags["reasonrank.complete"] is False and end.tags["reasonrank.usage"]["failed_calls"] >= 1
    failed = [e for e in of_type(events, LLMChatEndEvent) if e.response.raw["error"]]
    assert failed and all(e.response.raw["status"] == "failed" for e in failed)


# ---------------------------------------------------------------------------- copies, metadata
def test_inputs_are_not_mutated(server):
    nodes = make_nodes()
    before = [n.model_dump() for n in nodes]
    out = rerank_for(server, include_reasoning=True).postprocess_nodes(nodes, query_str=QUERY)
    assert [n.model_dump() for n in nodes] == before
    originals = {id(n) for n in nodes} | {id(n.node) for n in nodes} | {id(n.node.metadata) for n in nodes}
    assert not originals & ({id(n) for n in out} | {id(n.node) for n in out} | {id(n.node.metadata) for n in out})
    # the copies keep identity and everything else of their node
    src = {n.node.node_id: n.node for n in nodes}
    for n in out:
        assert n.node.text == src[n.node.node_id].text
        assert n.node.metadata["doc"] == src[n.node.node_id].metadata["doc"]


def test_metadata_keys_stay_out_of_llm_and_embed_text(server):
    out = rerank_for(server, include_reasoning=True).postprocess_nodes(make_nodes(), query_str=QUERY)
    for n in out:
        assert n.node.metadata["reasonrank_reasoning"] == "Passage overlap decides."
        assert "retrieval_score" in n.node.metadata
        for mode in (MetadataMode.LLM, MetadataMode.EMBED):
            text = n.node.get_content(metadata_mode=mode)
            assert "retrieval_score" not in text and "Passage overlap" not in text
        assert "doc: " in n.node.get_content(metadata_mode=MetadataMode.LLM)  # the node's own keys unchanged
        assert n.node.excluded_embed_metadata_keys[0] == "doc"


def test_no_reasoning_by_default_and_no_retrieval_score_without_one(server):
    nodes = make_nodes(scores=[None] * len(TEXTS))
    out = rerank_for(server).postprocess_nodes(nodes, query_str=QUERY)
    assert texts(out) == EXPECTED
    for n in out:
        assert "reasonrank_reasoning" not in n.node.metadata
        assert "retrieval_score" not in n.node.metadata


def test_metadata_mode_decides_the_text_ranked(server):
    """EMBED (default) leaves out excluded keys; ALL puts metadata in the passage."""
    nodes = [
        NodeWithScore(node=TextNode(text=t, metadata={"k": "v"}, excluded_embed_metadata_keys=["k"])) for t in TEXTS
    ]
    rerank_for(server).postprocess_nodes(nodes, query_str=QUERY)
    rerank_for(server, metadata_mode=MetadataMode.ALL).postprocess_nodes(nodes, query_str=QUERY)
    first, second = (r["messages"][-1]["content"] for r in server.chat_requests)
    assert "k: v" not in first and "k: v" in second


# ---------------------------------------------------------------------------- edge cases
async def test_no_nodes_returns_empty_without_touching_the_model(server):
    rr = rerank_for(server)
    assert rr.postprocess_nodes([], query_str=QUERY) == []
    assert await rr.apostprocess_nodes([], query_str=QUERY) == []
    assert server.requests == []


def test_bad_settings_fail_at_construction():
    with pytest.raises(ValueError, match="step"):
        ReasonRankRerank(window_size=5)  # the core's step 10 needs a wider window
    with pytest.raises(ValueError, match="depth"):
        ReasonRankRerank(depth=0)


async def test_one_node_needs_no_llm_call(server):
    rr = rerank_for(server)
    (node,) = make_nodes(TEXTS[:1])
    for out in (rr.postprocess_nodes([node], query_str=QUERY), await rr.apostprocess_nodes([node], query_str=QUERY)):
        assert len(out) == 1 and out[0].score == 1.0
        assert out[0].node is not node.node and out[0].node.metadata["retrieval_score"] == node.score
    assert server.chat_requests == []


def test_top_n_larger_than_input_returns_all(server):
    out = rerank_for(server, top_n=50).postprocess_nodes(make_nodes(), query_str=QUERY)
    assert texts(out) == EXPECTED


def test_duplicate_node_ids_are_kept(server):
    node = TextNode(text=TEXTS[0], id_="same")
    dup = [
        NodeWithScore(node=node, score=0.2),
        NodeWithScore(node=TextNode(text=TEXTS[1], id_="same"), score=0.5),
        NodeWithScore(node=node, score=0.1),
    ]
    out = rerank_for(server, top_n=None).postprocess_nodes(dup, query_str=QUERY)
    assert [n.node.node_id for n in out] == ["same"] * 3
    # ranked by position: equal texts keep input order, so the two copies keep their own retrieval scores
    assert [(n.node.get_content(), n.node.metadata["retrieval_score"]) for n in out] == [
        (TEXTS[0], 0.2),
        (TEXTS[0], 0.1),
        (TEXTS[1], 0.5),
    ]


@pytest.mark.parametrize("top_n", [0, -3, 2.5, True])
def test_bad_top_n_fails_at_construction(top_n):
    with pytest.raises(ValueError, match="top_n"):
        ReasonRankRerank(top_n=top_n)


def test_bad_top_n_set_later_fails_at_call(server):
    rr = rerank_for(server)
    rr.top_n = 0
    with pytest.raises(ValueError, match="top_n"):
        rr.postprocess_nodes(make_nodes(), query_str=QUERY)


@pytest.mark.parametrize("bundle", [None, QueryBundle(""), QueryBundle("   ")])
async def test_missing_or_empty_query_raises(server, bundle):
    rr = rerank_for(server)
    with pytest.raises(ValueError, match="query"):
        rr.postprocess_nodes(make_nodes(), query_bundle=bundle)
    with pytest.raises(ValueError, match="query"):
        await rr.apostprocess_nodes(make_nodes(), query_bundle=bundle)
    with pytest.raises(ValueError, match="query"):  # even for no nodes
        rr.postprocess_nodes([], query_bundle=bundle)
    assert server.chat_requests == []


def test_server_errors_propagate(server):
    from reasonrank.core.types import BackendError
    from reasonrank.testing import Fault

    server.faults.append(Fault("status", status=400))
    with pytest.raises(BackendError):
        rerank_for(server).postprocess_nodes(make_nodes(), query_str=QUERY)


# ---------------------------------------------------------------------------- built once
def test_model_is_built_once(server):
    rr = rerank_for(server)
    first = rr.reranker
    backend = first.backend
    for _ in range(3):
        rr.postprocess_nodes(make_nodes(), query_str=QUERY)
    assert rr.reranker is first and rr.reranker.backend is backend
    assert len(server.chat_requests) == 3


async def test_ready_reranker_is_reused(server):
    fn = FunctionBackend()
    core = Reranker(backend=fn)
    rr = ReasonRankRerank(reranker=core, top_n=2)
    rr.postprocess_nodes(make_nodes(), query_str=QUERY)
    out = await rr.apostprocess_nodes(make_nodes(), query_str=QUERY)
    assert texts(out) == EXPECTED[:2]
    assert rr.reranker is core and core.backend is fn and len(fn.calls) == 2


def test_reranker_and_settings_are_exclusive():
    with pytest.raises(ValueError, match="either"):
        ReasonRankRerank(reranker=Reranker(backend=FunctionBackend()), window_size=5)
    with pytest.raises(ValueError, match="reranker="):
        ReasonRankRerank(backend=FunctionBackend())


def test_settings_are_fixed_after_construction(server):
    rr = rerank_for(server)
    with pytest.raises(AttributeError, match="fixed at construction"):
        rr.window_size = 5
    rr.top_n = 2  # per-call options stay settable
    rr.include_reasoning = True
    out = rr.postprocess_nodes(make_nodes(), query_str=QUERY)
    assert len(out) == 2 and "reasonrank_reasoning" in out[0].node.metadata


def test_settings_reach_the_core(server):
    rr = rerank_for(
        server,
        window_size=4,
        step=2,
        depth=5,
        strategy="tournament",
        prompt_mode="direct",
        max_new_tokens=64,
        backend_kwargs={"max_retries": 0},
    )
    core = rr.reranker
    assert (core.window_size, core.step, core.depth, core.prompt_mode.value) == (4, 2, 5, "direct")
    assert core.sampling.max_new_tokens == 64
    assert type(core.strategy).__name__.lower().startswith("tournament")


# ---------------------------------------------------------------------------- serialization
def test_serialization_never_holds_the_api_key():
    with RankingServer(api_key="sekrit-123") as s:
        rr = rerank_for(s, api_key="sekrit-123", top_n=3, window_size=5, step=2)
        assert rr.postprocess_nodes(make_nodes(), query_str=QUERY)  # the key reaches the server
        data = rr.to_dict()
        assert data["class_name"] == ReasonRankRerank.class_name() == "ReasonRankRerank"
        assert "api_key" not in data
        for dumped in (json.dumps(data, default=str), rr.to_json(), repr(rr), str(rr)):
            assert "sekrit-123" not in dumped
        clone = ReasonRankRerank.from_json(rr.to_json())
        assert (clone.top_n, clone.window_size, clone.base_url, clone.api_key) == (3, 5, s.base_url, None)
        assert clone.to_dict() == data


def test_copies_and_pickling(server, caplog):
    rr = rerank_for(server, api_key="k", top_n=2, window_size=4, step=2)
    for twin in (copy.deepcopy(rr), rr.model_copy(deep=True), pickle.loads(pickle.dumps(rr))):
        assert (twin.top_n, twin.window_size, twin.api_key.get_secret_value()) == (2, 4, "k")
        assert twin.reranker is not rr.reranker  # built from the settings, not a copy of a loaded model
        assert texts(twin.postprocess_nodes(make_nodes(), query_str=QUERY)) == EXPECTED[:2]
    assert "unpickleable" not in caplog.text
    assert rr.reranker.backend is not None  # the original still works after pickling
    core = Reranker(backend=FunctionBackend())
    ready = ReasonRankRerank(reranker=core)
    assert copy.deepcopy(ready).reranker is core  # a ready reranker is shared
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(ready)
    assert ready.reranker is core


# ---------------------------------------------------------------------------- the example
def test_example_runs_against_a_server(server, capsys):
    module = runpy.run_path(str(EXAMPLE))
    out = module["main"](["--base-url", server.base_url, "--model", "reasonrank-test", "--embedder", "words"])
    printed = capsys.readouterr().out
    assert "ReasonRank top 3" in printed
    docs = module["DOCUMENTS"]
    retrieved = (
        VectorStoreIndex([TextNode(text=t) for _, t in docs], embed_model=module["WordHashEmbedding"]())
        .as_retriever(similarity_top_k=len(docs))
        .retrieve(module["QUERY"])
    )
    expected = [texts(retrieved)[i] for i in lexical_ranking(module["QUERY"], texts(retrieved))][:3]
    assert texts(out) == expected
    assert_decreasing(out)
    assert len(server.chat_requests) == 1
