"""``reasonrank synthesize``: build ReasonRank training data with a teacher LLM (paper section 3).

    reasonrank synthesize --queries queries.jsonl --corpus corpus.jsonl --out data/ \\
        --base-url https://api.deepseek.com/v1 --model deepseek-reasoner --domain biology
    reasonrank synthesize --dataset ../shared/data/dl19_bm25_top100.jsonl --out data/ \\
        --base-url http://localhost:8000/v1 --model teacher --limit 10

Writes ``training_data_all.jsonl`` + ``id_query/`` + ``id_doc/`` into ``--out``; a re-run resumes.
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synthesize",
        help="synthesize reasoning-intensive listwise training data with a teacher LLM",
        description=(
            "Build candidate lists (BM25 or a run), let a teacher mine positives and rank each list with "
            "reasoning, keep self-consistent samples, and write the released training-data format. "
            "Resumable: finished queries are skipped on a re-run."
        ),
    )
    src = p.add_argument_group("input (either --queries + --corpus, or --dataset)")
    src.add_argument("--queries", help="queries JSONL: id/qid, query/text, optional answer, qrels, dataset")
    src.add_argument("--corpus", help="corpus JSONL: id/docid, contents/text, optional title")
    src.add_argument("--run", help="TREC run giving the candidates (default: BM25 over --corpus)")
    src.add_argument("--qrels", help="TREC qrels with known positives (optional)")
    src.add_argument("--dataset", help="evaluation-shape JSONL {qid, query, candidates:[{docid, text}], qrels}")
    src.add_argument("--domain", help="the 'dataset' field of the records (default: per query, else the file stem)")
    src.add_argument("--limit", type=int, help="use only the first N queries of the input")

    out = p.add_argument_group("output")
    out.add_argument("--out", required=True, help="output directory (created; appended to on a re-run)")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")

    teacher = p.add_argument_group("teacher (OpenAI-compatible chat endpoint)")
    teacher.add_argument(
        "--base-url", required=True, help="e.g. https://api.deepseek.com/v1 or http://localhost:8000/v1"
    )
    teacher.add_argument("--model", required=True, help="teacher model name, e.g. deepseek-reasoner")
    teacher.add_argument("--api-key", default=None, help="default: $REASONRANK_API_KEY")
    teacher.add_argument("--concurrency", type=int, default=8, help="queries (and requests) in flight (default 8)")
    teacher.add_argument("--max-new-tokens", type=int, default=8192, help="per teacher answer (default 8192)")
    teacher.add_argument("--temperature", type=float, default=0.6, help="default 0.6 (DeepSeek-R1's advice)")
    teacher.add_argument("--timeout", type=float, default=600.0, help="seconds per request (default 600)")
    teacher.add_argument("--max-retries", type=int, default=3, help="retries per failed request (default 3)")
    teacher.add_argument(
        "--tokenizer",
        help="local/HF tokenizer for exact passage truncation (default: the server's /tokenize, else words)",
    )
    teacher.add_argument("--price-in", type=float, help="$ per 1M prompt tokens, for the cost estimate")
    teacher.add_argument("--price-out", type=float, help="$ per 1M completion tokens")

    lists = p.add_argument_group("candidate lists and labels")
    lists.add_argument("--list-size", type=int, default=20, help="passages per list (default 20)")
    lists.add_argument("--pool-size", type=int, default=40, help="first-stage candidates considered (default 40)")
    lists.add_argument("--max-positives", type=int, default=5, help="positives per list at most (default 5)")
    lists.add_argument(
        "--hard-negatives", type=int, default=None, help="top-ranked negatives per list (default: half the free slots)"
    )
    lists.add_argument(
        "--positives",
        default="auto",
        choices=("auto", "teacher", "qrels"),
        help="who labels positives (default auto: teacher when a gold answer exists, else qrels, else teacher)",
    )
    lists.add_argument("--min-grade", type=int, default=1, help="qrels grade counted as positive (default 1)")
    lists.add_argument(
        "--max-passage-tokens", type=int, default=512, help="truncate passages in the prompts; 0: off (default 512)"
    )
    lists.add_argument("--threshold", type=float, default=0.4, help="keep samples with nDCG@10 >= this (default 0.4)")
    lists.add_argument("--seed", type=int, default=0, help="seed of the list sampling (default 0)")
    p.set_defaults(func=run)


def _load(args: argparse.Namespace):
    from reasonrank.synthesis import (
        BM25Retriever,
        attach_qrels,
        load_corpus,
        load_dataset_jsonl,
        load_queries,
        pools_from_run,
    )

    if args.dataset and (args.queries or args.corpus or args.run):
        raise ValueError("give either --dataset, or --queries with --corpus (and optionally --run)")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if args.dataset:
        queries, corpus = load_dataset_jsonl(args.dataset, domain=args.domain)
        queries = queries[: args.limit]
        if args.qrels:
            attach_qrels(queries, args.qrels)
        return queries, corpus
    if not (args.queries and args.corpus):
        raise ValueError("--queries and --corpus are required (or use --dataset)")
    queries = load_queries(args.queries, domain=args.domain)[: args.limit]
    if args.qrels:
        attach_qrels(queries, args.qrels)
    if args.run:
        pools_from_run(queries, args.run, args.pool_size)
        wanted = {d for q in queries for d in q.pool} | {d for q in queries for d in q.qrels}
        corpus = load_corpus(args.corpus, wanted)
    else:
        corpus = load_corpus(args.corpus)
        print(f"indexing {len(corpus)} passages with BM25 ...", file=sys.stderr)
        BM25Retriever(corpus).fill_pools(queries, args.pool_size)
    return queries, corpus


def run(args: argparse.Namespace) -> int:
    from reasonrank.core.types import SamplingParams
    from reasonrank.synthesis import ListConfig, SynthesisConfig, synthesize

    if args.concurrency < 1:
        raise ValueError(f"--concurrency must be >= 1, got {args.concurrency}")
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=0.95)
    config = SynthesisConfig(
        lists=ListConfig(
            list_size=args.list_size,
            max_positives=min(args.max_positives, args.list_size),
            hard_negatives=args.hard_negatives,
        ),
        pool_size=args.pool_size,
        positives=args.positives,
        min_grade=args.min_grade,
        threshold=args.threshold,
        max_passage_tokens=args.max_passage_tokens or None,
        mining_sampling=sampling,
        ranking_sampling=sampling,
        concurrency=args.concurrency,
        seed=args.seed,
        price_in=args.price_in,
        price_out=args.price_out,
    )
    queries, corpus = _load(args)
    api_key = args.api_key or os.environ.get("REASONRANK_API_KEY")  # never another service's key
    report = synthesize(
        queries,
        corpus,
        args.out,
        base_url=args.base_url,
        model=args.model,
        api_key=api_key,
        config=config,
        show_progress=not args.no_progress,
        timeout=args.timeout,
        max_retries=args.max_retries,
        **({"truncation": "tokenizer", "tokenizer": args.tokenizer} if args.tokenizer else {}),
    )
    print(report.format())
    return 1 if report.failed else 0
