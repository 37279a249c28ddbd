"""LangChain adapter: :class:`ReasonRankCompressor`, a ``BaseDocumentCompressor`` that reranks with ReasonRank.

>>> from langchain_classic.retrievers import ContextualCompressionRetriever
>>> from reasonrank.integrations.langchain import ReasonRankCompressor
>>> compressor = ReasonRankCompressor(model="liuwenhan/reasonrank-7B", base_url="http://localhost:8000/v1", top_n=5)
>>> retriever = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=first_stage)
>>> docs = retriever.invoke("why do insects fly towards light?")

Needs ``langchain-core`` (``pip install "reasonrank[langchain]"``); ``ContextualCompressionRetriever``
lives in ``langchain-classic``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

try:
    from langchain_core.callbacks import AsyncCallbackManager, CallbackManager, Callbacks
    from langchain_core.documents import BaseDocumentCompressor, Document
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'reasonrank.integrations.langchain needs langchain-core: pip install "reasonrank[langchain]"'
    ) from err
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr, field_validator

from reasonrank.core.backends import Backend
from reasonrank.core.reranker import Reranker
from reasonrank.core.types import RerankResult
from reasonrank.integrations._common import (
    RANK_KEY,
    REASONING_KEY,
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

__all__ = ["ReasonRankCompressor", "RELEVANCE_SCORE_KEY"]

RELEVANCE_SCORE_KEY = "relevance_score"  # LangChain's key for a reranker's score (Cohere, Jina, Flashrank)
_RUN_NAME = "ReasonRankCompressor"


class ReasonRankCompressor(BaseDocumentCompressor):
    """Rerank documents with a ReasonRank model (listwise, reasoning, sliding window).

    Pass the core :class:`~reasonrank.Reranker` settings as fields (``model``, ``backend``,
    ``base_url``, ``api_key``, ``window_size``, ...; ``None`` keeps the core default), extra backend
    keywords in ``backend_kwargs``, or a ready ``reranker=Reranker(...)``. The reranker is built once,
    on first use, and reused by every call (sync and async); settings changed after that are ignored.

    Returns copies of the best ``top_n`` documents (all when ``None``), best first, with
    ``metadata["relevance_score"]`` (strictly decreasing, rank-derived ``1 / (rank + 1)``, not a
    calibrated probability) and ``metadata["reasonrank_rank"]`` (0-based). A first-stage score found in
    the input's ``relevance_score`` (else ``score``) is kept as ``metadata["retrieval_score"]`` unless
    that key is already set. Inputs are never mutated; ``Document.id`` is kept.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    top_n: int | None = Field(default=3, description="Documents to return (LangChain's usual 3); None: all.")
    include_reasoning: bool = Field(
        default=False, description="Add the reasoning of the window that placed each document to its metadata."
    )
    title_key: str | None = Field(
        default=None, description="Metadata key whose value is shown to the model as the passage title."
    )

    model: str | None = None
    backend: str | Backend | None = Field(default=None, description='"openai" (default), "transformers", "vllm".')
    base_url: str | None = None
    api_key: SecretStr | None = Field(default=None, exclude=True, repr=False)
    prompt_mode: str | None = None
    window_size: int | None = None
    step: int | None = None
    depth: int | None = None
    strategy: str | None = None
    max_passage_tokens: int | None = None
    max_new_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None
    on_error: Literal["raise", "keep"] | None = None
    backend_kwargs: dict[str, Any] = Field(default_factory=dict, repr=False)
    reranker: Reranker | None = Field(default=None, exclude=True, description="A ready Reranker (no other settings).")

    _lazy: LazyReranker = PrivateAttr()

    @field_validator("top_n", mode="before")
    @classmethod
    def _check_top_n(cls, value: int | None) -> int | None:
        return check_top(value, "top_n")

    def model_post_init(self, __context: Any) -> None:
        values = {k: getattr(self, k) for k in type(self).model_fields}
        if self.api_key is not None:
            values["api_key"] = self.api_key.get_secret_value()
        self._lazy = LazyReranker(self.reranker, split_config(values, self.backend_kwargs))

    # ------------------------------------------------------------------ helpers
    def get_reranker(self) -> Reranker:
        """The core reranker (built on first call, then the same object)."""
        return self._lazy.get()

    def _passages(self, documents: Sequence[Document]) -> list[dict[str, str]]:
        out = []
        for doc in documents:
            title = doc.metadata.get(self.title_key) if self.title_key else None
            out.append(passage(doc.page_content, str(title) if title else None))
        return out

    def _output(self, documents: Sequence[Document], items: list[RankedItem]) -> list[Document]:
        out = []
        for item in items:
            doc = documents[item.index]
            metadata = dict(doc.metadata)
            if RETRIEVAL_SCORE_KEY not in metadata:
                for key in (RELEVANCE_SCORE_KEY, "score"):
                    if metadata.get(key) is not None:
                        metadata[RETRIEVAL_SCORE_KEY] = metadata[key]
                        break
            metadata[RELEVANCE_SCORE_KEY] = item.score
            metadata[RANK_KEY] = item.rank
            if self.include_reasoning and item.reasoning is not None:
                metadata[REASONING_KEY] = item.reasoning
            out.append(doc.model_copy(update={"metadata": metadata}))
        return out

    def _prepare(self, documents: Sequence[Document], query: str) -> tuple[list[Document], int | None]:
        check_query(query)
        top = check_top(self.top_n, "top_n")
        docs = as_sequence(documents, "documents")
        for i, doc in enumerate(docs):
            if not isinstance(doc, Document):
                raise TypeError(f"documents[{i}] is a {type(doc).__name__}, not a langchain Document")
        return docs, top

    def _inputs(self, docs: list[Document], query: str) -> dict[str, Any]:
        return {"query": query, "documents": docs}

    def _outputs(self, out: list[Document], result: RerankResult | None) -> dict[str, Any]:
        outputs: dict[str, Any] = {"documents": out, "llm_calls": 0}
        if result is not None:
            outputs.update(llm_calls=result.calls, rounds=result.rounds, repaired=result.repaired, order=result.order)
        return outputs

    # ------------------------------------------------------------------ LangChain API
    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Rerank ``documents`` for ``query``; reported as a chain run named ReasonRankCompressor on ``callbacks``."""
        docs, top = self._prepare(documents, query)
        run = CallbackManager.configure(inheritable_callbacks=callbacks).on_chain_start(
            None, self._inputs(docs, query), name=_RUN_NAME
        )
        try:
            result = None
            items = trivial_items(len(docs), top)
            if items is None:
                result = self.get_reranker().rerank(query, self._passages(docs))
                items = ranked_items(result, top, include_reasoning=self.include_reasoning)
            out = self._output(docs, items)
        except BaseException as err:
            run.on_chain_error(err)
            raise
        run.on_chain_end(self._outputs(out, result))
        return out

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Native async :meth:`compress_documents` (``await Reranker.arerank``, no thread)."""
        docs, top = self._prepare(documents, query)
        run = await AsyncCallbackManager.configure(inheritable_callbacks=callbacks).on_chain_start(
            None, self._inputs(docs, query), name=_RUN_NAME
        )
        try:
            result = None
            items = trivial_items(len(docs), top)
            if items is None:
                result = await self.get_reranker().arerank(query, self._passages(docs))
                items = ranked_items(result, top, include_reasoning=self.include_reasoning)
            out = self._output(docs, items)
        except BaseException as err:
            await run.on_chain_error(err)
            raise
        await run.on_chain_end(self._outputs(out, result))
        return out
