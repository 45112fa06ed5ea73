"""`ctxsparse calibrate`: find each layer's most important key channels for the Double Sparsity selector."""

from __future__ import annotations

import argparse

import torch

from ctxsparse.selectors.calibration import CALIBRATION_ENV, builtin_text, calibrate_model, calibration_path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "calibrate",
        help="rank key channels per layer and kv head for the double_sparsity selector",
        description=(
            "Runs a dense forward pass over a calibration text and ranks, per layer and kv head, the key "
            "channels by their mean |q_c k_c| over causal query-key pairs. Writes a small JSON file keyed "
            f"by the model (default: the calibration directory, ${CALIBRATION_ENV} or "
            "~/.cache/ctxsparse/calibration), which double_sparsity loads by the model's key."
        ),
    )
    p.add_argument("--model", required=True, help="model name, e.g. smollm2-135m, random:tiny-llama, a hub id")
    p.add_argument("--text", default=None, help="calibration text file (default: built-in generated prose)")
    p.add_argument("--tokens", type=int, default=2048, help="calibration tokens (default 2048)")
    p.add_argument("--out", default=None, help="output file (default: <calibration dir>/<model key>.json)")
    p.add_argument("--device", default="cpu", help="device for the model (default cpu)")
    p.add_argument("--dtype", default="float32", help="model dtype: float32 (default), bfloat16, float16, auto")
    p.set_defaults(run=run)


def calibration_ids(tokenizer, text: str | None, tokens: int) -> tuple[torch.Tensor, str]:
    """input_ids [1, <= tokens] of the given text, or of enough built-in prose; and the text's source."""
    if text is not None:
        ids = tokenizer(text, return_tensors="pt").input_ids[:, :tokens]
        return ids, "file"
    words = tokens
    while True:
        ids = tokenizer(builtin_text(words), return_tensors="pt").input_ids
        if ids.shape[1] >= tokens:
            return ids[:, :tokens], "builtin"
        words *= 2


def run(args: argparse.Namespace) -> int:
    from ctxsparse.models import check_device, load_model, model_key
    from ctxsparse.user_files import check_output_file, read_user_text

    if args.tokens < 2:
        raise ValueError(f"--tokens must be at least 2; got {args.tokens}.")
    check_device(args.device)
    if args.out is not None:
        check_output_file(args.out, "--out")
    text = None
    if args.text is not None:
        text = read_user_text(args.text, "--text", "a UTF-8 text file of prose")
        if not text.strip():
            raise ValueError(f"{args.text} is empty: give a calibration text with some prose in it.")
    model, tokenizer = load_model(args.model, device=args.device, dtype=args.dtype)
    limit = int(getattr(model.config, "max_position_embeddings", 0) or args.tokens)
    ids, source = calibration_ids(tokenizer, text, min(args.tokens, limit))
    if ids.shape[1] < 2:
        raise ValueError(f"{args.text} gives fewer than 2 tokens: give a longer calibration text.")
    if ids.shape[1] < args.tokens:
        print(f"note: calibrating on {ids.shape[1]} tokens (the text or the model's context is shorter)")
    key = model_key(model)
    cal = calibrate_model(model, ids, model_key=key, source=args.text if text is not None else source)
    path = cal.save(args.out if args.out is not None else calibration_path(key))
    print(
        f"calibrated {key}: {cal.num_layers} layers x {cal.num_kv_heads} kv heads, head_dim {cal.head_dim}, "
        f"{cal.tokens} tokens -> {path}"
    )
    return 0
