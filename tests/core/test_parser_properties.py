"""Whatever a model writes, the parser returns a permutation and never raises (issue 10 items 2-3).

Linear time is shown by ``benchmarks/parser_scaling.py`` (a size-doubling table), not by a timed test.
"""

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reasonrank.core.format import OUTPUT_RE, OUTPUT_RE_LENIENT, find_output
from reasonrank.core.parsing import DROPPED_OUT_OF_RANGE, parse_response

TAGS = ["<think>", "</think>", "<answer>", "</answer>", "<THINK>", "</Answer>", "<thİnk>", "<anſwer>"]
PIECES = st.sampled_from(
    TAGS + [" ", "\n", "\u2003", "[1]", " > ", "[2]", "[3]", "[０２]", "[", "]", ">", "<", "0", "x", "\ud800", "\udfff"]
)
HUGE_IDS = st.integers(20, 6000).map(lambda k: "[" + "9" * k + "]")
PADDED_IDS = st.tuples(st.integers(1, 5000), st.integers(1, 9)).map(lambda z: "[" + "0" * z[0] + f"{z[1]}]")
REPEATED_TAG = st.tuples(st.sampled_from(TAGS + ["[1] > ", "<think><answer>"]), st.integers(1, 3000)).map(
    lambda t: t[0] * t[1]
)
OUTPUTS = st.lists(st.one_of(PIECES, HUGE_IDS, PADDED_IDS, REPEATED_TAG, st.text(max_size=6)), max_size=30).map("".join)


def assert_permutation(text, n):
    for direct in (False, True):
        parsed = parse_response(text, n, direct=direct)
        assert sorted(parsed.order) == list(range(n))
        assert isinstance(parsed.reasoning, str)


@settings(max_examples=400, deadline=None)
@given(OUTPUTS, st.integers(0, 25))
def test_arbitrary_outputs_give_a_permutation(text, n):
    assert_permutation(text, n)


@settings(max_examples=400, deadline=None)
@given(st.lists(PIECES, max_size=20).map("".join))
def test_linear_output_search_finds_what_the_regex_finds(text):
    for pattern in (OUTPUT_RE, OUTPUT_RE_LENIENT):
        ours, regex = pattern.search(text), pattern.regex.search(text)
        assert (ours is None) == (regex is None)
        if ours is not None:
            assert [ours.span(g) for g in range(3)] == [regex.span(g) for g in range(3)]
            assert ours.group(0, 1, 2) == regex.group(0, 1, 2)


LARGE_SHAPES = st.sampled_from(["<think>", "</think> ", "<answer>", "[1] > ", "[" + "7" * 999, "\ud800", "x" * 50])


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(LARGE_SHAPES, min_size=1, max_size=4), st.integers(20, 20))
def test_one_megabyte_outputs_give_a_permutation(shapes, n):
    unit = "".join(shapes)
    text = unit * (1_000_000 // len(unit) + 1)
    assert_permutation(text, n)


def test_huge_ids_are_out_of_range_not_errors():
    parsed = parse_response("<answer>[" + "9" * 5000 + "]</answer>", 5)
    assert parsed.order == [0, 1, 2, 3, 4]
    assert DROPPED_OUT_OF_RANGE in parsed.repairs
    # leading zeros (ASCII or fullwidth) do not make an id out of range
    assert parse_response("<answer>[" + "0" * 5000 + "3] > [０００2]</answer>", 5).order == [2, 1, 0, 3, 4]


def test_find_output_reuses_the_grammar_of_the_regex():
    text = "<think>a</think> x <think>b</think>\n <answer>[2] > [1]</answer> <answer>[1]</answer>"
    match = find_output(text)
    assert match.groups() == re.search(OUTPUT_RE.pattern, text, re.DOTALL).groups()
    assert match[2] == "[2] > [1]"
