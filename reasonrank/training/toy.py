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

__all__ = ["TOPICS", "make_task", "write_task", "build_tiny_model"]

TOPICS = [
    "zorv", "quelb", "miraq", "tovex", "plinth", "grasp", "vendo", "kulak", "ossim", "brant",
    "yelto", "fimber", "drax", "wumpo", "nerit", "calyx", "jorum", "spelk", "thrum", "uvula",
    "pexit", "raddle", "sorrel", "gimlet", "hovel", "lumen", "mirth", "nadir", "oxbow", "quaff",
]
FILLER = ["river", "solar", "code", "stone", "green", "paper", "music", "light", "cloud", "metal", "bread", "glass"]


def make_task(num_queries: int, *, window: int = 4, seed: int = 0, prefix: str = "q",
              num_topics: int | None = None, unreliable_topics: int = 0) -> list[dict[str, Any]]:
    """Synthetic samples: ``{"dataset","qid","query","docs": {id: text},"initial_list","final_list","relevant_docids","reasoning"}``.

    ``relevant_docids`` is always the truth. On queries about the first ``unreliable_topics`` topics the
    teacher's reasoning is still right but its final list is shuffled: the list disagrees with the
    teacher's own judgements, the inconsistency ReasonRank's self-consistency filter targets. SFT
    imitates those lists; the reward, computed on the positives, does not.
    """
    rng = random.Random(seed)
    topics = TOPICS[:num_topics] if num_topics else TOPICS
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
        reasoning = " ".join(f"[{k}] {words[d]} vs {topic} {'yes' if d in relevant else 'no'}"
                             for k, d in enumerate(initial, 1))
        samples.append({
            "dataset": "toy", "qid": f"{prefix}{i}", "query": f"about {topic}", "docs": docs,
            "initial_list": initial, "final_list": final, "relevant_docids": relevant, "reasoning": reasoning,
        })
    return samples


def write_task(samples: list[dict[str, Any]], out_dir: str | Path) -> Path:
    """Write samples as ``training_data_all.jsonl`` + ``id_query/toy.jsonl`` + ``id_doc/toy.tsv``; returns the jsonl."""
    out = Path(out_dir)
    (out / "id_query").mkdir(parents=True, exist_ok=True)
    (out / "id_doc").mkdir(parents=True, exist_ok=True)
    with (out / "training_data_all.jsonl").open("w", encoding="utf-8") as main, \
            (out / "id_query" / "toy.jsonl").open("w", encoding="utf-8") as queries, \
            (out / "id_doc" / "toy.tsv").open("w", encoding="utf-8") as docs:
        for s in samples:
            queries.write(json.dumps({"id": s["qid"], "text": s["query"]}) + "\n")
            for docid, text in s["docs"].items():
                docs.write(f"{docid}\t{text}\n")
            main.write(json.dumps({k: s[k] for k in ("dataset", "qid", "initial_list", "final_list",
                                                     "reasoning", "relevant_docids")}) + "\n")
    return out / "training_data_all.jsonl"


CHAT_TEMPLATE = (
    "{%- for message in messages %}{%- if message['role'] == 'assistant' %}{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}{{- '\\n' }}"
    "{%- else %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
TAGS = ["<think>", "</think>", "<answer>", "</answer>"]


def build_tiny_model(out_dir: str | Path, *, extra_text: list[str] | None = None, vocab_size: int = 700,
                     hidden_size: int = 64, num_layers: int = 2, seed: int = 0, max_window: int = 20) -> Path:
    """A random tiny Qwen3 with a locally trained byte-level BPE tokenizer, saved to ``out_dir``.

    The think/answer tags are non-special added tokens (GRPO decodes with ``skip_special_tokens``),
    eos is ``<|im_end|>``, the ChatML template carries ``{% generation %}`` markers, and ``[1]`` ..
    ``[max_window]`` are single tokens.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AddedToken, AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen3Config

    from reasonrank.core.prompts import build_messages

    out = Path(out_dir)
    lines = []
    for s in make_task(60, seed=seed + 999, prefix="v"):
        msgs = build_messages(s["query"], list(s["docs"].values()))
        lines += [m["content"] for m in msgs]
        lines.append(f"<think> {s['reasoning']} </think> <answer> [1] > [2] > [3] > [4] </answer>")
    lines += list(extra_text or [])
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|pad|>",
                                  bos_token=None, unk_token=None,
                                  additional_special_tokens=["<|im_start|>", "<|endoftext|>"],
                                  padding_side="left", model_max_length=4096)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAGS])
    # Window identifiers as single tokens make "find passage [k]" a plain induction-head lookup.
    tok.add_tokens([AddedToken(f"[{k}]", special=False, normalized=False) for k in range(1, max_window + 1)])
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = Qwen3Config(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=hidden_size // 4, tie_word_embeddings=True, max_position_embeddings=4096,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.bos_token_id = None
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m reasonrank.training.toy OUT_DIR``: a tiny model in OUT/model and toy data in OUT/data."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out_dir")
    parser.add_argument("--queries", type=int, default=64)
    args = parser.parse_args(argv)
    out = Path(args.out_dir)
    build_tiny_model(out / "model")
    path = write_task(make_task(args.queries), out / "data")
    print(f"model: {out / 'model'}\ndata: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
