"""Real TRL runs on a tiny Qwen3 (CPU, a few steps each): SFT full and LoRA, merge, GRPO with LoRA, CLI."""

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

CPU = CPU_TRAINING


def sft_config(model, data, out, **extra):
    from reasonrank.training.config import SFTRunConfig, load_config

    values = {
        "model": str(model),
        "output_dir": str(out),
        "data": {"train_files": [str(data)], "max_passage_tokens": 32},
        "learning_rate": 3e-3,
        "max_steps": 3,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "max_length": 1024,
        **CPU,
        **extra,
    }
    return load_config(SFTRunConfig, values)


@pytest.fixture(scope="module")
def sft_full(tiny_model_dir, toy_data, tmp_path_factory):
    from reasonrank.training import run_sft

    return run_sft(sft_config(tiny_model_dir, toy_data, tmp_path_factory.mktemp("sft_full")))


def test_sft_full_trains_saves_and_reports(sft_full):
    from transformers import AutoModelForCausalLM

    out = Path(sft_full.output_dir)
    assert sft_full.num_examples == 16 and sft_full.merged_dir is None
    assert AutoModelForCausalLM.from_pretrained(out).num_parameters() > 0
    losses = [e["loss"] for e in sft_full.log_history if "loss" in e]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert (out / "training_curves.png").stat().st_size > 0
    assert "self-consistency" in (out / "data_report.txt").read_text()
    assert json.loads((out / "log_history.json").read_text())


def test_sft_loss_is_on_the_completion_only(tiny_model_dir, toy_data, tmp_path):
    from reasonrank.training.sft import build_sft_trainer

    trainer, _ = build_sft_trainer(sft_config(tiny_model_dir, toy_data, tmp_path))
    row = trainer.train_dataset[0]
    tok = trainer.processing_class
    trained = [label for label in row["labels"] if label != -100]
    text = tok.decode(trained)
    assert text.startswith("<think>") and "</answer>" in text and "RankLLM" not in text


def test_sft_refuses_silently_dropped_examples(tiny_model_dir, toy_data, tmp_path):
    from reasonrank.training.data import load_records, sft_rows
    from reasonrank.training.sft import build_sft_trainer

    rows = sft_rows(load_records(toy_data), max_passage_tokens=None)
    with pytest.raises(RuntimeError, match="kept 0 of 16"):
        build_sft_trainer(sft_config(tiny_model_dir, toy_data, tmp_path, max_length=16), rows=rows)


@pytest.fixture(scope="module")
def sft_lora(tiny_model_dir, toy_data, tmp_path_factory):
    from reasonrank.training.sft import run_sft

    return run_sft(
        sft_config(
            tiny_model_dir,
            toy_data,
            tmp_path_factory.mktemp("sft_lora"),
            finetuning="lora",
            lora={"r": 4, "alpha": 8, "target_modules": "all-linear"},
        )
    )


def test_sft_lora_save_reload_merge(tiny_model_dir, sft_lora):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert (Path(sft_lora.adapter_dir) / "adapter_config.json").is_file()
    ids = torch.tensor([[5, 17, 42, 9, 100, 3]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        base_logits = base(ids).logits
        adapter_logits = PeftModel.from_pretrained(base, sft_lora.adapter_dir)(ids).logits
        merged_logits = AutoModelForCausalLM.from_pretrained(sft_lora.merged_dir)(ids).logits
    assert not torch.allclose(adapter_logits, base_logits, atol=1e-4)  # the adapter learned something
    assert torch.allclose(merged_logits, adapter_logits, atol=1e-4)


def grpo_values(model, data, out, **extra):
    return {
        "model": str(model),
        "output_dir": str(out),
        "finetuning": "lora",
        "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"], "merge_and_save": False},
        "data": {"train_files": [str(data)], "max_passage_tokens": 32},
        "learning_rate": 1e-3,
        "max_steps": 2,
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 1,
        "num_generations": 4,
        "max_prompt_length": 1024,
        "max_completion_length": 24,
        "beta": 0.0,
        **CPU,
        **extra,
    }


def test_grpo_continues_the_sft_adapter_and_merges(tiny_model_dir, sft_lora, toy_data, tmp_path):
    from transformers import AutoModelForCausalLM

    from reasonrank.training import run_grpo

    result = run_grpo(
        grpo_values(
            tiny_model_dir,
            toy_data,
            tmp_path / "grpo",
            init_adapter=sft_lora.adapter_dir,
            reward="ndcg",
            lora={"merge_and_save": True},
            max_steps=1,
        )
    )
    assert any("rewards/ndcg_reward/mean" in e for e in result.log_history)
    assert AutoModelForCausalLM.from_pretrained(result.merged_dir).num_parameters() > 0


def test_grpo_lora_on_sft_model(sft_full, toy_data, tmp_path):
    from reasonrank.training import run_grpo
    from reasonrank.training.config import GRPORunConfig, load_config

    config = load_config(GRPORunConfig, grpo_values(sft_full.output_dir, toy_data, tmp_path / "grpo", beta=0.04))
    result = run_grpo(config)
    logs = [e for e in result.log_history if "reward" in e]
    assert len(logs) == 2
    # The reward read the dataset columns: its components were logged next to TRL's own metrics.
    for key in (
        "rank/format_failure_rate",
        "rank/ndcg@10",
        "rewards/multiview_reward/mean",
        "completions/mean_length",
        "kl",
    ):
        assert key in logs[0], key
    assert (Path(result.adapter_dir) / "adapter_model.safetensors").is_file()
    assert Path(result.plot).is_file()


def test_cli_runs_sft(tiny_model_dir, toy_data, tmp_path, capsys):
    import yaml

    from reasonrank.cli.main import main

    config = tmp_path / "sft.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": str(tiny_model_dir),
                "data": {"train_files": [str(toy_data)]},
                "max_length": 1024,
                "per_device_train_batch_size": 8,
                "gradient_accumulation_steps": 1,
                **CPU,
            }
        )
    )
    out = tmp_path / "out"
    assert (
        main(
            [
                "train",
                "sft",
                "--config",
                str(config),
                "--set",
                "max_steps=1",
                "--set",
                f"output_dir={out}",
                "--set",
                "data.max_samples=8",
            ]
        )
        == 0
    )
    assert "trained on 8 examples" in capsys.readouterr().out
    assert (out / "model.safetensors").is_file()


def test_tiny_cpu_configs_build_the_toy_workspace_themselves(tmp_path, monkeypatch, capsys):
    """On a fresh machine, ``train sft --config tiny-cpu-sft`` makes outputs/toy/{model,data} itself."""
    from reasonrank.cli.main import main

    monkeypatch.chdir(tmp_path)
    assert main(["train", "grpo", "--config", "tiny-cpu-grpo"]) == 2  # its model comes from the SFT stage
    assert "tiny-cpu-sft" in capsys.readouterr().err and not (tmp_path / "outputs").exists()
    assert (
        main(
            [
                "train",
                "sft",
                "--config",
                "tiny-cpu-sft",
                "--set",
                "max_steps=1",
                "--set",
                "data.max_samples=8",
                "--set",
                "plot=false",
            ]
        )
        == 0
    )
    assert "trained on 8 examples" in capsys.readouterr().out
    toy = tmp_path / "outputs" / "toy"
    assert (toy / "model" / "config.json").is_file() and (toy / "data" / "training_data_all.jsonl").is_file()
    assert (toy / "sft" / "model.safetensors").is_file()


def test_grpo_config_reaches_trl(tiny_model_dir, toy_data, tmp_path):
    """The GRPO knobs of the recipe land in TRL's GRPOConfig; trainer_kwargs pass through verbatim."""
    from reasonrank.training.config import GRPORunConfig, load_config
    from reasonrank.training.grpo import build_grpo_trainer

    config = load_config(
        GRPORunConfig,
        grpo_values(
            tiny_model_dir,
            toy_data,
            tmp_path,
            steps_per_generation=2,
            beta=0.001,
            epsilon=0.28,
            loss_type="grpo",
            max_completion_length=40,
            trainer_kwargs={"epsilon_high": 0.3, "top_k": 5},
        ),
    )
    trainer, reports = build_grpo_trainer(config)
    args = trainer.args
    assert (args.num_generations, args.steps_per_generation, args.beta, args.epsilon, args.epsilon_high) == (
        4,
        2,
        0.001,
        0.28,
        0.3,
    )
    assert (args.loss_type, args.max_completion_length, args.top_k) == ("grpo", 40, 5)
    assert args.generation_batch_size == 16 and not args.use_vllm
    assert set(trainer.train_dataset.column_names) >= {"prompt", "initial_list", "final_list", "relevant_docids"}
    assert "self-consistency" in str(reports[1])
    with pytest.raises(ValueError, match="no field"):
        build_grpo_trainer(
            load_config(
                GRPORunConfig, grpo_values(tiny_model_dir, toy_data, tmp_path, trainer_kwargs={"not_a_field": 1})
            )
        )


def test_report_to_passes_through_and_missing_loggers_fail_early(tiny_model_dir, toy_data, tmp_path):
    from transformers.integrations import get_available_reporting_integrations

    from reasonrank.training.sft import build_sft_trainer

    available = get_available_reporting_integrations()
    if available:
        trainer, _ = build_sft_trainer(sft_config(tiny_model_dir, toy_data, tmp_path, report_to=available[:1]))
        assert trainer.args.report_to == available[:1]
    missing = next(n for n in ("tensorboard", "wandb", "mlflow", "comet_ml") if n not in available)
    with pytest.raises(ValueError, match=f"report_to \\['{missing}'\\]: not installed"):
        build_sft_trainer(sft_config(tiny_model_dir, toy_data, tmp_path, report_to=[missing]))
