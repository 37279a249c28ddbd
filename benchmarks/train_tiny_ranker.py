"""Proof that the training recipe's machinery learns: SFT then GRPO on a synthetic listwise task, CPU, offline.

A random tiny Qwen3 (a locally trained BPE tokenizer, nothing downloaded) learns to rank windows of 4
passages for queries "about <topic>": a passage is relevant exactly when it contains <topic>. The
teacher's reasoning walks the window (``[1] drax vs zorv no [2] zorv vs zorv yes ...``) and ranks the
"yes" passages first, except on ``--unreliable-topics`` training topics where its final list is shuffled.
SFT (full fine-tuning) imitates the teacher; GRPO (a new LoRA on the SFT model, merged at the end)
optimises the multi-view reward against the positives. Data go through the real loaders (released
layout), prompts come from ``build_messages``.

Held-out split: queries on *other topic words* than training (``--heldout-topics``), so it shares no
query string and no passage text with training (checked, and printed). Prints a markdown table of
greedy held-out format validity, nDCG@10 (inference parser) and mean reward before SFT, after SFT and
after GRPO, then the sampled training curve of GRPO.

What it shows: the SFT -> GRPO pipeline (loaders, prompts, completion-only loss, the reward wired into
TRL, LoRA merge) trains a model end to end, and how far a tiny model's learned compare-and-rank chain
carries to unseen topic words. What it does not show: anything about real language, real queries or a
real teacher (the teacher is a code rule; the task is a string-match), or that GRPO beats SFT in
general. The self-consistency filter is off, but that changes nothing here: at the paper's alpha = 0.4
it would keep every one of these 4-passage lists, shuffled or not (any 4-passage list with one or two
positives scores nDCG@10 >= 0.43), so it cannot catch the shuffled lists.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python benchmarks/train_tiny_ranker.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def evaluate(model_dir: str, rows: list[dict], max_new_tokens: int = 72, batch_size: int = 16) -> list[dict]:
    """Greedy completions on held-out rows -> per row: valid answer, nDCG@10 (inference parser), reward."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasonrank.core.parsing import parse_ranking
    from reasonrank.training.ranking_metrics import ndcg_at_k
    from reasonrank.training.rewards import score_completion

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    scores = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        texts = [tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in batch]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
        for row, ids in zip(batch, out[:, enc["input_ids"].shape[1] :]):
            text = tok.decode(ids, skip_special_tokens=True)
            parts = score_completion(
                text,
                initial_list=row["initial_list"],
                final_list=row["final_list"],
                relevant_docids=row["relevant_docids"],
            )
            order = parse_ranking(text, len(row["initial_list"]))  # what the reranker would use
            scores.append(
                {
                    "valid": float(parts.answer_ok),
                    "reward": parts.reward,
                    "ndcg": ndcg_at_k([row["initial_list"][i] for i in order], row["relevant_docids"], 10),
                }
            )
    return scores


def summarize(scores: list[dict]) -> dict[str, float]:
    n = max(len(scores), 1)
    return {key: sum(s[key] for s in scores) / n for key in ("valid", "ndcg", "reward")}


def check_disjoint(train: list[dict], heldout: list[dict]) -> tuple[int, int]:
    """Raise if a held-out query or passage text occurs in training; returns (queries, passages) held out."""
    train_queries = {s["query"] for s in train}
    train_passages = {t for s in train for t in s["docs"].values()}
    queries = {s["query"] for s in heldout}
    passages = {t for s in heldout for t in s["docs"].values()}
    if queries & train_queries or passages & train_passages:
        raise AssertionError("held-out split overlaps training")
    return len(queries), len(passages)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="work directory (default: a temporary one)")
    parser.add_argument("--train-queries", type=int, default=400)
    parser.add_argument("--heldout-queries", type=int, default=96)
    parser.add_argument("--topics", type=int, default=8, help="number of training topic words")
    parser.add_argument("--heldout-topics", type=int, default=8, help="number of other topic words held out")
    parser.add_argument(
        "--unreliable-topics", type=int, default=3, help="topics on which the teacher's final list is shuffled"
    )
    parser.add_argument("--sft-steps", type=int, default=400)
    parser.add_argument("--sft-lr", type=float, default=1e-3)
    parser.add_argument("--grpo-steps", type=int, default=100)
    parser.add_argument("--grpo-batch", type=int, default=32, help="completions per GRPO step (prompts x 8)")
    parser.add_argument("--grpo-lr", type=float, default=5e-4)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from reasonrank.testing.toy import TOPICS, build_tiny_model, make_task, write_task
    from reasonrank.training.config import DataSettings, GRPORunConfig, LoraSettings, SFTRunConfig
    from reasonrank.training.data import grpo_rows, load_records
    from reasonrank.training.grpo import run_grpo
    from reasonrank.training.ranking_metrics import ndcg_at_k
    from reasonrank.training.sft import run_sft

    work = Path(args.out or tempfile.mkdtemp(prefix="tiny-ranker-"))
    t0 = time.perf_counter()
    model_dir = build_tiny_model(work / "model", hidden_size=args.hidden, num_layers=args.layers, seed=args.seed)
    train_samples = make_task(
        args.train_queries,
        seed=args.seed + 1,
        prefix="t",
        topics=TOPICS[: args.topics],
        unreliable_topics=args.unreliable_topics,
    )
    train_file = write_task(train_samples, work / "train")
    heldout_topics = TOPICS[args.topics : args.topics + args.heldout_topics]
    heldout_samples = make_task(args.heldout_queries, seed=args.seed + 2, prefix="h", topics=heldout_topics)
    distinct_queries, distinct_passages = check_disjoint(train_samples, heldout_samples)
    heldout = grpo_rows(load_records(write_task(heldout_samples, work / "heldout")), mode="reasoning")
    initial = sum(ndcg_at_k(r["initial_list"], r["relevant_docids"]) for r in heldout) / len(heldout)

    common = dict(
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        save_strategy="no",
        dtype="float32",
        logging_steps=10,
        seed=args.seed,
    )
    data = DataSettings(train_files=[str(train_file)], max_passage_tokens=64, self_consistency_threshold=None)
    results = {"before SFT": summarize(evaluate(str(model_dir), heldout))}

    t_sft = time.perf_counter()
    sft = run_sft(
        SFTRunConfig(
            model=str(model_dir),
            output_dir=str(work / "sft"),
            finetuning="full",
            data=data,
            learning_rate=args.sft_lr,
            lr_scheduler_type="constant_with_warmup",
            warmup_ratio=0.05,
            max_steps=args.sft_steps,
            per_device_train_batch_size=8,
            gradient_accumulation_steps=1,
            max_length=1024,
            **common,
        )
    )
    t_sft = time.perf_counter() - t_sft
    results["after SFT"] = summarize(evaluate(sft.model_dir, heldout))

    t_grpo = time.perf_counter()
    grpo = run_grpo(
        GRPORunConfig(
            model=sft.model_dir,
            output_dir=str(work / "grpo"),
            finetuning="lora",
            lora=LoraSettings(r=16, alpha=32, target_modules="all-linear", merge_and_save=True),
            data=data,
            learning_rate=args.grpo_lr,
            lr_scheduler_type="constant",
            warmup_ratio=0.0,
            weight_decay=0.0,
            max_steps=args.grpo_steps,
            per_device_train_batch_size=args.grpo_batch,
            gradient_accumulation_steps=1,
            num_generations=8,
            max_prompt_length=1024,
            max_completion_length=72,
            beta=0.0,
            temperature=1.0,
            **common,
        )
    )
    t_grpo = time.perf_counter() - t_grpo
    results["after GRPO"] = summarize(evaluate(grpo.model_dir, heldout))

    print(
        f"\nheld-out: {len(heldout)} windows of 4 passages on {len(heldout_topics)} topic words never seen in "
        f"training ({distinct_queries} distinct queries, {distinct_passages} distinct passages; none occurs in "
        f"training). Training: {args.train_queries} windows on {args.topics} topics, {args.unreliable_topics} "
        f"with shuffled teacher lists. nDCG@10 of the initial (shuffled) order = {initial:.3f}\n"
    )
    print("| stage (greedy, held-out) | valid format | nDCG@10 | mean reward (max 1.3) |")
    print("|---|---|---|---|")
    for stage, m in results.items():
        print(f"| {stage} | {m['valid']:.3f} | {m['ndcg']:.3f} | {m['reward']:.3f} |")
    logged = [e for e in grpo.log_history if "reward" in e]
    print(
        f"GRPO training (sampled, T=1): reward {logged[0]['reward']:.3f} -> {logged[-1]['reward']:.3f}, "
        f"format failures {logged[0]['rank/format_failure_rate']:.3f} -> {logged[-1]['rank/format_failure_rate']:.3f}, "
        f"nDCG@10 {logged[0]['rank/ndcg@10']:.3f} -> {logged[-1]['rank/ndcg@10']:.3f}"
    )
    print(
        f"SFT {args.sft_steps} steps {t_sft:.0f}s, GRPO {args.grpo_steps} steps {t_grpo:.0f}s, "
        f"total {time.perf_counter() - t0:.0f}s; reward plot: {grpo.plot}"
    )
    (work / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
