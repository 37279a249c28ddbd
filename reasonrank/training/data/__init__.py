"""Training data: the released ReasonRank formats, filters, and TRL rows.

- :mod:`~reasonrank.training.data.records`: :class:`RankingRecord` (one listwise sample) and the reports.
- :mod:`~reasonrank.training.data.formats`: ``training_data_all.jsonl`` + ``id_query/`` + ``id_doc/``,
  LLaMA-Factory alpaca JSON and verl parquet, each read into records.
- :mod:`~reasonrank.training.data.filters`: the self-consistency filter and decontamination.
- :mod:`~reasonrank.training.data.rows`: TRL conversational rows (:func:`sft_rows`, :func:`grpo_rows`)
  whose prompts are built exactly like inference prompts.
- :mod:`~reasonrank.training.data.prepare`: load and filter as a run's ``data:`` settings say.
"""

from reasonrank.core.format import parse_user_message
from reasonrank.training.data.filters import (
    decontaminate,
    load_eval_queries,
    normalize_for_dedup,
    self_consistency_filter,
)
from reasonrank.training.data.formats import (
    IdTexts,
    load_alpaca,
    load_id_texts,
    load_records,
    load_training_jsonl,
    load_verl_parquet,
)
from reasonrank.training.data.prepare import prepare_records
from reasonrank.training.data.records import DataFormatError, FilterReport, LoadReport, OnError, RankingRecord
from reasonrank.training.data.rows import format_answer_ids, format_target, grpo_rows, sft_rows

__all__ = [
    "DataFormatError",
    "FilterReport",
    "IdTexts",
    "LoadReport",
    "OnError",
    "RankingRecord",
    "decontaminate",
    "format_answer_ids",
    "format_target",
    "grpo_rows",
    "load_alpaca",
    "load_eval_queries",
    "load_id_texts",
    "load_records",
    "load_training_jsonl",
    "load_verl_parquet",
    "normalize_for_dedup",
    "parse_user_message",
    "prepare_records",
    "self_consistency_filter",
    "sft_rows",
]
