"""How far sparse decoding strays from dense: per-layer density, mass recall, output error; per-token KL."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch

from ctxsparse.selection import Selection


def selection_density(selection: Selection, visible_counts: torch.Tensor) -> torch.Tensor:
    """Selected / visible per row, [B, H, Tq] (visible_counts [B, 1, Tq] broadcasts)."""
    return selection.counts().float() / visible_counts.clamp_min(1).float()


def mass_recall(selection: Selection, dense_probs: torch.Tensor) -> torch.Tensor:
    """Share of the dense softmax mass on the selected tokens, per query head and row: [B, Hq, Tq].

    dense_probs: [B, Hq, Tq, N]. Duplicate indices count once; importance weights are ignored.
    """
    mask = selection.to_query_heads(dense_probs.shape[1]).as_mask(dense_probs.shape[-1])
    return (dense_probs * mask).sum(-1)


def relative_error(approx: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """||approx - exact|| / ||exact|| over the last dimension."""
    diff = torch.linalg.vector_norm((approx.float() - exact.float()), dim=-1)
    return diff / torch.linalg.vector_norm(exact.float(), dim=-1).clamp_min(1e-12)


def kl_divergence(dense_logits: torch.Tensor, sparse_logits: torch.Tensor) -> torch.Tensor:
    """KL(dense || sparse) of next-token distributions per position (natural log), [..., V] -> [...]."""
    p_log = torch.log_softmax(dense_logits.float(), dim=-1)
    q_log = torch.log_softmax(sparse_logits.float(), dim=-1)
    return (p_log.exp() * (p_log - q_log)).sum(-1).clamp_min(0.0)


def top1_agreement(dense_logits: torch.Tensor, sparse_logits: torch.Tensor) -> torch.Tensor:
    """Bool per position: do dense and sparse pick the same greedy token?"""
    return dense_logits.argmax(-1) == sparse_logits.argmax(-1)


def _mean(values: list[torch.Tensor]) -> float | None:
    if not values:
        return None
    return float(torch.cat([v.reshape(-1).float().cpu() for v in values]).mean())


@dataclass
class FidelityTrace:
    """Fidelity records of one sparse run; recording costs nothing when `enabled` is False.

    Per sparse attention call (layer, step) it keeps density, attention-mass recall and the relative output
    error vs dense; at the model level KL(dense || sparse) and top-1 agreement of next-token distributions.
    """

    enabled: bool = True
    layers: dict[str, dict[int, list[torch.Tensor]]] = field(
        default_factory=lambda: {m: defaultdict(list) for m in ("density", "mass_recall", "output_error")}
    )
    kl: list[torch.Tensor] = field(default_factory=list)
    agreement: list[torch.Tensor] = field(default_factory=list)
    sparse_calls: int = 0

    def record_layer(self, layer: int, **metrics: torch.Tensor) -> None:
        """Keep one attention call's metrics (tensors stay on their device until summary())."""
        self.sparse_calls += 1
        for name, value in metrics.items():
            self.layers[name][layer].append(value.detach())

    def record_logits(self, dense_logits: torch.Tensor, sparse_logits: torch.Tensor) -> None:
        """Compare teacher-forced next-token distributions, [T, V] each."""
        self.kl.append(kl_divergence(dense_logits, sparse_logits).detach())
        self.agreement.append(top1_agreement(dense_logits, sparse_logits).detach())

    def summary(self) -> dict:
        """Means over all sparse calls and positions, plus per-layer means."""
        out: dict = {name: _mean([v for vs in per.values() for v in vs]) for name, per in self.layers.items()}
        out["kl"] = _mean(self.kl)
        out["top1_agreement"] = _mean([a.float() for a in self.agreement])
        out["steps"] = int(sum(a.numel() for a in self.agreement))
        out["sparse_calls"] = self.sparse_calls
        layer_ids = sorted({layer for per in self.layers.values() for layer in per})
        out["per_layer"] = {
            layer: {name: _mean(per.get(layer, [])) for name, per in self.layers.items()} for layer in layer_ids
        }
        return out

    def format(self) -> str:
        """One line for terminals."""
        s = self.summary()
        parts = []
        for key, label in (
            ("density", "density"),
            ("mass_recall", "mass recall"),
            ("output_error", "output err"),
            ("kl", "KL"),
            ("top1_agreement", "top-1 agree"),
        ):
            if s.get(key) is not None:
                parts.append(f"{label} {s[key]:.4f}")
        return ", ".join(parts) if parts else "no sparse steps recorded"
