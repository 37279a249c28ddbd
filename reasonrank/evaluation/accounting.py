"""What reranking a dataset costs: planned windows, trace lines, token cost."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["planned_windows", "trace_line", "token_cost"]


def planned_windows(strategy: Any, n: int) -> int:
    """How many windows ``strategy`` plans for ``n`` candidates (the count does not depend on the answers)."""
    plan = strategy.plan(n)
    count = 0
    while pending := plan.pending():
        count += len(pending)
        plan.apply([list(range(len(window))) for window in pending])
    return count


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
