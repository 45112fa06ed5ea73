"""bench generate's CPU-side parts: the byte floor of a step, the points, the targets judged from rows."""

from __future__ import annotations

import argparse

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from ctxsparse.bench.generate import parse_points, random_calibration, run_point
from ctxsparse.bench.generate_floor import step_bytes, weight_read_bytes
from ctxsparse.bench.generate_targets import format_table, target_report
from ctxsparse.engine.cache import CacheShape
from ctxsparse.gpu_index.launch import INTERPRETED
from ctxsparse.models import load_model

LLAMA8B = CacheShape(32, 4, 131072, 16, 8, 128, torch.bfloat16)


def test_step_bytes_of_the_issue_shapes():
    weights = 15 * 10**9
    dense = step_bytes("dense", LLAMA8B, weights, 4, 32768, 0)
    assert LLAMA8B.bytes_per_token == 131072  # 32 layers x 8 kv heads x 128 x (K, V) x 2 bytes
    assert dense.rows == 4 * 32768 * 131072 and dense.scan == 0
    k = 32768 // 50 + 1
    ds = step_bytes("double_sparsity", LLAMA8B, weights, 4, 32768, k)
    assert ds.scan == dense.rows // 16  # 16 label channels of the 256 K and V values of a token
    assert ds.rows == 4 * k * 131072
    oracle = step_bytes("oracle_topk", LLAMA8B, weights, 4, 32768, k)
    assert oracle.scan == dense.rows // 2  # every key, no value
    quest = step_bytes("quest", LLAMA8B, weights, 4, 32768, 100)
    assert quest.scan == dense.rows // 16 and quest.rows == 4 * 112 * 131072  # 7 whole pages of 16
    vatt = step_bytes("vattention", LLAMA8B, weights, 4, 32768, k, group=4)
    assert vatt.scan == oracle.scan and vatt.rows == 4 * oracle.rows  # each of a group's 4 query heads reads its k
    assert step_bytes("weights_only", LLAMA8B, weights, 4, 32768, 0).total == weights
    with pytest.raises(ValueError, match="No byte floor"):
        step_bytes("lsh", LLAMA8B, weights, 4, 32768, k)


def test_weights_read_skip_an_untied_input_embedding():
    model, _ = load_model("random:tiny-llama")
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    embed = model.get_input_embeddings().weight
    assert weight_read_bytes(model) == total - embed.numel() * embed.element_size()


def test_points_parse_and_refuse_bad_text():
    assert parse_points(["4x32768", "1X131072"]) == [(4, 32768), (1, 131072)]
    with pytest.raises(ValueError, match="BATCHxCONTEXT"):
        parse_points(["4-32768"])


def _row(method, ms, floor_ms, batch=4, context=131072, sparsity=1):
    return {"model": "random:llama-3.1-8b", "batch": batch, "context": context, "method": method,
            "sparsity": sparsity, "ms_per_step": ms, "floor_ms": floor_ms, "floor_share": floor_ms / ms,
            "tokens_per_s": batch * 1e3 / ms}  # fmt: skip


def test_targets_are_judged_from_the_rows():
    rows = [
        _row("dense", 20.0, 17.0),
        _row("weights_only", 5.0, 3.5),
        _row("double_sparsity", 6.0, 4.2, sparsity=50),
        _row("quest", 8.0, 4.4, sparsity=50),
        _row("oracle_topk", 13.0, 10.0, sparsity=50),
        _row("sink_window", 25.0, 3.6, sparsity=10),
        {"model": "random:llama-3.1-8b", "batch": 16, "context": 131072, "method": "all", "skipped": "too big"},
    ]
    lines = {line["target"]: line for line in target_report(rows)}
    assert lines["dense engine >= 75% of its byte floor at B=1, N=131072"]["status"] == "not measured"
    assert lines["double_sparsity S=50 >= 3.0x the dense engine at B=4, N=131072"]["status"] == "met"
    assert lines["quest S=50 >= 3.0x the dense engine at B=4, N=131072"]["status"] == "missed"
    oracle = lines["oracle_topk S=50 >= 80% of its floor ratio at B=4, N=131072"]
    assert oracle["status"] == "met" and "1.54x of a 1.70x" in oracle["measured"]
    slower = lines["no sparse configuration at S >= 10 slower than the dense engine"]
    assert slower["status"] == "missed" and "sink_window S=10" in slower["measured"]
    table = format_table(rows)
    assert "too big" in table and "3.33" in table  # double sparsity's speedup over dense


@pytest.mark.skipif(torch.cuda.is_available() or not INTERPRETED, reason="CPU interpreter dry run")
def test_a_point_runs_end_to_end_on_the_interpreter():
    """run_point's logic without a GPU (no graphs, no stock path): rows for dense, weights only and a method."""
    cfg = AutoConfig.for_model("llama", hidden_size=128, num_hidden_layers=1, num_attention_heads=4,
                               num_key_value_heads=2, head_dim=64, intermediate_size=256, vocab_size=512,
                               max_position_embeddings=64)  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).eval()
    args = argparse.Namespace(steps=3, no_stock=True, methods=["sink_window"], sparsity=[10], compile=False)
    rows = run_point(model, "tiny", 2, 62, args, 4.0, random_calibration(model))
    assert [r["method"] for r in rows] == ["dense", "weights_only", "sink_window"]
    assert rows[0]["context"] == 62 and rows[0]["context_used"] == 60  # room left for the decoded tokens
    assert all(r["ms_per_step"] > 0 and r["floor_bytes"] > 0 for r in rows)
    assert rows[2]["k"] == 7 and rows[1]["bytes"]["rows"] == 0


def test_the_cli_verb_parses_its_options():
    from ctxsparse.bench import generate
    from ctxsparse.cli.main import build_parser

    args = build_parser().parse_args(["bench", "generate", "--points", "4x32768", "--methods", "quest", "--compile"])
    assert args.run is generate.run_cli
    assert (args.points, args.methods, args.compile, args.sparsity) == (["4x32768"], ["quest"], True, [10, 50])
    default = build_parser().parse_args(["bench", "generate"])
    assert default.compile is False and default.model == ["random:llama-3.1-8b"]
