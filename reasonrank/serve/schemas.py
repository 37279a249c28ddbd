"""Request bodies of the reference rerank APIs, and the responses built from a :class:`RerankResult`.

- Cohere ``/v2/rerank`` and ``/v1/rerank`` (Jina's ``/v1/rerank`` is the same shape): ``model``,
  ``query``, ``documents`` (strings or objects with ``text``), ``top_n``, ``return_documents``;
  response ``{"id", "results": [{"index", "relevance_score", "document"?}], "meta"}``.
- Hugging Face TEI ``/rerank``: ``query``, ``texts``, ``raw_scores``, ``return_text``, ``truncate``;
  response ``[{"index", "score", "text"?}]`` in rank order.

ReasonRank extras ride along: ``return_reasoning`` adds ``reasoning`` to each result, ``deadline``
bounds the request's time, and ``meta.billed_units``/``usage`` carry the LLM tokens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from reasonrank.core.types import RerankResult

__all__ = [
    "CohereRerankRequest",
    "TEIRerankRequest",
    "cohere_response",
    "tei_response",
    "usage_of",
    "reasoning_by_passage",
]


class _Request(BaseModel):
    # Unknown fields (priority, max_chunks_per_doc, ...) are accepted and ignored, as clients send them.
    model_config = ConfigDict(extra="ignore")

    query: str
    return_reasoning: bool = Field(False, description="ReasonRank: each result's window reasoning")
    deadline: float | None = Field(None, gt=0, description="ReasonRank: seconds; the best order so far when cut")


class CohereRerankRequest(_Request):
    """Cohere v2/v1 (and Jina) rerank request."""

    model: str | None = None
    documents: list[str | dict[str, Any]]
    top_n: int | None = None
    return_documents: bool | None = None
    rank_fields: list[str] | None = None
    max_tokens_per_doc: int | None = None  # accepted; truncation is the service's --max-passage-tokens

    def passages(self) -> list[str | dict[str, Any]]:
        """The documents as reranker passages (``rank_fields`` picks and orders an object's fields)."""
        if not self.rank_fields:
            return list(self.documents)
        return [doc if isinstance(doc, str) else _fields_text(doc, self.rank_fields) for doc in self.documents]


class TEIRerankRequest(_Request):
    """Hugging Face text-embeddings-inference ``/rerank`` request."""

    texts: list[str]
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool | None = None  # accepted; truncation is the service's --max-passage-tokens
    truncation_direction: str | None = None


def _fields_text(document: Mapping[str, Any], fields: list[str]) -> str:
    """Cohere's ``rank_fields``: ``key: value`` lines of the named fields present in the object."""
    return "\n".join(f"{key}: {document[key]}" for key in fields if key in document)


def usage_of(result: RerankResult) -> dict[str, int]:
    """``calls``, ``cached_calls``, ``prompt_tokens``, ``completion_tokens`` of a result."""
    u = result.usage
    return {
        "calls": u.calls,
        "cached_calls": u.cached_calls,
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
    }


def reasoning_by_passage(result: Any) -> dict[int, str]:
    """Input index -> the reasoning of the last window that ranked it."""
    found: dict[int, str] = {}
    for window in result.windows:
        for index in window.passages:
            found[index] = window.reasoning
    return found


def _top(result: Any, top_n: int | None) -> list[tuple[int, float]]:
    ranked = list(zip(result.order, result.scores))
    return ranked if top_n is None else ranked[:top_n]


def _extras(result: Any, usage: dict[str, int], deadline: float | None) -> dict[str, Any]:
    return {
        "windows": usage["calls"],
        "cached_windows": usage["cached_calls"],
        "rounds": result.rounds,
        "complete": bool(getattr(result, "complete", True)),
        "deadline": deadline,
    }


def cohere_response(
    request: CohereRerankRequest,
    result: Any,
    *,
    request_id: str,
    api_version: str,
    model: str,
    deadline: float | None,
    warnings: list[str],
) -> dict[str, Any]:
    """The Cohere (and Jina) response body; v1 adds Jina's ``model`` and ``usage``."""
    usage = usage_of(result)
    reasoning = reasoning_by_passage(result) if request.return_reasoning else {}
    results = []
    for index, score in _top(result, request.top_n):
        item: dict[str, Any] = {"index": index, "relevance_score": score}
        if request.return_documents:
            doc = request.documents[index]
            item["document"] = {"text": doc} if isinstance(doc, str) else doc
        if request.return_reasoning:
            item["reasoning"] = reasoning.get(index)
        results.append(item)
    tokens = {"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"]}
    meta: dict[str, Any] = {
        "api_version": {"version": api_version},
        "billed_units": {"search_units": max(1, math.ceil(len(request.documents) / 100)), **tokens},
        "tokens": tokens,
        "reasonrank": _extras(result, usage, deadline),
    }
    if warnings:
        meta["warnings"] = warnings
    body: dict[str, Any] = {"id": request_id, "results": results, "meta": meta}
    if api_version == "1":
        total = usage["prompt_tokens"] + usage["completion_tokens"]
        body["model"] = model
        body["usage"] = {"total_tokens": total, **{k: usage[k] for k in ("prompt_tokens", "completion_tokens")}}
    return body


def tei_response(request: TEIRerankRequest, result: Any) -> list[dict[str, Any]]:
    """TEI's body: ``[{index, score, text?}]`` best first (scores are rank-derived, raw or not)."""
    reasoning = reasoning_by_passage(result) if request.return_reasoning else {}
    items = []
    for index, score in _top(result, None):
        item: dict[str, Any] = {"index": index, "score": score}
        if request.return_text:
            item["text"] = request.texts[index]
        if request.return_reasoning:
            item["reasoning"] = reasoning.get(index)
        items.append(item)
    return items
