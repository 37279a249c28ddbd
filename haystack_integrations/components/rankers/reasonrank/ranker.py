"""ReasonRankRanker: a Haystack component that reranks documents with a ReasonRank listwise LLM.

It lives under ``haystack_integrations.`` so that Haystack 3's deserialization allowlist accepts it:
``Pipeline.load``/``loads`` rebuilds it without ``allowed_modules`` or ``unsafe=True``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

from reasonrank.integrations import adapter as ad

try:
    from haystack import Document, component, default_from_dict, default_to_dict, tracing
    from haystack.utils import Secret, deserialize_secrets_inplace
except ImportError as err:
    raise ad.missing_extra(__name__, "haystack", err) from err

from reasonrank.core.reranker import Reranker
from reasonrank.core.types import rank_scores

__all__ = ["ReasonRankRanker"]

log = logging.getLogger(__name__)

_DEFAULT_API_KEY_ENV = ["REASONRANK_API_KEY"]  # never another service's key (OPENAI_API_KEY) sent to this server
# Haystack's top_k is the number of documents returned; the sampling setting top_k is sampling_top_k here.
SETTINGS = ad.setting_specs({"top_k": "sampling_top_k"})
_SECRETS = [s.name for s in SETTINGS if s.secret]


@component
class ReasonRankRanker:
    """Reranks documents by relevance to a query with a reasoning listwise LLM (ReasonRank).

    ``ReasonRankRanker(model="liuwenhan/reasonrank-7B", base_url="http://gpu-host:8000/v1", top_k=5)``.
    Init parameters: ``model``; ``top_k``, Haystack's meaning: the most documents returned (``None``: all;
    overridable per run); every ``RerankerConfig`` setting under its own name and default, except the
    sampling ``top_k``, named ``sampling_top_k`` here; ``api_key`` is a ``Secret`` (default:
    ``$REASONRANK_API_KEY`` if set, openai backend only); ``include_reasoning``;
    ``meta_fields_to_embed`` and ``embedding_separator`` (metadata prepended to the text the model reads);
    or a ready ``reranker=Reranker(...)`` (then ``to_dict`` raises). Settings are checked at construction;
    nothing is loaded until :meth:`warm_up` or the first run.

    Returns copies (``dataclasses.replace``; inputs never mutated) with a rank-derived, strictly decreasing
    ``score`` ``1 / (rank + 1)``; metadata gains ``retrieval_score`` (the input score, if any),
    ``reasonrank_rank`` and, with ``include_reasoning``, ``reasonrank_reasoning``. Documents without text
    follow the ranked ones in input order; duplicate ids are kept. The ``meta`` output holds
    ``{"usage": {...tokens}, "complete": bool, "calls": n}``; the same usage is set as tags on the
    component's tracing span, with a child span per model call.
    """

    def __init__(self, model: str | None = None, top_k: int | None = 10, **kwargs: Any) -> None:
        values = ad.signature_defaults(_SIGNATURE)
        ad.check_keywords(kwargs, list(values)[2:], "ReasonRankRanker")
        values.update(kwargs, model=model, top_k=ad.check_top(top_k, "top_k"))
        reranker = values.pop("reranker")
        self.__dict__.update(values)
        given = {s.name for s in SETTINGS if s.name in kwargs} | ({"model"} if model is not None else set())
        self._core = ad.AdapterCore(None if reranker else self._settings(), reranker=reranker, given=given)
        self._warm = False

    def _settings(self) -> dict[str, Any]:
        """The Reranker settings (the api_key Secret resolved here, kept in memory only)."""
        settings = ad.settings_of(self, SETTINGS)
        if self.api_key == _default_api_key() and self.backend != "openai":
            settings["api_key"] = None  # the default env-var key only applies to the openai backend
        return settings

    @property
    def reranker(self) -> Reranker:
        """The :class:`reasonrank.Reranker` (built on first access, once)."""
        return self._core.reranker

    def warm_up(self) -> None:
        """Build the reranker and its backend (loads a local model). Idempotent: builds once."""
        if not self._warm:
            self._core.reranker.backend  # noqa: B018 - builds the backend on first access
            self._warm = True

    async def warm_up_async(self) -> None:
        """:meth:`warm_up` in a worker thread, so loading a local model does not block the event loop."""
        if not self._warm:
            await asyncio.to_thread(self.warm_up)

    def close(self) -> None:
        """Release the backend of a reranker this component built (a later run builds it again)."""
        self._core.close()
        self._warm = self._core.built

    async def close_async(self) -> None:
        """Like :meth:`close`, closing async clients on the running loop."""
        await self._core.aclose()
        self._warm = self._core.built

    def to_dict(self) -> dict[str, Any]:
        """Serialize the init parameters; the API key only as its environment variable names, never its value."""
        if self._core.given:
            raise ValueError(
                "a ReasonRankRanker built from reranker=Reranker(...) cannot be serialized; "
                "create it with the settings instead (model=, backend=, base_url=, window_size=, ...)"
            )
        names = [name for name in _SIGNATURE.parameters if name not in ("self", "reranker")]
        params = {name: getattr(self, name) for name in names}
        params["backend_kwargs"] = ad.serializable_backend_kwargs(self.backend_kwargs)  # without headers
        return default_to_dict(self, **params)  # a token Secret raises

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReasonRankRanker:
        data = {**data, "init_parameters": dict(data.get("init_parameters", {}))}
        deserialize_secrets_inplace(data["init_parameters"], keys=_SECRETS)
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document], meta=dict[str, Any])
    def run(
        self, query: str, documents: list[Document], top_k: int | None = None, deadline: float | None = None
    ) -> dict[str, Any]:
        """Rerank ``documents`` for ``query``: ``{"documents": [...], "meta": {...}}``, at most ``top_k``.

        ``deadline`` (seconds) overrides the ``deadline`` setting for this run; when it cuts windows,
        ``meta["complete"]`` is False and the order found so far is returned.

        :raises ValueError: on an empty query or a ``top_k`` below 1.
        """
        query, docs, top, texts, indices = self._prepare(query, documents, top_k)
        if len(texts) > 1:
            self.warm_up()  # a no-op once warm (Haystack pipelines call it before each run)
        ranking = self._core.rerank(query, texts, None, reasoning=self.include_reasoning, deadline=deadline)
        return self._output(docs, ranking, indices, top)

    @component.output_types(documents=list[Document], meta=dict[str, Any])
    async def run_async(
        self, query: str, documents: list[Document], top_k: int | None = None, deadline: float | None = None
    ) -> dict[str, Any]:
        """Async :meth:`run`: the model calls are awaited natively (no worker thread)."""
        query, docs, top, texts, indices = self._prepare(query, documents, top_k)
        if len(texts) > 1:
            await self.warm_up_async()
        ranking = await self._core.arerank(query, texts, None, reasoning=self.include_reasoning, deadline=deadline)
        return self._output(docs, ranking, indices, top)

    def _output(self, docs: list[Document], ranking: ad.Ranking, indices: list[int], top: int | None) -> dict:
        """The run's outputs; usage goes on the current tracing span, each model call as a child span."""
        span = tracing.tracer.current_span()
        if span is not None and ranking.result is not None:
            span.set_tags(ranking.span_tags())
            for call in ranking.calls:
                with tracing.tracer.trace("reasonrank.window", call.span_tags(self._core.model_name), span):
                    pass  # reported after the call returned: the span carries its seconds as a tag
        return {"documents": self._finish(docs, ranking.items, indices, top), "meta": ranking.meta()}

    def _prepare(self, query: str, documents: list[Document], top_k: int | None) -> tuple:
        """Check the inputs; the passages the model reads and the input index of each."""
        query = ad.check_query(query)
        top = ad.check_top(top_k, "top_k") if top_k is not None else self.top_k
        docs = ad.as_items(documents, Document)
        texts = {i: self._text(doc) for i, doc in enumerate(docs)}
        indices = [i for i, text in texts.items() if text.strip()]
        if len(indices) < len(docs):
            log.debug("ReasonRankRanker: %d document(s) without text are ranked last", len(docs) - len(indices))
        return query, docs, top, [ad.passage(texts[i]) for i in indices], indices

    def _text(self, doc: Document) -> str:
        parts = [str(doc.meta[key]) for key in self.meta_fields_to_embed or () if doc.meta.get(key)]
        return self.embedding_separator.join([*parts, doc.content] if doc.content else parts)

    def _finish(self, docs: list[Document], items: list, indices: list[int], top: int | None) -> list[Document]:
        """Copies of the documents in the new order: ranked ones, then those without text."""
        ranked = [(indices[item.index], item.reasoning) for item in items]
        ranked += [(i, None) for i in sorted(set(range(len(docs))) - set(indices))]
        out = []
        for rank, ((i, reasoning), score) in enumerate(zip(ranked[:top], rank_scores(len(ranked)))):
            meta = {**docs[i].meta, ad.RANK_KEY: rank}
            if docs[i].score is not None:
                meta[ad.RETRIEVAL_SCORE_KEY] = docs[i].score
            if self.include_reasoning and reasoning is not None:
                meta[ad.REASONING_KEY] = reasoning
            out.append(replace(docs[i], score=score, meta=meta))
        return out


def _default_api_key() -> Secret:
    return Secret.from_env_var(_DEFAULT_API_KEY_ENV, strict=False)


ReasonRankRanker.__init__.__signature__ = _SIGNATURE = ad.init_signature(
    [("model", None, str | None), ("top_k", 10, int | None)],
    [spec for spec in SETTINGS if spec.name != "model"],
    [("include_reasoning", False, bool), ("meta_fields_to_embed", None, list[str] | None),
     ("embedding_separator", "\n", str), ("reranker", None, Reranker | None)],
    secret=(_default_api_key(), Secret | None),
)  # fmt: skip
