"""File tasks: a `.jsonl` of RULER or LongBench rows used as a task, its format detected from the fields.

RULER rows (`input`, `outputs`, optional `answer_prefix`, `length`): the input is split at its last
line break into context and question (RULER templates end with the question on its own line); inputs
already holding a chat template become chat=False samples split before the user turn's last line.
The metric is string_match_part for files whose name starts with 'qa' (RULER's QA tasks) and
string_match_all otherwise. When rows carry
`length` and a positive length is requested, only rows with `length` <= the requested length are kept.

LongBench rows (`context`, `input`, `answers`): the question is the input (or a request to answer from
the text when it is empty), metric string_match_part over the alternative answers, no length filter.

Either format may carry `metric` and `max_new_tokens` per row to override the defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctxsparse.tasks.base import Sample, TaskFamily
from ctxsparse.tasks.scoring import METRICS

RULER_FIELDS = frozenset({"input", "outputs"})
LONGBENCH_FIELDS = frozenset({"context", "input", "answers"})
TEMPLATE_MARKERS = ("<|im_start|>", "[INST]", "<|start_header_id|>", "<start_of_turn>", "<|user|>")
END_MARKERS = ("<|im_end|>", "<|eot_id|>", "[/INST]", "<end_of_turn>", "<|end|>")
LONGBENCH_INTRO = "Read the following text and answer the question after it."


def detect_format(row: dict[str, Any], where: str = "row") -> str:
    """'longbench' or 'ruler' from a row's fields; ValueError naming both expected field sets otherwise."""
    keys = set(row)
    if LONGBENCH_FIELDS <= keys:
        return "longbench"
    if RULER_FIELDS <= keys:
        return "ruler"
    raise ValueError(
        f"Cannot tell the format of {where}: it has fields {sorted(keys)}. Expected RULER fields "
        f"{sorted(RULER_FIELDS)} (+ optional answer_prefix, length) or LongBench fields {sorted(LONGBENCH_FIELDS)}."
    )


def _answers(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else [value]
    return tuple(str(item) for item in items)


def _metric(row: dict[str, Any], default: str) -> str:
    metric = row.get("metric", default)
    if metric not in METRICS:
        raise ValueError(f"Row metric {metric!r} is unknown; use one of: {', '.join(METRICS)}.")
    return metric


def split_ruler_input(text: str) -> tuple[str, str, bool]:
    """(context, question, chat) of a RULER input.

    Plain inputs split at their last line break (chat=True). Inputs holding a chat template (chat=False)
    split at the line break before the user turn's end marker, so `context + question` is the input.
    """
    ends = [text.rfind(marker) for marker in END_MARKERS if marker in text]
    if ends and any(marker in text for marker in TEMPLATE_MARKERS):
        cut = text.rfind("\n", 0, max(ends)) + 1
        return text[:cut], text[cut:], False
    body = text.rstrip()
    cut = body.rfind("\n")
    return (body[:cut], body[cut + 1 :], True) if cut > 0 else ("", body, True)


def ruler_row_to_sample(row: dict[str, Any], index: int, task: str, metric: str = "string_match_all") -> Sample:
    """A RULER row as a Sample (see split_ruler_input for where the question starts)."""
    context, question, chat = split_ruler_input(str(row["input"]))
    meta = {key: row[key] for key in ("length", "index") if key in row}
    return Sample(
        task=task,
        index=index,
        context=context,
        question=question,
        answers=_answers(row["outputs"]),
        metric=_metric(row, metric),
        answer_prefix=str(row.get("answer_prefix") or ""),
        max_new_tokens=int(row.get("max_new_tokens", 128)),
        chat=chat,
        meta={**meta, "format": "ruler"},
    )


def longbench_row_to_sample(row: dict[str, Any], index: int, task: str) -> Sample:
    """A LongBench row as a Sample: alternatives in `answers`, matched with string_match_part."""
    question = str(row["input"]).strip() or "Answer based on the text above."
    meta = {key: row[key] for key in ("length", "dataset", "_id") if key in row}
    return Sample(
        task=task,
        index=index,
        context=LONGBENCH_INTRO + "\n\n" + str(row["context"]),
        question="Question: " + question,
        answers=_answers(row["answers"]),
        metric=_metric(row, "string_match_part"),
        answer_prefix="Answer:",
        max_new_tokens=int(row.get("max_new_tokens", 128)),
        meta={**meta, "format": "longbench"},
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file (blank lines skipped), with the line number in errors."""
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{number} is not valid JSON ({err.msg}).") from None
    return rows


@dataclass
class FileTask(TaskFamily):
    """Samples read from a RULER or LongBench `.jsonl` file."""

    path: Path
    name: str = ""
    description: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)
    format: str = ""

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.is_file():
            raise FileNotFoundError(f"Task file {self.path} does not exist; give the path of a .jsonl file.")
        self.rows = read_jsonl(self.path)
        if not self.rows:
            raise ValueError(f"Task file {self.path} holds no rows.")
        formats = {detect_format(row, f"row {i + 1} of {self.path}") for i, row in enumerate(self.rows)}
        if len(formats) > 1:
            raise ValueError(f"Task file {self.path} mixes RULER and LongBench rows; split it in two files.")
        self.format = formats.pop()
        self.name = self.name or self.path.stem
        self.description = self.description or f"{self.format} rows from {self.path}"

    def generate(self, tokenizer: Any, length: int, count: int, seed: int = 0) -> list[Sample]:
        """The first `count` rows (RULER rows longer than `length` skipped); tokenizer and seed are unused."""
        rows = self.rows
        if self.format == "ruler" and length > 0 and any("length" in row for row in rows):
            rows = [row for row in rows if int(row.get("length", 0)) <= length]
            if not rows:
                shortest = min(int(row.get("length", 0)) for row in self.rows)
                raise ValueError(
                    f"No row of {self.path} fits in {length} tokens (shortest: {shortest}); ask for a larger length."
                )
        if self.format == "longbench":
            return [longbench_row_to_sample(row, i, self.name) for i, row in enumerate(rows[:count])]
        metric = "string_match_part" if self.path.stem.lower().startswith("qa") else "string_match_all"
        return [ruler_row_to_sample(row, i, self.name, metric) for i, row in enumerate(rows[:count])]
