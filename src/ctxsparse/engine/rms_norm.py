"""RMSNorm in one Triton kernel for decode steps: the model's norm launched op by op is eight small kernels.

y = weight * (x_f32 * rsqrt(mean(x_f32^2) + eps)).to(x.dtype), exactly the formula of the Llama, Qwen2, Qwen3 and
Mistral RMSNorm modules (same casts; only the order of the mean's float sum differs). While decode steps run,
fast_norms() routes those modules' forward through it for contiguous inputs (others, such as Qwen3's per-head
norms of a strided query, keep the module's own forward). Inside a CUDA graph each kernel boundary costs a
few microseconds, and a step has two norms per layer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import triton
import triton.language as tl

NORM_CLASSES = ("LlamaRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm", "MistralRMSNorm")
MAX_WIDTH = 16384  # one program holds a whole row


@triton.jit
def _rms_norm_kernel(x_ptr, w_ptr, out_ptr, n, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    mask = offs < n
    x_in = tl.load(x_ptr + row * n + offs, mask=mask, other=0.0)
    x = x_in.to(tl.float32)
    variance = tl.sum(x * x, axis=0) / n
    y = (x * (1.0 / tl.sqrt(variance + eps))).to(x_in.dtype)  # the module's cast back to the input dtype
    w = tl.load(w_ptr + offs, mask=mask, other=0.0)
    out = w.to(tl.float32) * y.to(tl.float32)  # weight * y in the promoted dtype, rounded once on store
    tl.store(out_ptr + row * n + offs, out.to(out_ptr.dtype.element_ty), mask=mask)


def rms_norm(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The module's RMSNorm of x in one kernel (its own forward when x is not contiguous or too wide)."""
    n = x.shape[-1]
    if not x.is_contiguous() or n > MAX_WIDTH or module.weight.shape != (n,):
        return type(module).forward(module, x)
    out = torch.empty(x.shape, dtype=torch.promote_types(module.weight.dtype, x.dtype), device=x.device)
    rows = x.numel() // n
    if rows:
        _rms_norm_kernel[(rows,)](x, module.weight, out, n, float(module.variance_epsilon),
                                  BLOCK=triton.next_power_of_2(n), num_warps=8 if n >= 2048 else 4)  # fmt: skip
    return out


def norm_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if type(m).__name__ in NORM_CLASSES and hasattr(m, "variance_epsilon")]


def kernel_agrees(module: torch.nn.Module) -> bool:
    """A one-row probe of the kernel against the module's own forward (within one rounding step): False when it
    fails to build or disagrees on this device, so a step never depends on an unchecked kernel."""
    try:
        with torch.no_grad():
            x = torch.linspace(-3, 3, module.weight.shape[0], device=module.weight.device).to(module.weight.dtype)
            want = type(module).forward(module, x.view(1, -1)).float()
            got = rms_norm(module, x.view(1, -1)).float()
        return bool(torch.allclose(got, want, rtol=2**-6, atol=2**-6 * float(want.abs().max())))
    except Exception:  # a kernel that cannot build here: the module's own forward stays
        return False


@contextlib.contextmanager
def fast_norms(model: torch.nn.Module) -> Iterator[int]:
    """Route the model's RMSNorm modules through the one-kernel norm inside the block (yields how many; none
    when a probe of the kernel on the first norm disagrees with the module)."""
    modules = norm_modules(model)
    if modules and not kernel_agrees(modules[0]):
        modules = []
    try:
        for m in modules:
            m.forward = lambda x, m=m: rms_norm(m, x)
        yield len(modules)
    finally:
        for m in modules:
            if "forward" in m.__dict__:
                del m.forward
