"""The ReasonRank text grammar, in one place: the window prompt's shape and the model's output shape.

Output: ``<think> reasoning </think> <answer> [2] > [1] > [3] </answer>``. Prompt: the user message of
:func:`reasonrank.core.prompts.build_messages` (``I will provide you with N passages ... [1] ... Search
Query: ...``). Everything that reads or writes either shape (the parser, the reward, the training-data
loaders, the test fakes) uses the definitions here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = [
    "ANSWER_PATTERN",
    "OUTPUT_RE",
    "OUTPUT_RE_LENIENT",
    "TEXT_FIELDS",
    "format_id_chain",
    "format_output",
    "parse_user_message",
]

# The format regex of the authors' toml (a literal string, so the backslash is kept). Case-sensitive,
# as the reward and the training data check it.
ANSWER_PATTERN = r"<think>(.*?)</think>\s*<answer>(.*?)</answer>"
#: group 1 the reasoning, group 2 the answer; case-sensitive (reward, training data)
OUTPUT_RE = re.compile(ANSWER_PATTERN, re.DOTALL)
#: the same, case-insensitive: what inference accepts from a model
OUTPUT_RE_LENIENT = re.compile(ANSWER_PATTERN, re.DOTALL | re.IGNORECASE)

# Which field of a passage dict holds its text, in priority order (the authors' convert_doc_to_prompt_content).
TEXT_FIELDS = ("text", "segment", "contents", "content", "body", "passage")


def format_id_chain(ids: Sequence[int]) -> str:
    """``[a] > [b] > ...`` for 1-based ids."""
    return " > ".join(f"[{i}]" for i in ids)


def format_output(reasoning: str, ids: Sequence[int], *, spaced: bool = True) -> str:
    """A model output for 1-based ``ids``.

    ``spaced=True`` is the form of the system prompt and the paper's Fig. 12, which SFT targets use:
    ``<think> {reasoning} </think> <answer> [a] > [b] </answer>``; ``spaced=False`` the tight form
    ``<think>{reasoning}</think> <answer>[a] > [b]</answer>``.
    """
    chain = format_id_chain(ids)
    if spaced:
        return f"<think> {reasoning.strip()} </think> <answer> {chain} </answer>"
    return f"<think>{reasoning}</think> <answer>{chain}</answer>"


_PREFIX_RE = re.compile(
    r"^I will provide you with (?P<num>\d+) passages, each indicated by a numerical identifier \[\]\. "
    r"Rank the passages based on their relevance to the search query: (?P<query>.*?)\.\n\n(?=\[1\] )",
    re.DOTALL,
)


def parse_user_message(text: str) -> tuple[str, list[str]]:
    """Split a ReasonRank user message back into (query, passage contents); ``ValueError`` if it is not one.

    Unambiguous because the prompt builder turns every ``[n]`` inside the query and the passages into
    ``(n)``: the first ``.\\n\\n[1] `` ends the query, ``\\n[k+1] `` ends passage k, and the suffix repeats
    the query (``\\nSearch Query: {query}.\\nRank the {num} passages above``).
    """
    match = _PREFIX_RE.match(text)
    if not match:
        raise ValueError(
            "user message does not start with the ReasonRank prefix "
            "('I will provide you with N passages ... search query: Q.' then a blank line and [1])"
        )
    num, query = int(match.group("num")), match.group("query")
    suffix_at = text.rfind(f"\nSearch Query: {query}.\nRank the {num} passages above")
    if suffix_at < match.end():
        raise ValueError(f"user message has no 'Search Query: ...' suffix repeating the query for {num} passages")
    body = text[match.end() : suffix_at + 1]  # keeps the newline that ends the last passage
    passages = []
    position = 0
    for k in range(1, num + 1):
        marker = f"[{k}] "
        if not body.startswith(marker, position):
            raise ValueError(f"user message: passage [{k}] not found where expected")
        start = position + len(marker)
        if k < num:
            end = body.find(f"\n[{k + 1}] ", start)
            if end < 0:
                raise ValueError(f"user message: passage [{k + 1}] of {num} not found")
        else:
            end = len(body) - 1
            if f"\n[{k + 1}] " in body[start:]:
                raise ValueError(f"user message holds more than the {num} passages its prefix announces")
        passages.append(body[start:end])
        position = end + 1
    return query, passages
