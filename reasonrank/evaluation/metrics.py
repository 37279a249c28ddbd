"""Scoring runs against qrels with ir-measures (its pytrec_eval provider: trec_eval's own C code).

Conventions, matching trec_eval and the ReasonRank/BRIGHT scripts (recipe section 2.3):

- ranking within a query: score descending, ties by docid descending (trec_eval's rule);
- the mean is over the *evaluated* queries: those in both the run and the qrels (trec_eval's
  default; ``missing="zero"`` counts judged queries absent from the run as 0, like ``trec_eval -c``);
- run queries without judgments are not scored (reported in :attr:`Evaluation.unjudged`);
- ``excluded`` ids (BRIGHT) are removed from the run before scoring.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from reasonrank.evaluation.io import Qrels, Run

__all__ = ["DEFAULT_METRICS", "Evaluation", "parse_metrics", "evaluate", "exclude", "format_table"]

DEFAULT_METRICS = ("ndcg@10",)

# Friendly names -> ir-measures syntax. Anything else is passed to ir_measures.parse_measure as is
# (e.g. "R(rel=2)@100", the DL convention for recall with grade >= 2 as relevant).
_ALIASES = {
    "ndcg": "nDCG",
    "ndcg_cut": "nDCG",
    "recall": "R",
    "r": "R",
    "p": "P",
    "precision": "P",
    "map": "AP",
    "ap": "AP",
    "mrr": "RR",
    "rr": "RR",
    "recip_rank": "RR",
    "success": "Success",
    "judged": "Judged",
}
_FRIENDLY = re.compile(r"^(?P<name>[A-Za-z_]+)(?P<rest>(\(.*\))?(@\d+)?)$")


def _ir_measures():
    try:
        import ir_measures
    except ImportError as err:  # the base install is light
        raise ImportError("evaluation needs ir-measures and pytrec_eval: pip install 'reasonrank[eval]'") from err
    if not ir_measures.pytrec_eval.is_available():
        # Without it ir-measures would silently fall back to other (not trec_eval-exact) providers.
        raise ImportError("evaluation needs pytrec_eval (trec_eval's C code): pip install pytrec-eval-terrier")
    return ir_measures


def parse_metrics(spec: str | Iterable[str]) -> dict[str, Any]:
    """``"ndcg@10,recall@100"`` -> ``{"ndcg@10": nDCG@10, "recall@100": R@100}`` (ir-measures measures)."""
    ir_measures = _ir_measures()
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not names:
        raise ValueError("no metrics given")
    measures: dict[str, Any] = {}
    for name in names:
        match = _FRIENDLY.match(name)
        text = name
        if match and match.group("name").lower() in _ALIASES:
            text = _ALIASES[match.group("name").lower()] + match.group("rest")
        try:
            measures[name] = ir_measures.parse_measure(text)
        except (ValueError, NameError, SyntaxError, TypeError, AttributeError) as err:
            raise ValueError(
                f"unknown metric {name!r} ({err}); use e.g. ndcg@10, recall@100, map, mrr@10, p@5 or ir-measures syntax"
            ) from None
    return measures


def exclude(run: Run, excluded: Mapping[str, Iterable[str]] | None) -> Run:
    """The run without each query's excluded docids (BRIGHT's ``excluded_ids``)."""
    if not excluded:
        return run
    out: Run = {}
    for qid, docs in run.items():
        drop = set(excluded.get(qid, ()))
        out[qid] = {d: s for d, s in docs.items() if d not in drop} if drop else docs
    return out


@dataclass
class Evaluation:
    """Aggregate and per-query values of a run. ``per_query[qid][metric]``; means over :attr:`queries`."""

    metrics: list[str]
    aggregate: dict[str, float]
    per_query: dict[str, dict[str, float]]
    unjudged: list[str] = field(default_factory=list)  # in the run, no judgments: not scored
    missing: list[str] = field(default_factory=list)  # judged, absent from the run

    @property
    def queries(self) -> list[str]:
        return list(self.per_query)

    def to_dict(self, per_query: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.aggregate)
        if per_query:
            out = {"aggregate": dict(self.aggregate), "per_query": self.per_query, "queries": len(self.per_query)}
            if self.unjudged:
                out["unjudged"] = self.unjudged
            if self.missing:
                out["missing"] = self.missing
        return out


def evaluate(
    run: Run,
    qrels: Qrels,
    metrics: str | Iterable[str] = DEFAULT_METRICS,
    *,
    excluded: Mapping[str, Iterable[str]] | None = None,
    missing: Literal["skip", "zero"] = "skip",
) -> Evaluation:
    """Score ``run`` against ``qrels`` (see the module docstring for the conventions)."""
    ir_measures = _ir_measures()
    if missing not in ("skip", "zero"):
        raise ValueError(f"missing must be 'skip' or 'zero', got {missing!r}")
    measures = parse_metrics(metrics)
    if not qrels:
        raise ValueError("the qrels are empty")
    run = exclude(run, excluded)
    unjudged = [q for q in run if q not in qrels]
    absent = [q for q in qrels if q not in run or not run[q]]
    scored = [q for q in run if q in qrels and run[q]]
    if not scored and missing == "skip":
        raise ValueError(
            f"no query of the run has judgments (run has {len(run)} queries, e.g. {list(run)[:3]}; "
            f"qrels have {len(qrels)}, e.g. {list(qrels)[:3]}): are they the same collection?"
        )
    evaluated = scored + (absent if missing == "zero" else [])
    by_measure: dict[Any, list[str]] = {}
    for name, measure in measures.items():  # two names may spell one measure ("ndcg@10,nDCG@10")
        by_measure.setdefault(measure, []).append(name)
    per_query: dict[str, dict[str, float]] = {q: {name: 0.0 for name in measures} for q in evaluated}
    if scored:
        sub_run = {q: run[q] for q in scored}
        sub_qrels = {q: dict(qrels[q]) for q in scored}
        # trec_eval's own code for every measure it has; ir-measures' other providers for the rest.
        exact = [m for m in by_measure if ir_measures.pytrec_eval.supports(m)]
        other = [m for m in by_measure if m not in exact]
        for provider, group in ((ir_measures.pytrec_eval, exact), (ir_measures, other)):
            if group:
                for value in provider.iter_calc(group, sub_qrels, sub_run):
                    for name in by_measure[value.measure]:
                        per_query[value.query_id][name] = float(value.value)
    aggregate = {
        name: (math.fsum(per_query[q][name] for q in evaluated) / len(evaluated)) if evaluated else 0.0
        for name in measures
    }
    return Evaluation(list(measures), aggregate, per_query, unjudged, absent if missing == "skip" else [])


def format_table(
    rows: Mapping[str, Mapping[str, float]],
    metrics: Sequence[str],
    *,
    scale: float = 1.0,
    digits: int = 4,
    header: str = "run",
) -> str:
    """A plain-text table: one row per name, one column per metric."""
    width = max([len(header), *(len(r) for r in rows)])
    cols = [max(len(m), digits + 4) for m in metrics]
    lines = ["  ".join([f"{header:<{width}}", *(f"{m:>{c}}" for m, c in zip(metrics, cols))])]
    for name, values in rows.items():
        cells = [f"{values[m] * scale:>{c}.{digits}f}" if m in values else f"{'-':>{c}}" for m, c in zip(metrics, cols)]
        lines.append("  ".join([f"{name:<{width}}", *cells]))
    return "\n".join(lines)
