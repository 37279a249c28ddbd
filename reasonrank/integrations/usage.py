"""What one rerank cost and which model calls it made, in the shapes the frameworks' tracing reads.

:func:`usage_of` is the one place usage is computed: from ``RerankResult.usage`` when the core reports
it, else summed from the window traces. :func:`model_calls` lists the windows that reached the model, so
an adapter can report each as an LLM call (LlamaIndex events, LangChain child runs, Haystack spans).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from reasonrank.core.types import RerankResult, WindowTrace

__all__ = ["USAGE_FIELDS", "CallUsage", "ModelCall", "is_complete", "model_calls", "usage_of"]

USAGE_FIELDS = ("calls", "cached_calls", "prompt_tokens", "completion_tokens", "failed_calls", "skipped_windows")


@dataclass(frozen=True)
class CallUsage:
    """What one adapter call cost: model calls, cache hits, tokens, failed calls, skipped windows."""

    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failed_calls: int = 0
    skipped_windows: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "total_tokens": self.total_tokens}


def _status(window: WindowTrace) -> str:
    """A window's status: the core's, or (before the core sets one) derived from its error and repairs."""
    status = getattr(window, "status", None)
    return status or ("failed" if window.error else "repaired" if window.repairs else "ok")


def _made_call(window: WindowTrace) -> bool:
    return _status(window) != "skipped" and not getattr(window, "cached", False)


def usage_of(result: RerankResult | None) -> CallUsage:
    """The usage of ``result``: ``result.usage`` when the core reports it, else summed from its windows."""
    if result is None:
        return CallUsage()
    usage = getattr(result, "usage", None)
    if usage is not None:
        return CallUsage(**{name: int(getattr(usage, name, 0) or 0) for name in USAGE_FIELDS})
    made = [w for w in result.windows if _made_call(w)]
    statuses = [_status(w) for w in result.windows]
    return CallUsage(
        calls=len(made),
        cached_calls=sum(bool(getattr(w, "cached", False)) for w in result.windows),
        prompt_tokens=sum(w.prompt_tokens or 0 for w in made),
        completion_tokens=sum(w.completion_tokens or 0 for w in made),
        failed_calls=statuses.count("failed"),
        skipped_windows=statuses.count("skipped"),
    )


def is_complete(result: RerankResult | None) -> bool:
    """Whether the model ranked every planned window (``result.complete`` when the core reports it)."""
    if result is None:
        return True
    complete = getattr(result, "complete", None)
    if complete is not None:
        return bool(complete)
    return all(_status(w) in ("ok", "repaired") for w in result.windows)


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
            status=_status(w),
            error=w.error,
            finish_reason=w.finish_reason,
        )
        for w in result.windows
        if _made_call(w)
    ]
