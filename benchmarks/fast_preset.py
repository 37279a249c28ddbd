"""What a query costs on DL19 under the default settings and under faster ones: calls, rounds, tokens.

The real window schedule runs (``Reranker.rerank_batch``) over DL19's BM25 top-100 against an
in-process backend that ranks each window by query-word overlap, so every count is exact for the
schedule and independent of the model's quality:

- calls and sequential rounds per query (what latency scales with);
- prompt tokens per query, counted with a real tokenizer (SmolLM2-135M-Instruct's, the embedded
  default model from ``reasonrank.core.models.default_model_path()``): each window's chat messages
  rendered with its chat template (``add_generation_prompt=True``), passages truncated to
  ``max_passage_tokens`` by the same tokenizer. ReasonRank-7B's Qwen tokenizer gives similar counts
  (both are byte-level BPE over English text) but not identical ones;
- generated tokens per query: measured for ``direct`` mode (the answer ``[3] > [1] > ...`` is all a
  direct model writes, so its length does not depend on the model); for the reasoning modes the
  length of the reasoning depends on the model and is CITED, not measured: ~750 tokens per window
  in the authors' own run log (reasonrank-7B, 5.27M input / 695.5k output tokens over 103 BRIGHT
  queries x 9 windows), 626-928 per BRIGHT dataset in the paper's Fig. 13.

    python benchmarks/fast_preset.py [--queries 43] [--markdown]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from reasonrank import Reranker
from reasonrank.core.backends.base import Backend
from reasonrank.core.format import format_id_chain
from reasonrank.core.truncation import truncate_with_tokenizer
from reasonrank.core.types import ChatRequest, Completion
from reasonrank.evaluation import load_dataset
from reasonrank.testing import format_answer, lexical_ranking
from reasonrank.testing.answers import parse_window_prompt

#: generated tokens per window of a reasoning model, cited (see the module docstring)
CITED_REASONING_TOKENS = 750

CONFIGS = {
    "default (sliding, depth 100, reasoning)": {},
    "tournament": {"strategy": "tournament"},
    "depth 50": {"depth": 50},
    "depth 30": {"depth": 30},
    "direct": {"prompt_mode": "direct"},
    "tournament + depth 50": {"strategy": "tournament", "depth": 50},
    "fast: tournament + depth 50 + direct": {"strategy": "tournament", "depth": 50, "prompt_mode": "direct"},
    "fastest: tournament + depth 30 + direct": {"strategy": "tournament", "depth": 30, "prompt_mode": "direct"},
}


class CountingBackend(Backend):
    """Ranks windows by word overlap; counts prompt tokens with ``tokenizer``'s chat template."""

    kind = "counting"

    def __init__(self, tokenizer, *, direct: bool) -> None:
        self.tokenizer = tokenizer
        self.direct = direct

    def truncate(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        return truncate_with_tokenizer(self.tokenizer, texts, max_tokens)

    def _tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, requests: Sequence[ChatRequest], *, deadline: float | None = None) -> list[Completion]:
        out = []
        for request in requests:
            query, passages = parse_window_prompt(request.messages)
            order = list(lexical_ranking(query, passages))
            prompt = self.tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
            # direct: the answer is the whole output; reasoning: the stand-in's short reasoning is not counted
            text = format_id_chain([i + 1 for i in order]) if self.direct else format_answer(order)
            completion = self._tokens(text) if self.direct else None
            out.append(Completion(text=text, prompt_tokens=self._tokens(prompt), completion_tokens=completion))
        return out


def measure(tokenizer, settings: dict, queries: list[str], candidates: list[list]) -> dict[str, float]:
    direct = settings.get("prompt_mode") == "direct"
    reranker = Reranker("reasonrank", backend=CountingBackend(tokenizer, direct=direct), **settings)
    results = reranker.rerank_batch(queries, candidates)
    n = len(results)
    calls = sum(len(r.windows) for r in results) / n
    prompt = sum(w.prompt_tokens for r in results for w in r.windows) / n
    if direct:
        generated, source = sum(w.completion_tokens for r in results for w in r.windows) / n, "measured"
    else:
        generated, source = CITED_REASONING_TOKENS * calls, f"cited: {CITED_REASONING_TOKENS}/call"
    return {
        "calls": calls,
        "rounds": sum(r.rounds for r in results) / n,
        "prompt": prompt,
        "generated": generated,
        "source": source,
    }


def settings_text(settings: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in settings.items()) or "(defaults)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="dl19")
    p.add_argument("--queries", type=int, default=None, help="first N queries (default: all 43)")
    p.add_argument("--tokenizer", default=None, help="tokenizer path (default: the embedded SmolLM2-135M-Instruct)")
    args = p.parse_args()

    from transformers import AutoTokenizer

    from reasonrank.core.models import default_model_path

    path = args.tokenizer or default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    ds = load_dataset(args.dataset).limit(args.queries)
    queries = [ds.queries[q] for q in ds.qids]
    candidates = [[c.passage() for c in ds.candidates[q]] for q in ds.qids]
    started = time.perf_counter()
    rows = {name: measure(tokenizer, settings, queries, candidates) for name, settings in CONFIGS.items()}
    base = rows[next(iter(CONFIGS))]
    print(f"{ds.name}: {len(queries)} queries, BM25 top-100; tokenizer {path}; {time.perf_counter() - started:.0f} s\n")
    print(
        "| configuration | `Reranker(...)` settings | calls / query | sequential rounds / query "
        "| prompt tokens / query | generated tokens / query | all tokens vs default |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        total, base_total = row["prompt"] + row["generated"], base["prompt"] + base["generated"]
        print(
            f"| {name} | `{settings_text(CONFIGS[name])}` | {row['calls']:.1f} | {row['rounds']:.1f} "
            f"| {row['prompt']:,.0f} | {row['generated']:,.0f} ({row['source']}) | {total / base_total:.0%} |"
        )


if __name__ == "__main__":
    main()
