"""Deterministic stand-ins for a ReasonRank model, for tests and offline pipelines; none is a model.

- :mod:`~reasonrank.testing.server`: :class:`RankingServer`, a real OpenAI-compatible HTTP server on
  127.0.0.1 that ranks windows by word overlap (or your function), with :class:`Fault` injection and
  vLLM's ``/tokenize``; :class:`LocalServer`, the base of the local servers.
- :mod:`~reasonrank.testing.backend`: :class:`FunctionBackend`, the same in-process.
- :mod:`~reasonrank.testing.teacher`: :class:`TeacherServer`, a stand-in teacher for the synthesis prompts.
- :mod:`~reasonrank.testing.toy`: the learnable toy task and its tiny model
  (``python -m reasonrank.testing.toy OUT``); :mod:`~reasonrank.testing.tiny_model`: tiny random Qwen3s.
- :mod:`~reasonrank.testing.answers`: how the fakes read a window prompt and write an answer.

The server and backend are importable without torch; the model builders import it when called.
"""

from reasonrank.testing.answers import (
    RankFn,
    format_answer,
    lexical_ranking,
    parse_window_prompt,
    score_ranking,
    scored_passages,
)
from reasonrank.testing.backend import FunctionBackend
from reasonrank.testing.server import Fault, LocalServer, RankingServer
from reasonrank.testing.teacher import TeacherServer, answer_overlap_judge, parse_teacher_request

__all__ = [
    "Fault",
    "FunctionBackend",
    "LocalServer",
    "RankFn",
    "RankingServer",
    "TeacherServer",
    "answer_overlap_judge",
    "format_answer",
    "lexical_ranking",
    "parse_teacher_request",
    "parse_window_prompt",
    "score_ranking",
    "scored_passages",
]
