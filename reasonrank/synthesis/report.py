"""What a synthesis run did: per-domain outcomes, teacher tokens (and cost), time."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from reasonrank.core.types import Completion

__all__ = ["DomainReport", "SynthesisReport", "TokenUsage"]


@dataclass
class TokenUsage:
    """Teacher tokens of one pass (``unreported``: completions whose server gave no usage)."""

    requests: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    unreported: int = 0

    def add(self, completion: Completion) -> None:
        self.requests += 1
        self.failed += completion.error is not None
        if completion.prompt_tokens is None and completion.completion_tokens is None:
            self.unreported += completion.error is None
        self.prompt_tokens += completion.prompt_tokens or 0
        self.completion_tokens += completion.completion_tokens or 0

    def merge(self, other: TokenUsage) -> None:
        for name in ("requests", "failed", "prompt_tokens", "completion_tokens", "unreported"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def cost(self, price_in: float | None, price_out: float | None) -> float | None:
        if price_in is None and price_out is None:
            return None
        return (self.prompt_tokens * (price_in or 0.0) + self.completion_tokens * (price_out or 0.0)) / 1e6


@dataclass
class DomainReport:
    """Outcomes for one ``dataset`` value in this run."""

    kept: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> count
    failed: int = 0
    skipped: int = 0  # finished by an earlier run

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "kept": self.kept,
            "dropped": self.dropped_total,
            "dropped_by_reason": dict(sorted(self.dropped.items())),
            "failed": self.failed,
            "skipped": self.skipped,
        }


@dataclass
class SynthesisReport:
    """What a run did: per-domain counts, teacher tokens (and cost), time."""

    out_dir: str
    threshold: float
    domains: dict[str, DomainReport] = field(default_factory=dict)
    mining: TokenUsage = field(default_factory=TokenUsage)
    ranking: TokenUsage = field(default_factory=TokenUsage)
    price_in: float | None = None
    price_out: float | None = None
    seconds: float = 0.0

    def domain(self, name: str) -> DomainReport:
        return self.domains.setdefault(name, DomainReport())

    @property
    def kept(self) -> int:
        return sum(d.kept for d in self.domains.values())

    @property
    def dropped(self) -> int:
        return sum(d.dropped_total for d in self.domains.values())

    @property
    def failed(self) -> int:
        return sum(d.failed for d in self.domains.values())

    @property
    def skipped(self) -> int:
        return sum(d.skipped for d in self.domains.values())

    @property
    def usage(self) -> TokenUsage:
        total = TokenUsage()
        total.merge(self.mining)
        total.merge(self.ranking)
        return total

    @property
    def cost(self) -> float | None:
        return self.usage.cost(self.price_in, self.price_out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": self.out_dir,
            "threshold": self.threshold,
            "kept": self.kept,
            "dropped": self.dropped,
            "failed": self.failed,
            "skipped": self.skipped,
            "domains": {name: d.to_dict() for name, d in sorted(self.domains.items())},
            "tokens": {"mining": vars(self.mining).copy(), "ranking": vars(self.ranking).copy()},
            "cost_usd": self.cost,
            "seconds": round(self.seconds, 3),
        }

    def format(self) -> str:
        """A plain-text table for the terminal."""
        lines = [f"{'domain':<24} {'kept':>6} {'dropped':>8} {'failed':>7} {'skipped':>8}  dropped by reason"]
        for name, d in sorted(self.domains.items()):
            reasons = ", ".join(f"{r}={n}" for r, n in sorted(d.dropped.items())) or "-"
            lines.append(f"{name:<24} {d.kept:>6} {d.dropped_total:>8} {d.failed:>7} {d.skipped:>8}  {reasons}")
        lines.append(f"{'total':<24} {self.kept:>6} {self.dropped:>8} {self.failed:>7} {self.skipped:>8}")
        u = self.usage
        tokens = f"teacher: {u.requests} requests ({u.failed} failed), {u.prompt_tokens} prompt + {u.completion_tokens} completion tokens"
        if self.cost is not None:
            tokens += f", ${self.cost:.4f}"
        lines.append(tokens)
        lines.append(f"filter: nDCG@10 >= {self.threshold}; {self.seconds:.1f}s; output: {self.out_dir}")
        if self.failed:
            lines.append(f"{self.failed} queries failed (see synthesis_log.jsonl); run again to retry them")
        return "\n".join(lines)
