"""The two teacher prompts of the synthesis pipeline and robust readers for their answers.

- **Positive mining** (paper Fig. 6/9/10/11, paraphrased): the teacher sees the query, the gold answer
  and the candidate passages, and names the passages that help answer the query.
- **Listwise ranking** (paper Fig. 8; the authors' ``rerank/rank_gpt.py``, ``deepseek`` branch): a
  RankGPT multi-turn conversation without the gold answer -- task statement, the assistant's
  acknowledgement, one user turn ``[i] passage`` per passage answered "Received passage [i].", and a
  final request for a ``[] > []`` list. The teacher's reasoning trace (``<think>`` or the API's
  ``reasoning_content``, which the openai backend folds into ``<think>...</think>``) becomes the
  training chain.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from reasonrank.core.parsing import KEPT_WINDOW_ORDER, parse_response
from reasonrank.core.prompts import normalize_query

__all__ = [
    "mining_messages",
    "ranking_messages",
    "MiningAnswer",
    "TeacherRanking",
    "parse_mining_answer",
    "parse_teacher_ranking",
    "NO_RANKING",
    "NO_REASONING",
]

# Repair flags specific to the teacher's ranking answer (besides reasonrank.core.parsing's).
NO_RANKING = KEPT_WINDOW_ORDER  # the answer holds no identifier at all
NO_REASONING = "no_reasoning"  # no reasoning trace before the ranking

_MINING_HEAD = (
    "You are an expert annotator building a search-relevance dataset. Below are a search query, "
    "{answer_intro}and {num} candidate passages, each indicated by a numerical identifier [].\n\n"
    "Query: {query}\n\n"
)
_MINING_TAIL = (
    "Decide which passages are relevant to the query. A passage is relevant if it contains information "
    "that helps to answer the query correctly: facts, evidence, explanations, definitions, theorems, "
    "methods or worked examples {relies}. A passage that only shares topic words with the query but would "
    "not help to answer it is not relevant.\n"
    'End your response with one line in the format "Relevant: [i], [j], ..." that lists the identifiers '
    'of all relevant passages, most useful first, or "Relevant: none" if no passage is relevant.'
)

# The authors' R1 layout: no system message; the task statement opens the first user turn.
_RANK_INTRO = (
    "You are an intelligent assistant that can rank passages based on their relevance to the query. "
    "I will provide you with {num} passages, each indicated by number identifier []. \n"
    "Rank the passages based on their relevance to query: {query}."
)
_RANK_ACK = "Okay, please provide the passages."
_RANK_RECEIVED = "Received passage [{rank}]."
# The authors' rank_GPT suffix, verbatim ("Only response" is theirs).
_RANK_REQUEST = (
    "Search Query: {query}. \nRank the {num} passages above based on their relevance to the search query. "
    "The passages should be listed in descending order using identifiers. The most relevant passages "
    "should be listed first. The output format should be [] > [], e.g., [2] > [1]. Only response the "
    "ranking results, do not say any word or explain."
)


def mining_messages(query: str, passages: Sequence[str], answer: str | None = None) -> list[dict[str, str]]:
    """One user message asking the teacher which passages are relevant, given the gold ``answer``.

    ``passages`` are prompt contents (already prepared and truncated). Without an answer the teacher
    judges from the query alone (weaker labels; the paper always shows the gold answer).
    """
    query = normalize_query(query)
    has_answer = bool(answer and answer.strip())
    parts = [
        _MINING_HEAD.format(
            answer_intro="a reference answer written by an expert, " if has_answer else "",
            num=len(passages),
            query=query,
        )
    ]
    if has_answer:
        parts.append(f"Reference answer: {answer.strip()}\n\n")
    parts.append("Candidate passages:\n")
    parts.extend(f"[{rank}] {content}\n" for rank, content in enumerate(passages, start=1))
    parts.append("\n")
    parts.append(
        _MINING_TAIL.format(
            relies="that the reference answer relies on or that would let someone reach it"
            if has_answer
            else "that a good answer would rely on"
        )
    )
    return [{"role": "user", "content": "".join(parts)}]


def ranking_messages(query: str, passages: Sequence[str]) -> list[dict[str, str]]:
    """The RankGPT multi-turn conversation of paper Fig. 8 (no gold answer)."""
    query = normalize_query(query)
    num = len(passages)
    messages = [
        {"role": "user", "content": _RANK_INTRO.format(num=num, query=query)},
        {"role": "assistant", "content": _RANK_ACK},
    ]
    for rank, content in enumerate(passages, start=1):
        messages.append({"role": "user", "content": f"[{rank}] {content}"})
        messages.append({"role": "assistant", "content": _RANK_RECEIVED.format(rank=rank)})
    messages.append({"role": "user", "content": _RANK_REQUEST.format(query=query, num=num)})
    return messages


# ------------------------------------------------------------------------------------------- parsing
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_ANSWER_BLOCK = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL | re.IGNORECASE)
_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
# "Relevant: [3], [7]"; the list may also start on the next line.
_RELEVANT_LINE = re.compile(
    r"relevant(?:\s+passages?)?\s*(?:ids?|identifiers?)?\s*[:=][ \t]*(?:\r?\n\s*)?([^\r\n]*)", re.IGNORECASE
)
_BARE_LIST = re.compile(r"^(?:[\s\[\](),;>|\d]|and)*$", re.IGNORECASE)
_BRACKETED = re.compile(r"\[\s*(\d+)\s*\]")
_NUMBER = re.compile(r"\d+")
_NONE = re.compile(r"^\W*(none|no passages?|nothing|n/?a|\[\s*\])\W*$", re.IGNORECASE)
_CHAIN = re.compile(r"\[\s*\d+\s*\](?:\s*>\s*\[\s*\d+\s*\])+")


def _after_think(text: str) -> str:
    closes = list(_THINK_CLOSE.finditer(text))
    return text[closes[-1].end() :] if closes else text


def _ids(text: str) -> list[int]:
    """Identifiers in a list: bracketed ones when there are any, else bare numbers."""
    bracketed = _BRACKETED.findall(text)
    return [int(x) for x in (bracketed or _NUMBER.findall(text))]


@dataclass(frozen=True)
class MiningAnswer:
    """What the teacher named as relevant: 0-based indices in the list, and what had to be ignored."""

    indices: list[int]
    parsed: bool  # False: no "Relevant:" line, <answer> or bare list could be found
    ignored: list[int] = field(default_factory=list)  # 1-based ids outside [1, n]
    duplicates: int = 0


def parse_mining_answer(text: str | None, n: int) -> MiningAnswer:
    """Read the teacher's relevant ids from ``Relevant: [i], [j]`` (or ``<answer>``, or a bare id list).

    Looks after the reasoning (the last ``</think>``). Ids outside ``[1, n]`` are ignored and
    reported; duplicates are dropped; "none" means no positives.
    """
    region = _after_think(text or "")
    source: str | None = None
    block = _ANSWER_BLOCK.search(region) if _ANSWER_OPEN.search(region) else None
    if block:
        source = block.group(1)
    else:
        lines = [m.group(1) for m in _RELEVANT_LINE.finditer(region)]
        if lines:
            source = lines[-1]
        elif region.strip() and _BARE_LIST.match(region.strip()) and _NUMBER.search(region):
            source = region
    if source is None:
        return MiningAnswer([], parsed=False)
    if _NONE.match(source.strip()) or not source.strip():
        return MiningAnswer([], parsed=True)
    indices: list[int] = []
    ignored: list[int] = []
    duplicates = 0
    for ident in _ids(source):
        if not 1 <= ident <= n:
            ignored.append(ident)
        elif ident - 1 in indices:
            duplicates += 1
        else:
            indices.append(ident - 1)
    if not indices and not ignored:
        return MiningAnswer([], parsed=False)
    return MiningAnswer(indices, parsed=True, ignored=ignored, duplicates=duplicates)


@dataclass(frozen=True)
class TeacherRanking:
    """The teacher's listwise label: a full 0-based permutation, its reasoning chain and any repairs."""

    order: list[int]
    reasoning: str
    answer: str | None
    repairs: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        """A ranking was read (not the presentation order kept for lack of ids) and there is a chain."""
        return NO_RANKING not in self.repairs and NO_REASONING not in self.repairs


def parse_teacher_ranking(text: str | None, n: int) -> TeacherRanking:
    """Split the teacher's output into its reasoning and its ranking.

    The reasoning is the ``<think>`` content (or, for a teacher that reasons in plain text, whatever
    precedes ``<answer>`` / the last ``[a] > [b]`` chain). The ranking is read with the core's
    :func:`~reasonrank.core.parsing.parse_response`, so it never drops, duplicates or invents a passage.
    """
    text = text or ""
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        reasoning = re.sub(r"<think>", "", text[: closes[-1].start()], flags=re.IGNORECASE)
        tail = text[closes[-1].end() :]
    else:
        opens = _ANSWER_OPEN.search(text)
        chains = list(_CHAIN.finditer(text))
        start = opens.start() if opens else (chains[-1].start() if chains else 0)
        reasoning, tail = text[:start], text[start:]
    reasoning = reasoning.strip()
    parsed = parse_response(tail, n, direct=True)
    repairs = list(parsed.repairs)
    if not reasoning:
        repairs.append(NO_REASONING)
    return TeacherRanking(parsed.order, reasoning, parsed.answer, repairs)
