"""Pairing by sample_hash and stale rows: the report compares only rows made from the same text."""

from ctxsparse.study.pairing import paired_with_dense, sample_key, split_stale
from ctxsparse.study.report_tables import aggregate


def _row(method, sample, score, sample_hash, spec=None, sparsity=1.0):
    return {
        "model": "m",
        "dtype": "auto",
        "task": "t",
        "length": 128,
        "phase": "any" if method == "dense" else "question",
        "method": method,
        "spec": spec or method,
        "sparsity": sparsity,
        "sample": sample,
        "seed": 0,
        "sample_hash": sample_hash,
        "score": score,
        **{k: None for k in ("density", "mass_recall", "output_error", "kl", "top1_agreement")},
        **{k: None for k in ("prefill_s", "decode_s", "new_tokens", "context_tokens")},
    }


def test_rows_pair_with_dense_only_when_their_texts_match():
    dense = {(0, 0): _row("dense", 0, 1.0, "a"), (1, 0): _row("dense", 1, 1.0, "b")}
    sparse = [_row("oracle_topk", 0, 1.0, "a"), _row("oracle_topk", 1, 0.0, "OTHER"), _row("oracle_topk", 2, 0.0, "c")]
    pairs, mismatched = paired_with_dense(sparse, dense)
    assert [r["sample"] for r, _ in pairs] == [0]
    assert mismatched == 1


def test_aggregate_counts_pairs_and_leaves_out_other_texts():
    rows = [_row("dense", 0, 1.0, "a"), _row("dense", 1, 0.0, "b")]
    rows += [_row("oracle_topk", 0, 1.0, "a", sparsity=10.0), _row("oracle_topk", 1, 1.0, "x", sparsity=10.0)]
    cells = {c.method: c for c in aggregate(rows)}
    assert cells["oracle_topk"].pairs == 1
    assert cells["oracle_topk"].retention == 1.0  # sample 1 (another text) is not compared with dense's 0.0
    assert cells["oracle_topk"].dense_accuracy == 1.0


def test_split_stale_uses_the_recorded_current_hash():
    rows = [_row("dense", 0, 1.0, "a"), _row("dense", 1, 1.0, "old"), _row("dense", 2, 1.0, "unknown")]
    current = {sample_key(rows[0]): "a", sample_key(rows[1]): "new"}
    split = split_stale(rows, current)
    assert [r["sample"] for r in split.stale] == [1]
    assert [r["sample"] for r in split.fresh] == [0, 2]
    assert "--rerun-stale" in split.message("r.db") and "1 rows" in split.message("r.db")
    assert split_stale(rows[:1], current).message("r.db") == ""
