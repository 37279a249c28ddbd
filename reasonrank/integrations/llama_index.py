"""LlamaIndex node postprocessor: ReasonRank listwise reranking for query engines and retrievers.

>>> from reasonrank.integrations.llama_index import ReasonRankRerank
>>> rerank = ReasonRankRerank(model="liuwenhan/reasonrank-7B", base_url="http://localhost:8000/v1", top_n=5)
>>> engine = index.as_query_engine(similarity_top_k=50, node_postprocessors=[rerank])

Install with ``pip install "reasonrank[llama-index]"``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from reasonrank.integrations import adapter as ad

try:
    from llama_index.core.bridge.pydantic import Field, PrivateAttr, SecretStr
    from llama_index.core.callbacks import CBEventType, EventPayload
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMChatStartEvent
    from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
    from llama_index.core.llms import ChatMessage, ChatResponse
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
except ImportError as err:
    raise ad.missing_extra(__name__, "llama-index", err) from err

from reasonrank.core.reranker import Reranker

__all__ = ["ReasonRankRerank"]

dispatcher = get_dispatcher(__name__)
# Settings configure the Reranker: fixed at construction, because the model is built once from them.
_FROZEN = frozenset(spec.name for spec in ad.setting_specs())


class _ReasonRankRerankBase(BaseNodePostprocessor):
    top_n: int | None = Field(default=10, description="Nodes to return (None: all of them).")
    include_reasoning: bool = Field(default=False, description='Add metadata["reasonrank_reasoning"].')
    metadata_mode: MetadataMode = Field(default=MetadataMode.EMBED, description="How node text is read.")

    _core: ad.AdapterCore = PrivateAttr()

    def __init__(self, *, reranker: Reranker | None = None, **data: Any) -> None:
        ad.check_keywords(data, type(self).model_fields, type(self).__name__)
        super().__init__(**data)
        self._core = ad.AdapterCore.from_model(self, reranker)

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> ReasonRankRerank:
        """A new instance with copied settings: it shares a ready ``reranker=``, else builds its own."""
        skip = {"callback_manager", *(_FROZEN if self._core.given else ())}
        fields = {k: copy.deepcopy(v, memo) for k, v in self.__dict__.items() if k not in skip}
        twin = type(self)(reranker=self._core.reranker if self._core.given else None, **fields)
        twin.callback_manager = self.callback_manager
        return twin

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the settings only; the unpickled instance builds its own model (like a deep copy)."""
        if self._core.given:
            raise TypeError("a ReasonRankRerank made with reranker=Reranker(...) cannot be pickled; pass settings")
        private = self.__pydantic_private__
        object.__setattr__(self, "__pydantic_private__", {k: v for k, v in private.items() if k != "_core"})
        try:
            return super().__getstate__()
        finally:
            object.__setattr__(self, "__pydantic_private__", private)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _FROZEN:
            raise AttributeError(
                f"{name} is fixed at construction (the model is built once from it); create a new ReasonRankRerank"
            )
        super().__setattr__(name, value)

    @classmethod
    def class_name(cls) -> str:
        return "ReasonRankRerank"

    @property
    def reranker(self) -> Reranker:
        """The core reranker (settings checked at construction; built on first use, once)."""
        return self._core.reranker

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query, nodes = self._inputs(nodes, query_bundle)
        if not nodes:
            return []
        with self._events(nodes, query_bundle) as end:
            ranking = self._core.rerank(query, self._passages(nodes), self.top_n, reasoning=self.include_reasoning)
            return end(self._wrap(nodes, ranking.items), ranking)

    @dispatcher.span  # the sync twin gets its span from LlamaIndex; this one does not
    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query, nodes = self._inputs(nodes, query_bundle)
        if not nodes:
            return []
        with self._events(nodes, query_bundle) as end:
            ranking = await self._core.arerank(
                query, self._passages(nodes), self.top_n, reasoning=self.include_reasoning
            )
            return end(self._wrap(nodes, ranking.items), ranking)

    # ------------------------------------------------------------------ helpers
    def _inputs(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> tuple[str, list]:
        if query_bundle is None:
            raise ValueError("ReasonRankRerank needs a query: pass query_bundle=QueryBundle(...) or query_str=...")
        query = ad.check_query(query_bundle.query_str)
        ad.check_top(self.top_n, "top_n")
        return query, ad.as_items(nodes, NodeWithScore, "nodes")

    def _passages(self, nodes: list[NodeWithScore]) -> list[dict[str, str]]:
        return [ad.passage(n.node.get_content(metadata_mode=self.metadata_mode)) for n in nodes]

    def _wrap(self, nodes: list[NodeWithScore], items: list[ad.RankedItem]) -> list[NodeWithScore]:
        """New NodeWithScore objects over copies of the nodes; the inputs are left untouched."""
        out = []
        for item in items:
            source = nodes[item.index]
            added: dict[str, Any] = {}
            if source.score is not None:
                added[ad.RETRIEVAL_SCORE_KEY] = source.score
            if self.include_reasoning and item.reasoning is not None:
                added[ad.REASONING_KEY] = item.reasoning
            node = source.node  # fresh metadata; our keys stay out of embedded and LLM text
            node = node.model_copy(update={
                "metadata": {**node.metadata, **added},
                "excluded_embed_metadata_keys": _with(node.excluded_embed_metadata_keys, added),
                "excluded_llm_metadata_keys": _with(node.excluded_llm_metadata_keys, added),
            })  # fmt: skip
            out.append(NodeWithScore(node=node, score=item.score))
        return out

    @contextmanager
    def _events(self, nodes: list[NodeWithScore], query_bundle: QueryBundle) -> Iterator[Callable[..., list]]:
        """ReRankStart/End instrumentation events plus the legacy callback-manager RERANKING event.

        Each model call is reported in between, as LlamaIndex LLMs report theirs (see :meth:`_model_call`);
        ``ReRankEndEvent.tags`` hold ``reasonrank.usage`` and ``reasonrank.complete``.
        """
        top_n = len(nodes) if self.top_n is None else self.top_n  # the events need an int
        name = self._core.model_name
        dispatcher.event(ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=top_n, model_name=name))
        payload = {EventPayload.NODES: nodes, EventPayload.MODEL_NAME: name,
                   EventPayload.QUERY_STR: query_bundle.query_str, EventPayload.TOP_K: top_n}  # fmt: skip
        with self.callback_manager.event(CBEventType.RERANKING, payload=payload) as event:

            def end(out: list[NodeWithScore], ranking: ad.Ranking) -> list[NodeWithScore]:
                for call in ranking.calls:
                    self._model_call(call, name)
                event.on_end(payload={EventPayload.NODES: out})
                tags = {"reasonrank.usage": ranking.usage.to_dict(), "reasonrank.complete": ranking.complete}
                dispatcher.event(ReRankEndEvent(nodes=out, tags=tags))
                return out

            yield end

    @dispatcher.span
    def _model_call(self, call: ad.ModelCall, model: str) -> None:
        """One window as an LLM chat call, in its own span: LLMChatStart/End events and a legacy LLM event.

        The response carries OpenAI-style token counts in ``raw["usage"]`` and ``additional_kwargs``
        (what ``TokenCountingHandler`` and observability handlers read). Reported after the call returned.
        """
        messages = [ChatMessage(role="user", content=call.prompt)]
        model_dict = {"model": model, "class_name": "ReasonRankRerank"}
        dispatcher.event(LLMChatStartEvent(messages=messages, additional_kwargs={}, model_dict=model_dict))
        raw = {"model": model, "usage": call.token_usage, "status": call.status, "error": call.error}
        response = ChatResponse(message=ChatMessage(role="assistant", content=call.output), raw=raw,
                                additional_kwargs=call.token_usage)  # fmt: skip
        payload = {EventPayload.MESSAGES: messages, EventPayload.SERIALIZED: model_dict}
        with self.callback_manager.event(CBEventType.LLM, payload=payload) as event:
            event.on_end(payload={EventPayload.MESSAGES: messages, EventPayload.RESPONSE: response})
        dispatcher.event(LLMChatEndEvent(messages=messages, response=response))


def _with(keys: list[str], added: dict[str, Any]) -> list[str]:
    return [*keys, *(k for k in added if k not in keys)]


ReasonRankRerank = ad.pydantic_class(
    "ReasonRankRerank",
    _ReasonRankRerankBase,
    SecretStr,
    """Rerank retrieved nodes with a ReasonRank listwise LLM (sliding windows over the top ``depth``).

    Every ``RerankerConfig`` setting is a field of the same name and default (``api_key`` a ``SecretStr``,
    never serialized), checked at construction and then fixed; or pass a ready ``reranker=Reranker(...)``.
    The model loads once, on the first rerank. Returned nodes are copies with a rank-derived, strictly
    decreasing ``score``; the first-stage score is kept in ``metadata["retrieval_score"]``.
    """,
)
