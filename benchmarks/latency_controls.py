"""Latency and cost controls measured side by side: schedules and deadlines, a dead server, the cache (issue 11).

A real OpenAI-compatible server on 127.0.0.1 (``reasonrank.testing.RankingServer``) stands in for the
model and answers after ``--latency`` seconds. In part 1 it ranks each window by DL19's relevance
labels (an oracle: it finds each passage's grade by its first words), so nDCG@10 shows how much of a
perfect window ranker's gain a schedule keeps under a deadline; elsewhere it ranks by query-word
overlap. The client is the real openai backend. Three parts, each printed as a table:

1. **Latency per query**, DL19 BM25 top-100, the queries one after another: sliding (the paper's),
   tournament, and each with ``deadline=--deadline``. Per configuration: seconds per query (median and
   max), windows ranked per query, the share of results that are ``complete``, and nDCG@10 with the
   oracle window ranker (BM25's own order is the first row). The real model's figures need a GPU.
2. **A dead server** (a closed port) with ``on_error="keep"``: seconds for one query of 100 passages
   under the default retry settings, the calls attempted, and the warning the caller sees.
3. **The window cache** on a repeated DL19 run: the same queries twice through ``cache="memory"`` and
   through a SQLite file read by a second ``Reranker`` (as a new process would): the hit rate and the
   wall time saved, and that the orders are identical.

    python benchmarks/latency_controls.py [--queries 10] [--latency 0.3] [--deadline 1.0]

It prints numbers; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import logging
import re
import socket
import statistics
import tempfile
import time
from pathlib import Path

from reasonrank import Reranker, RerankResult
from reasonrank.core.passages import passage_text
from reasonrank.evaluation import evaluate, load_dataset
from reasonrank.testing import RankingServer


def ndcg(ds, qids, results) -> float:
    run = {qid: {ds.candidates[qid][i].docid: s for i, s in zip(r.order, r.scores)} for qid, r in zip(qids, results)}
    return evaluate(run, ds.qrels, "ndcg@10").aggregate["ndcg@10"]


_WORD = re.compile(r"\w+")


def key(text: str, words: int = 12) -> tuple[str, ...]:
    return tuple(w.lower() for w in _WORD.findall(text)[:words])


def oracle_ranking(ds):
    """A window ranker by DL19's labels: ``rank(query, passages)`` sorts by each passage's grade."""
    grades = {
        (key(ds.queries[q]), key(passage_text(c.passage()))): ds.qrels.get(q, {}).get(c.docid, 0)
        for q in ds.qids
        for c in ds.candidates[q]
    }

    def rank(query: str, passages: list[str]) -> list[int]:
        q = key(query)
        return sorted(range(len(passages)), key=lambda i: (-grades.get((q, key(passages[i])), 0), i))

    return rank


def schedules(ds, qids, queries, candidates, args) -> None:
    bm25 = [
        RerankResult(query=q, order=list(range(len(c))), scores=[-i for i in range(len(c))])
        for q, c in zip(queries, candidates)
    ]
    print(f"## 1. Latency per query: {len(qids)} DL19 queries x 100, one after another, {args.latency:g} s per call\n")
    print("| configuration | s/query (median) | s/query (max) | windows ranked / query | complete | nDCG@10 |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| BM25 order (no reranking) | 0 | 0 | 0 | - | {ndcg(ds, qids, bm25):.4f} |")
    configs = {
        "sliding (default)": ({"strategy": "sliding"}, None),
        "tournament": ({"strategy": "tournament"}, None),
        f"tournament + deadline={args.deadline:g}": ({"strategy": "tournament"}, args.deadline),
        f"sliding + deadline={args.deadline:g}": ({"strategy": "sliding"}, args.deadline),
    }
    with RankingServer(oracle_ranking(ds), latency=args.latency) as server:
        for name, (settings, deadline) in configs.items():
            with Reranker(base_url=server.base_url, **settings) as rr:
                seconds, results = [], []
                for query, passages in zip(queries, candidates):
                    start = time.perf_counter()
                    results.append(rr.rerank(query, passages, deadline=deadline))
                    seconds.append(time.perf_counter() - start)
            ranked = sum(1 for r in results for w in r.windows if w.status in ("ok", "repaired")) / len(results)
            complete = sum(r.complete for r in results) / len(results)
            print(
                f"| {name} | {statistics.median(seconds):.2f} | {max(seconds):.2f} | {ranked:.1f} "
                f"| {complete:.0%} | {ndcg(ds, qids, results):.4f} |"
            )
    print()


class WarningCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def dead_server(queries, candidates) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = WarningCounter()
    logging.getLogger("reasonrank").addHandler(handler)
    try:
        with Reranker("reasonrank-test", base_url=f"http://127.0.0.1:{port}/v1", on_error="keep") as rr:
            start = time.perf_counter()
            result = rr.rerank(queries[0], candidates[0])
            wall = time.perf_counter() - start
    finally:
        logging.getLogger("reasonrank").removeHandler(handler)
    statuses = {s: sum(w.status == s for w in result.windows) for s in ("ok", "failed", "skipped")}
    print("## 2. A dead server (connection refused), on_error='keep', default retries\n")
    print(f"- one query of {len(candidates[0])} passages returned in {wall:.2f} s")
    print(f"- order kept: {result.order == list(range(len(candidates[0])))}; complete={result.complete}")
    print(f"- windows traced: {statuses}; usage: {result.usage.to_dict()}")
    for message in dict.fromkeys(handler.messages):
        print(f"- warning: {message}")
    print()


def cached_runs(qids, queries, candidates, args) -> None:
    print(f"## 3. The window cache: {len(qids)} DL19 queries reranked twice, {args.latency:g} s per call\n")
    print("| cache | first run s | calls | repeat s | calls | hit rate | time saved | same orders |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    with RankingServer(latency=args.latency) as server, tempfile.TemporaryDirectory() as tmp:
        sqlite = f"sqlite:///{Path(tmp) / 'windows.db'}"
        for name, cache in (("memory (one Reranker)", "memory"), ("SQLite (a second Reranker)", sqlite)):
            runs = []
            with Reranker(base_url=server.base_url, cache=cache) as first:
                runs.append(timed(first, queries, candidates))
                if cache == "memory":
                    runs.append(timed(first, queries, candidates))
            if cache != "memory":
                with Reranker(base_url=server.base_url, cache=cache) as second:
                    runs.append(timed(second, queries, candidates))
            (wall1, res1), (wall2, res2) = runs
            calls1 = sum(r.usage.calls for r in res1)
            calls2 = sum(r.usage.calls for r in res2)
            hits = sum(r.usage.cached_calls for r in res2)
            same = all(a.order == b.order for a, b in zip(res1, res2))
            print(
                f"| {name} | {wall1:.2f} | {calls1} | {wall2:.3f} | {calls2} | {hits / (hits + calls2):.0%} "
                f"| {wall1 - wall2:.2f} s ({1 - wall2 / wall1:.1%}) | {same} |"
            )
    print()


def timed(rr: Reranker, queries, candidates):
    start = time.perf_counter()
    results = rr.rerank_batch(queries, candidates)
    return time.perf_counter() - start, results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="dl19")
    p.add_argument("--queries", type=int, default=10)
    p.add_argument("--latency", type=float, default=0.3, help="seconds per window at the stand-in server")
    p.add_argument("--deadline", type=float, default=1.0, help="seconds per query for the deadline rows")
    args = p.parse_args()
    logging.getLogger("reasonrank").setLevel(logging.ERROR)  # the stand-in has no /tokenize: words it is

    ds = load_dataset(args.dataset).limit(args.queries)
    qids = ds.qids
    queries = [ds.queries[q] for q in qids]
    candidates = [[c.passage() for c in ds.candidates[q]] for q in qids]
    schedules(ds, qids, queries, candidates, args)
    logging.getLogger("reasonrank").setLevel(logging.WARNING)
    dead_server(queries, candidates)
    logging.getLogger("reasonrank").setLevel(logging.ERROR)
    cached_runs(qids, queries, candidates, args)


if __name__ == "__main__":
    main()
