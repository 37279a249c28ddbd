"""The prompt must match the published model's training prompt byte for byte (recipe sections 1.2-1.3)."""

import ftfy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonrank.core import prompts
from reasonrank.core.passages import clean_passage, passage_text, prepare_passages
from reasonrank.core.prompts import PromptMode, build_messages, fix_text, render_prompt

SYSTEM_REASONING = (
    "You are RankLLM, an intelligent assistant that can rank passages based on their relevance to the query. "
    "Given a query and a passage list, you first thinks about the reasoning process in the mind and then provides "
    "the answer (i.e., the reranked passage list). The reasoning process and answer are enclosed within <think> "
    "</think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> <answer> "
    "answer here </answer>."
)
SYSTEM_PLAIN = "You are RankLLM, an intelligent assistant that can rank passages based on their relevance to the query."
PREFIX = (
    "I will provide you with 2 passages, each indicated by a numerical identifier []. "
    "Rank the passages based on their relevance to the search query: why do cats purr.\n"
)
SUFFIX_HEAD = (
    "Search Query: why do cats purr.\nRank the 2 passages above based on their relevance to the search query. "
    "All the passages should be included and listed using identifiers, in descending order of relevance. "
)
SUFFIX_TAIL = {
    "reasoning": "The format of the answer should be [] > [], e.g., [2] > [1].",
    "qwen3": (
        "The final ranked list should be enclosed within <answer> </answer> tags, i.e., <answer> ranked list here "
        "</answer>. The format of ranked list should be [] > [], e.g., [2] > [1]. Only respond with the ranking "
        "results, do not say any word or explain."
    ),
    "direct": (
        "The output format should be [] > [], e.g., [2] > [1]. Only respond with the ranking results, do not say "
        "any word or explain."
    ),
}
P1, P2 = "Cats purr when content.", "Purring may aid healing."


@pytest.mark.parametrize("mode", ["reasoning", "qwen3", "direct"])
def test_messages_match_the_recipe_exactly(mode):
    messages = build_messages("why do cats purr", [P1, P2], mode)
    system = SYSTEM_REASONING if mode == "reasoning" else SYSTEM_PLAIN
    user = PREFIX + "\n" + f"[1] {P1}\n[2] {P2}\n" + SUFFIX_HEAD + SUFFIX_TAIL[mode]
    assert messages == [{"role": "system", "content": system}, {"role": "user", "content": user}]
    # the blank line after the prefix, and no trailing newline after the suffix
    assert "search query: why do cats purr.\n\n[1] " in messages[1]["content"]
    assert not messages[1]["content"].endswith("\n")


def test_authors_mode_names_are_accepted():
    assert PromptMode.parse("rank_GPT_reasoning") is PromptMode.REASONING
    assert PromptMode.parse("rank_GPT_qwen3") is PromptMode.QWEN3
    assert PromptMode.parse("rank_GPT") is PromptMode.DIRECT
    with pytest.raises(ValueError, match="unknown prompt_mode 'listwise'"):
        PromptMode.parse("listwise")


def test_query_brackets_become_parentheses_and_query_is_stripped():
    user = build_messages("  what is [12] and [a]?  ", ["x"])[1]["content"]
    assert "search query: what is (12) and [a]?.\n" in user
    assert "Search Query: what is (12) and [a]?.\n" in user


def test_passage_brackets_become_parentheses_after_truncation():
    # prepare_passages: strip, ftfy, truncate, then [n] -> (n)
    assert prepare_passages(["  see [3] and [12]  "]) == ["see (3) and (12)"]
    cut = prepare_passages(["one [2] three four"], lambda texts, n: [" ".join(t.split()[:n]) for t in texts], 2)
    assert cut == ["one (2)"]
    # the names kept in prompts for callers being migrated give the same
    assert prompts.prepare_passage("one [2] three four", lambda t: " ".join(t.split()[:2])) == "one (2)"
    assert prompts.finish_passage("[4]") == "(4)" and prompts.clean_passage is clean_passage


def test_ftfy_on_passages_and_final_pass_without_html_unescape():
    assert clean_passage("cafÃ© au lait") == "café au lait"  # mojibake fixed
    assert clean_passage("AT&amp;T") == "AT&T"  # ftfy's default on a passage without '<' (as the authors)
    assert clean_passage("<b>AT&amp;T</b>") == "<b>AT&amp;T</b>"
    user = build_messages("AT&amp;T cafÃ©", ["x"])[1]["content"]
    # the final pass runs on a prompt containing '<', so entities stay; mojibake is still fixed
    assert "search query: AT&amp;T café." in user


def test_titles_and_dict_passages():
    assert passage_text({"title": "Purring", "text": "Cats purr."}) == "Title: Purring Content: Cats purr."
    assert passage_text({"title": "", "contents": "Only contents."}) == "Only contents."
    assert passage_text({"content": "LangChain style."}) == "LangChain style."
    assert passage_text({"text": "text wins", "contents": "not this"}) == "text wins"
    assert clean_passage({"title": "T", "contents": "  body  "}) == "Title: T Content:   body"


@pytest.mark.parametrize(
    ("passage", "error", "message"),
    [
        ({"id": "d1"}, ValueError, "passage dict has no text field"),
        ({"text": 3}, TypeError, "passage text must be a str"),
        (42, TypeError, "a passage must be a str or a dict"),
        (None, TypeError, "a passage must be a str or a dict"),
    ],
)
def test_bad_passages_raise_clear_errors(passage, error, message):
    with pytest.raises(error, match=message):
        passage_text(passage)


# Qwen2.5's ChatML template, reduced to what matters when a system message is given.
CHATML = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@pytest.fixture(scope="module")
def chatml_tokenizer():
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    model = tokenizers.models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizers.Tokenizer(model), unk_token="[UNK]")
    tok.chat_template = CHATML
    return tok


def test_render_prompt_gives_the_qwen_chatml_string(chatml_tokenizer):
    messages = build_messages("why do cats purr", [P1, P2])
    user = PREFIX + "\n" + f"[1] {P1}\n[2] {P2}\n" + SUFFIX_HEAD + SUFFIX_TAIL["reasoning"]
    expected = (
        f"<|im_start|>system\n{SYSTEM_REASONING}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render_prompt(chatml_tokenizer, messages) == expected


def test_render_prompt_final_ftfy_pass_keeps_entities(chatml_tokenizer):
    rendered = render_prompt(chatml_tokenizer, build_messages("AT&amp;T", ["x"]))
    assert "search query: AT&amp;T." in rendered


# Text that exercises every ftfy branch: mojibake, entities, markup, controls, line breaks, wide forms.
_TRICKY = st.sampled_from(
    ["cafÃ©", "&amp;", "&lt;b&gt;", "<b>", "\r\n", "\r", "\x00", "\x1b[31m", "\x7f", "\u2028", "ＡＢ", "ﬁ",
     "“quoted”", "\x85", "Ã¢â‚¬â„¢", "\n", "\t", "\x0c", " ", "plain words", "é", "[12]", "&#39;"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_TRICKY, st.text(max_size=8)), max_size=12).map("".join),
       st.sampled_from([False, True, "auto"]))  # fmt: skip
def test_fast_fix_text_is_exactly_ftfy(text, unescape_html):
    assert fix_text(text, unescape_html) == ftfy.fix_text(text, unescape_html=unescape_html)


def test_every_ascii_character_is_classified_correctly():
    for code in range(128):
        for text in (f"ab{chr(code)}cd", f"&amp{chr(code)}", f"x\n{chr(code)}\n<y>&amp;"):
            for unescape_html in (False, "auto"):
                assert fix_text(text, unescape_html) == ftfy.fix_text(text, unescape_html=unescape_html)
