import pytest

from reasonrank.training.rewards import (
    completion_text,
    make_reward_func,
    multiview_reward,
    multiview_reward_func,
    ndcg_reward,
    ndcg_reward_func,
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


@pytest.mark.parametrize(
    "text",
    [
        answer(ROLLOUT_IDS, think=""),  # no <think> block
        answer(ROLLOUT_IDS, think="<THINK> r </THINK> "),  # upper case (the training regex is case-sensitive)
        answer(ROLLOUT_IDS, open_="<ANSWER> ", close=" </ANSWER>"),
        answer(ROLLOUT_IDS, close=""),  # cut before </answer>
        "<think> only reasoning, truncated",
        "",
        " > ".join(f"[{i}]" for i in ROLLOUT_IDS),  # bare list
    ],
)
def test_format_failures_score_minus_one(text):
    assert reward(text) == -1.0
    assert ndcg_reward(text, initial_list=INITIAL, relevant_docids=RELEVANT) == -1.0


@pytest.mark.parametrize(
    "ids",
    [
        ROLLOUT_IDS[:-1],  # 19 ids
        ROLLOUT_IDS[:-1] + [7],  # 20 ids with a duplicate
        ROLLOUT_IDS + [21],  # an extra id
        [0] + ROLLOUT_IDS[1:],  # [0] is not "the last passage"
        ROLLOUT_IDS[:-1] + [21],  # out of range with the right count (the original let this pass)
        [],
    ],
)
def test_answer_failures_score_zero(ids):
    assert reward(answer(ids)) == 0.0


@pytest.mark.parametrize(
    "body",
    [
        "[1] > [2] and more",
        "1 > 2 > 3",
        "[1] > [2] > [3] > [4] > [5] > [6] > [7] > "
        "[8] > [9] > [10] > [11] > [12] > [13] > [14] > [15] > [16] > [17] > [18] > [19] > [20] 21",
    ],
)
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
        prompts=[[{"role": "user", "content": "q"}]] * n,
        completions=completions,
        initial_list=[INITIAL] * n,
        final_list=[TEACHER] * n,
        relevant_docids=[RELEVANT] * n,
        dataset=["x"] * n,
        trainer_state=None,
        log_metric=lambda name, value: logged.setdefault(name, value),
    )
    assert [round(x, 5) for x in out] == [0.92427, 1.26747, -1.0, 0.0]
    assert logged["rank/format_failure_rate"] == 0.25
    assert logged["rank/answer_failure_rate"] == 0.25
    assert logged["rank/ndcg@10"] == pytest.approx((0.70392 + 0.96747) / 4, abs=1e-5)
    assert ndcg_reward_func.__name__ == "ndcg_reward"
    assert ndcg_reward_func(
        [None], [answer(TEACHER_IDS)], initial_list=[INITIAL], final_list=[TEACHER], relevant_docids=[RELEVANT]
    )[0] == pytest.approx(0.96747, abs=1e-5)


def test_trl_wrapper_missing_columns_is_a_clear_error():
    with pytest.raises(ValueError, match="relevant_docids"):
        make_reward_func()(prompts=["p"], completions=["c"], initial_list=[INITIAL], final_list=[TEACHER])


def test_completion_text_shapes():
    assert completion_text("abc") == "abc"
    assert completion_text([{"role": "assistant", "content": "x"}]) == "x"
    with pytest.raises(TypeError):
        completion_text(3)


# ------------------------------------------------------------------ the authors' answer check (default)
def authors_compute_score(predict_str, ground_truth, initial_list, final_list, relevant_docids):
    """The authors' ``verl/verl/utils/reward_score/ranking.py`` ``compute_score``, verbatim but for two
    stand-ins: pytrec_eval's ndcg_cut.10/recall.10 (used when installed) and ``rbo`` 0.1.3's
    ``RankingSimilarity(a, b).rbo()`` with its defaults, which is average overlap (recipe §5.3)."""
    import re

    from reasonrank.training.ranking_metrics import average_overlap, ndcg_at_k, recall_at_k

    pattern = r"<think>.*?</think>\s*<answer>(.*?)</answer>"

    def clean_response(response):
        new_response = ""
        for c in response:
            if not c.isdigit():
                new_response += " "
            else:
                new_response += c
        new_response = new_response.strip()
        return new_response

    def compute_metric(pred_docids, relevant_docids):
        try:
            import pytrec_eval
        except ImportError:
            return ndcg_at_k(pred_docids, relevant_docids, 10), recall_at_k(pred_docids, relevant_docids, 10)
        qid = "1"
        pred_results = {qid: {docid: -(idx + 1) for idx, docid in enumerate(pred_docids)}}
        gt = {qid: {docid: 1 for docid in relevant_docids}}
        evaluator = pytrec_eval.RelevanceEvaluator(gt, {"ndcg_cut.10", "recall.10"})
        res = evaluator.evaluate(pred_results)
        return res[qid]["ndcg_cut_10"], res[qid]["recall_10"]

    match = re.search(pattern, predict_str, re.DOTALL)
    if match:
        pred = match.group(1)
        _pred_id_list = clean_response(pred).split()
        label_id_list = clean_response(ground_truth).split()
        if len(_pred_id_list) == len(label_id_list) and len(set(_pred_id_list)) == len(set(label_id_list)):
            try:
                pred_idxs = [int(x) - 1 for x in _pred_id_list]
            except ValueError:
                return 0
            pred_docids = [initial_list[idx] for idx in pred_idxs if idx < len(initial_list)]
            ndcg10, recall10 = compute_metric(pred_docids, relevant_docids)
            rbo_score = average_overlap(_pred_id_list, label_id_list)
            return ndcg10 + 0.2 * recall10 + 0.1 * rbo_score
        return 0
    return -1


FIVE = ["p1", "p2", "p3", "p4", "p5"]
FIVE_RELEVANT = ["p3", "p1"]
FIVE_TEACHER_IDS = [3, 1, 4, 2, 5]
FIVE_TEACHER = [FIVE[i - 1] for i in FIVE_TEACHER_IDS]
CHAIN = "[3] > [1] > [4] > [2] > [5]"
LENIENT_FORMS = {
    "trailing period": f"{CHAIN}.",
    "comma-separated ids": "[3], [1], [4], [2], [5]",
    "bare numbers": "3 > 1 > 4 > 2 > 5",
    "bare numbers, commas": "3, 1, 4, 2, 5",
    "prose around the chain": f"The final ranking is {CHAIN}, most relevant first.",
    "one id per line": "\n[3]\n[1]\n[4]\n[2]\n[5]\n",
    "other separators": "[3] >> [1] -> [4] , [2] ; [5]",
    "no brackets, no spaces": "3>1>4>2>5",
    "passage words": "Passage 3, then passage 1, then 4, 2 and 5",
}


def five_reward(body, **kw):
    return multiview_reward(
        f"<think> r </think> <answer>{body}</answer>",
        initial_list=FIVE,
        final_list=FIVE_TEACHER,
        relevant_docids=FIVE_RELEVANT,
        **kw,
    )


def five_authors(body):
    return authors_compute_score(
        f"<think> r </think> <answer>{body}</answer>", CHAIN, FIVE, FIVE_TEACHER, FIVE_RELEVANT
    )


@pytest.mark.parametrize("name", list(LENIENT_FORMS))
def test_lenient_forms_score_as_the_authors_code_and_strict_gives_zero(name):
    body = LENIENT_FORMS[name]
    expected = five_authors(body)
    assert expected == pytest.approx(1.3)  # the teacher's order: nDCG 1, Recall 1, AO 1
    assert five_reward(body) == pytest.approx(expected, abs=1e-12)  # lenient is the default
    assert five_reward(body, answer_check="lenient") == pytest.approx(expected, abs=1e-12)
    assert five_reward(body, answer_check="strict") == 0.0


@pytest.mark.parametrize(
    "body",
    [
        "[1] > [3] > [4] > [2] > [5].",  # another order, trailing period
        "5, 4, 3, 2, 1",
        "I rank [2] first, then [1] > [3] > [5] > [4]",
        "[3] > [1] > [4] > [2]",  # too few ids
        "[3] > [1] > [4] > [2] > [2]",  # duplicate
        "[3] > [1] > [4] > [2] > [5] > [6]",  # too many
        "3 ² 1 4 2",  # a digit int() rejects: the authors return 0
    ],
)
def test_lenient_check_equals_the_authors_code_on_other_answers(body):
    assert five_reward(body) == pytest.approx(five_authors(body), abs=1e-12)


def test_lenient_equals_the_authors_code_on_the_worked_example():
    text = answer(ROLLOUT_IDS)
    label = " > ".join(f"[{i}]" for i in TEACHER_IDS)
    assert reward(text) == pytest.approx(authors_compute_score(text, label, INITIAL, TEACHER, RELEVANT), abs=1e-12)
    assert round(reward(text, answer_check="strict"), 6) == 0.924273


@pytest.mark.parametrize("body", ["[3] > [1] > [4] > [2] > [0]", "[3] > [1] > [4] > [2] > [6]"])
def test_ids_outside_the_window_score_zero_unlike_the_authors_code(body):
    """Kept fix: the authors read [0] as the last passage and drop [6] from nDCG, scoring a passage never shown."""
    assert five_authors(body) > 1.0
    assert five_reward(body) == 0.0 and five_reward(body, answer_check="strict") == 0.0


def test_unknown_answer_check_is_an_error():
    with pytest.raises(ValueError, match="answer_check"):
        five_reward(CHAIN, answer_check="loose")
    with pytest.raises(ValueError, match="answer_check"):
        make_reward_func(answer_check="loose")


def test_trl_wrapper_uses_its_answer_check():
    columns = {"initial_list": [FIVE], "final_list": [FIVE_TEACHER], "relevant_docids": [FIVE_RELEVANT]}
    text = [f"<think> r </think> <answer>{LENIENT_FORMS['trailing period']}</answer>"]
    assert make_reward_func()(None, text, **columns) == [pytest.approx(1.3)]
    assert make_reward_func(answer_check="strict")(None, text, **columns) == [0.0]
