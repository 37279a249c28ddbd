"""RAG retrieval with Haystack: BM25 retrieves, ReasonRank reranks, a prompt is built for the generator.

Offline, on CPU (the embedded SmolLM2-135M model; a plumbing check, far too small to rank well):

    python examples/haystack_rag.py

With the real model behind any OpenAI-compatible server:

    # on a GPU machine
    #   vllm serve liuwenhan/reasonrank-7B --max-model-len 32768        # add --api-key KEY to require one
    # here (the key, if any, is read from $REASONRANK_API_KEY or $OPENAI_API_KEY)
    #   python examples/haystack_rag.py --base-url http://gpu-host:8000/v1 --model liuwenhan/reasonrank-7B

The pipeline is InMemoryBM25Retriever -> ReasonRankRanker -> PromptBuilder. Plug a chat generator
(e.g. ``OpenAIChatGenerator``) after the prompt builder to answer the question.
"""

from __future__ import annotations

import argparse
import sys
import time

from haystack import Document, Pipeline
from haystack.components.builders import PromptBuilder
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.document_stores.in_memory import InMemoryDocumentStore

from haystack_integrations.components.rankers.reasonrank import ReasonRankRanker

DOCUMENTS = [
    Document(content=text, meta={"title": title})
    for title, text in [
        ("Honey", "Worker bees collect nectar from flowers and turn it into honey in the hive."),
        ("Honey", "Bees fan their wings to evaporate water from nectar until it thickens into honey."),
        ("Bees", "Honey bees communicate the location of flowers with a waggle dance."),
        ("Kitchen", "Store honey in a sealed jar at room temperature; it crystallizes in the fridge."),
        ("Syrup", "Maple syrup is made by boiling the sap of maple trees."),
        ("History", "Honey has been found in Egyptian tombs, still edible after thousands of years."),
        ("Wasps", "Wasps are predators and do not make honey, unlike bees."),
        ("Flowers", "Flowers produce nectar to attract pollinators such as bees and butterflies."),
    ]
]

TEMPLATE = """Answer the question using the context.
Context:
{% for doc in documents %}- {{ doc.content }}
{% endfor %}
Question: {{ query }}
Answer:"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", help="OpenAI-compatible endpoint (default: the embedded model, offline on CPU)")
    p.add_argument("--model", default=None, help="model name on the server (default: the server's only model)")
    p.add_argument("--query", default="How do bees make honey from nectar?")
    p.add_argument("--top-k", type=int, default=3, help="documents kept after reranking (default 3)")
    return p.parse_args(argv)


def make_ranker(args: argparse.Namespace) -> ReasonRankRanker:
    if args.base_url:
        # The published models' settings: window 20, step 10, depth 100, a 3172-token reasoning budget.
        return ReasonRankRanker(model=args.model, base_url=args.base_url, top_k=args.top_k, include_reasoning=True)
    from reasonrank.core.models import default_model_path

    # Small settings so the tiny embedded model runs in seconds on CPU: one window of 8, short outputs.
    return ReasonRankRanker(
        model=default_model_path(),
        backend="transformers",
        top_k=args.top_k,
        depth=8,
        window_size=8,
        step=4,
        max_passage_tokens=64,
        max_new_tokens=128,
        include_reasoning=True,
        backend_kwargs={"device": "cpu"},
    )


def build_pipeline(ranker: ReasonRankRanker) -> Pipeline:
    store = InMemoryDocumentStore()
    store.write_documents(DOCUMENTS)
    pipeline = Pipeline()
    pipeline.add_component("retriever", InMemoryBM25Retriever(document_store=store, top_k=8))
    pipeline.add_component("ranker", ranker)
    pipeline.add_component("prompt", PromptBuilder(template=TEMPLATE, required_variables=["documents", "query"]))
    pipeline.connect("retriever.documents", "ranker.documents")
    pipeline.connect("ranker.documents", "prompt.documents")
    return pipeline


def main(argv: list[str] | None = None) -> list[Document]:
    """Run the pipeline once, print the retrieval and the reranking; return the reranked documents."""
    args = parse_args(argv)
    pipeline = build_pipeline(make_ranker(args))
    start = time.perf_counter()
    out = pipeline.run(
        {"retriever": {"query": args.query}, "ranker": {"query": args.query}, "prompt": {"query": args.query}},
        include_outputs_from={"retriever", "ranker"},
    )
    seconds = time.perf_counter() - start
    print(f"query: {args.query}\n\nBM25 retrieval:")
    for doc in out["retriever"]["documents"]:
        print(f"  {doc.score:6.3f}  {doc.content}")
    ranked = out["ranker"]["documents"]
    print(f"\nReasonRank top {len(ranked)} ({seconds:.1f} s):")
    for doc in ranked:
        print(f"  {doc.score:6.3f}  (bm25 {doc.meta.get('retrieval_score', 0.0):.3f})  {doc.content}")
    usage = out["ranker"]["meta"]["usage"]  # also set as tags on the component's tracing span
    print(
        f"model calls: {usage['calls']}, tokens: {usage['prompt_tokens']} prompt + {usage['completion_tokens']} generated"
    )
    reasoning = ranked[0].meta.get("reasonrank_reasoning") if ranked else None
    if reasoning:
        short = " ".join(reasoning.split())
        print(f"\nreasoning (first 300 chars): {short[:300]}{'...' if len(short) > 300 else ''}")
    print(f"\nprompt for the generator:\n{out['prompt']['prompt']}")
    return ranked


if __name__ == "__main__":
    main(sys.argv[1:])
