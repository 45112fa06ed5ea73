"""Where a batched decode step's logits depart from the engine's reference row path, piece by piece.

From one cache (a dense prefill, then a few decode steps), one dense step runs through the batched path with
every piece (one-GEMM q/k/v and gate/up, one-kernel RMSNorm and rotary, the dense attention kernel) and with
each piece switched off in turn; the reference path (`Engine._forward_rows`: the model's own modules, SDPA)
runs the same step from the same cache in the model's dtype and in float32 (the model and cache upcast). The
float32 reference (the bfloat16 model's own weights, computed in float32) is the yardstick: a piece that is
wrong moves the step far from it, while rounding moves the step about as far as it moves the half-precision
reference itself. A last row measures how much the logits move when each attention output of the reference
path gets random noise of one half-precision rounding step (2^-9 relative): the model's own amplification of
rounding.

CPU (Triton's interpreter; a small random Llama of --shape, default 4 layers of hidden 256; float32 runs the same
kernels; --quick: only the step with every piece, in bfloat16):
  TRITON_INTERPRET=1 PYTHONPATH=src python benchmarks/step_error.py [--round-nearest] [--shape 4096 4 32 8 128 14336]
--round-nearest makes the interpreter round float32 -> bfloat16 casts to nearest even, as a GPU does (the
interpreter truncates them). On a CUDA machine (FlashInfer on the path when installed, the step replayed from
its CUDA graph like the GPU test):
  PYTHONPATH=/tmp/site:src python benchmarks/step_error.py --model random:llama-3.1-8b --lengths 1500 900
Prints a table; writes benchmarks/results/step-error-<device>-<date>.json (and into $OUT when set).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import json
import os
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from ctxsparse.engine import Engine
from ctxsparse.engine.hook import attached
from ctxsparse.models import load_model
from ctxsparse.versions import versions

FAST = importlib.import_module("ctxsparse.engine.fast")
PIECES = ("fused", "norm", "rotary")
NOISE = 2.0**-9  # one bfloat16 rounding step, relative


@contextlib.contextmanager
def _none(*args, **kwargs):
    yield 0


@contextlib.contextmanager
def pieces_off(off: tuple[str, ...], triton_attention: bool = False):
    """The batched step without the named pieces (and with the Triton dense kernel instead of FlashInfer)."""
    saved = FAST.fuse_weights, FAST.fast_norms, FAST.fast_rotary, FAST.flashinfer_ready
    try:
        if "fused" in off:
            FAST.fuse_weights = lambda model: []
        if "norm" in off:
            FAST.fast_norms = _none
        if "rotary" in off:
            FAST.fast_rotary = _none
        if triton_attention:
            FAST.flashinfer_ready = lambda device: False
        yield
    finally:
        FAST.fuse_weights, FAST.fast_norms, FAST.fast_rotary, FAST.flashinfer_ready = saved


def round_nearest_in_interpreter() -> None:
    """Make Triton's interpreter round float32 -> bfloat16 to nearest even (a GPU's rounding) instead of truncating."""
    import numpy as np
    import triton.language as tl
    from triton.runtime import interpreter

    cast = interpreter.InterpreterBuilder.cast_impl

    def cast_impl(self, src, dst_type):
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            rounded = torch.from_numpy(np.ascontiguousarray(src.data)).to(torch.bfloat16).view(torch.int16).numpy()
            return interpreter.TensorHandle(rounded.view(np.uint16), dst_type.scalar)
        return cast(self, src, dst_type)

    interpreter.InterpreterBuilder.cast_impl = cast_impl


def small_llama(shape: list[int], dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A random Llama of shape (hidden, layers, heads, kv heads, head_dim, intermediate), vocabulary 2048."""
    hidden, layers, heads, kv_heads, head_dim, intermediate = shape
    cfg = AutoConfig.for_model("llama", hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                               num_key_value_heads=kv_heads, head_dim=head_dim, intermediate_size=intermediate,
                               vocab_size=2048, max_position_embeddings=4096, rope_theta=500000.0)  # fmt: skip
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, dtype=dtype).eval()


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


class Probe:
    """One model, one shared cache and its state after prefill + decode; logits of one more step, several ways."""

    def __init__(self, model, rows: list[list[int]], max_len: int, graphs: bool) -> None:
        self.model, self.graphs, self.max_len = model, graphs, max_len
        self.engine = Engine(model, None, max_batch=len(rows), max_len=max_len, graphs=graphs)
        result = self.engine.generate(input_ids=rows, max_new_tokens=4, stop_token_ids=[])
        self.mode, self.attention = result.mode, result.attention
        self.lengths = list(self.engine.fast.host_lengths)
        self.token = torch.tensor([row[-1] for row in result.token_ids], device=self.engine.device)
        self.sequences = [r + t for r, t in zip(rows, result.token_ids, strict=True)]

    def _restore(self) -> None:
        self.engine.cache.lengths.zero_()
        self.engine.cache.lengths[: len(self.lengths)] = torch.tensor(self.lengths, dtype=torch.int32)

    @torch.no_grad()
    def step(self, off: tuple[str, ...] = (), triton_attention: bool = False, graphs: bool | None = None):
        """Logits [B, V] of the batched step from the shared cache, with the named pieces off."""
        graphs = self.graphs if graphs is None else graphs
        with pieces_off(off, triton_attention), Engine(self.model, None, max_batch=len(self.lengths),
                                                       max_len=self.max_len, graphs=graphs,
                                                       cache=self.engine.cache) as engine:  # fmt: skip
            self._restore()
            engine._attend = engine.fast.attend
            with attached(self.model, engine._dispatch), engine.fast.session():
                engine.fast.begin(len(self.lengths), self.lengths, 1)
                logits = engine.fast.step(self.token).float().clone()
                name = engine.fast.attention_name
                counts = (engine.fast.fused_groups, engine.fast.rotary_modules, engine.fast.fast_norm_modules)
        self._restore()
        return logits, name, counts

    @torch.no_grad()
    def reference(self, engine: Engine | None = None, noise: float = 0.0) -> torch.Tensor:
        """Logits of the reference path from the shared cache (or from `engine`'s copy of it)."""
        engine = engine or self.engine
        attend = engine._dispatch
        if noise:
            gen = torch.Generator(device=engine.device).manual_seed(0)

            def attend(layer, q, k, v, scale):
                out = engine._dispatch(layer, q, k, v, scale)
                jitter = torch.randn(out.shape, generator=gen, device=out.device, dtype=torch.float32)
                return (out.float() * (1 + noise * jitter)).to(out.dtype)

        with attached(engine.model, attend):
            rows = list(range(len(self.lengths)))
            logits = engine._forward_rows(rows, self.lengths, self.token.view(-1, 1).tolist(), sparse=False)
        engine.cache.lengths.zero_()
        engine.cache.lengths[: len(self.lengths)] = torch.tensor(self.lengths, dtype=torch.int32)
        return logits.float()

    @torch.no_grad()
    def reference_float32(self, model32) -> torch.Tensor:
        """The reference path of the float32 model from this cache upcast."""
        with Engine(model32, None, max_batch=len(self.lengths), max_len=self.max_len, graphs=False) as engine:
            engine.cache.k.copy_(self.engine.cache.k)
            engine.cache.v.copy_(self.engine.cache.v)
            return self.reference(engine)

    @torch.no_grad()
    def plain(self, model) -> torch.Tensor:
        """The model's own forward over each whole sequence (no cache), last logits."""
        device = next(model.parameters()).device
        ids = [torch.tensor([s], device=device) for s in self.sequences]
        return torch.cat([model(input_ids=i, logits_to_keep=1).logits[:, -1].float() for i in ids])


def measure(model, model32, rows, max_len: int, graphs: bool, device: str, quick: bool) -> dict:
    probe = Probe(model, rows, max_len, graphs)
    ref = probe.reference()
    out = {"mode": probe.mode, "dtype": str(model.dtype).removeprefix("torch."), "lengths": probe.lengths,
           "reference with 2^-9 noise on attention outputs vs reference": relative(probe.reference(noise=NOISE), ref),
           "steps": []}  # fmt: skip
    ref32 = None if model32 is None else probe.reference_float32(model32)
    if ref32 is not None:
        out["reference vs float32 reference"] = relative(ref, ref32)
        out["plain forward vs float32 reference"] = relative(probe.plain(model), ref32)
        key = "float32 plain forward (float32 keys/values) vs float32 reference (cache upcast)"
        out[key] = relative(probe.plain(model32), ref32)
    configs = [((), False)] + ([] if quick else [((p,), False) for p in PIECES] + [(PIECES, False)])
    if device == "cuda" and not quick:
        configs.append(((), True))
    full = None
    for off, triton_attention in configs:
        logits, name, counts = probe.step(off, triton_attention)
        full = logits if full is None else full
        out["steps"].append({
            "off": list(off), "attention": name, "pieces (gemm groups, rotary modules, norms)": counts,
            "vs reference": relative(logits, ref),
            "vs float32 reference": None if ref32 is None else relative(logits, ref32),
            "vs all pieces": relative(logits, full),
            "same argmax as reference": (logits.argmax(-1) == ref.argmax(-1)).tolist(),
        })  # fmt: skip
    probe.engine.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small", help="'small' (a random Llama of --shape) or a random:<shape> name")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=6,
        default=[256, 4, 4, 2, 64, 896],
        metavar=("HIDDEN", "LAYERS", "HEADS", "KV_HEADS", "HEAD_DIM", "INTERMEDIATE"),
    )
    parser.add_argument("--quick", action="store_true", help="only the step with every piece; bfloat16 only")
    parser.add_argument("--no-float32", action="store_true", help="bfloat16 model only (no float32 copy, less memory)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[150, 90])
    parser.add_argument("--round-nearest", action="store_true", help="interpreter: round casts to bf16 to nearest")
    parser.add_argument("--output-dir", default="benchmarks/results")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        if args.round_nearest:
            round_nearest_in_interpreter()
        dtypes = (torch.bfloat16, torch.float16, torch.float32)  # the interpreter runs the kernels in float32 too
        importlib.import_module("ctxsparse.attention.sparse_decode").KERNEL_DTYPES = dtypes
        FAST.KERNEL_DTYPES = dtypes
    dtype = torch.bfloat16 if args.no_float32 else torch.float32
    if args.model == "small":
        first = small_llama(args.shape, dtype).to(device)
    else:
        first, _ = load_model(args.model, device=device, dtype=dtype)
    gen = torch.Generator().manual_seed(0)
    vocab = min(first.config.vocab_size, 30000)
    rows = [torch.randint(100 if vocab > 1000 else 5, vocab, (n,), generator=gen).tolist() for n in args.lengths]
    max_len = max(args.lengths) + 64
    runs = []
    half, model32 = first, None
    if not args.no_float32:
        model32 = first
        with torch.no_grad():  # the float32 yardstick computes exactly with the bfloat16 model's own weights
            for p in model32.parameters():
                p.copy_(p.to(torch.bfloat16))
            with torch.device(device):
                half = AutoModelForCausalLM.from_config(model32.config, dtype=torch.bfloat16).eval()
            half.load_state_dict(model32.state_dict())
    runs.append(measure(half, model32, rows, max_len, device == "cuda", device, args.quick))
    del half
    if device == "cpu" and not args.quick and model32 is not None:
        runs.append(measure(model32, model32, rows, max_len, False, device, args.quick))
    model = args.model if args.model != "small" else "small-llama-" + "-".join(map(str, args.shape))
    for run in runs:
        print(f"\n{model} {run['dtype']} ({run['mode']}), rows {run['lengths']}: relative L2 error of the logits")
        for key, value in run.items():
            if isinstance(value, float):
                print(f"  {key:78} {value:.2e}")
        print(f"  {'pieces off':24} {'attention':34} {'vs ref':>9} {'vs fp32 ref':>11} {'vs all on':>9}  argmax")
        for s in run["steps"]:
            off = ",".join(s["off"]) or "none"
            fp32 = "-" if s["vs float32 reference"] is None else f"{s['vs float32 reference']:.2e}"
            print(f"  {off:24} {s['attention'][:34]:34} {s['vs reference']:9.2e} {fp32:>11} "
                  f"{s['vs all pieces']:9.2e}  {s['same argmax as reference']}")  # fmt: skip
    name = torch.cuda.get_device_name().split()[-1] if device == "cuda" else "cpu"
    doc = {"benchmark": "step_error", "model": model, "device": name, "round_nearest": args.round_nearest,
           "date": datetime.date.today().isoformat(), "versions": versions(), "runs": runs}  # fmt: skip
    suffix = ("-round-nearest" if args.round_nearest else "") + ("-bf16-only" if args.no_float32 else "")
    path = Path(args.output_dir) / f"step-error-{model.removeprefix('random:')}-{name}-{doc['date']}{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))
    if os.environ.get("OUT"):
        (Path(os.environ["OUT"]) / path.name).write_text(json.dumps(doc, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
