"""LoRA -> LoRA chaining and periodic validation on the tiny task: an SFT LoRA adapter carried into GRPO
(``init_adapter``) is the policy GRPO starts from, and ``validation_steps`` records held-out reward/nDCG.

Not shown here: that GRPO then moves this policy towards the reward. With a LoRA on a random 64-wide
model the SFT adapter answers well greedily but its samples (T=1, even T=0.3) are almost never
well-formed, so every GRPO group has zero reward variance and no gradient (see docs/training.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasonrank.testing.toy import CPU_TRAINING

pytest.importorskip("trl")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.* is deprecated:FutureWarning"),
]

CPU = {**CPU_TRAINING, "seed": 0}
LORA = {"r": 8, "alpha": 16, "target_modules": "all-linear", "merge_and_save": False}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Training data (every teacher list shuffled: SFT learns the format, not the order) and a held-out
    set with other queries and passages."""
    from reasonrank.testing.toy import make_task, write_task

    root = tmp_path_factory.mktemp("learn")
    train = write_task(make_task(48, seed=11, prefix="t", num_topics=4, unreliable_topics=4), root / "train")
    heldout = write_task(make_task(12, seed=12, prefix="h", num_topics=4), root / "heldout")
    return train, heldout


@pytest.fixture(scope="module")
def sft_adapter(tiny_model_dir, toy, tmp_path_factory):
    from reasonrank.training import run_sft
    from reasonrank.training.config import SFTRunConfig, load_config

    values = {
        "model": str(tiny_model_dir),
        "output_dir": str(tmp_path_factory.mktemp("sft_adapter")),
        "finetuning": "lora",
        "lora": LORA,
        "data": {"train_files": [str(toy[0])], "max_passage_tokens": 16, "self_consistency_threshold": None},
        "learning_rate": 1e-2,
        "max_steps": 150,
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 1,
        "max_length": 512,
        "plot": False,
        **CPU,
    }
    return run_sft(load_config(SFTRunConfig, values))


def test_lora_to_lora_grpo_starts_from_the_sft_adapter_and_validates(tiny_model_dir, sft_adapter, toy, tmp_path):
    from reasonrank.training import run_grpo
    from reasonrank.training.config import GRPORunConfig, load_config

    values = {
        "model": str(tiny_model_dir),
        "init_adapter": sft_adapter.adapter_dir,
        "output_dir": str(tmp_path / "grpo"),
        "finetuning": "lora",
        "lora": LORA,
        "data": {"train_files": [str(toy[0])], "max_passage_tokens": 16, "self_consistency_threshold": None},
        "validation_steps": 2,
        "validation_files": [str(toy[1])],
        "learning_rate": 1e-2,
        "max_steps": 4,
        "per_device_train_batch_size": 16,
        "gradient_accumulation_steps": 1,
        "num_generations": 8,
        "max_prompt_length": 512,
        "max_completion_length": 64,
        "beta": 0.0,
        **CPU,
    }
    result = run_grpo(load_config(GRPORunConfig, values))
    val = [e for e in result.log_history if "val/reward" in e]
    assert [e["step"] for e in val] == [0, 2, 4]
    for entry in val:
        assert {"val/reward", "val/valid", "val/ndcg@10"} <= set(entry)
    # the adapter GRPO continued is the SFT one: at step 0 the policy answers in the format it learned
    assert val[0]["val/valid"] > 0.5
    saved = json.loads((Path(result.output_dir) / "log_history.json").read_text())
    assert any("val/ndcg@10" in e for e in saved)
    assert Path(result.plot).is_file()
