import pytest

from ctxsparse.cli.main import main


def test_help_lists_verbs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for verb in ("generate", "models", "theorem", "demo"):
        assert verb in out


@pytest.mark.parametrize("verb", ["generate", "models", "demo"])
def test_verb_help(verb, capsys):
    with pytest.raises(SystemExit):
        main([verb, "--help"])
    assert "usage" in capsys.readouterr().out


def test_models_lists_builtins(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m" in out and "random:llama-3.1-8b" in out


def test_generate_on_tiny_model(capsys):
    code = main(
        [
            "generate",
            "--model",
            "random:tiny-llama",
            "--context",
            "red green blue " * 50,
            "--question",
            "which color?",
            "--method",
            "oracle_topk",
            "--sparsity",
            "10",
            "--max-new-tokens",
            "4",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "oracle_topk at 10x" in out and "mass recall" in out


def test_generate_bad_input_is_a_clear_error(capsys):
    assert main(["generate", "--model", "random:tiny-llama", "--method", "nope", "--context", "x y z"]) == 2
    assert "Known selectors" in capsys.readouterr().err
    assert main(["generate", "--model", "random:tiny-llama", "--sparsity", "0.5", "--context", "x y z"]) == 2
    assert "sparsity must be" in capsys.readouterr().err
    assert main(["generate", "--model", "random:tiny-llama"]) == 2
