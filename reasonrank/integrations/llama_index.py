"""LlamaIndex node postprocessor: ReasonRank listwise reranking for query engines and retrievers.

>>> from reasonrank.integrations.llama_index import ReasonRankRerank
>>> rerank = ReasonRankRerank(model="liuwenhan/reasonrank-7B", base_url="http://localhost:8000/v1", top_n=5)
>>> engine = index.as_query_engine(similarity_top_k=50, node_postprocessors=[rerank])

Install with ``pip install "reasonrank[llama-index]"``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from typing import Any, Dict, List, Optional

from llama_index.core.bridge.pydantic import Field, PrivateAttr, SecretStr, field_validator
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from reasonrank.core.backends import Backend
from reasonrank.core.reranker import Reranker
from reasonrank.core.types import RerankResult
from reasonrank.integrations._common import (
    REASONING_KEY,
    RERANKER_KEYS,
    RETRIEVAL_SCORE_KEY,
    LazyReranker,
    RankedItem,
    as_sequence,
    check_query,
    check_top,
    passage,
    ranked_items,
    split_config,
    trivial_items,
)

__all__ = ["ReasonRankRerank"]

dispatcher = get_dispatcher(__name__)

# Fields that configure the Reranker: fixed at construction, because the model is built once from them.
_FROZEN = frozenset(RERANKER_KEYS) | {"backend_kwargs"}


class ReasonRankRerank(BaseNodePostprocessor):
    """Rerank retrieved nodes with a ReasonRank listwise LLM (sliding windows over the top ``depth``).

    Pass the core :class:`~reasonrank.Reranker` settings as fields (``model``, ``backend``, ``base_url``,
    ``api_key``, ``prompt_mode``, ``window_size``, ``step``, ``depth``, ``strategy``, ...; ``None`` means
    the core default) plus ``backend_kwargs``, or a ready ``reranker=Reranker(...)``. Settings are checked
    at construction; the model is loaded once, on the first rerank, and reused. Returned nodes are copies:
    ``score`` is the rank-derived, strictly decreasing score; the first-stage score is kept in
    ``metadata["retrieval_score"]``.
    """

    top_n: Optional[int] = Field(default=10, description="Nodes to return (None: all of them).")
    model: Optional[str] = Field(default=None, description="Model name or path (openai: the server's model).")
    backend: Optional[str] = Field(default=None, description='"openai" (default), "transformers" or "vllm".')
    base_url: Optional[str] = Field(default=None, description="OpenAI-compatible endpoint, e.g. http://host:8000/v1.")
    api_key: Optional[SecretStr] = Field(default=None, exclude=True, description="Never serialized.")
    prompt_mode: Optional[str] = Field(default=None, description='"reasoning" (default), "qwen3" or "direct".')
    window_size: Optional[int] = Field(default=None, description="Passages per LLM call (core default 20).")
    step: Optional[int] = Field(default=None, description="Window step (core default 10).")
    depth: Optional[int] = Field(default=None, description="Nodes reranked; the rest follow (core default 100).")
    strategy: Optional[str] = Field(default=None, description='"sliding" (default) or "tournament".')
    max_passage_tokens: Optional[int] = Field(default=None, description="Per-node truncation (core default 512).")
    max_new_tokens: Optional[int] = Field(default=None, description="Generation budget per window.")
    temperature: Optional[float] = Field(default=None, description="Sampling temperature.")
    seed: Optional[int] = Field(default=None, description="Sampling seed.")
    on_error: Optional[str] = Field(default=None, description='"raise" (default) or "keep" a failed window.')
    backend_kwargs: Dict[str, Any] = Field(default_factory=dict, description="Extra backend constructor keywords.")
    include_reasoning: bool = Field(default=False, description='Add metadata["reasonrank_reasoning"].')
    metadata_mode: MetadataMode = Field(default=MetadataMode.EMBED, description="How node text is read.")

    _lazy: LazyReranker = PrivateAttr()
    _given: bool = PrivateAttr(default=False)
    _model_name: str = PrivateAttr(default="reasonrank")

    def __init__(self, *, reranker: Optional[Reranker] = None, **data: Any) -> None:
        super().__init__(**data)
        values = {k: getattr(self, k) for k in RERANKER_KEYS}
        if self.api_key is not None:
            values["api_key"] = self.api_key.get_secret_value()
        self._lazy = LazyReranker(reranker, split_config(values, self.backend_kwargs))
        # Creating the Reranker is cheap (its backend, the model, loads on the first rerank) and checks
        # the settings now rather than at the first query.
        core = self._lazy.get()
        self._given = reranker is not None
        self._model_name = self.model or core.model or core.backend_name

    def __deepcopy__(self, memo: Optional[Dict[int, Any]] = None) -> "ReasonRankRerank":
        """A new instance with copied settings: it shares a ready ``reranker=``, else builds its own."""
        fields = {k: copy.deepcopy(v, memo) for k, v in self.__dict__.items() if k != "callback_manager"}
        twin = type(self)(reranker=self._lazy.get() if self._given else None, **fields)
        twin.callback_manager = self.callback_manager
        return twin

    def __getstate__(self) -> Dict[str, Any]:
        """Pickle the settings only; the unpickled instance builds its own model (like a deep copy)."""
        if self._given:
            raise TypeError("a ReasonRankRerank made with reranker=Reranker(...) cannot be pickled; pass settings")
        private = self.__pydantic_private__
        object.__setattr__(self, "__pydantic_private__", {k: v for k, v in private.items() if k != "_lazy"})
        try:
            return super().__getstate__()
        finally:
            object.__setattr__(self, "__pydantic_private__", private)

    @field_validator("top_n", mode="before")
    @classmethod
    def _check_top_n(cls, value: Optional[int]) -> Optional[int]:
        return check_top(value, "top_n")

    @field_validator("backend", "prompt_mode", "strategy", mode="before")
    @classmethod
    def _plain_str(cls, value: Any) -> Any:
        if isinstance(value, Backend):
            raise ValueError("backend must be a name; pass a ready backend as reranker=Reranker(backend=...)")
        return value.value if isinstance(value, Enum) else value

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
        """The core reranker, created once at construction; its model loads on the first rerank."""
        return self._lazy.get()

    # ------------------------------------------------------------------ postprocessing
    def _postprocess_nodes(
        self, nodes: List[NodeWithScore], query_bundle: Optional[QueryBundle] = None
    ) -> List[NodeWithScore]:
        nodes, query, top = self._inputs(nodes, query_bundle)
        if not nodes:
            return []
        with self._events(nodes, query_bundle, top) as finish:
            items = trivial_items(len(nodes), top)
            if items is None:
                items = self._items(self.reranker.rerank(query, self._passages(nodes)), top)
            return finish(self._wrap(nodes, items))

    async def _apostprocess_nodes(
        self, nodes: List[NodeWithScore], query_bundle: Optional[QueryBundle] = None
    ) -> List[NodeWithScore]:
        nodes, query, top = self._inputs(nodes, query_bundle)
        if not nodes:
            return []
        with self._events(nodes, query_bundle, top) as finish:
            items = trivial_items(len(nodes), top)
            if items is None:
                items = self._items(await self.reranker.arerank(query, self._passages(nodes)), top)
            return finish(self._wrap(nodes, items))

    # ------------------------------------------------------------------ helpers
    def _inputs(
        self, nodes: Sequence[NodeWithScore], query_bundle: Optional[QueryBundle]
    ) -> tuple[list[NodeWithScore], str, Optional[int]]:
        if query_bundle is None:
            raise ValueError("ReasonRankRerank needs a query: pass query_bundle=QueryBundle(...) or query_str=...")
        query = check_query(query_bundle.query_str)
        return as_sequence(nodes, "nodes"), query, check_top(self.top_n, "top_n")

    def _passages(self, nodes: Sequence[NodeWithScore]) -> list[dict[str, str]]:
        return [passage(n.node.get_content(metadata_mode=self.metadata_mode)) for n in nodes]

    def _items(self, result: RerankResult, top: Optional[int]) -> list[RankedItem]:
        return ranked_items(result, top, include_reasoning=self.include_reasoning)

    def _wrap(self, nodes: Sequence[NodeWithScore], items: Sequence[RankedItem]) -> list[NodeWithScore]:
        """New NodeWithScore objects over copies of the nodes; the inputs are left untouched."""
        out = []
        for item in items:
            source = nodes[item.index]
            added: dict[str, Any] = {}
            if source.score is not None:
                added[RETRIEVAL_SCORE_KEY] = source.score
            if self.include_reasoning and item.reasoning is not None:
                added[REASONING_KEY] = item.reasoning
            node = source.node
            # Fresh metadata and exclusion lists; our keys stay out of the text that later stages embed
            # or put in LLM prompts.
            node = node.model_copy(
                update={
                    "metadata": {**node.metadata, **added},
                    "excluded_embed_metadata_keys": _with(node.excluded_embed_metadata_keys, added),
                    "excluded_llm_metadata_keys": _with(node.excluded_llm_metadata_keys, added),
                }
            )
            out.append(NodeWithScore(node=node, score=item.score))
        return out

    @contextmanager
    def _events(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle, top: Optional[int]
    ) -> Iterator[Callable[[list[NodeWithScore]], list[NodeWithScore]]]:
        """ReRankStart/End instrumentation events plus the legacy callback-manager RERANKING event."""
        top_n = len(nodes) if top is None else top  # the events need an int
        dispatcher.event(ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=top_n, model_name=self._model_name))
        payload = {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: self._model_name,
            EventPayload.QUERY_STR: query_bundle.query_str,
            EventPayload.TOP_K: top_n,
        }
        with self.callback_manager.event(CBEventType.RERANKING, payload=payload) as event:

            def finish(out: list[NodeWithScore]) -> list[NodeWithScore]:
                event.on_end(payload={EventPayload.NODES: out})
                dispatcher.event(ReRankEndEvent(nodes=out))
                return out

            yield finish


def _with(keys: Sequence[str], added: Dict[str, Any]) -> list[str]:
    return list(keys) + [k for k in added if k not in keys]
