"""A tiny offline model and a synthetic listwise task, for tests, the CPU config and the learning benchmark.

The task is learnable by a very small model: each query names a rare "topic" word, and a passage is
relevant exactly when it contains that word. The teacher ranks relevant passages first; its reasoning
walks the window comparing each passage's word with the query's
(``[1] drax vs zorv no [2] zorv vs zorv yes ...``), a chain of thought a tiny model can learn. On
``unreliable_topics`` the teacher's final list is shuffled, so imitation alone cannot rank those
queries well while the reward (computed on the true positives) still can.
Data are written in the released ``training_data_all.jsonl`` + ``id_query/`` + ``id_doc/`` layout so
the real loaders are exercised.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from reasonrank.core.format import format_output
from reasonrank.testing.tiny_model import THINK_TAGS, save_qwen3, train_tokenizer

__all__ = ["CPU_TRAINING", "TOPICS", "build_tiny_model", "build_toy_workspace", "make_task", "write_task"]

#: Run-config settings for a few TRL steps of the tiny model on CPU (the training tests' base).
CPU_TRAINING: dict[str, Any] = {
    "use_cpu": True,
    "bf16": False,
    "gradient_checkpointing": False,
    "save_strategy": "no",
    "dtype": "float32",
    "logging_steps": 1,
    "lr_scheduler_type": "constant",
    "warmup_ratio": 0.0,
    "report_to": "none",
}

TOPICS = [
    "zorv",
    "quelb",
    "miraq",
    "tovex",
    "plinth",
    "grasp",
    "vendo",
    "kulak",
    "ossim",
    "brant",
    "yelto",
    "fimber",
    "drax",
    "wumpo",
    "nerit",
    "calyx",
    "jorum",
    "spelk",
    "thrum",
    "uvula",
    "pexit",
    "raddle",
    "sorrel",
    "gimlet",
    "hovel",
    "lumen",
    "mirth",
    "nadir",
    "oxbow",
    "quaff",
]
FILLER = ["river", "solar", "code", "stone", "green", "paper", "music", "light", "cloud", "metal", "bread", "glass"]


def make_task(
    num_queries: int,
    *,
    window: int = 4,
    seed: int = 0,
    prefix: str = "q",
    num_topics: int | None = None,
    unreliable_topics: int = 0,
    topics: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Synthetic samples: ``{"dataset","qid","query","docs": {id: text},"initial_list","final_list","relevant_docids","reasoning"}``.

    ``relevant_docids`` is always the truth. On queries about the first ``unreliable_topics`` topics the
    teacher's reasoning is still right but its final list is shuffled: the list disagrees with the
    teacher's own judgements, the inconsistency ReasonRank's self-consistency filter targets. SFT
    imitates those lists; the reward, computed on the positives, does not. ``topics`` (a list of words)
    replaces ``TOPICS[:num_topics]``: tasks on disjoint topic lists share no query and no passage.
    """
    rng = random.Random(seed)
    topics = list(topics) if topics else (TOPICS[:num_topics] if num_topics else TOPICS)
    unreliable = set(topics[:unreliable_topics])
    guesses = random.Random(seed + 7919)  # its own stream: the task itself does not depend on the teacher
    samples = []
    for i in range(num_queries):
        topic = rng.choice(topics)
        others = [t for t in topics if t != topic]
        n_rel = rng.randint(1, 2)
        docs = {}
        relevant = []
        words = {}
        for j in range(window):
            docid = f"{prefix}{i}d{j}"
            words[docid] = topic if j < n_rel else rng.choice(others)
            docs[docid] = f"{words[docid]} {rng.choice(FILLER)} {rng.choice(FILLER)}"
            if j < n_rel:
                relevant.append(docid)
        initial = list(docs)
        rng.shuffle(initial)
        final = [d for d in initial if d in relevant] + [d for d in initial if d not in relevant]
        if topic in unreliable:
            final = guesses.sample(initial, len(initial))
        reasoning = " ".join(
            f"[{k}] {words[d]} vs {topic} {'yes' if d in relevant else 'no'}" for k, d in enumerate(initial, 1)
        )
        samples.append(
            {
                "dataset": "toy",
                "qid": f"{prefix}{i}",
                "query": f"about {topic}",
                "docs": docs,
                "initial_list": initial,
                "final_list": final,
                "relevant_docids": relevant,
                "reasoning": reasoning,
            }
        )
    return samples


def write_task(samples: list[dict[str, Any]], out_dir: str | Path) -> Path:
    """Write samples as ``training_data_all.jsonl`` + ``id_query/toy.jsonl`` + ``id_doc/toy.tsv``; returns the jsonl."""
    out = Path(out_dir)
    (out / "id_query").mkdir(parents=True, exist_ok=True)
    (out / "id_doc").mkdir(parents=True, exist_ok=True)
    with (
        (out / "training_data_all.jsonl").open("w", encoding="utf-8") as main,
        (out / "id_query" / "toy.jsonl").open("w", encoding="utf-8") as queries,
        (out / "id_doc" / "toy.tsv").open("w", encoding="utf-8") as docs,
    ):
        for s in samples:
            queries.write(json.dumps({"id": s["qid"], "text": s["query"]}) + "\n")
            for docid, text in s["docs"].items():
                docs.write(f"{docid}\t{text}\n")
            main.write(
                json.dumps(
                    {k: s[k] for k in ("dataset", "qid", "initial_list", "final_list", "reasoning", "relevant_docids")}
                )
                + "\n"
            )
    return out / "training_data_all.jsonl"


CHAT_TEMPLATE = (
    "{%- for message in messages %}{%- if message['role'] == 'assistant' %}{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}{{- '\\n' }}"
    "{%- else %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
TAGS = list(THINK_TAGS)


def build_tiny_model(
    out_dir: str | Path,
    *,
    extra_text: list[str] | None = None,
    vocab_size: int = 700,
    hidden_size: int = 64,
    num_layers: int = 2,
    seed: int = 0,
    max_window: int = 20,
) -> Path:
    """A random tiny Qwen3 with a locally trained byte-level BPE tokenizer, saved to ``out_dir``.

    The think/answer tags are non-special added tokens (GRPO decodes with ``skip_special_tokens``),
    eos is ``<|im_end|>``, the ChatML template carries ``{% generation %}`` markers, and ``[1]`` ..
    ``[max_window]`` are single tokens.
    """
    from reasonrank.core.prompts import build_messages

    lines = []
    for s in make_task(60, seed=seed + 999, prefix="v"):
        msgs = build_messages(s["query"], list(s["docs"].values()))
        lines += [m["content"] for m in msgs]
        lines.append(format_output(s["reasoning"], [1, 2, 3, 4]))
    lines += list(extra_text or [])
    # Window identifiers as single tokens make "find passage [k]" a plain induction-head lookup.
    window_ids = [f"[{k}]" for k in range(1, max_window + 1)]
    tokenizer = train_tokenizer(
        lines,
        vocab_size=vocab_size,
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        model_max_length=4096,
        added_tokens=(TAGS, window_ids),
    )
    return save_qwen3(tokenizer, out_dir, hidden_size=hidden_size, num_layers=num_layers, seed=seed)


def build_toy_workspace(out_dir: str | Path, *, queries: int = 64, only_missing: bool = False) -> tuple[Path, Path]:
    """The tiny model in ``OUT/model`` and toy data in ``OUT/data`` (what the tiny-cpu configs train on).

    ``only_missing``: keep a model or data already there. Returns (model dir, ``training_data_all.jsonl``).
    """
    out = Path(out_dir)
    model, data = out / "model", out / "data" / "training_data_all.jsonl"
    if not (only_missing and (model / "config.json").is_file()):
        build_tiny_model(model)
    if not (only_missing and data.is_file()):
        write_task(make_task(queries), data.parent)
    return model, data


def main(argv: list[str] | None = None) -> int:
    """``python -m reasonrank.testing.toy OUT_DIR``: a tiny model in OUT/model and toy data in OUT/data."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out_dir")
    parser.add_argument("--queries", type=int, default=64)
    args = parser.parse_args(argv)
    model, data = build_toy_workspace(args.out_dir, queries=args.queries)
    print(f"model: {model}\ndata: {data}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
