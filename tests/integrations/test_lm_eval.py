"""The lm-eval model `ctxsparse`: a local JSONL generate_until task offline on a tiny model, its attention
calls sparse (counted); loglikelihood dense and said so; bad model_args refused naming the valid values."""

import json

import pytest

lm_eval = pytest.importorskip("lm_eval")

from lm_eval.tasks import TaskManager  # noqa: E402

from ctxsparse.hf import SparseDecoding  # noqa: E402
from ctxsparse.integrations.lm_eval import DENSE_NOTICE, CtxSparseLM  # noqa: E402

TASK = """task: ctxsparse_tiny_codes
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{context}}}}\\nQuestion: what is the code?\\nAnswer:"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n\\n"]
  max_gen_toks: 4
  do_sample: false
metric_list:
  - metric: exact_match
"""


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm_eval_task")
    data = root / "codes.jsonl"
    rows = [{"context": f"Some filler text. The code is {n}. More filler text.", "answer": str(n)} for n in (17, 42)]
    data.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    (root / "ctxsparse_tiny_codes.yaml").write_text(TASK.format(data=data), encoding="utf-8")
    return root


@pytest.fixture()
def sparse_calls(monkeypatch):
    calls = []
    original = SparseDecoding.attend

    def counting(self, module, query, *args, **kwargs):
        calls.append((self.selector.name, self.budget.sparsity, query.shape[2]))
        return original(self, module, query, *args, **kwargs)

    monkeypatch.setattr(SparseDecoding, "attend", counting)
    return calls


@pytest.mark.parametrize("phase", ["decode", "question"])
def test_generate_until_runs_sparse_offline(task_dir, sparse_calls, monkeypatch, phase):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    results = lm_eval.simple_evaluate(
        model="ctxsparse",
        model_args=f"pretrained=random:tiny-llama,method=oracle_topk,sparsity=4,phase={phase},device=cpu",
        tasks=["ctxsparse_tiny_codes"],
        task_manager=TaskManager(include_path=str(task_dir)),
        limit=2,
    )
    assert "exact_match,none" in results["results"]["ctxsparse_tiny_codes"]
    assert sparse_calls and {(name, s) for name, s, _ in sparse_calls} == {("oracle_topk", 4.0)}
    # 2 prompts x 2 layers x the generated tokens after the first (and the question in phase 'question').
    tokens = [t for _, _, t in sparse_calls]
    assert len(tokens) >= 2 * 2
    assert (max(tokens) > 1) == (phase == "question")


def test_loglikelihood_runs_dense_and_says_so(sparse_calls, capsys):
    from lm_eval.api.instance import Instance

    lm = CtxSparseLM(pretrained="random:tiny-llama", method="oracle_topk", sparsity=10, device="cpu")
    request = Instance("loglikelihood", {}, ("The code is", " 42"), 0)
    ((logprob, _),) = lm.loglikelihood([request])
    assert isinstance(logprob, float) and not sparse_calls
    assert DENSE_NOTICE in capsys.readouterr().out


def test_method_parameters_joined_with_semicolons():
    lm = CtxSparseLM.create_from_arg_string(
        "pretrained=random:tiny-llama,method=sink_window:sink=2;window=8,device=cpu"
    )
    assert (lm.selector.sink, lm.selector.window) == (2, 8) and lm.sparsity == 10.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("method=nonesuch", r"unknown method 'nonesuch'\. Valid methods: .*oracle_topk.*sink_window"),
        ("sparsity=0.5", "sparsity must be a number >= 1"),
        ("sparsity=lots", "sparsity must be a number >= 1"),
        ("phase=prefill", "phase must be one of question, decode"),
    ],
)
def test_bad_model_args_name_the_valid_values(args, message):
    with pytest.raises(ValueError, match=message):
        CtxSparseLM.create_from_arg_string(f"pretrained=random:tiny-llama,{args}")
