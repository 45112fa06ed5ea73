"""A multi-turn tool-use episode in the model's own chat template; the last question needs an early detail.

An agent debugs a failing service: its first tool call reads a log holding an error code and a port;
then file listings, code searches and other logs (their length sets the context length) follow; finally
the user asks for the port (even samples) or the error code (odd samples) from that first log. Tool
calls are written as text in assistant turns; see chat_render for templates without a tool role.
Samples have chat=False: context + question is the exact templated prompt, and the length counts it
whole, template tokens included.
"""

from __future__ import annotations

import bisect
import json
import random
from dataclasses import dataclass
from typing import Any

from ctxsparse.tasks import words
from ctxsparse.tasks.base import Sample, SyntheticTask
from ctxsparse.tasks.chat_render import Message, render_chat
from ctxsparse.tasks.haystacks import Stream
from ctxsparse.tasks.length import Draft, fit_length, sample_rng, to_sample

SERVICES = ("api", "billing", "auth", "search", "gateway", "scheduler", "notifier", "ingest")
UPSTREAMS = ("postgres", "redis", "ledger", "kafka", "storage", "payments")
ROUND_KINDS = ("listing", "search", "log")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _call(thought: str, name: str, **arguments: str) -> str:
    payload = json.dumps({"name": name, "arguments": arguments})
    return f"{thought}\n<tool_call>\n{payload}\n</tool_call>"


def _clock(rng: random.Random) -> str:
    return f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"


def _path(rng: random.Random, project: str) -> str:
    return f"src/{project}/{rng.choice(words.NOUNS)}/{rng.choice(words.NOUNS)}_{rng.choice(words.VERBS_PAST)}.py"


def _line(rng: random.Random, kind: str, project: str, service: str) -> str:
    """One line of a tool output; numbers stay below 10000 so they never look like the early port."""
    if kind == "listing":
        size, day = rng.randint(120, 9999), rng.randint(1, 28)
        return f"-rw-r--r-- 1 dev dev {size:>5} {rng.choice(MONTHS)} {day:>2} {_path(rng, project)}"
    if kind == "search":
        snippet = f"{rng.choice(words.VERBS_PAST)}_{rng.choice(words.NOUNS)}({rng.choice(words.NOUNS)})"
        return f"{_path(rng, project)}:{rng.randint(1, 999)}:    result = {snippet}"
    method = rng.choice(("GET", "POST", "PUT", "DELETE"))
    status = rng.choice((200, 200, 200, 201, 204, 304, 404))
    return (
        f"{_clock(rng)} INFO [{service}] {method} /{rng.choice(words.NOUNS)}/{rng.randint(1, 999)} "
        f"status {status} in {rng.randint(1, 900)} ms"
    )


def _command(rng: random.Random, kind: str, project: str) -> str:
    if kind == "listing":
        return _call("Let me see which files are there.", "list_files", path=f"src/{project}/{rng.choice(words.NOUNS)}")
    if kind == "search":
        term = f"{rng.choice(words.VERBS_PAST)}_{rng.choice(words.NOUNS)}"
        return _call(f"I will search the code for {term}.", "search", query=term)
    other = rng.choice(SERVICES)
    return _call(f"Let me read the {other} log as well.", "run", command=f"tail -n 200 /var/log/{project}/{other}.log")


@dataclass
class Agentic(SyntheticTask):
    """Recall a detail from the first tool output of a long agent episode."""

    name: str = "agentic"
    description: str = "Agentic: a long tool-use episode; the last question asks for a port or error code seen first."
    lines_per_round: tuple[int, int] = (15, 40)

    def make_sample(self, tokenizer: Any, length: int, index: int, seed: int) -> Sample:
        rng = sample_rng(self.name, seed, length, index)
        project = words.pseudo_word(rng, 3)
        service, upstream = rng.choice(SERVICES), rng.choice(UPSTREAMS)
        port, code = str(rng.randint(20000, 65000)), f"E{rng.randint(1000, 9999)}"
        asks_port = index % 2 == 0
        detail = port if asks_port else code
        first_log = [_line(rng, "log", project, service) for _ in range(3)]
        first_log.append(
            f"{_clock(rng)} ERROR [{service}] upstream {upstream} unreachable: connection refused "
            f"on port {port} (error code {code})"
        )
        first_log += [_line(rng, "log", project, service) for _ in range(2)]
        opening: list[Message] = [
            {
                "role": "system",
                "content": (
                    f"You are a coding agent in the {project} repository. Call a tool with <tool_call>, "
                    "a JSON object of 'name' and 'arguments', </tool_call>. Tools: run, list_files, search."
                ),
            },
            {"role": "user", "content": f"The {service} service keeps failing since the last deploy. Find out why."},
            {
                "role": "assistant",
                "content": _call(
                    f"I will start with the recent {service} log.",
                    "run",
                    command=f"tail -n 6 /var/log/{project}/{service}.log",
                ),
            },
            {"role": "tool", "content": "\n".join(first_log)},
        ]
        if asks_port:
            question = (
                f"Before you write the fix: in the first log you read, which port did the {service} service "
                "fail to connect to? Answer with the port number only."
            )
        else:
            question = (
                f"Before you write the fix: which error code did the {service} service report in the first "
                "log you read? Answer with the error code only."
            )

        round_rng = sample_rng(self.name, seed, length, index, "rounds")
        kinds: list[str] = []
        ends: list[int] = []  # ends[r]: index one past the last line of middle round r

        def round_of(i: int) -> int:
            while not ends or ends[-1] <= i:
                kinds.append(round_rng.choice(ROUND_KINDS))
                ends.append((ends[-1] if ends else 0) + round_rng.randint(*self.lines_per_round))
            return bisect.bisect_right(ends, i)

        def make_line(g: random.Random, i: int) -> str:
            kind = kinds[round_of(i)]
            while True:
                line = _line(g, kind, project, service)
                if detail.lower() not in line.lower():
                    return line

        lines = Stream(make_line, sample_rng(self.name, seed, length, index, "lines"))

        def render(n: int) -> Draft:
            body = lines.take(n)
            messages = list(opening)
            num_rounds = round_of(n - 1) + 1 if n else 0
            for r in range(num_rounds):
                chunk = body[(ends[r - 1] if r else 0) : min(ends[r], n)]
                call = _command(sample_rng(self.name, seed, length, index, "command", r), kinds[r], project)
                messages.append({"role": "assistant", "content": call})
                messages.append({"role": "tool", "content": "\n".join(chunk)})
            messages.append({"role": "user", "content": question})
            context, prompt_question, style = render_chat(tokenizer, messages)
            meta = {"detail": "port" if asks_port else "error_code", "rounds": num_rounds, "template": style}
            return Draft(context, prompt_question, (detail,), meta, chat=False)

        draft, tokens = fit_length(render, tokenizer, length, self.name)
        return to_sample(
            draft, tokens, task=self.name, index=index, metric="string_match_all", max_new_tokens=32, seed=seed
        )


AGENTIC_TASKS: list[Agentic] = [Agentic()]
