"""The table of `bench generate` and the issue's targets, judged from its rows (met, missed, not measured)."""

from __future__ import annotations

TARGET_MODEL = "random:llama-3.1-8b"


def _find(rows: list[dict], model: str, batch: int, context: int, method: str, sparsity: int = 1) -> dict | None:
    for r in rows:
        if (r["model"], r["batch"], r["context"], r["method"], r.get("sparsity", 1)) == (
            model, batch, context, method, sparsity
        ) and "ms_per_step" in r:  # fmt: skip
            return r
    return None


def _line(target: str, ok: bool | None, measured: str) -> dict:
    status = "not measured" if ok is None else ("met" if ok else "missed")
    return {"target": target, "status": status, "measured": measured}


def target_report(rows: list[dict], model: str = TARGET_MODEL) -> list[dict]:
    """One line per target of the engine's issue (H200, bf16, Llama-3.1-8B shape)."""
    lines = []
    for b, n in ((4, 32768), (1, 131072)):
        d = _find(rows, model, b, n, "dense")
        name = f"dense engine >= 75% of its byte floor at B={b}, N={n}"
        if d is None:
            lines.append(_line(name, None, "-"))
            continue
        share = d["floor_share"]
        text = f"{100 * share:.0f}% ({d['ms_per_step']:.2f} ms vs floor {d['floor_ms']:.2f} ms)"
        w = _find(rows, model, b, n, "weights_only")
        if w is not None:  # the step's breakdown: non-attention math, then attention (KV read) on top
            text += (
                f"; non-attention {w['ms_per_step']:.2f} ms (floor {w['floor_ms']:.2f}), attention "
                f"{d['ms_per_step'] - w['ms_per_step']:.2f} ms (floor {d['floor_ms'] - w['floor_ms']:.2f})"
            )
        lines.append(_line(name, share >= 0.75, text))
    for method in ("double_sparsity", "quest"):
        for (b, n), want in (((4, 131072), 3.0), ((4, 32768), 1.6)):
            d, s = _find(rows, model, b, n, "dense"), _find(rows, model, b, n, method, 50)
            ratio = None if d is None or s is None else d["ms_per_step"] / s["ms_per_step"]
            lines.append(_line(f"{method} S=50 >= {want}x the dense engine at B={b}, N={n}",
                               None if ratio is None else ratio >= want,
                               "-" if ratio is None else f"{ratio:.2f}x (floor ratio "
                               f"{d['floor_ms'] / s['floor_ms']:.2f}x)"))  # fmt: skip
    for b, n in ((4, 131072), (4, 32768)):
        d, s = _find(rows, model, b, n, "dense"), _find(rows, model, b, n, "oracle_topk", 50)
        if d is None or s is None:
            lines.append(_line(f"oracle_topk S=50 >= 80% of its floor ratio at B={b}, N={n}", None, "-"))
            continue
        ratio, floor_ratio = d["ms_per_step"] / s["ms_per_step"], d["floor_ms"] / s["floor_ms"]
        share = ratio / floor_ratio
        lines.append(_line(f"oracle_topk S=50 >= 80% of its floor ratio at B={b}, N={n}", share >= 0.8,
                           f"{ratio:.2f}x of a {floor_ratio:.2f}x floor ratio ({100 * share:.0f}%)"))  # fmt: skip
    slower = []
    compared = 0
    for r in rows:
        if (
            r["method"] in ("dense", "stock", "weights_only", "all")
            or "ms_per_step" not in r
            or r.get("sparsity", 1) < 10
        ):
            continue
        d = _find(rows, r["model"], r["batch"], r["context"], "dense")
        if d is None:
            continue
        compared += 1
        if r["ms_per_step"] > d["ms_per_step"]:
            slower.append(f"{r['method']} S={r['sparsity']} B={r['batch']} N={r['context']}")
    lines.append(_line("no sparse configuration at S >= 10 slower than the dense engine", None if not compared else
                       not slower, f"{compared} compared; slower: {', '.join(slower) or 'none'}"))  # fmt: skip
    return lines


def format_table(rows: list[dict]) -> str:
    """Rows as a fixed-width table (skipped and failed runs say why)."""
    head = f"{'model':<22}{'B':>3}{'N':>8} {'method':<16}{'S':>4}{'ms/step':>9}{'tok/s':>9}{'floor ms':>9}"
    head += f"{'%floor':>7}{'x dense':>8}  path"
    out = [head]
    for r in rows:
        lead = f"{r['model']:<22}{r['batch']:>3}{r['context']:>8} {r['method']:<16}{r.get('sparsity', ''):>4}"
        if "ms_per_step" not in r:
            out.append(f"{lead}  {r.get('skipped') or r.get('error')}")
            continue
        d = _find(rows, r["model"], r["batch"], r["context"], "dense")
        x = "" if d is None else f"{d['ms_per_step'] / r['ms_per_step']:.2f}"
        path = (r.get("attention") or r.get("path", "")) + (" [compiled]" if r.get("compile") else "")
        out.append(f"{lead}{r['ms_per_step']:>9.2f}{r['tokens_per_s']:>9.1f}{r['floor_ms']:>9.2f}"
                   f"{100 * r['floor_share']:>6.0f}%{x:>8}  {path}")  # fmt: skip
    return "\n".join(out)
