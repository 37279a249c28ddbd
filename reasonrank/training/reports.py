"""What a training stage leaves behind: the result summary, reports, the loss/reward plot, the merge."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonrank.training.models import merge_adapter

__all__ = ["TrainResult", "finish_run", "plot_log_history", "write_reports"]


@dataclass
class TrainResult:
    """Where a stage wrote its outputs, and what it trained on."""

    stage: str
    output_dir: str
    num_examples: int
    adapter_dir: str | None = None
    merged_dir: str | None = None
    plot: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    log_history: list[dict[str, Any]] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)

    @property
    def model_dir(self) -> str:
        """The directory to load a full model from (merged when LoRA was merged)."""
        return self.merged_dir or self.output_dir

    def summary(self) -> str:
        lines = [f"{self.stage}: trained on {self.num_examples} examples -> {self.output_dir}"]
        if self.merged_dir:
            lines.append(f"merged model: {self.merged_dir}")
        if self.plot:
            lines.append(f"plot: {self.plot}")
        lines += [f"  {k}: {v}" for k, v in self.metrics.items() if isinstance(v, (int, float))]
        lines += self.reports
        return "\n".join(lines)


# training curves, then the periodic validation (GRPO ``validation_steps``) beside them
_PLOTTED = ("reward", "loss", "rank/ndcg@10", "rank/format_failure_rate", "val/reward", "val/ndcg@10")


def plot_log_history(log_history: list[dict[str, Any]], path: str | Path, title: str = "") -> str | None:
    """PNG of reward (GRPO) and/or loss over steps from a Trainer's ``state.log_history``."""
    series = {key: [(e["step"], e[key]) for e in log_history if key in e and "step" in e] for key in _PLOTTED}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(series), 1, figsize=(6, 2.2 * len(series)), sharex=True, squeeze=False)
    for ax, (key, points) in zip(axes[:, 0], series.items()):
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    if title:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def write_reports(output_dir: str | Path, config, reports: list[Any], log_history: list[dict[str, Any]]) -> None:
    """``run_config.yaml``, ``data_report.txt`` and ``log_history.json`` in ``output_dir``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "run_config.yaml").write_text(config.to_yaml(), encoding="utf-8")
    (out / "data_report.txt").write_text("\n".join(str(r) for r in reports) + "\n", encoding="utf-8")
    (out / "log_history.json").write_text(json.dumps(log_history, indent=1), encoding="utf-8")


def finish_run(
    trainer, config, *, stage: str, train_output, reports: list[Any], adapter: bool, plot_name: str
) -> TrainResult:
    """Save the model/adapter, then (main process only) merge the adapter, write reports and the plot."""
    trainer.save_model(config.output_dir)
    out = Path(config.output_dir)
    result = TrainResult(
        stage=stage,
        output_dir=config.output_dir,
        num_examples=len(trainer.train_dataset),
        metrics=dict(train_output.metrics),
        log_history=list(trainer.state.log_history),
        reports=[str(r) for r in reports],
    )
    if adapter:
        result.adapter_dir = config.output_dir
        if config.lora.merge_and_save:
            result.merged_dir = str(out / "merged")
    if trainer.is_world_process_zero():  # under accelerate, one process writes the extras
        if result.merged_dir:
            merge_adapter(config.model, out, result.merged_dir, config.dtype)
        write_reports(out, config, reports, result.log_history)
        if config.plot:
            result.plot = plot_log_history(result.log_history, out / plot_name, stage.upper())
    trainer.accelerator.wait_for_everyone()
    return result
