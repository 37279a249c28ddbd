"""Training-data synthesis (paper section 3): reasoning-intensive listwise labels from a teacher LLM.

Queries and a corpus (or the evaluation JSONL shape) go in; the released ``reasonrank_data_13k``
format comes out (``training_data_all.jsonl`` + ``id_query/`` + ``id_doc/``), ready for the SFT and
RL stages. See ``docs/synthesis.md`` and ``reasonrank synthesize --help``.
"""

from reasonrank.synthesis.candidates import CandidateList, ListConfig, build_candidate_list
from reasonrank.synthesis.inputs import (
    BM25Retriever,
    Corpus,
    SynthesisQuery,
    attach_qrels,
    load_corpus,
    load_dataset_jsonl,
    load_queries,
    pools_from_run,
)
from reasonrank.synthesis.pipeline import (
    DomainReport,
    SynthesisConfig,
    SynthesisReport,
    Synthesizer,
    TokenUsage,
    synthesize,
)
from reasonrank.synthesis.store import SynthesisStore, SyntheticSample
from reasonrank.synthesis.teacher_prompts import (
    MiningAnswer,
    TeacherRanking,
    mining_messages,
    parse_mining_answer,
    parse_teacher_ranking,
    ranking_messages,
)

__all__ = [
    "BM25Retriever",
    "CandidateList",
    "Corpus",
    "DomainReport",
    "ListConfig",
    "MiningAnswer",
    "SynthesisConfig",
    "SynthesisQuery",
    "SynthesisReport",
    "SynthesisStore",
    "Synthesizer",
    "SyntheticSample",
    "TeacherRanking",
    "TokenUsage",
    "attach_qrels",
    "build_candidate_list",
    "load_corpus",
    "load_dataset_jsonl",
    "load_queries",
    "mining_messages",
    "parse_mining_answer",
    "parse_teacher_ranking",
    "pools_from_run",
    "ranking_messages",
    "synthesize",
]
