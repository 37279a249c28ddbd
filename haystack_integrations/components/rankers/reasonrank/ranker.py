"""ReasonRankRanker: a Haystack component that reranks documents with a ReasonRank listwise LLM.

It lives under ``haystack_integrations.`` so that Haystack 3's deserialization allowlist accepts it:
``Pipeline.load``/``loads`` rebuilds it without ``allowed_modules`` or ``unsafe=True``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any, Literal

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.utils import Secret, deserialize_secrets_inplace

from reasonrank.core.reranker import Reranker
from reasonrank.core.types import rank_scores
from reasonrank.integrations._common import (
    RANK_KEY,
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

__all__ = ["ReasonRankRanker"]

log = logging.getLogger(__name__)

_DEFAULT_API_KEY_ENV = ["REASONRANK_API_KEY", "OPENAI_API_KEY"]


@component
class ReasonRankRanker:
    """Reranks documents by relevance to a query with a reasoning listwise LLM (ReasonRank).

    ```python
    from haystack import Document
    from haystack_integrations.components.rankers.reasonrank import ReasonRankRanker

    ranker = ReasonRankRanker(model="liuwenhan/reasonrank-7B", base_url="http://localhost:8000/v1", top_k=5)
    docs = [Document(content="Paris is the capital of France."), Document(content="Berlin is in Germany.")]
    ranker.run(query="capital of France", documents=docs)["documents"]
    ```

    Returned documents are copies (``dataclasses.replace``; ids, content and metadata kept, inputs never
    mutated) with a rank-derived ``score`` (``1 / (rank + 1)``: strictly decreasing, not calibrated).
    Their metadata gains ``retrieval_score`` (the input ``score``, when it had one), ``reasonrank_rank``
    (0-based) and, with ``include_reasoning=True``, ``reasonrank_reasoning`` (the reasoning of the
    window that placed the document).

    Documents without text (``content`` None or blank, e.g. ByteStream-only, and nothing from
    ``meta_fields_to_embed``) are not sent to the model: they follow the ranked ones, in input order.
    Duplicate ids are kept (nothing is merged or dropped).
    """

    def __init__(
        self,
        model: str | None = None,
        top_k: int | None = 10,
        *,
        backend: str | None = None,
        base_url: str | None = None,
        api_key: Secret | None = Secret.from_env_var(_DEFAULT_API_KEY_ENV, strict=False),  # noqa: B008
        prompt_mode: str | None = None,
        window_size: int | None = None,
        step: int | None = None,
        depth: int | None = None,
        strategy: str | None = None,
        max_passage_tokens: int | None = None,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
        on_error: Literal["raise", "keep"] | None = None,
        backend_kwargs: dict[str, Any] | None = None,
        include_reasoning: bool = False,
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
        reranker: Reranker | None = None,
    ) -> None:
        """Create the ranker; nothing is loaded or contacted until :meth:`warm_up` (or the first run).

        :param model: model name (OpenAI-compatible server; ``None`` asks the server) or local path/id.
        :param top_k: the most documents returned; ``None`` returns all. Overridable per run.
        :param backend: ``"openai"`` (default), ``"transformers"`` or ``"vllm"``.
        :param base_url: OpenAI-compatible endpoint (default ``$REASONRANK_BASE_URL`` or localhost:8000/v1).
        :param api_key: a Haystack ``Secret``; by default ``$REASONRANK_API_KEY`` or ``$OPENAI_API_KEY``
            if set. Used only by the ``openai`` backend.
        :param prompt_mode, window_size, step, depth, strategy, max_passage_tokens, max_new_tokens,
            temperature, seed, on_error: :class:`reasonrank.Reranker` settings; ``None`` keeps its default.
        :param backend_kwargs: extra keywords for the backend (e.g. ``{"truncation": "words"}``,
            ``{"device": "cpu"}``); must be JSON-serializable for ``to_dict``.
        :param include_reasoning: add the placing window's reasoning to each document's metadata.
        :param meta_fields_to_embed: metadata fields whose values are prepended to the text the model reads.
        :param embedding_separator: joins those values and the content (the name Haystack's rankers use).
        :param reranker: a ready :class:`reasonrank.Reranker` instead of the settings above. Such a
            ranker cannot be serialized (``to_dict`` raises).
        """
        self.top_k = check_top(top_k, "top_k")
        self.model = model
        self.backend = backend
        self.base_url = base_url
        self.api_key = api_key
        self.prompt_mode = prompt_mode
        self.window_size = window_size
        self.step = step
        self.depth = depth
        self.strategy = strategy
        self.max_passage_tokens = max_passage_tokens
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.seed = seed
        self.on_error = on_error
        self.backend_kwargs = dict(backend_kwargs) if backend_kwargs else None
        self.include_reasoning = include_reasoning
        self.meta_fields_to_embed = list(meta_fields_to_embed) if meta_fields_to_embed else None
        self.embedding_separator = embedding_separator
        self._ready = reranker
        self._warm = False
        self._lazy = LazyReranker(reranker, self._config())

    # ------------------------------------------------------------------ lifecycle
    def _config(self) -> dict[str, Any]:
        """The Reranker keywords (the api_key Secret resolved here, kept in memory only)."""
        values = {key: getattr(self, key) for key in _SETTINGS}
        key = self.api_key
        default_key = key is not None and key == _default_api_key()
        if key is not None and not (default_key and (self._ready is not None or self.backend not in (None, "openai"))):
            # The default env-var key only applies to the openai backend and to a reranker built here.
            values["api_key"] = key.resolve_value()
        return split_config(values, self.backend_kwargs)

    @property
    def reranker(self) -> Reranker:
        """The :class:`reasonrank.Reranker` (built on first access, once)."""
        return self._lazy.get()

    def warm_up(self) -> None:
        """Build the reranker and its backend (loads a local model). Idempotent: builds once."""
        if not self._warm:
            self._lazy.get().backend  # noqa: B018 - builds the backend on first access
            self._warm = True

    async def warm_up_async(self) -> None:
        """:meth:`warm_up` in a worker thread, so loading a local model does not block the event loop."""
        if not self._warm:
            await asyncio.to_thread(self.warm_up)

    def close(self) -> None:
        """Release the backend (connections, model) of a reranker this component built.

        A later run builds it again. A ``reranker=`` passed by the caller is left to its owner.
        """
        if self._ready is None and self._lazy.built:
            self._lazy.get().close()
            self._lazy = LazyReranker(None, self._config())
            self._warm = False

    async def close_async(self) -> None:
        """Like :meth:`close`, closing async clients on the running loop."""
        if self._ready is None and self._lazy.built:
            await self._lazy.get().aclose()
            self._lazy = LazyReranker(None, self._config())
            self._warm = False

    # ------------------------------------------------------------------ serialization
    def to_dict(self) -> dict[str, Any]:
        """Serialize the settings; the API key only as its environment variable names, never its value."""
        if self._ready is not None:
            raise ValueError(
                "a ReasonRankRanker built from reranker=Reranker(...) cannot be serialized; "
                "create it with the settings instead (model=, backend=, base_url=, window_size=, ...)"
            )
        return default_to_dict(
            self,
            model=self.model,
            top_k=self.top_k,
            backend=self.backend,
            base_url=self.base_url,
            api_key=self.api_key.to_dict() if self.api_key is not None else None,  # a token Secret raises
            prompt_mode=self.prompt_mode,
            window_size=self.window_size,
            step=self.step,
            depth=self.depth,
            strategy=self.strategy,
            max_passage_tokens=self.max_passage_tokens,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            seed=self.seed,
            on_error=self.on_error,
            backend_kwargs=self.backend_kwargs,
            include_reasoning=self.include_reasoning,
            meta_fields_to_embed=self.meta_fields_to_embed,
            embedding_separator=self.embedding_separator,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ReasonRankRanker":
        data = {**data, "init_parameters": dict(data.get("init_parameters", {}))}
        deserialize_secrets_inplace(data["init_parameters"], keys=["api_key"])
        return default_from_dict(cls, data)

    # ------------------------------------------------------------------ running
    @component.output_types(documents=list[Document])
    def run(self, query: str, documents: list[Document], top_k: int | None = None) -> dict[str, list[Document]]:
        """Rerank ``documents`` for ``query``; returns ``{"documents": [...]}``, best first, at most ``top_k``.

        :raises ValueError: on an empty query or a ``top_k`` below 1.
        """
        query, docs, top, texts, indices = self._prepare(query, documents, top_k)
        items = trivial_items(len(texts), None)
        if items is None:
            self.warm_up()  # a no-op once warm (Haystack pipelines call it before each run)
            result = self._lazy.get().rerank(query, texts)
            items = ranked_items(result, None, include_reasoning=self.include_reasoning)
        return {"documents": self._finish(docs, items, indices, top)}

    @component.output_types(documents=list[Document])
    async def run_async(
        self, query: str, documents: list[Document], top_k: int | None = None
    ) -> dict[str, list[Document]]:
        """Async :meth:`run`: the model calls are awaited natively (no worker thread)."""
        query, docs, top, texts, indices = self._prepare(query, documents, top_k)
        items = trivial_items(len(texts), None)
        if items is None:
            await self.warm_up_async()
            result = await self._lazy.get().arerank(query, texts)
            items = ranked_items(result, None, include_reasoning=self.include_reasoning)
        return {"documents": self._finish(docs, items, indices, top)}

    def _text(self, doc: Document) -> str:
        parts = [str(doc.meta[key]) for key in self.meta_fields_to_embed or () if doc.meta.get(key)]
        if doc.content:
            parts.append(doc.content)
        return self.embedding_separator.join(parts)

    def _prepare(
        self, query: str, documents: list[Document], top_k: int | None
    ) -> tuple[str, list[Document], int | None, list[dict[str, str]], list[int]]:
        """Check the inputs; the passages the model reads and the input index of each."""
        query = check_query(query)
        top = check_top(top_k, "top_k") if top_k is not None else self.top_k
        docs = as_sequence(documents, "documents")
        for i, doc in enumerate(docs):
            if not isinstance(doc, Document):
                raise TypeError(f"documents[{i}] must be a haystack Document, got {type(doc).__name__}")
        texts, indices = [], []
        for i, doc in enumerate(docs):
            text = self._text(doc)
            if text.strip():
                texts.append(passage(text))
                indices.append(i)
        if len(indices) < len(docs):
            log.debug("ReasonRankRanker: %d document(s) without text are ranked last", len(docs) - len(indices))
        return query, docs, top, texts, indices

    def _finish(
        self, docs: list[Document], items: list[RankedItem], indices: list[int], top: int | None
    ) -> list[Document]:
        """Copies of the documents in the new order: ranked ones, then those without text."""
        ranked = [(indices[item.index], item.reasoning) for item in items]
        with_text = set(indices)
        ranked += [(i, None) for i in range(len(docs)) if i not in with_text]
        keep = len(ranked) if top is None else min(top, len(ranked))
        out = []
        for rank, ((i, reasoning), score) in enumerate(zip(ranked[:keep], rank_scores(len(ranked)))):
            doc = docs[i]
            meta = {**doc.meta, RANK_KEY: rank}
            if doc.score is not None:
                meta[RETRIEVAL_SCORE_KEY] = doc.score
            if self.include_reasoning and reasoning is not None:
                meta[REASONING_KEY] = reasoning
            out.append(replace(doc, score=score, meta=meta))
        return out


# Init parameters that map one-to-one onto Reranker keywords (api_key is resolved separately).
_SETTINGS = tuple(key for key in RERANKER_KEYS if key != "api_key")


def _default_api_key() -> Secret:
    return Secret.from_env_var(_DEFAULT_API_KEY_ENV, strict=False)
