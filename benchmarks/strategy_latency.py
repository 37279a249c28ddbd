"""Wall-clock of the window schedules and of multi-query batching over HTTP, side by side.

A real OpenAI-compatible server on 127.0.0.1 (``reasonrank.testing.RankingServer``) stands in for the
model: it ranks each window by query-word overlap and answers after ``--latency`` seconds, roughly a
GPU server's time for one reasoning window. The client is the real openai backend. For DL19's BM25
top-100 it prints, per configuration, the LLM calls, sequential rounds, wall time and nDCG@10 of the
stand-in ranker (the same for every schedule when the ranker is consistent, which shows the
schedules agree on the top-10).

    python benchmarks/strategy_latency.py --queries 8 --latency 0.2

Configurations: sliding (the paper's) and tournament, each with the queries reranked one after
another (``rerank`` per query) and all together (``rerank_batch``: at each round the windows of all
queries go out concurrently, up to ``--concurrency`` in flight).
"""

from __future__ import annotations

import argparse
import logging
import time

from reasonrank import Reranker
from reasonrank.evaluation import evaluate, load_dataset
from reasonrank.testing import RankingServer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="dl19")
    p.add_argument("--queries", type=int, default=8)
    p.add_argument("--latency", type=float, default=0.2, help="seconds per window at the stand-in server")
    p.add_argument("--concurrency", type=int, default=32)
    args = p.parse_args()
    logging.getLogger("reasonrank").setLevel(logging.ERROR)  # the stand-in has no /tokenize: words it is

    ds = load_dataset(args.dataset)
    qids = ds.qids[: args.queries]
    queries = [ds.queries[q] for q in qids]
    candidates = [[c.passage() for c in ds.candidates[q]] for q in qids]
    print(
        f"{args.dataset}: {len(qids)} queries x {len(candidates[0])} candidates; "
        f"{args.latency:.2f} s per window at the server; concurrency {args.concurrency}\n"
    )
    print(
        f"{'strategy':11s} {'queries':10s} {'calls/q':>7s} {'rounds':>6s} {'wall s':>7s} {'s/query':>7s} {'nDCG@10':>8s}"
    )
    baseline = None
    with RankingServer(latency=args.latency) as server:
        for strategy in ("sliding", "tournament"):
            for batched in (False, True):
                with Reranker(base_url=server.base_url, strategy=strategy, concurrency=args.concurrency) as rr:
                    start = time.perf_counter()
                    if batched:
                        results = rr.rerank_batch(queries, candidates)
                    else:
                        results = [rr.rerank(q, c) for q, c in zip(queries, candidates)]
                    wall = time.perf_counter() - start
                run = {
                    qid: {ds.candidates[qid][i].docid: s for i, s in zip(r.order, r.scores)}
                    for qid, r in zip(qids, results)
                }
                ndcg = evaluate(run, ds.qrels, "ndcg@10").aggregate["ndcg@10"]
                calls = sum(r.calls for r in results) / len(results)
                rounds = max(r.rounds for r in results) if batched else sum(r.rounds for r in results)
                baseline = baseline or wall
                label = "together" if batched else "one by one"
                print(
                    f"{strategy:11s} {label:10s} {calls:7.1f} {rounds:6d} {wall:7.2f} {wall / len(qids):7.3f} "
                    f"{ndcg:8.4f}   x{baseline / wall:.1f} vs sliding one by one"
                )


if __name__ == "__main__":
    main()
