"""A mini-swe-agent Model backed by a local transformers model decoding sparsely, its KV cache kept across turns.

It implements mini-swe-agent's Model protocol (query, format_message, format_observation_messages,
get_template_vars, serialize) for the text-based action format: the reply must hold exactly one fenced
command block; otherwise mini-swe-agent's FormatError carries the format-error message back to the agent.
A local model costs nothing, so every call reports cost 0.0.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from ctxsparse.agent.kv_conversation import KVConversation
from ctxsparse.agent.records import TurnRecord
from ctxsparse.budget import Budget

DEFAULT_ACTION_REGEX = r"```mswea_bash_command\s*\n(.*?)\n```"


class SparseHarnessConfig(BaseModel):
    """Settings of the harness model; the templates default to mini-swe-agent's text-based ones when given."""

    model_name: str
    method: str = "dense"
    sparsity: float = 1.0
    phase: str = "question"
    max_new_tokens: int = 512
    trace: bool = True
    action_regex: str = DEFAULT_ACTION_REGEX
    format_error_template: str = "Please always provide EXACTLY ONE action in triple backticks. {{error}}"
    observation_template: str = "<returncode>{{output.returncode}}</returncode>\n<output>\n{{output.output}}</output>"
    multimodal_regex: str = ""


def _plain(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Chat-template messages: role and text content only (mini-swe-agent's 'extra' bookkeeping dropped)."""
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
        out.append({"role": m["role"], "content": content or ""})
    return out


class SparseHarnessModel:
    """mini-swe-agent Model: greedy replies from `model` under `method` at `sparsity`, one KV cache per episode."""

    def __init__(self, model: Any, tokenizer: Any, **kwargs: Any) -> None:
        self.config = SparseHarnessConfig(**kwargs)
        self.conversation = KVConversation(
            model,
            tokenizer,
            self.config.method,
            Budget(sparsity=self.config.sparsity),
            phase=self.config.phase,
            trace=self.config.trace,
        )
        self.turns: list[TurnRecord] = []

    def query(self, messages: list[dict[str, Any]], **kwargs: Any) -> dict:
        from minisweagent.exceptions import FormatError
        from minisweagent.models import GLOBAL_MODEL_STATS
        from minisweagent.models.utils.actions_text import parse_regex_actions

        out = self.conversation.reply(_plain(messages), self.config.max_new_tokens)
        summary = out.trace.summary() if out.trace.enabled else {}
        turn = TurnRecord(
            turn=len(self.turns) + 1,
            context_tokens=out.context_tokens,
            prefilled_tokens=out.prefilled_tokens,
            question_tokens=out.question_tokens,
            generated_tokens=len(out.token_ids),
            reprefill=out.reprefill,
            density=summary.get("density"),
            mass_recall=summary.get("mass_recall"),
            top1_agreement=summary.get("top1_agreement"),
            kl=summary.get("kl"),
            decode_s=out.decode_s,
            reply=out.text,
        )
        self.turns.append(turn)
        GLOBAL_MODEL_STATS.add(0.0)
        stopped = out.token_ids and out.token_ids[-1] in self.conversation.stop
        extra = {"cost": 0.0, "timestamp": time.time(), "ctxsparse_turn": turn.as_dict()}
        try:
            actions = parse_regex_actions(
                out.text,
                action_regex=self.config.action_regex,
                format_error_template=self.config.format_error_template,
                template_kwargs={"finish_reason": "stop" if stopped else "length"},
            )
        except FormatError as err:
            err.messages[0]["extra"].update(extra)
            raise
        return {"role": "assistant", "content": out.text, "extra": {"actions": actions, **extra}}

    def format_message(self, **kwargs: Any) -> dict:
        return dict(kwargs)

    def format_observation_messages(
        self, message: dict, outputs: list[dict], template_vars: dict | None = None
    ) -> list[dict]:
        from minisweagent.models.utils.actions_text import format_observation_messages

        return format_observation_messages(
            outputs,
            observation_template=self.config.observation_template,
            template_vars=template_vars,
            multimodal_regex=self.config.multimodal_regex,
        )

    def get_template_vars(self, **kwargs: Any) -> dict[str, Any]:
        return self.config.model_dump() | kwargs

    def serialize(self) -> dict:
        return {
            "info": {
                "config": {
                    "model": self.config.model_dump(mode="json"),
                    "model_type": f"{type(self).__module__}.{type(self).__name__}",
                },
                "ctxsparse": {"reprefills": self.conversation.reprefills, "turns": [t.as_dict() for t in self.turns]},
            }
        }
