"""Parsing never drops, duplicates or invents a passage, whatever the model writes (recipe section 1.5)."""

from hypothesis import given
from hypothesis import strategies as st

from reasonrank.core import parsing
from reasonrank.core.parsing import parse_ranking, parse_response
from reasonrank.testing import format_answer


@given(st.text(), st.integers(0, 40))
def test_any_text_gives_a_permutation(text, n):
    parsed = parse_response(text, n)
    assert sorted(parsed.order) == list(range(n))
    assert sorted(parse_response(text, n, direct=True).order) == list(range(n))


@given(st.permutations(range(20)), st.text(alphabet=st.characters(blacklist_characters="<>"), max_size=60))
def test_a_formatted_permutation_round_trips(order, reasoning):
    parsed = parse_response(format_answer(order, reasoning), 20)
    assert parsed.order == list(order)
    assert parsed.repairs == []
    assert parsed.reasoning == reasoning.strip()


@given(st.lists(st.integers(0, 30), max_size=30), st.integers(1, 20))
def test_arbitrary_ids_are_repaired_into_a_permutation(ids, n):
    text = "<think>x</think><answer>" + " > ".join(f"[{i}]" for i in ids) + "</answer>"
    order = parse_ranking(text, n)
    expected = []
    for i in ids:
        if 1 <= i <= n and i - 1 not in expected:
            expected.append(i - 1)
    assert order == expected + [i for i in range(n) if i not in expected]


def test_tags_are_case_insensitive():
    parsed = parse_response("<THINK>why</THINK> <Answer>[2] > [1] > [3]</ANSWER>", 3)
    assert parsed.order == [1, 0, 2]
    assert parsed.reasoning == "why"
    assert parsed.repairs == []


def test_unclosed_answer_reads_what_follows_the_last_open_tag():
    parsed = parse_response("<think>[3] > [1]</think> <answer>[2] > [4", 4)
    assert parsed.order == [1, 3, 0, 2]
    assert parsed.repairs == [parsing.UNCLOSED_ANSWER, parsing.APPENDED_MISSING]


def test_no_answer_uses_the_last_chain_not_numbers_in_the_reasoning():
    text = (
        "<think>In 1990, passage [3] cited 42 studies. Draft: [1] > [2] > [3]. "
        "Better: [3] > [1] > [2] and then I ran out of tokens"
    )
    parsed = parse_response(text, 3)
    assert parsed.order == [2, 0, 1]  # the last well-formed chain, never 1990 / 42 / [3]
    assert parsed.answer == "[3] > [1] > [2]"
    assert parsed.repairs == [parsing.NO_ANSWER_TAG, parsing.USED_LAST_CHAIN]


def test_no_answer_prefers_a_chain_after_the_reasoning():
    text = "<think>maybe [1] > [2]</think> final: [2] > [3] > [1]"
    assert parse_ranking(text, 3) == [1, 2, 0]


def test_no_chain_keeps_the_window_order():
    parsed = parse_response("<think>Passage [4] from 2019 is about 7 cats, and [2] too", 5)
    assert parsed.order == [0, 1, 2, 3, 4]
    assert parsed.answer is None
    assert parsed.repairs == [parsing.NO_ANSWER_TAG, parsing.KEPT_WINDOW_ORDER]


def test_duplicates_zero_and_out_of_range_ids_are_dropped_and_flagged():
    parsed = parse_response("<think>.</think><answer>[3] > [0] > [3] > [21] > [1]</answer>", 4)
    assert parsed.order == [2, 0, 1, 3]
    assert parsed.repairs == [parsing.DROPPED_DUPLICATES, parsing.DROPPED_OUT_OF_RANGE, parsing.APPENDED_MISSING]


def test_fullwidth_digits_are_read():
    assert parse_ranking("<think>.</think><answer>[３] > [１] > [２]</answer>", 3) == [2, 0, 1]


def test_empty_answer_and_empty_output_keep_the_window_order():
    assert parse_response("<think>.</think><answer></answer>", 3).repairs == [parsing.KEPT_WINDOW_ORDER]
    empty = parse_response("", 3)
    assert empty.order == [0, 1, 2]
    assert parsing.KEPT_WINDOW_ORDER in empty.repairs
    assert parse_response(None, 0).order == []


def test_direct_mode_reads_the_whole_output():
    parsed = parse_response("[2] > [3] > [1]", 3, direct=True)
    assert parsed.order == [1, 2, 0]
    assert parsed.repairs == []
    assert parse_response("2, 1", 3, direct=True).order == [1, 0, 2]  # no chain: the ids in the text
    assert parse_response("I cannot rank these.", 2, direct=True).order == [0, 1]


def test_negative_window_size_is_rejected():
    import pytest

    with pytest.raises(ValueError, match="window size must be >= 0"):
        parse_response("x", -1)
