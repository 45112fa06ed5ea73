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

Every row is checked when the file is opened (an object, text fields present and not null, a whole-number
`length`), and every sample is measured with the model's tokenizer: one longer than the requested length
is refused or cut by the `truncate` rule (see truncation.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctxsparse.tasks.base import Sample, TaskFamily
from ctxsparse.tasks.scoring import METRICS
from ctxsparse.tasks.truncation import check_rule, fit_sample
from ctxsparse.user_files import read_user_text

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
    """Rows of a JSON-lines file (blank lines skipped), each a JSON object; errors give the line number."""
    rows = []
    text = read_user_text(path, "task file", "a .jsonl file of RULER or LongBench rows")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number} is not valid JSON ({err.msg}).") from None
        if not isinstance(row, dict):
            raise ValueError(
                f"{path}:{number} is a JSON {type(row).__name__}, not an object; each line must be one object "
                'such as {"input": "...", "outputs": ["..."]} (RULER) or {"context": "...", "input": "...", '
                '"answers": ["..."]} (LongBench).'
            )
        rows.append(row)
    return rows


def check_row(row: dict[str, Any], fmt: str, where: str) -> None:
    """Refuse null or non-text fields and a `length` that is not a whole number, naming the row."""
    text_fields = ("input",) if fmt == "ruler" else ("context", "input")
    answer_field = "outputs" if fmt == "ruler" else "answers"
    for name in text_fields:
        if not isinstance(row[name], str):
            raise ValueError(f"{where}: {name!r} is {json.dumps(row[name])}; give it as a string.")
    answers = row[answer_field]
    items = answers if isinstance(answers, list) else [answers]
    if not items or any(not isinstance(a, str | int | float) or isinstance(a, bool) for a in items):
        raise ValueError(
            f'{where}: {answer_field!r} is {json.dumps(answers)}; give a list of answer strings such as ["42"].'
        )
    if "length" in row and (isinstance(row["length"], bool) or not isinstance(row["length"], int)):
        raise ValueError(f"{where}: 'length' is {json.dumps(row['length'])}; give a whole number of tokens or drop it.")


@dataclass
class FileTask(TaskFamily):
    """Samples read from a RULER or LongBench `.jsonl` file; truncate is the rule for too long rows."""

    path: Path
    name: str = ""
    description: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)
    format: str = ""
    truncate: str = "none"

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        check_rule(self.truncate)
        self.rows = read_jsonl(self.path)
        if not self.rows:
            raise ValueError(f"Task file {self.path} holds no rows; give a .jsonl file with one JSON object a line.")
        formats = {detect_format(row, f"row {i + 1} of {self.path}") for i, row in enumerate(self.rows)}
        if len(formats) > 1:
            raise ValueError(f"Task file {self.path} mixes RULER and LongBench rows; split it in two files.")
        self.format = formats.pop()
        for i, row in enumerate(self.rows):
            check_row(row, self.format, f"row {i + 1} of {self.path}")
        self.name = self.name or self.path.stem
        self.description = self.description or f"{self.format} rows from {self.path}"

    def generate(self, tokenizer: Any, length: int, count: int, seed: int = 0) -> list[Sample]:
        """The first `count` rows (RULER rows declaring a `length` above `length` skipped), each measured with
        the tokenizer and fitted into `length` tokens by the truncate rule; seed is unused."""
        rows = self.rows
        if self.format == "ruler" and length > 0 and any("length" in row for row in rows):
            rows = [row for row in rows if int(row.get("length", 0)) <= length]
            if not rows:
                shortest = min(int(row.get("length", 0)) for row in self.rows)
                raise ValueError(
                    f"No row of {self.path} fits in {length} tokens (shortest: {shortest}); ask for a larger length."
                )
        if self.format == "longbench":
            samples = [longbench_row_to_sample(row, i, self.name) for i, row in enumerate(rows[:count])]
        else:
            metric = "string_match_part" if self.path.stem.lower().startswith("qa") else "string_match_all"
            samples = [ruler_row_to_sample(row, i, self.name, metric) for i, row in enumerate(rows[:count])]
        if length <= 0 or tokenizer is None:
            return samples
        return [
            fit_sample(s, tokenizer, length, self.truncate, f"row {self.rows.index(r) + 1} of {self.path}")
            for s, r in zip(samples, rows, strict=False)
        ]
