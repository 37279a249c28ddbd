import importlib.util

import pytest
import yaml

from reasonrank.cli.main import main
from reasonrank.training.config import GRPORunConfig, SFTRunConfig, apply_overrides, load_config, shipped_config

SHIPPED = [
    "reasonrank-7b-sft",
    "reasonrank-32b-sft-lora",
    "reasonrank-7b-grpo",
    "reasonrank-32b-grpo-lora",
    "tiny-cpu-sft",
    "tiny-cpu-grpo",
]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load(name):
    stage = yaml.safe_load(shipped_config(name).read_text())["stage"]
    config = load_config(SFTRunConfig if stage == "sft" else GRPORunConfig, name)
    assert config.model and config.data.train_files


def test_paper_settings():
    sft7 = load_config(SFTRunConfig, "reasonrank-7b-sft")
    assert (sft7.finetuning, sft7.learning_rate, sft7.num_train_epochs, sft7.max_length) == ("full", 5e-6, 5, 23552)
    sft32 = load_config(SFTRunConfig, "reasonrank-32b-sft-lora")
    assert (sft32.finetuning, sft32.lora.r, sft32.lora.alpha, sft32.lora.target_modules) == (
        "lora",
        32,
        32,
        "all-linear",
    )
    grpo = load_config(GRPORunConfig, "reasonrank-7b-grpo")
    assert (grpo.num_generations, grpo.beta, grpo.epsilon, grpo.max_completion_length, grpo.learning_rate) == (
        8,
        0.001,
        0.2,
        3072,
        1e-6,
    )
    # verl: 16 prompts x 8 = 128 completions per generation, 2 updates of 64 (8 GPUs x 8 per device)
    assert grpo.per_device_train_batch_size * 8 * grpo.steps_per_generation == 16 * grpo.num_generations
    assert (grpo.loss_type, grpo.use_vllm, grpo.vllm_mode) == ("dapo", True, "colocate")
    grpo32 = load_config(GRPORunConfig, "reasonrank-32b-grpo-lora")
    assert (grpo32.learning_rate, grpo32.finetuning, grpo32.lora.r, grpo32.lora.alpha) == (1e-5, "lora", 32, 32)
    assert grpo32.per_device_train_batch_size * 4 * grpo32.steps_per_generation == 16 * grpo32.num_generations
    assert (grpo32.vllm_mode, grpo32.vllm_server_base_url) == ("server", "http://localhost:8000")


def test_accelerate_configs_are_shipped():
    from pathlib import Path

    import reasonrank.training as pkg

    folder = Path(pkg.__file__).parent / "configs" / "accelerate"
    kinds = {
        name: yaml.safe_load((folder / name).read_text())["distributed_type"]
        for name in ("deepspeed_zero3.yaml", "fsdp.yaml", "multi_gpu.yaml")
    }
    assert kinds == {"deepspeed_zero3.yaml": "DEEPSPEED", "fsdp.yaml": "FSDP", "multi_gpu.yaml": "MULTI_GPU"}
    assert (
        yaml.safe_load((folder / "fsdp.yaml").read_text())["fsdp_config"]["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    )


def test_overrides_and_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: m\ndata: {train_files: a.jsonl}\nlora: {r: 4}\n")
    config = load_config(
        SFTRunConfig, path, ["lora.r=8", "learning_rate=1e-4", "data.decontaminate=[x.gz]", "finetuning=lora"]
    )
    assert (config.lora.r, config.learning_rate, config.data.train_files, config.data.decontaminate) == (
        8,
        1e-4,
        ["a.jsonl"],
        ["x.gz"],
    )
    with pytest.raises(ValueError, match="unknown field"):
        load_config(SFTRunConfig, path, ["lora.rank=8"])
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides({}, ["novalue"])
    with pytest.raises(FileNotFoundError, match="shipped"):
        load_config(SFTRunConfig, tmp_path / "nope.yaml")
    with pytest.raises(ValueError, match="num_generations"):
        load_config(GRPORunConfig, path, ["num_generations=1"]).validate()
    with pytest.raises(ValueError, match="train_files"):
        load_config(SFTRunConfig, {"model": "m"}).validate()
    with pytest.raises(ValueError, match="unknown prompt_mode"):
        load_config(SFTRunConfig, path, ["data.prompt_mode=chatty"]).validate()
    load_config(SFTRunConfig, path, ["data.prompt_mode=direct"]).validate()  # SFT may train the bare list
    with pytest.raises(ValueError, match="GRPO needs a reasoning prompt mode"):
        load_config(GRPORunConfig, path, ["data.prompt_mode=direct"]).validate()


def test_cli_dry_run(capsys, tmp_path):
    assert main(["train", "sft", "--config", "tiny-cpu-sft", "--set", "lora.r=4", "--dry-run"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["lora"]["r"] == 4
    assert main(["train", "grpo", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "no config file" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes installed")
def test_qlora_without_bitsandbytes_is_a_clear_error(toy_data):
    pytest.importorskip("trl")
    from reasonrank.training.sft import run_sft

    with pytest.raises(ImportError, match="bitsandbytes"):
        run_sft(
            {
                "model": "unused",
                "finetuning": "qlora",
                "data": {"train_files": [str(toy_data)]},
                "use_cpu": True,
                "bf16": False,
            }
        )


def test_vllm_without_vllm_is_a_clear_error():
    pytest.importorskip("trl")
    from trl.import_utils import is_vllm_available

    if is_vllm_available():
        pytest.skip("vllm installed")
    from reasonrank.training.grpo import build_grpo_trainer

    with pytest.raises(ImportError, match="vLLM"):
        build_grpo_trainer(GRPORunConfig(model="unused", use_vllm=True), rows=[])


def test_cli_missing_vllm_is_an_error_message(capsys, tmp_path):
    pytest.importorskip("trl")
    from trl.import_utils import is_vllm_available

    if is_vllm_available():
        pytest.skip("vllm installed")
    assert (
        main(
            ["train", "grpo", "--config", "tiny-cpu-grpo", "--set", "use_vllm=true", "--set", f"output_dir={tmp_path}"]
        )
        == 2
    )
    assert "vLLM" in capsys.readouterr().err
