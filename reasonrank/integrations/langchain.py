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
from typing import Any

from reasonrank.integrations import adapter as ad

try:
    from langchain_core.callbacks import AsyncCallbackManager, CallbackManager, Callbacks
    from langchain_core.documents import BaseDocumentCompressor, Document
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_core.outputs import ChatGeneration, LLMResult
except ImportError as err:
    raise ad.missing_extra(__name__, "langchain", err) from err
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr

from reasonrank.core.reranker import Reranker
from reasonrank.core.types import BackendError

__all__ = ["ReasonRankCompressor", "RELEVANCE_SCORE_KEY"]

RELEVANCE_SCORE_KEY = "relevance_score"  # LangChain's key for a reranker's score (Cohere, Jina, Flashrank)
_RUN_NAME = "ReasonRankCompressor"
_SERIALIZED = {"lc": 1, "type": "not_implemented", "id": ["reasonrank", "ReasonRankCompressor"], "name": _RUN_NAME}


class _ReasonRankCompressorBase(BaseDocumentCompressor):
    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    top_n: int | None = Field(default=3, description="Documents to return (LangChain's usual 3); None: all.")
    include_reasoning: bool = Field(
        default=False, description="Add the reasoning of the window that placed each document to its metadata."
    )
    title_key: str | None = Field(
        default=None, description="Metadata key whose value is shown to the model as the passage title."
    )
    reranker: Reranker | None = Field(default=None, exclude=True, description="A ready Reranker (no other settings).")

    _core: ad.AdapterCore = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        ad.check_keywords(data, type(self).model_fields, type(self).__name__)
        super().__init__(**data)

    def model_post_init(self, __context: Any) -> None:
        self._core = ad.AdapterCore.from_model(self, self.reranker)

    def get_reranker(self) -> Reranker:
        """The core reranker (built on first call, then the same object)."""
        return self._core.reranker

    # ------------------------------------------------------------------ LangChain API
    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Rerank ``documents`` for ``query``; reported as a chain run named ReasonRankCompressor on ``callbacks``."""
        docs = self._prepare(documents, query)
        run = CallbackManager.configure(inheritable_callbacks=callbacks).on_chain_start(
            None, {"query": query, "documents": docs}, name=_RUN_NAME
        )
        try:
            ranking = self._core.rerank(query, self._passages(docs), self.top_n, reasoning=self.include_reasoning)
            out = self._output(docs, ranking.items)
        except BaseException as err:
            run.on_chain_error(err)
            raise
        child = self._llm_manager(run)
        for call in ranking.calls:
            (llm_run,) = child.on_chat_model_start(_SERIALIZED, [_messages(call)], **self._llm_kwargs())
            if call.error:
                llm_run.on_llm_error(BackendError(call.error))
            else:
                llm_run.on_llm_end(self._result(call))
        run.on_chain_end(_outputs(out, ranking))
        return out

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Native async :meth:`compress_documents` (``await Reranker.arerank``, no thread)."""
        docs = self._prepare(documents, query)
        run = await AsyncCallbackManager.configure(inheritable_callbacks=callbacks).on_chain_start(
            None, {"query": query, "documents": docs}, name=_RUN_NAME
        )
        try:
            passages = self._passages(docs)
            ranking = await self._core.arerank(query, passages, self.top_n, reasoning=self.include_reasoning)
            out = self._output(docs, ranking.items)
        except BaseException as err:
            await run.on_chain_error(err)
            raise
        child = self._llm_manager(run)
        for call in ranking.calls:
            (llm_run,) = await child.on_chat_model_start(_SERIALIZED, [_messages(call)], **self._llm_kwargs())
            if call.error:
                await llm_run.on_llm_error(BackendError(call.error))
            else:
                await llm_run.on_llm_end(self._result(call))
        await run.on_chain_end(_outputs(out, ranking))
        return out

    # ------------------------------------------------------------------ model calls as child LLM runs
    def _llm_manager(self, run: Any) -> Any:
        """The chain run's child manager, with LangSmith's model metadata (provider, model name)."""
        child = run.get_child()
        ls = {"ls_provider": "reasonrank", "ls_model_name": self._core.model_name, "ls_model_type": "chat"}
        child.add_metadata(ls, inherit=False)
        return child

    def _llm_kwargs(self) -> dict[str, Any]:
        params = {"model": self._core.model_name, "_type": "reasonrank"}
        return {"invocation_params": params, "name": f"{_RUN_NAME}.window"}

    def _result(self, call: ad.ModelCall) -> LLMResult:
        """A window's output with ``token_usage`` (``llm_output``) and ``usage_metadata`` (the message)."""
        name = self._core.model_name
        usage = {"input_tokens": call.prompt_tokens, "output_tokens": call.completion_tokens,
                 "total_tokens": call.token_usage["total_tokens"]}  # fmt: skip
        meta = {"model_name": name, "finish_reason": call.finish_reason, "token_usage": call.token_usage}
        message = AIMessage(content=call.output, usage_metadata=usage, response_metadata=meta)
        return LLMResult(generations=[[ChatGeneration(message=message)]],
                         llm_output={"token_usage": call.token_usage, "model_name": name})  # fmt: skip

    # ------------------------------------------------------------------ helpers
    def _prepare(self, documents: Sequence[Document], query: str) -> list[Document]:
        ad.check_query(query)
        ad.check_top(self.top_n, "top_n")
        return ad.as_items(documents, Document)

    def _passages(self, documents: Sequence[Document]) -> list[dict[str, str]]:
        titles = [doc.metadata.get(self.title_key) if self.title_key else None for doc in documents]
        return [ad.passage(doc.page_content, str(t) if t else None) for doc, t in zip(documents, titles)]

    def _output(self, documents: Sequence[Document], items: list[ad.RankedItem]) -> list[Document]:
        out = []
        for item in items:
            doc = documents[item.index]
            metadata = dict(doc.metadata)
            first_stage = next(
                (metadata[k] for k in (RELEVANCE_SCORE_KEY, "score") if metadata.get(k) is not None), None
            )
            if first_stage is not None:
                metadata.setdefault(ad.RETRIEVAL_SCORE_KEY, first_stage)
            metadata[RELEVANCE_SCORE_KEY] = item.score
            metadata[ad.RANK_KEY] = item.rank
            if self.include_reasoning and item.reasoning is not None:
                metadata[ad.REASONING_KEY] = item.reasoning
            out.append(doc.model_copy(update={"metadata": metadata}))
        return out


def _messages(call: ad.ModelCall) -> list[HumanMessage]:
    return [HumanMessage(content=call.prompt)]


def _outputs(out: list[Document], ranking: ad.Ranking) -> dict[str, Any]:
    """The chain run's outputs: the documents, usage (summed over the child LLM runs) and completeness."""
    outputs: dict[str, Any] = {"documents": out, "llm_calls": 0, **ranking.meta()}
    if ranking.result is not None:
        result = ranking.result
        outputs.update(llm_calls=result.calls, rounds=result.rounds, repaired=result.repaired, order=result.order)
    return outputs


ReasonRankCompressor = ad.pydantic_class(
    "ReasonRankCompressor",
    _ReasonRankCompressorBase,
    SecretStr,
    """Rerank documents with a ReasonRank model (listwise, reasoning, sliding window).

    Every ``RerankerConfig`` setting is a field of the same name and default (``api_key`` a ``SecretStr``,
    never dumped), checked at construction; or pass a ready ``reranker=Reranker(...)``. The reranker is
    built once, on first use, and reused by sync and async calls; later setting changes are ignored.

    Returns copies of the best ``top_n`` documents (all when ``None``), best first, with
    ``metadata["relevance_score"]`` (rank-derived ``1 / (rank + 1)``, strictly decreasing, not calibrated)
    and ``metadata["reasonrank_rank"]`` (0-based). A first-stage ``relevance_score`` (else ``score``) is
    kept as ``metadata["retrieval_score"]`` unless set. Inputs are never mutated; ``Document.id`` is kept.
    """,
)
