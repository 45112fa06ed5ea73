import os

import pytest

from ctxsparse.agent.harness_model import SparseHarnessModel
from ctxsparse.models import load_model

os.environ.setdefault("MSWEA_SILENT_STARTUP", "1")


@pytest.fixture(scope="module")
def harness_parts():
    return load_model("random:tiny-llama", seed=1)


def test_query_keeps_the_cache_and_reports_format_errors_with_turn_records(harness_parts):
    from minisweagent.exceptions import FormatError

    model, tok = harness_parts
    harness = SparseHarnessModel(model, tok, model_name="tiny", method="oracle_topk", sparsity=4, max_new_tokens=5)
    messages = [
        harness.format_message(role="system", content="You run bash commands."),
        harness.format_message(role="user", content="Fix the answer 42 in main.py", extra={"note": "dropped"}),
    ]
    with pytest.raises(FormatError) as err:  # random weights never write the fenced command block
        harness.query(messages)
    extra = err.value.messages[0]["extra"]
    assert extra["cost"] == 0.0 and extra["ctxsparse_turn"]["turn"] == 1
    messages.append(err.value.messages[0])
    with pytest.raises(FormatError):
        harness.query(messages)
    first, second = harness.turns
    assert second.context_tokens > first.context_tokens
    assert second.prefilled_tokens < second.context_tokens  # only the extension ran
    assert 0 < first.mass_recall <= 1 + 1e-6
    info = harness.serialize()["info"]
    assert info["config"]["model"]["method"] == "oracle_topk" and len(info["ctxsparse"]["turns"]) == 2


def test_observations_use_the_configured_template(harness_parts):
    model, tok = harness_parts
    harness = SparseHarnessModel(model, tok, model_name="tiny", observation_template="rc={{output.returncode}}")
    out = harness.format_observation_messages({}, [{"output": "x", "returncode": 3}], {})
    assert out[0]["role"] == "user" and out[0]["content"] == "rc=3"
    assert harness.get_template_vars()["model_name"] == "tiny"
