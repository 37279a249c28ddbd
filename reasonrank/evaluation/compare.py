"""Paired comparison of two runs: means, difference, paired t-test, randomization test, plot."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reasonrank.evaluation.metrics import Evaluation

__all__ = ["Comparison", "compare", "plot_differences"]


@dataclass
class Comparison:
    """``b - a`` on one metric over the queries both runs were evaluated on."""

    metric: str
    queries: list[str]
    a: list[float]
    b: list[float]
    mean_a: float
    mean_b: float
    t_statistic: float
    t_pvalue: float
    randomization_pvalue: float
    wins: int  # b better
    losses: int
    ties: int

    @property
    def difference(self) -> float:
        return self.mean_b - self.mean_a

    @property
    def per_query_difference(self) -> dict[str, float]:
        return {q: y - x for q, x, y in zip(self.queries, self.a, self.b)}

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("queries", "a", "b")}
        if not math.isfinite(self.t_statistic):  # JSON has no infinity
            out["t_statistic"] = None
        out["difference"] = self.difference
        out["n"] = len(self.queries)
        return out


def _seeded(function: Any, generator: Any) -> dict[str, Any]:
    """The random generator keyword of a scipy function: ``rng`` (scipy >= 1.15) or ``random_state``."""
    import inspect

    return {"rng" if "rng" in inspect.signature(function).parameters else "random_state": generator}


def compare(a: Evaluation, b: Evaluation, metric: str, *, resamples: int = 10_000, seed: int = 0) -> Comparison:
    """Paired tests of run ``b`` against run ``a`` on ``metric``.

    Both tests are two-sided over the queries evaluated in both runs: Student's paired t-test
    (``scipy.stats.ttest_rel``) and a randomization (sign-flip permutation) test on the mean
    difference (``scipy.stats.permutation_test``, exact when ``2**n <= resamples``).
    """
    import numpy as np
    from scipy import stats

    if metric not in a.metrics or metric not in b.metrics:
        raise ValueError(f"metric {metric!r} was not computed for both runs")
    queries = [q for q in a.per_query if q in b.per_query]
    if len(queries) < 2:
        raise ValueError(f"the runs share {len(queries)} evaluated queries; a paired test needs at least 2")
    x = np.array([a.per_query[q][metric] for q in queries])
    y = np.array([b.per_query[q][metric] for q in queries])
    diff = y - x
    if np.allclose(diff, 0.0):
        t_stat, t_p, r_p = 0.0, 1.0, 1.0
    else:
        if np.allclose(diff, diff[0]):  # constant non-zero difference: the t statistic is infinite
            t_stat, t_p = float(np.sign(diff[0]) * np.inf), 0.0
        else:
            t = stats.ttest_rel(y, x)
            t_stat, t_p = float(t.statistic), float(t.pvalue)
        perm = stats.permutation_test(
            (y, x),
            lambda u, v, axis: np.mean(u - v, axis=axis),
            permutation_type="samples",
            vectorized=True,
            n_resamples=resamples,
            alternative="two-sided",
            **_seeded(stats.permutation_test, np.random.default_rng(seed)),
        )
        r_p = float(perm.pvalue)
    return Comparison(
        metric=metric,
        queries=queries,
        a=x.tolist(),
        b=y.tolist(),
        mean_a=float(x.mean()),
        mean_b=float(y.mean()),
        t_statistic=t_stat,
        t_pvalue=t_p,
        randomization_pvalue=r_p,
        wins=int((diff > 1e-12).sum()),
        losses=int((diff < -1e-12).sum()),
        ties=int((abs(diff) <= 1e-12).sum()),
    )


def plot_differences(comparison: Comparison, path: str | Path, labels: tuple[str, str] = ("A", "B")) -> Path:
    """Write a PNG bar chart of the per-query difference ``B - A``, sorted, with the mean marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = sorted(comparison.per_query_difference.items(), key=lambda kv: kv[1], reverse=True)
    values = [v for _, v in items]
    colors = ["tab:green" if v > 0 else "tab:red" if v < 0 else "tab:gray" for v in values]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.12 * len(values) + 2), 4))
    ax.bar(range(len(values)), values, color=colors, width=0.85)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.axhline(
        comparison.difference, color="tab:blue", linestyle="--", linewidth=1, label=f"mean {comparison.difference:+.4f}"
    )
    ax.set_xlabel(f"queries (sorted), n={len(values)}")
    ax.set_ylabel(f"{comparison.metric}: {labels[1]} - {labels[0]}")
    ax.set_title(
        f"{labels[1]} vs {labels[0]}: {comparison.wins} better, {comparison.losses} worse, {comparison.ties} tied; "
        f"t-test p={comparison.t_pvalue:.3g}",
        fontsize=9,
    )
    if len(values) <= 40:
        ax.set_xticks(range(len(values)), [q for q, _ in items], rotation=90, fontsize=6)
    else:
        ax.set_xticks([])
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
