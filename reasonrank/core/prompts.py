"""The ReasonRank prompt, byte-faithful to the published model's training prompt.

Strings come from the authors' ``listwise_prompt_r1.toml`` and ``utils.add_prefix_prompt`` /
``add_post_prompt``; the published weights underperform if a single character differs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import Enum
from functools import lru_cache
from typing import Any, Literal

from reasonrank.core.format import ANSWER_PATTERN

__all__ = [
    "PromptMode",
    "SYSTEM_PROMPT",
    "SYSTEM_PROMPT_REASONING",
    "ANSWER_PATTERN",
    "build_messages",
    "normalize_query",
    "render_prompt",
    "fix_text",
    "prefix_prompt",
    "suffix_prompt",
]


class PromptMode(str, Enum):
    """Prompt construction; the authors' ``--prompt_mode`` value is in the comment."""

    REASONING = "reasoning"  # rank_GPT_reasoning: reasonrank-7B / reasonrank-32B
    QWEN3 = "qwen3"  # rank_GPT_qwen3: reasonrank-8B (Qwen3, thinking on)
    DIRECT = "direct"  # rank_GPT: non-reasoning RankGPT-style listwise ranking

    @classmethod
    def parse(cls, value: PromptMode | str) -> PromptMode:
        if isinstance(value, PromptMode):
            return value
        aliases = {
            "rank_gpt_reasoning": cls.REASONING,
            "rank_gpt_qwen3": cls.QWEN3,
            "rank_gpt": cls.DIRECT,
        }
        key = str(value).strip().lower()
        if key in aliases:
            return aliases[key]
        try:
            return cls(key)
        except ValueError:
            choices = ", ".join(m.value for m in cls)
            raise ValueError(f"unknown prompt_mode {value!r}; choose one of: {choices}") from None

    @property
    def reasons(self) -> bool:
        """Whether the model writes a reasoning chain before its answer."""
        return self is not PromptMode.DIRECT


SYSTEM_PROMPT = (
    "You are RankLLM, an intelligent assistant that can rank passages based on their relevance to the query."
)
# "you first thinks" is a grammar slip of the original, kept on purpose.
SYSTEM_PROMPT_REASONING = (
    "You are RankLLM, an intelligent assistant that can rank passages based on their relevance to the query. "
    "Given a query and a passage list, you first thinks about the reasoning process in the mind and then "
    "provides the answer (i.e., the reranked passage list). The reasoning process and answer are enclosed "
    "within <think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process "
    "here </think> <answer> answer here </answer>."
)

_PREFIX = (
    "I will provide you with {num} passages, each indicated by a numerical identifier []. "
    "Rank the passages based on their relevance to the search query: {query}.\n"
)
_SUFFIX_HEAD = (
    "Search Query: {query}.\nRank the {num} passages above based on their relevance to the search query. "
    "All the passages should be included and listed using identifiers, in descending order of relevance. "
)
_SUFFIX_TAIL = {
    PromptMode.REASONING: "The format of the answer should be [] > [], e.g., [2] > [1].",
    PromptMode.QWEN3: (
        "The final ranked list should be enclosed within <answer> </answer> tags, i.e., <answer> ranked list "
        "here </answer>. The format of ranked list should be [] > [], e.g., [2] > [1]. Only respond with the "
        "ranking results, do not say any word or explain."
    ),
    PromptMode.DIRECT: (
        "The output format should be [] > [], e.g., [2] > [1]. Only respond with the ranking results, do not "
        "say any word or explain."
    ),
}

_BRACKETED_NUMBER = re.compile(r"\[(\d+)\]")


# The only ASCII characters ftfy changes: C0 controls other than \t \n \f, DEL, \r (line breaks), and '&'
# (HTML entities) when unescaping is on. Checked against ftfy 6.3 for every ASCII character.
_FTFY_TOUCHES_ASCII = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f\r]")
# ftfy's TextFixerConfig().max_decode_length (a test checks it); ftfy itself is imported on first use
# (it is half of ``import reasonrank``'s time).
_MAX_SEGMENT = 1_000_000


# the same characters as bytes, for bytes.translate's delete (~3x faster than the regex's search)
_TOUCHED_ASCII_BYTES = bytes(code for code in range(128) if _FTFY_TOUCHES_ASCII.match(chr(code)))


def _untouched(segment: str, unescape_html: bool | str) -> bool:
    return (
        segment.isascii()
        and len(segment.encode("ascii").translate(None, _TOUCHED_ASCII_BYTES)) == len(segment)
        and (unescape_html is False or "&" not in segment)
    )


@lru_cache(maxsize=4096)
def _fix_segment(segment: str, unescape_html: bool | str) -> str:
    from reasonrank.core.textfix import fix_segment  # imports ftfy

    return fix_segment(segment, unescape_html)  # type: ignore[arg-type]


def fix_text(text: str, unescape_html: bool | Literal["auto"] = "auto") -> str:
    """Exactly ``ftfy.fix_text(text, unescape_html=...)``, faster.

    ftfy fixes a text line by line (segments ending in ``\n``; with ``"auto"``, HTML unescaping stops
    for good at the first segment containing ``<``). This runs the same loop but returns ASCII lines
    that ftfy cannot change as they are, and caches the fix of the other lines (a passage is shown in
    about two windows), each through :func:`reasonrank.core.textfix.fix_segment` (ftfy's fix without its
    no-op steps). Prompts stay byte-identical.
    """
    if _untouched(text, unescape_html):
        return text
    out = []
    pos = 0
    while pos < len(text):
        end = text.find("\n", pos) + 1 or len(text)
        end = min(end, pos + _MAX_SEGMENT)
        segment = text[pos:end]
        if unescape_html == "auto" and "<" in segment:
            unescape_html = False
        out.append(segment if _untouched(segment, unescape_html) else _fix_segment(segment, unescape_html))
        pos = end
    return "".join(out)


def system_prompt(mode: PromptMode | str) -> str:
    return SYSTEM_PROMPT_REASONING if PromptMode.parse(mode) is PromptMode.REASONING else SYSTEM_PROMPT


def prefix_prompt(query: str, num: int) -> str:
    """The user message's opening line (ends with a newline)."""
    return _PREFIX.format(num=num, query=query)


def suffix_prompt(query: str, num: int, mode: PromptMode | str = PromptMode.REASONING) -> str:
    """The user message's closing instruction (no trailing newline)."""
    return _SUFFIX_HEAD.format(query=query, num=num) + _SUFFIX_TAIL[PromptMode.parse(mode)]


def normalize_query(query: str) -> str:
    """``[12]`` -> ``(12)`` so the query cannot be confused with an identifier, then strip."""
    return _BRACKETED_NUMBER.sub(r"(\1)", query).strip()


def _fix_message(content: str) -> str:
    # The authors run ftfy over the whole rendered chat prompt. That prompt contains '<' (chat markup),
    # which turns off HTML unescaping, so the per-message equivalent is unescape_html=False.
    return fix_text(content, unescape_html=False)


@lru_cache(maxsize=8192)
def _fixed_passage_line(content: str) -> str:
    return _fix_message(content + "\n")


def _passage_line(rank: int, content: str) -> str:
    """``_fix_message(f"[{rank}] {content}\n")``, with the fix of ``content`` made once for all its windows.

    ftfy fixes line by line, and with ``unescape_html=False`` each line on its own, so only the first
    line of ``content`` shares its line with the window-local ``[rank] ``. ftfy (6.x) treats that ASCII
    prefix independently of what follows when the first character after it is printable ASCII: every
    step is per character except the mojibake gate (``badness.BADNESS_RE``), and none of its patterns
    can match across ``"] "`` into a printable ASCII character or is anchored there; encoding the line
    in ftfy's single-byte encodings keeps ASCII as is. ``tests/core/test_prompts.py`` checks this
    against the whole-message fix. Other first characters (and empty or huge contents) take the
    whole-line path.
    """
    if content and " " < content[0] < "\x7f" and len(content) < _MAX_SEGMENT // 2:
        return f"[{rank}] {_fixed_passage_line(content)}"
    return _fix_message(f"[{rank}] {content}\n")


def build_messages(
    query: str,
    passages: Sequence[str],
    mode: PromptMode | str = PromptMode.REASONING,
) -> list[dict[str, str]]:
    """Chat messages (system, user) asking the model to rank one window.

    ``passages`` are prompt contents already prepared by :mod:`reasonrank.core.passages` (cleaned,
    truncated, ids escaped), in the window's current order; they are numbered ``[1]..[num]`` inside the window.
    The user message is ftfy-fixed as a whole, as the authors do, but each line ending in ``\n`` is fixed
    on its own: the query lines here, each passage's lines once for every window that shows it.
    """
    mode = PromptMode.parse(mode)
    query = normalize_query(query)
    num = len(passages)
    # The prefix ends with "\n"; one more "\n" leaves the blank line the model was trained with.
    parts = [_fix_message(prefix_prompt(query, num) + "\n")]
    parts.extend(_passage_line(rank, content) for rank, content in enumerate(passages, start=1))
    parts.append(_fix_message(suffix_prompt(query, num, mode)))
    return [
        {"role": "system", "content": _fixed_system_prompt(mode)},
        {"role": "user", "content": "".join(parts)},
    ]


@lru_cache(maxsize=8)
def _fixed_system_prompt(mode: PromptMode) -> str:
    return _fix_message(system_prompt(mode))


def render_prompt(tokenizer: Any, messages: list[dict[str, str]], **template_kwargs: Any) -> str:
    """Render with the model's chat template and run ftfy over the whole string, as the authors do."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **template_kwargs)
    return fix_text(text)
