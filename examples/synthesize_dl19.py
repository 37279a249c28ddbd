"""Synthesize a small ReasonRank training set from TREC DL19 passages, then hand it to the SFT stage.

Offline (a deterministic stand-in teacher is started in-process on 127.0.0.1):

    python examples/synthesize_dl19.py --queries 5 --out outputs/synthesis_dl19

With a real teacher (DeepSeek-R1, or any OpenAI-compatible server such as vLLM):

    python examples/synthesize_dl19.py --base-url https://api.deepseek.com/v1 --model deepseek-reasoner \\
        --api-key "$DEEPSEEK_API_KEY" --queries 5 --price-in 0.55 --price-out 2.19

DL19 has TREC qrels but no gold answers, so the positives are the judged passages (grade >= 2, the
TREC DL binary cut-off), as the paper does for its MS MARCO web-search domain; ``--mine`` asks the
teacher to mine positives instead. The candidates are the BM25 top-100 of ``../shared/data``. The
output (released format) goes to ``--out`` (default ``outputs/``, which git ignores); running the
script again resumes.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from reasonrank.evaluation.datasets import data_dir
from reasonrank.synthesis import ListConfig, SynthesisConfig, load_dataset_jsonl, synthesize
from reasonrank.testing.teacher import TeacherServer


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", help="teacher endpoint (default: an offline stand-in teacher started here)")
    p.add_argument("--model", default="teacher-test", help="teacher model name")
    p.add_argument("--api-key", default=None)
    p.add_argument("--queries", type=int, default=5, help="DL19 queries to label (default 5)")
    p.add_argument("--out", default="outputs/synthesis_dl19", help="output directory")
    p.add_argument("--data", default=None, help="shared data folder (default: ../shared/data)")
    p.add_argument("--mine", action="store_true", help="let the teacher mine positives instead of the qrels")
    p.add_argument("--threshold", type=float, default=0.4)
    p.add_argument("--price-in", type=float, default=None, help="$ per 1M prompt tokens")
    p.add_argument("--price-out", type=float, default=None, help="$ per 1M completion tokens")
    p.add_argument("--sft-steps", type=int, default=3, help="SFT steps on a tiny local model (0: only build the rows)")
    return p.parse_args()


def hand_off_to_sft(out: Path, steps: int) -> None:
    """Load the synthesized data with the training stage's own loader, then train SFT on it for a few steps."""
    from reasonrank.training.data import load_training_jsonl, sft_rows

    data = out / "training_data_all.jsonl"
    if not data.is_file():
        print("no sample was kept: nothing to hand to SFT")
        return
    records = load_training_jsonl(data)  # texts from id_query/ and id_doc/ beside it
    rows = sft_rows(records)  # TRL prompt-completion rows, exactly what the SFT stage trains on
    print(f"SFT hand-off: {len(records)} records -> {len(rows)} TRL rows")
    row = rows[0]
    user = row["prompt"][-1]["content"]
    print("  user message :", user[:150].replace("\n", " ") + " ...")
    print("  completion   :", row["completion"][0]["content"][:150] + " ...")
    if steps <= 0:
        return
    # A tiny random model with a tokenizer trained on these texts stands in for Qwen2.5-7B-Instruct here;
    # with a GPU, use `reasonrank train sft --config reasonrank-7b-sft --set data.train_files=[...]`.
    from reasonrank.testing.toy import build_tiny_model
    from reasonrank.training import run_sft

    texts = [m["content"] for r in rows for m in [*r["prompt"], *r["completion"]]]
    model = build_tiny_model(out / "tiny-model", extra_text=texts, vocab_size=1500)
    result = run_sft(
        {
            "model": str(model),
            "output_dir": str(out / "sft"),
            "finetuning": "full",
            # decontamination is on by default; DL19 is the training set here, so check the other sets only
            "data": {
                "train_files": [str(data)],
                "max_passage_tokens": 48,
                "decontaminate": ["dl20", "noveleval", "bright"],
            },
            "max_steps": steps,
            "per_device_train_batch_size": 1,
            "gradient_accumulation_steps": 1,
            "learning_rate": 1e-3,
            "lr_scheduler_type": "constant",
            "warmup_ratio": 0.0,
            "max_length": 4096,
            "use_cpu": True,
            "bf16": False,
            "dtype": "float32",
            "gradient_checkpointing": False,
            "save_strategy": "no",
            "plot": False,
        }
    )
    losses = [h["loss"] for h in result.log_history if "loss" in h]
    print(
        f"SFT: {steps} steps on {result.num_examples} examples, loss {losses[0]:.3f} -> {losses[-1]:.3f}; "
        f"model in {result.output_dir}"
    )


def main() -> int:
    args = parse_args()
    source = Path(args.data) if args.data else data_dir()
    path = source / "dl19_bm25_top100.jsonl"
    if not path.is_file():
        print(f"DL19 data not found at {path} (use --data)", file=sys.stderr)
        return 2
    queries, corpus = load_dataset_jsonl(path, domain="msmarco-dl19")
    queries = queries[: args.queries]
    config = SynthesisConfig(
        lists=ListConfig(list_size=20, max_positives=5),
        pool_size=40,
        positives="teacher" if args.mine else "qrels",
        min_grade=2,
        threshold=args.threshold,
        concurrency=4,
        price_in=args.price_in,
        price_out=args.price_out,
    )
    with contextlib.ExitStack() as stack:
        base_url, backend_kwargs = args.base_url, {}
        if base_url is None:
            base_url = stack.enter_context(TeacherServer()).base_url
            backend_kwargs["truncation"] = "words"  # the stand-in has no tokenizer
            print(f"offline stand-in teacher at {base_url}")
        report = synthesize(
            queries,
            corpus,
            args.out,
            base_url=base_url,
            model=args.model,
            api_key=args.api_key,
            config=config,
            **backend_kwargs,
        )
    print(report.format())
    hand_off_to_sft(Path(args.out), args.sft_steps)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
