"""What one rerank cost and which model calls it made, in the shapes the frameworks' tracing reads.

:func:`usage_of` is ``RerankResult.usage`` (empty when no model was called). :func:`model_calls` lists the windows that reached the model, so
an adapter can report each as an LLM call (LlamaIndex events, LangChain child runs, Haystack spans).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reasonrank.core.types import RerankResult, Usage, WindowTrace

__all__ = ["ModelCall", "is_complete", "model_calls", "usage_of"]


def usage_of(result: RerankResult | None) -> Usage:
    """The usage of ``result`` (nothing for the 0/1-item short-cut, which calls no model)."""
    return result.usage if result is not None else Usage()


def is_complete(result: RerankResult | None) -> bool:
    """Whether the model ranked every planned window."""
    return result is None or result.complete


def _made_call(window: WindowTrace) -> bool:
    return window.status != "skipped" and not window.cached


@dataclass(frozen=True)
class ModelCall:
    """One window sent to the model, as a framework's tracing reports an LLM call (after it returned)."""

    round: int
    prompt: str  # a summary (the query and the window's passages): the full prompt is not kept in the trace
    output: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    status: str
    error: str | None
    finish_reason: str | None

    @property
    def token_usage(self) -> dict[str, int]:
        """OpenAI-style counts (the shape LlamaIndex and LangChain token counters read)."""
        total = self.prompt_tokens + self.completion_tokens
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens, "total_tokens": total}

    def span_tags(self, model: str) -> dict[str, Any]:
        """OpenTelemetry GenAI-style span tags."""
        return {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": self.prompt_tokens,
            "gen_ai.usage.output_tokens": self.completion_tokens,
            "reasonrank.round": self.round,
            "reasonrank.status": self.status,
            "reasonrank.seconds": self.seconds,
            **({"reasonrank.error": self.error} if self.error else {}),
        }


def model_calls(result: RerankResult | None) -> list[ModelCall]:
    """The windows of ``result`` that reached the model (cache hits and skipped windows left out)."""
    if result is None:
        return []
    return [
        ModelCall(
            round=w.round,
            prompt=f"Rank passages {[i + 1 for i in w.passages]} for the query: {result.query}",
            output=w.raw_output,
            prompt_tokens=w.prompt_tokens or 0,
            completion_tokens=w.completion_tokens or 0,
            seconds=w.seconds,
            status=w.status,
            error=w.error,
            finish_reason=w.finish_reason,
        )
        for w in result.windows
        if _made_call(w)
    ]
