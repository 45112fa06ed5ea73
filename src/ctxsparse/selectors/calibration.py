"""Per-model channel calibration for Double Sparsity: which key channels carry most of q·k.

For each layer and kv head, a channel c is scored by the mean of |q_c · k_c| over the causal
query–key pairs (t, s <= t) of a calibration text, using every query head of the kv head's group:
    importance_c = mean_{h in group, t} |q_{h,t,c}| · mean_{s <= t} |k_{s,c}|.
The file stores, per layer and kv head, all head_dim channel indices in decreasing importance, so a
selector may use any prefix of them. It is keyed by the model and checked against it on load.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ctxsparse.prose import builtin_text

CALIBRATION_ENV = "CTXSPARSE_CALIBRATION_DIR"
FORMAT = "ctxsparse-calibration"
VERSION = 1
CAPTURE_ATTENTION = "ctxsparse_capture"

__all__ = [
    "CALIBRATION_ENV",
    "Calibration",
    "builtin_text",
    "calibrate_model",
    "calibration_dir",
    "calibration_path",
    "channel_importance",
    "load_calibration",
]


def calibration_dir() -> Path:
    """Where calibrations live: $CTXSPARSE_CALIBRATION_DIR, else <ctxsparse cache>/calibration.

    The ctxsparse cache is $CTXSPARSE_CACHE or ~/.cache/ctxsparse (see ctxsparse.models.cache_dir).
    """
    from ctxsparse.models import cache_dir

    env = os.environ.get(CALIBRATION_ENV)
    return Path(env).expanduser() if env else cache_dir() / "calibration"


def calibration_path(model_key: str) -> Path:
    """Default file of a model's calibration: <calibration_dir>/<sanitized model key>.json."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_key).strip("._") or "model"
    return calibration_dir() / f"{safe}.json"


@dataclass
class Calibration:
    """Channel ranking of one model: channels[layer][kv_head] lists all head_dim channels, best first."""

    model_key: str
    num_layers: int
    num_kv_heads: int
    head_dim: int
    channels: list[list[list[int]]]
    tokens: int = 0
    source: str = ""

    def __post_init__(self) -> None:
        shape = (self.num_layers, self.num_kv_heads, self.head_dim)
        ok = len(self.channels) == self.num_layers and all(
            len(layer) == self.num_kv_heads and all(sorted(head) == list(range(self.head_dim)) for head in layer)
            for layer in self.channels
        )
        if not ok:
            raise ValueError(
                f"Calibration channels must list a permutation of range({self.head_dim}) for each of "
                f"{shape[0]} layers x {shape[1]} kv heads; re-run `ctxsparse calibrate --model {self.model_key}`."
            )

    def check(self, model_key: str, num_layers: int, num_kv_heads: int, head_dim: int) -> None:
        """Raise a clear error when this calibration does not belong to the model being decoded.

        An empty model_key or num_layers of 0 (unknown) skips that comparison.
        """
        fix = f"run `ctxsparse calibrate --model {model_key or '<model>'}` to calibrate the model being decoded"
        if model_key and model_key != self.model_key:
            raise ValueError(f"Calibration is for model {self.model_key!r}, not {model_key!r}: {fix}.")
        mismatches = [
            f"{what} {mine} vs {theirs}"
            for what, mine, theirs in (
                ("layers", self.num_layers, num_layers),
                ("kv heads", self.num_kv_heads, num_kv_heads),
                ("head_dim", self.head_dim, head_dim),
            )
            if theirs and mine != theirs
        ]
        if mismatches:
            raise ValueError(
                f"Calibration of {self.model_key!r} does not fit the model ({', '.join(mismatches)} "
                f"in the calibration vs the model): {fix}."
            )

    def channels_for(self, layer_idx: int, count: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Int64 [Hkv, count]: the `count` most important channels of each kv head of a layer."""
        if not 0 <= layer_idx < self.num_layers:
            raise ValueError(f"Layer {layer_idx} is outside the calibration's {self.num_layers} layers.")
        if not 1 <= count <= self.head_dim:
            raise ValueError(f"Channel count must lie in [1, head_dim={self.head_dim}]; got {count}.")
        rows = [head[:count] for head in self.channels[layer_idx]]
        return torch.tensor(rows, dtype=torch.int64, device=device)

    def to_dict(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "model_key": self.model_key,
            "num_layers": self.num_layers,
            "num_kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "tokens": self.tokens,
            "source": self.source,
            "statistic": "mean |q_c k_c| over causal query-key pairs, query heads of the group",
            "channels": self.channels,
        }

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the calibration as JSON (default: calibration_path(model_key)); returns the path."""
        target = Path(path) if path is not None else calibration_path(self.model_key)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.to_dict()) + "\n")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Calibration:
        """Read a calibration file written by `save`."""
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not a calibration file (invalid JSON: {err}).") from err
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path} is not a ctxsparse calibration file; write one with `ctxsparse calibrate`.")
        if data.get("version") != VERSION:
            raise ValueError(f"{path} has calibration format version {data.get('version')}; expected {VERSION}.")
        fields = ("model_key", "num_layers", "num_kv_heads", "head_dim", "channels", "tokens", "source")
        return cls(**{name: data[name] for name in fields if name in data})


def load_calibration(model_key: str, path: str | os.PathLike[str] | None = None) -> Calibration:
    """Load the calibration at `path`, or the default one of `model_key`; errors name the command to run."""
    if path is None:
        if not model_key:
            raise ValueError(
                "The decoding session gave no model key, so the calibration file cannot be found: "
                "pass calibration=PATH (a file written by `ctxsparse calibrate --model <model>`)."
            )
        path = calibration_path(model_key)
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"No Double Sparsity calibration at {path} for model {model_key!r}: run "
            f"`ctxsparse calibrate --model {model_key or '<model>'}` "
            f"(or point {CALIBRATION_ENV} at a directory holding one)."
        )
    return Calibration.load(path)


def _importance(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """[Hkv, D]: mean over the group's query heads and positions of |q_c| · mean_{s<=t} |k_{s,c}|."""
    b, hq, t, d = query.shape
    hkv = key.shape[1]
    qa = query.float().abs().view(b, hkv, hq // hkv, t, d)
    steps = torch.arange(1, t + 1, device=key.device, dtype=torch.float32).view(1, 1, t, 1)
    k_causal = key.float().abs().cumsum(2) / steps
    return (qa * k_causal.unsqueeze(2)).mean(dim=(0, 2, 3))


def channel_importance(model: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """Fp32 [L, Hkv, D] channel importance of every layer, from one forward pass over input_ids [1, T].

    Post-RoPE queries and keys are read through a capturing attention function that delegates to SDPA;
    the model's attention implementation is restored afterwards.
    """
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    found: dict[int, torch.Tensor] = {}

    def capture(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, *args, **kwargs):
        found[int(module.layer_idx)] = _importance(query, key)
        return sdpa_attention_forward(module, query, key, *args, **kwargs)

    AttentionInterface.register(CAPTURE_ATTENTION, capture)
    previous = model.config._attn_implementation
    model.set_attn_implementation(CAPTURE_ATTENTION)
    try:
        with torch.no_grad():
            model(input_ids=input_ids.to(model.device), use_cache=False)
    finally:
        model.set_attn_implementation(previous)
    layers = int(model.config.num_hidden_layers)
    if sorted(found) != list(range(layers)):
        raise RuntimeError(
            f"Captured attention of layers {sorted(found)} but the model has {layers}: its attention modules "
            "must dispatch through transformers' AttentionInterface."
        )
    return torch.stack([found[i] for i in range(layers)]).cpu()


def calibrate_model(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    model_key: str | None = None,
    source: str = "",
    progress: Callable[[str], None] | None = None,
) -> Calibration:
    """Rank each layer's key channels by importance on input_ids [1, T] (see the module docstring)."""
    if input_ids.dim() != 2 or input_ids.shape[0] != 1 or input_ids.shape[1] < 2:
        raise ValueError(f"Calibration input_ids must be [1, T] with T >= 2; got {tuple(input_ids.shape)}.")
    if progress is not None:
        progress(f"running {input_ids.shape[1]} calibration tokens through the model")
    from ctxsparse.models import model_key as key_of

    scores = channel_importance(model, input_ids)
    ranking = torch.argsort(scores, dim=-1, descending=True, stable=True)
    layers, hkv, d = scores.shape
    return Calibration(
        model_key=model_key if model_key is not None else key_of(model),
        num_layers=layers,
        num_kv_heads=hkv,
        head_dim=d,
        channels=ranking.tolist(),
        tokens=int(input_ids.shape[1]),
        source=source,
    )
