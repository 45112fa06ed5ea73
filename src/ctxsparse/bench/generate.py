"""`ctxsparse bench generate`: end-to-end decode steps of the engine (dense and sparse) and of the stock
transformers path, each beside its byte floor, at real model shapes with random weights.

Contexts are synthetic: the engine's cache is filled with random keys and values (no prefill of 128K
tokens), then the engine decodes from it (Engine.decode_from_cache). The stock path runs transformers'
StaticCache of N slots, which it attends over in full (masked) whatever their contents.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import torch

from ctxsparse.bench.generate_floor import LABEL_CHANNELS, QUEST_PAGE, step_bytes, weight_read_bytes
from ctxsparse.bench.generate_targets import format_table, target_report
from ctxsparse.budget import Budget
from ctxsparse.engine import Engine, PagedKVCache
from ctxsparse.engine.cache import CacheShape, free_bytes
from ctxsparse.selectors import DoubleSparsity, OracleTopK, Quest, SinkWindow
from ctxsparse.selectors.calibration import Calibration
from ctxsparse.versions import versions

DESCRIPTION = "end-to-end decode: the engine (dense, sparse) and stock transformers, ms/step vs the byte floor"
METHODS = ("oracle_topk", "double_sparsity", "quest", "sink_window")
DEFAULT_POINTS = ("4x32768", "4x131072", "1x131072")
STOCK_PROMPT = 16


def _selector(method: str, calibration: Calibration):
    if method == "oracle_topk":
        return OracleTopK(granularity="kv_head", aggregate="logit_max")
    if method == "double_sparsity":
        return DoubleSparsity(channels=LABEL_CHANNELS, calibration=calibration, granularity="kv_head",
                              aggregate="logit_mean")  # fmt: skip
    if method == "quest":
        return Quest(page_size=QUEST_PAGE, granularity="kv_head")
    return SinkWindow(sink=4)


class NoAttention:
    """A step's attention replaced by a zero output that reads no KV: the step then costs the non-attention math
    alone (weights, norms, rotary, MLP, head), the 'weights' part of a step's breakdown."""

    name = "none (reads no KV)"
    timings_us: dict[str, float] = {}

    def __init__(self, cache: PagedKVCache, batch: int, num_q_heads: int) -> None:
        s = cache.shape
        self.out = torch.zeros(batch, num_q_heads, s.head_dim, dtype=s.dtype, device=cache.device)

    def before_step(self, host_lengths: list[int]) -> None:
        """Nothing to plan."""

    def adopt(self, host_lengths: list[int]) -> None:
        """Nothing to index."""

    def prepare(self, slots: torch.Tensor) -> None:
        """Nothing per step."""

    def attend(self, layer: int, q: torch.Tensor, key: torch.Tensor, scale: float) -> torch.Tensor:
        return self.out


def random_calibration(model: torch.nn.Module, seed: int = 0) -> Calibration:
    """Random channel rankings: random weights have no outlier channels to calibrate."""
    cfg = model.config
    d = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    gen = torch.Generator().manual_seed(seed)
    heads, layers = cfg.num_key_value_heads, cfg.num_hidden_layers
    chans = [[torch.randperm(d, generator=gen).tolist() for _ in range(heads)] for _ in range(layers)]
    from ctxsparse.models import model_key

    return Calibration(model_key(model), layers, heads, d, chans, tokens=0, source="random")


def parse_points(texts: list[str]) -> list[tuple[int, int]]:
    """'4x32768' -> (batch 4, context 32768)."""
    points = []
    for text in texts:
        b, _, n = text.lower().partition("x")
        if not (b.isdigit() and n.isdigit()):
            raise ValueError(f"A point looks like BATCHxCONTEXT (e.g. 4x32768); got {text!r}.")
        points.append((int(b), int(n)))
    return points


def _median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2]


def time_stock(model, batch: int, context: int, steps: int) -> float:
    """Median ms per eager transformers decode step over a StaticCache of context + steps slots."""
    from transformers import StaticCache

    cache = StaticCache(config=model.config, max_cache_len=context + steps + STOCK_PROMPT)
    tok = torch.full((batch, STOCK_PROMPT), 11, device="cuda")
    times = []
    with torch.inference_mode():
        model(input_ids=tok, past_key_values=cache, use_cache=True)
        tok = tok[:, :1]
        for _ in range(steps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            logits = model(input_ids=tok, past_key_values=cache, use_cache=True).logits[:, -1]
            end.record()
            tok = logits.argmax(-1, keepdim=True)
            end.synchronize()
            times.append(start.elapsed_time(end))
    del cache
    return _median(times[2:])


def _shape(model, batch: int, max_len: int) -> CacheShape:
    cfg = model.config
    d = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return CacheShape(cfg.num_hidden_layers, batch, max_len, 16, cfg.num_key_value_heads, d,
                      next(model.parameters()).dtype)  # fmt: skip


def _empty_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_point(model, name: str, batch: int, context: int, args, tbps: float, calibration) -> list[dict]:
    """Every method at one (model, batch, context); a point that does not fit is one skipped row. On a CPU (the
    Triton interpreter) the engine runs without graphs: a dry run of the grid's logic, not a measurement."""
    steps = args.steps
    base = {"model": name, "batch": batch, "context": context}
    positions = model.config.max_position_embeddings
    if context + steps + 1 > positions:
        if context > positions:
            note = f"beyond the model's {positions} positions"
            print(f"  skip {name} B={batch} N={context}: {note}", flush=True)
            return [{**base, "method": "all", "skipped": note}]
        context = positions - steps - 1  # a 128K point of a 128K model keeps room for the decoded tokens
        base["context_used"] = context  # rows keep the point's name (its requested context)
    shape = _shape(model, batch, context + steps + 1)
    weights = weight_read_bytes(model)
    device = next(model.parameters()).device
    need = shape.kv_bytes + shape.kv_bytes // 8 + 2 * 2**30  # cache, the largest index state, step buffers
    free = free_bytes(device) or need
    if need > free:
        note = f"does not fit: needs ~{need / 1e9:.1f} GB, {free / 1e9:.1f} GB free"
        print(f"  skip {name} B={batch} N={context}: {note}", flush=True)
        return [{**base, "method": "all", "skipped": note, "estimate_bytes": need}]
    rows = []

    def record(method: str, sparsity: int, k: int, ms: float, extra: dict) -> None:
        floor = step_bytes(method, shape, weights, batch, context, k)
        row = {**base, "method": method, "sparsity": sparsity, "k": k, "ms_per_step": ms,
               "tokens_per_s": batch * 1e3 / ms, "floor_bytes": floor.total, "floor_ms": floor.floor_ms(tbps),
               "floor_share": floor.floor_ms(tbps) / ms,
               "bytes": {"weights": floor.weights, "scan": floor.scan, "rows": floor.rows}, **extra}  # fmt: skip
        rows.append(row)
        print(f"  {name} B={batch} N={context} {method} S={sparsity}: {ms:.2f} ms/step "
              f"({100 * row['floor_share']:.0f}% of floor)", flush=True)  # fmt: skip

    if not args.no_stock:
        try:
            record("stock", 1, context, time_stock(model, batch, context, steps), {"path": "transformers eager"})
        except Exception as err:  # one failing run must not stop the grid
            rows.append({**base, "method": "stock", "error": repr(err)})
        _empty_cache(device)
    cache = PagedKVCache(shape, device)
    gen = torch.Generator(device=device).manual_seed(0)
    cache.k.normal_(generator=gen)
    cache.v.normal_(generator=gen)
    runs = [("dense", 1), ("weights_only", 1)] + [(m, s) for m in args.methods for s in args.sparsity]
    for method, sparsity in runs:
        selector = None if method in ("dense", "weights_only") else _selector(method, calibration)
        budget = None if selector is None else Budget(sparsity=sparsity)
        try:
            with Engine(model, None, selector=selector, budget=budget, max_batch=batch, max_len=shape.max_len,
                        graphs=device.type == "cuda", cache=cache, compile=args.compile) as engine:  # fmt: skip
                if method == "weights_only":
                    engine.fast._make_backend = lambda b, k, weighted: NoAttention(
                        engine.cache, b, model.config.num_attention_heads
                    )
                res = engine.decode_from_cache([context] * batch, [11] * batch, max_new_tokens=steps,
                                               stop_token_ids=[])  # fmt: skip
                timings = engine.fast.attention_timings_us
                fused = engine.fast.fused_groups
                one_kernel = {"rotary_modules": engine.fast.rotary_modules, "norms": engine.fast.fast_norm_modules}
            k = 0 if budget is None else budget.tokens_for(context + steps)
            extra = {"path": f"engine ({res.mode})", "attention": res.attention, "attention_choice_us": timings,
                     "compile": args.compile, "fused_projection_groups": fused, "one_kernel": one_kernel}  # fmt: skip
            record(method, sparsity, k if k else context, _median(res.step_ms[1:]), extra)
        except Exception as err:
            rows.append({**base, "method": method, "sparsity": sparsity, "error": repr(err)})
            print(f"  {name} B={batch} N={context} {method} S={sparsity}: failed: {err!r}", flush=True)
        _empty_cache(device)
    cache.release()
    _empty_cache(device)
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", nargs="+", default=["random:llama-3.1-8b"], help="random:<shape> names")
    parser.add_argument("--points", nargs="+", default=list(DEFAULT_POINTS), help="BATCHxCONTEXT, e.g. 4x32768")
    parser.add_argument("--sparsity", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--steps", type=int, default=12, help="decode steps per run (the first is not counted)")
    parser.add_argument("--no-stock", action="store_true", help="skip the stock transformers path")
    parser.add_argument("--compile", nargs="?", const=True, default=False, metavar="MODE",
                        help="torch.compile the MLPs and norms of engine steps (optionally a mode, e.g. "
                        "max-autotune-no-cudagraphs: minutes of compiling)")  # fmt: skip
    parser.add_argument("--output-dir", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--output", type=Path, default=None, help="JSON path (default: named by GPU and date)")
    parser.add_argument("--name-suffix", default="", help="appended to the default JSON name, e.g. -compiled")


def _gpu_short(name: str) -> str:
    words = [w for w in name.replace("NVIDIA", "").split() if any(c.isdigit() for c in w)]
    return words[0] if words else "".join(name.split()) or "GPU"


def run_cli(args: argparse.Namespace) -> int:
    """Run every point of every model, print the table and the targets, write the JSON."""
    if not torch.cuda.is_available():
        raise RuntimeError("bench generate needs a CUDA GPU.")
    from ctxsparse.bench.timing import copy_bandwidth_tbps
    from ctxsparse.models import load_model

    points = parse_points(args.points)
    gpu = torch.cuda.get_device_name()
    tbps = copy_bandwidth_tbps()
    print(f"{gpu}: device-to-device copy {tbps:.2f} TB/s (the floor's bandwidth)", flush=True)
    rows: list[dict] = []
    result = {"benchmark": "generate", "gpu": gpu, "date": dt.date.today().isoformat(), "versions": versions(),
              "copy_tbps": tbps, "setup": {"dtype": "bfloat16", "page_size": 16, "steps": args.steps,
              "context": "random keys and values", "timing": "median of CUDA-event step times, first step dropped",
              "oracle_topk": "kv_head, logit_max", "double_sparsity": f"{LABEL_CHANNELS} random channels, logit_mean",
              "quest": f"page {QUEST_PAGE}, kv_head max", "compile": args.compile}, "rows": rows}  # fmt: skip
    path = args.output or args.output_dir / f"generate-{_gpu_short(gpu)}-{result['date']}{args.name_suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    for name in args.model:
        model, _ = load_model(name, device="cuda", dtype="bfloat16")
        calibration = random_calibration(model)
        for batch, context in points:
            rows += run_point(model, name, batch, context, args, tbps, calibration)
            result["targets"] = target_report(rows)
            path.write_text(json.dumps(result, indent=1) + "\n")  # after every point: a cut run keeps its rows
        del model
        torch.cuda.empty_cache()
    print(format_table(rows))
    for line in result["targets"]:
        print(f"{line['status']:>12}  {line['target']}: {line['measured']}")
    print(f"wrote {path}")
    return 0
