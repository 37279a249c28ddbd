"""YAML-backed dataclass configs for the two training stages.

A config file mirrors the dataclasses (nested ``data:`` and ``lora:`` sections); any field can be
overridden with ``key=value`` strings (dotted for nested fields, values parsed as YAML), e.g.
``["lora.r=8", "learning_rate=1e-4", "data.train_files=[a.jsonl,b.jsonl]"]``.
``trainer_kwargs`` is passed verbatim to TRL's ``SFTConfig`` / ``GRPOConfig`` for anything not modelled here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_type_hints

import yaml

__all__ = [
    "DataSettings",
    "LoraSettings",
    "SFTRunConfig",
    "GRPORunConfig",
    "load_config",
    "shipped_config",
    "apply_overrides",
]

Finetuning = Literal["full", "lora", "qlora"]


@dataclass
class DataSettings:
    """Where the training data is and how prompts are built from it."""

    train_files: list[str] = field(default_factory=list)
    format: Literal["auto", "jsonl", "alpaca", "parquet"] = "auto"
    id_query: str | None = None  # directory (or file) mapping qid -> query text, for format=jsonl
    id_doc: str | None = None  # directory (or file) mapping docid -> passage text, for format=jsonl
    prompt_mode: str = "reasoning"
    max_passage_tokens: int = 512
    # Keep a record only if nDCG@10 of the teacher list vs its own positives >= this (paper: 0.4). None: off.
    self_consistency_threshold: float | None = 0.4
    # Evaluation queries whose duplicates are removed from training: "builtin" (DL19, DL20, NovelEval and
    # BRIGHT from the shared data folder), one of those names, or your own JSONL(.gz) files with a "query"
    # field. [] turns decontamination off. The run's data_report.txt lists every dropped record.
    decontaminate: list[str] = field(default_factory=lambda: ["builtin"])
    # Also drop near-duplicates: word-trigram Jaccard similarity >= this with an evaluation query. None: exact only.
    decontaminate_near_threshold: float | None = None
    on_error: Literal["raise", "skip"] = "raise"
    max_samples: int | None = None
    shuffle_seed: int | None = None


@dataclass
class LoraSettings:
    """LoRA adapter settings (used when ``finetuning`` is ``lora`` or ``qlora``)."""

    r: int = 32
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] | str = "all-linear"
    merge_and_save: bool = True  # also write a merged full model to ``<output_dir>/merged``


@dataclass
class _RunConfig:
    model: str = ""
    output_dir: str = "outputs/run"
    finetuning: Finetuning = "full"
    lora: LoraSettings = field(default_factory=LoraSettings)
    data: DataSettings = field(default_factory=DataSettings)
    learning_rate: float = 1e-5
    num_train_epochs: float = 1.0
    max_steps: int = -1
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 8
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    bf16: bool | None = None  # None: bf16 when a GPU with bf16 support is present, else fp32 on CPU
    use_cpu: bool = False
    gradient_checkpointing: bool = True
    logging_steps: int = 1
    save_strategy: str = "epoch"
    save_only_model: bool = True
    report_to: list[str] | str = "none"
    run_name: str | None = None
    seed: int = 42
    dtype: str = "auto"  # torch dtype to load the model in: auto, bfloat16, float16, float32
    attn_implementation: str | None = None  # e.g. flash_attention_2
    plot: bool = True  # write reward/loss plot PNG from the log history
    # Build the toy task's tiny model (<dir>/model) and data (<dir>/data) here first when missing (tiny-cpu configs).
    toy_workspace: str | None = None
    trainer_kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def validate(self) -> None:
        if not self.model:
            raise ValueError("config: 'model' (a local path or hub id) is required")
        if not self.data.train_files:
            raise ValueError("config: 'data.train_files' must list at least one file")
        if self.finetuning not in ("full", "lora", "qlora"):
            raise ValueError(f"config: finetuning must be full, lora or qlora, got {self.finetuning!r}")
        if self.finetuning == "qlora":
            from reasonrank.training.models import require_bitsandbytes

            require_bitsandbytes()
        from reasonrank.core.prompts import PromptMode

        PromptMode.parse(self.data.prompt_mode)  # unknown modes raise, listing the choices
        if self.data.on_error not in ("raise", "skip"):
            raise ValueError(f"config: data.on_error must be 'raise' or 'skip', got {self.data.on_error!r}")


@dataclass
class SFTRunConfig(_RunConfig):
    """Cold-start SFT (recipe §4). Defaults follow ReasonRank-7B's full fine-tune."""

    learning_rate: float = 5e-6
    num_train_epochs: float = 5.0
    warmup_ratio: float = 0.1
    max_length: int = 23552  # prompt + response tokens (LLaMA-Factory cutoff_len)


@dataclass
class GRPORunConfig(_RunConfig):
    """GRPO with the multi-view reward (recipe §5). Defaults follow the 7B verl script."""

    learning_rate: float = 1e-6
    lr_scheduler_type: str = "constant"
    weight_decay: float = 0.01
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    save_strategy: str = "steps"
    max_steps: int = 200
    num_generations: int = 8  # group size (rollout.n)
    max_prompt_length: int = 20480  # enforced by the package (TRL does not truncate prompts)
    max_completion_length: int = 3072
    temperature: float = 1.0
    top_p: float = 1.0
    # Optimizer updates per generation batch (verl's train_batch_size / ppo_mini_batch_size = 16 / 8 = 2);
    # None: TRL's default (= gradient_accumulation_steps, one update per generation batch).
    steps_per_generation: int | None = None
    beta: float = 0.001  # KL coefficient (TRL's k3 estimator = verl's low_var_kl)
    epsilon: float = 0.2  # PPO clip
    loss_type: str = "dapo"  # token-mean over the batch, verl's loss_agg_mode=token-mean
    scale_rewards: str = "group"
    reward: Literal["multiview", "ndcg"] = "multiview"
    ndcg_weight: float = 1.0
    recall_weight: float = 0.2
    rbo_weight: float = 0.1
    # "lenient": the authors' answer check (digit ids, count and distinct count as the teacher list's);
    # "strict": exactly "[a] > [b] > ..." over 1..n. Both give 0 for ids outside 1..n (rewards module).
    answer_check: Literal["lenient", "strict"] = "lenient"
    # Periodic validation (verl: test_freq on val.parquet): every validation_steps optimizer steps (and at
    # step 0) greedy answers on the validation records give val/reward, val/valid, val/ndcg@10. 0: off.
    validation_steps: int = 0
    validation_files: list[str] = field(default_factory=list)  # read like data.train_files (no filters)
    validation_size: int = 0  # without validation_files: hold out this many training records instead
    validation_batch_size: int = 8
    # The SFT adapter to continue (PEFT dir); otherwise a new LoRA is put on ``model`` when finetuning=lora.
    init_adapter: str | None = None
    use_vllm: bool = False
    vllm_mode: Literal["colocate", "server"] = "colocate"
    vllm_server_base_url: str | None = None
    vllm_gpu_memory_utilization: float = 0.3
    vllm_tensor_parallel_size: int = 1
    vllm_enable_sleep_mode: bool = False  # colocate: offload vLLM weights/cache while training

    def validate(self) -> None:
        super().validate()
        if self.num_generations < 2:
            raise ValueError("config: num_generations (group size) must be >= 2")
        if self.reward not in ("multiview", "ndcg"):
            raise ValueError(f"config: reward must be 'multiview' or 'ndcg', got {self.reward!r}")
        if self.answer_check not in ("lenient", "strict"):
            raise ValueError(f"config: answer_check must be 'lenient' or 'strict', got {self.answer_check!r}")
        from reasonrank.core.prompts import PromptMode

        if not PromptMode.parse(self.data.prompt_mode).reasons:
            raise ValueError(
                f"config: GRPO needs a reasoning prompt mode (the reward requires <think>/<answer>), "
                f"got data.prompt_mode={self.data.prompt_mode!r}"
            )
        if self.validation_steps < 0 or self.validation_size < 0:
            raise ValueError("config: validation_steps and validation_size must be >= 0")
        if self.validation_steps and not (self.validation_files or self.validation_size):
            raise ValueError("config: validation_steps needs validation_files or validation_size > 0")
        if self.steps_per_generation is not None and self.steps_per_generation < 1:
            raise ValueError("config: steps_per_generation must be >= 1 (or null)")
        if self.vllm_mode not in ("colocate", "server"):
            raise ValueError(f"config: vllm_mode must be 'colocate' or 'server', got {self.vllm_mode!r}")


T = TypeVar("T", bound=_RunConfig)


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(values).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown} for {cls.__name__}; known: {sorted(names)}")
    kwargs = {}
    for key, value in values.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            value = _build(hint, value or {}, f"{where}.{key}")
        kwargs[key] = _coerce(value, hint, f"{where}.{key}")
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """YAML reads ``1e-4`` as a string (YAML 1.1); turn numeric strings into the field's number type."""
    if not isinstance(value, str):
        return value
    options = set(get_args(hint)) or {hint}
    for kind in (int, float):
        if kind in options:
            try:
                return kind(value)
            except ValueError:
                if str in options:
                    return value
                raise ValueError(f"{where}: expected a {kind.__name__}, got {value!r}") from None
    return value


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides (dotted keys for nested sections; values parsed as YAML)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r} is not of the form key=value")
        value = yaml.safe_load(raw) if raw.strip() else None
        node = values
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = value
    return values


def shipped_config(name: str) -> Path:
    """Path of a config shipped in ``reasonrank/training/configs`` (name with or without ``.yaml``)."""
    stem = name[:-5] if name.endswith(".yaml") else name
    path = Path(str(resources.files("reasonrank.training") / "configs" / f"{stem}.yaml"))
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise FileNotFoundError(f"no config file {name!r} and no shipped config of that name; shipped: {available}")
    return path


def load_config(
    cls: type[T], source: str | Path | dict[str, Any] | None = None, overrides: list[str] | None = None
) -> T:
    """Build ``cls`` from a YAML file (or shipped config name, or dict) plus ``key=value`` overrides."""
    where = "config"
    if source is None:
        values: dict[str, Any] = {}
    elif isinstance(source, dict):
        values = dict(source)
    else:
        path = Path(source)
        if not path.is_file():
            path = shipped_config(str(source))
        where = str(path)
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: a config file must be a YAML mapping")
        values.pop("stage", None)
    values = apply_overrides(values, list(overrides or []))
    config = _build(cls, values, where)
    for key in ("train_files", "decontaminate"):
        value = getattr(config.data, key)
        if isinstance(value, str):
            setattr(config.data, key, [value])
    if isinstance(getattr(config, "validation_files", None), str):
        config.validation_files = [config.validation_files]
    return config
