"""Per-GPU memory bandwidth: the datasheet HBM peak by device name, beside the measured copy rate.

Efficiency is quoted against the measured device-to-device copy rate (what a kernel can actually reach on
this board, bytes read + written); the datasheet peak is printed next to it for reference. A GPU missing
from the table falls back to the copy rate, and the record says so.
"""

from __future__ import annotations

from dataclasses import dataclass

# (words that must all appear in the upper-cased device name, words that must not, datasheet TB/s, label);
# the first match wins, so more specific entries come first.
PEAK_TABLE: tuple[tuple[tuple[str, ...], tuple[str, ...], float, str], ...] = (
    (("H100", "PCIE"), (), 2.0, "H100 PCIe"),
    (("H100",), ("NVL", "GH100", "PCIE"), 3.35, "H100 SXM"),
    (("H200",), ("GH200",), 4.8, "H200"),
    (("A100", "80GB", "PCIE"), (), 1.935, "A100 80GB PCIe"),
    (("A100", "80GB"), (), 2.04, "A100 80GB"),
    (("A100",), (), 1.56, "A100 40GB"),
    (("L40S",), (), 0.864, "L40S"),
    (("B200",), ("GB200",), 8.0, "B200"),
)


@dataclass(frozen=True)
class Bandwidth:
    """What the efficiency columns divide by: the datasheet peak (None for an unknown GPU) and the copy rate."""

    gpu: str
    copy_tbps: float
    datasheet_tbps: float | None
    datasheet_label: str | None

    @property
    def peak_tbps(self) -> float:
        """The datasheet peak, or the measured copy rate where the GPU is not in the table."""
        return self.datasheet_tbps if self.datasheet_tbps is not None else self.copy_tbps

    @property
    def note(self) -> str:
        if self.datasheet_tbps is None:
            return (f"{self.gpu!r} is not in the datasheet table: '% of peak' uses the measured copy rate "
                    f"{self.copy_tbps:.2f} TB/s")  # fmt: skip
        share = 100 * self.copy_tbps / self.datasheet_tbps
        return f"datasheet {self.datasheet_label} {self.datasheet_tbps} TB/s; measured copy {share:.0f}% of it"

    def as_dict(self) -> dict:
        return {
            "copy_tbps": self.copy_tbps,
            "peak_tbps": self.peak_tbps,
            "datasheet_tbps": self.datasheet_tbps,
            "datasheet_gpu": self.datasheet_label,
            "bandwidth_note": self.note,
        }


def datasheet_peak(gpu_name: str) -> tuple[float, str] | None:
    """(TB/s, table label) of the GPU's HBM from its device name, or None when the table lacks it."""
    name = gpu_name.upper().replace("-", " ")
    words = set(name.split())
    for need, avoid, tbps, label in PEAK_TABLE:
        if all(any(n in w for w in words) for n in need) and not any(a in words for a in avoid):
            return tbps, label
    return None


def bandwidth(gpu_name: str, copy_tbps: float) -> Bandwidth:
    """The datasheet peak of gpu_name beside the measured copy rate (TB/s, read + written)."""
    if not copy_tbps > 0:
        raise ValueError(f"the measured copy rate must be positive; got {copy_tbps}.")
    found = datasheet_peak(gpu_name)
    return Bandwidth(gpu_name, copy_tbps, *(found or (None, None)))
