import pytest
import torch

from ctxsparse.models import MODEL_ALIASES, RANDOM_SHAPES, load_model, model_key, parse_dtype


def test_random_tiny_models_load_with_real_shapes():
    model, tok = load_model("random:tiny-qwen3", dtype="bfloat16")
    assert model.config.model_type == "qwen3" and model.dtype == torch.bfloat16
    assert model.config.num_key_value_heads == RANDOM_SHAPES["tiny-qwen3"].kv_heads
    assert model_key(model) == "random:tiny-qwen3"
    assert tok.pad_token is not None


def test_large_shapes_are_declared():
    llama = RANDOM_SHAPES["llama-3.1-8b"]
    assert (llama.heads, llama.kv_heads, llama.head_dim, llama.layers) == (32, 8, 128, 32)
    assert RANDOM_SHAPES["qwen3-8b"].layers == 36
    assert "smollm2-135m" in MODEL_ALIASES and "random:llama-3.1-8b" in MODEL_ALIASES


def test_unknown_names_list_known_ones():
    with pytest.raises(ValueError, match="smollm2-135m"):
        load_model("smollm3")
    with pytest.raises(ValueError, match="random:tiny-llama"):
        load_model("random:giant")
    with pytest.raises(ValueError, match="bfloat16"):
        parse_dtype("fp8")


def test_unreachable_hub_id_errors_clearly(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(OSError, match="neither a local directory nor reachable"):
        load_model("no-such-org/no-such-model")


def test_max_positions_from_the_configuration_alone(tmp_path):
    from ctxsparse.models import EMBEDDED_MAX_POSITIONS, max_positions

    assert max_positions("random:tiny-llama") == 8192
    assert max_positions("smollm2-135m") == EMBEDDED_MAX_POSITIONS
    assert max_positions("no-such-name") is None
    (tmp_path / "config.json").write_text('{"model_type": "llama", "max_position_embeddings": 321}')
    assert max_positions(str(tmp_path)) == 321


@pytest.mark.parametrize("device", ["gpu", "cuda:x"])
def test_check_device_names_the_flag(device):
    from ctxsparse.models import check_device

    with pytest.raises(ValueError, match=f"--device {device!r}"):
        check_device(device)
    check_device("cpu")
