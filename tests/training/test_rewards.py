import pytest

from reasonrank.training.rewards import (
    completion_text, make_reward_func, multiview_reward, multiview_reward_func, ndcg_reward, ndcg_reward_func,
    score_completion,
)

INITIAL = [f"d{i}" for i in range(1, 21)]
RELEVANT = ["d3", "d7", "d15"]
TEACHER_IDS = [3, 7, 1, 15, 2, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19, 20]
TEACHER = [f"d{i}" for i in TEACHER_IDS]
ROLLOUT_IDS = [7, 1, 3, 2, 4, 5, 6, 8, 9, 10, 15, 11, 12, 13, 14, 16, 17, 18, 19, 20]


def answer(ids, think="<think> reasoning </think>\n", open_="<answer> ", close=" </answer>"):
    return f"{think}{open_}{' > '.join(f'[{i}]' for i in ids)}{close}"


def reward(text, **kw):
    return multiview_reward(text, initial_list=INITIAL, final_list=TEACHER, relevant_docids=RELEVANT, **kw)


def test_worked_example():
    assert round(reward(answer(ROLLOUT_IDS)), 6) == 0.924273
    parts = score_completion(answer(ROLLOUT_IDS), initial_list=INITIAL, final_list=TEACHER, relevant_docids=RELEVANT)
    assert (round(parts.ndcg, 5), round(parts.recall, 5), round(parts.overlap, 5)) == (0.70392, 0.66667, 0.87022)


def test_teacher_list_and_reversed():
    assert reward(answer(TEACHER_IDS)) == pytest.approx(1.26747, abs=1e-5)
    assert reward(answer(TEACHER_IDS[::-1])) == pytest.approx(0.03312, abs=1e-5)


@pytest.mark.parametrize("text", [
    answer(ROLLOUT_IDS, think=""),  # no <think> block
    answer(ROLLOUT_IDS, think="<THINK> r </THINK> "),  # upper case (the training regex is case-sensitive)
    answer(ROLLOUT_IDS, open_="<ANSWER> ", close=" </ANSWER>"),
    answer(ROLLOUT_IDS, close=""),  # cut before </answer>
    "<think> only reasoning, truncated",
    "",
    " > ".join(f"[{i}]" for i in ROLLOUT_IDS),  # bare list
])
def test_format_failures_score_minus_one(text):
    assert reward(text) == -1.0
    assert ndcg_reward(text, initial_list=INITIAL, relevant_docids=RELEVANT) == -1.0


@pytest.mark.parametrize("ids", [
    ROLLOUT_IDS[:-1],  # 19 ids
    ROLLOUT_IDS[:-1] + [7],  # 20 ids with a duplicate
    ROLLOUT_IDS + [21],  # an extra id
    [0] + ROLLOUT_IDS[1:],  # [0] is not "the last passage"
    ROLLOUT_IDS[:-1] + [21],  # out of range with the right count (the original let this pass)
    [],
])
def test_answer_failures_score_zero(ids):
    assert reward(answer(ids)) == 0.0


@pytest.mark.parametrize("body", ["[1] > [2] and more", "1 > 2 > 3", "[1] > [2] > [3] > [4] > [5] > [6] > [7] > "
                                  "[8] > [9] > [10] > [11] > [12] > [13] > [14] > [15] > [16] > [17] > [18] > [19] > [20] 21"])
def test_answer_must_be_exactly_a_bracketed_chain(body):
    assert reward(f"<think>x</think><answer>{body}</answer>") == 0.0


def test_whitespace_variants_are_accepted():
    tight = "<think>x</think><answer>" + ">".join(f"[{i}]" for i in ROLLOUT_IDS) + "</answer>"
    assert reward(tight) == pytest.approx(0.924273, abs=1e-6)
    multi = "<think>a\nb</think>\n\n<answer>\n" + " > ".join(f"[ {i} ]" for i in ROLLOUT_IDS) + "\n</answer>"
    assert reward(multi) == pytest.approx(0.924273, abs=1e-6)


def test_weights_and_ndcg_baseline():
    text = answer(ROLLOUT_IDS)
    assert reward(text, recall_weight=0.0, rbo_weight=0.0) == pytest.approx(0.70392, abs=1e-5)
    assert ndcg_reward(text, initial_list=INITIAL, relevant_docids=RELEVANT) == pytest.approx(0.70392, abs=1e-5)
    assert reward(text, ndcg_weight=0.0, recall_weight=0.0, rbo_weight=1.0) == pytest.approx(0.87022, abs=1e-5)


def test_paper_motivating_example():
    initial = [f"d{i}" for i in range(1, 21)]
    at_1_11 = [1, 3, 4, 5, 6, 7, 8, 9, 10, 12, 2] + list(range(13, 21)) + [11]
    parts = score_completion(answer(at_1_11), initial_list=initial, final_list=initial, relevant_docids=["d1", "d2"])
    assert (round(parts.ndcg, 4), parts.recall) == (0.6131, 0.5)
    at_9_10 = [3, 4, 5, 6, 7, 8, 9, 10, 1, 2] + list(range(11, 21))
    parts = score_completion(answer(at_9_10), initial_list=initial, final_list=initial, relevant_docids=["d1", "d2"])
    assert (round(parts.ndcg, 4), parts.recall) == (0.3618, 1.0)


def test_trl_wrapper_reads_columns_and_logs_components():
    logged = {}
    completions = [
        [{"role": "assistant", "content": answer(ROLLOUT_IDS)}],  # conversational
        answer(TEACHER_IDS),  # plain text
        [{"role": "assistant", "content": "no tags"}],
        answer(ROLLOUT_IDS[:-1]),
    ]
    n = len(completions)
    out = multiview_reward_func(
        prompts=[[{"role": "user", "content": "q"}]] * n, completions=completions,
        initial_list=[INITIAL] * n, final_list=[TEACHER] * n, relevant_docids=[RELEVANT] * n,
        dataset=["x"] * n, trainer_state=None, log_metric=lambda name, value: logged.setdefault(name, value),
    )
    assert [round(x, 5) for x in out] == [0.92427, 1.26747, -1.0, 0.0]
    assert logged["rank/format_failure_rate"] == 0.25
    assert logged["rank/answer_failure_rate"] == 0.25
    assert logged["rank/ndcg@10"] == pytest.approx((0.70392 + 0.96747) / 4, abs=1e-5)
    assert ndcg_reward_func.__name__ == "ndcg_reward"
    assert ndcg_reward_func([None], [answer(TEACHER_IDS)], initial_list=[INITIAL], final_list=[TEACHER],
                            relevant_docids=[RELEVANT])[0] == pytest.approx(0.96747, abs=1e-5)


def test_trl_wrapper_missing_columns_is_a_clear_error():
    with pytest.raises(ValueError, match="relevant_docids"):
        make_reward_func()(prompts=["p"], completions=["c"], initial_list=[INITIAL], final_list=[TEACHER])


def test_completion_text_shapes():
    assert completion_text("abc") == "abc"
    assert completion_text([{"role": "assistant", "content": "x"}]) == "x"
    with pytest.raises(TypeError):
        completion_text(3)
