"""What reranking a dataset cost, window by window: statuses, usage, planned windows, trace lines.

Works with results that carry ``RerankResult.usage`` and ``WindowTrace.status`` and with results that
do not (their usage is then counted from the window traces).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any

from reasonrank.core.types import Usage

__all__ = ["window_status", "result_usage", "planned_windows", "takes_keyword", "trace_line", "token_cost"]


def window_status(window: Any) -> str:
    """``"ok"``, ``"repaired"``, ``"failed"`` or ``"skipped"``: what happened to one window."""
    status = getattr(window, "status", None)
    if status in ("failed", "skipped"):
        return status
    if window.error is not None:
        return "failed"
    return "repaired" if status == "repaired" or window.repairs else "ok"


def _usage_from_windows(windows: list[Any]) -> Usage:
    usage = Usage()
    for window in windows:
        status = window_status(window)
        if status == "skipped":
            usage.skipped_windows += 1
        elif getattr(window, "cached", False):
            usage.cached_calls += 1
        else:
            usage.calls += 1
            usage.failed_calls += status == "failed"
            usage.prompt_tokens += window.prompt_tokens or 0
            usage.completion_tokens += window.completion_tokens or 0
    return usage


def result_usage(result: Any) -> Usage:
    """``result.usage``, or the same counted from ``result.windows`` when the result carries none."""
    usage = getattr(result, "usage", None)
    if usage is not None and (usage.calls or usage.cached_calls or usage.skipped_windows or not result.windows):
        return usage
    return _usage_from_windows(result.windows)


def planned_windows(strategy: Any, n: int) -> int:
    """How many windows ``strategy`` plans for ``n`` candidates (the count does not depend on the answers)."""
    plan = strategy.plan(n)
    count = 0
    while pending := plan.pending():
        count += len(pending)
        plan.apply([list(range(len(window))) for window in pending])
    return count


def takes_keyword(function: Callable[..., Any], name: str) -> bool:
    """Whether ``function`` accepts the keyword argument ``name``."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def trace_line(record: Mapping[str, Any]) -> str:
    """One JSON line that is always valid UTF-8.

    Text stays readable (``ensure_ascii=False``) unless it holds a lone surrogate (``"\\ud800"``, which
    a model's output can carry and UTF-8 cannot encode): that line is written with ASCII escapes, so
    ``json.loads`` gives back exactly the text the model returned.
    """
    text = json.dumps(record, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(record, ensure_ascii=True)
    return text + "\n"


def token_cost(prompt_tokens: int, completion_tokens: int, price_in: float | None, price_out: float | None):
    """US$ for these tokens at ``price_in`` / ``price_out`` per million (None when neither is given).

    The same estimate ``reasonrank synthesize`` prints (:meth:`reasonrank.synthesis.report.TokenUsage.cost`).
    """
    from reasonrank.synthesis.report import TokenUsage

    return TokenUsage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens).cost(price_in, price_out)
