"""The embedded SmolLM2-135M runs one real episode (3 turns at most) through mini-swe-agent and the sandbox.

Not expected to resolve anything: the test records what the model did and checks the bookkeeping.
"""

import pytest

from ctxsparse.agent.coding_task import load_tasks
from ctxsparse.agent.environment import SandboxConfig
from ctxsparse.agent.episode import agent_templates, run_episode
from ctxsparse.agent.harness_model import SparseHarnessModel
from ctxsparse.agent.sandbox import Limits


@pytest.mark.slow
def test_embedded_model_runs_one_short_sparse_episode():
    from ctxsparse.models import load_model

    model, tokenizer = load_model("smollm2-135m")
    harness = SparseHarnessModel(
        model,
        tokenizer,
        model_name="smollm2-135m",
        method="oracle_topk",
        sparsity=10,
        phase="decode",
        max_new_tokens=8,
        **agent_templates()["model"],
    )
    task = load_tasks("page_count")[0]
    record = run_episode(
        task,
        harness,
        max_turns=3,
        sandbox=SandboxConfig(Limits(wall_s=10)),
        labels={"model": "smollm2-135m", "method": "oracle_topk", "sparsity": 10, "phase": "decode"},
    )
    assert 1 <= record.turns <= 3
    assert record.exit_reason in ("Submitted", "LimitsExceeded", "RepeatedFormatError")
    first = record.turn_records[0]
    assert first.prefilled_tokens == first.context_tokens > 500  # the whole first prompt, once
    for turn in record.turn_records[1:]:
        assert turn.prefilled_tokens < turn.context_tokens  # later turns extend the kept cache
    assert all(0 < t.mass_recall <= 1.0 + 1e-6 for t in record.turn_records)
    assert all(t.reply or t.generated_tokens for t in record.turn_records)
    print(f"\nembedded episode: exit {record.exit_reason}, resolved {record.resolved}")
    for t in record.turn_records:
        print(f"turn {t.turn}: context {t.context_tokens}, recall {t.mass_recall:.3f}, reply {t.reply[:80]!r}")
