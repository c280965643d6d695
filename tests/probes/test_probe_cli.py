"""`tailscope probe` end to end: HF directories with a tokenizer, side-by-side table, JSON, figure."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("matplotlib")

from tailscope.cli import main  # noqa: E402

from conftest import tiny_mistral_config, tiny_mixtral_config  # noqa: E402


def byte_tokenizer():
    """A real (saveable) fast tokenizer with 256 byte-level tokens, no merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    out = {}
    for name, cls, cfg in (("mistral", transformers.MistralForCausalLM, tiny_mistral_config()),
                           ("mixtral", transformers.MixtralForCausalLM, tiny_mixtral_config())):
        torch.manual_seed(0)
        path = tmp_path_factory.mktemp(f"tiny-{name}")
        cls(cfg).save_pretrained(path)
        byte_tokenizer().save_pretrained(path)
        out[name] = path
    return out


def test_cli_compares_models_side_by_side(model_dirs, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("The capital of France is\n\nOnce upon a time\n")
    out = tmp_path / "probe.json"
    code = main(["probe", str(model_dirs["mistral"]), str(model_dirs["mixtral"]), "--prompts", str(prompts),
                 "--prompt", "Hello world", "--plots", str(tmp_path / "plots"), "--out", str(out), "--device", "cpu"])
    text = capsys.readouterr().out
    assert code == 0
    assert "tiny-mistral" in text and "tiny-mixtral" in text and "final-token entropy" in text
    data = json.loads(out.read_text())
    assert [m["architecture"] for m in data["models"]] == ["MistralForCausalLM", "MixtralForCausalLM"]
    assert all(len(m["prompts"]) == 3 and len(m["layers"]) == 3 for m in data["models"])
    assert (tmp_path / "plots" / "probe.png").stat().st_size > 20_000


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["probe", str(tmp_path / "missing.gguf")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tailscope: error:") and "no such file" in err and err.count("\n") == 1


def test_cli_refuses_a_directory_without_tokenizer(tmp_path, capsys):
    torch.manual_seed(0)
    transformers.MistralForCausalLM(tiny_mistral_config()).save_pretrained(tmp_path)
    assert main(["probe", str(tmp_path), "--prompt", "hi", "--device", "cpu"]) == 2
    assert "--tokenizer" in capsys.readouterr().err


def test_cli_probes_a_gguf_file(model_dirs, tmp_path, capsys):
    """A GGUF goes through tailscope's own loader (here a Mistral written the llama.cpp way)."""
    from sources.test_gguf_hf import write_gguf

    torch.manual_seed(0)
    model = transformers.MistralForCausalLM(tiny_mistral_config(sliding_window=None))
    path = write_gguf(tmp_path / "tiny.gguf", model, name="tiny mistral")
    code = main(["probe", str(path), "--tokenizer", str(model_dirs["mistral"]), "--prompt", "Hello", "--device", "cpu",
                 "--out", str(tmp_path / "p.json")])
    assert code == 0, capsys.readouterr().err
    data = json.loads((tmp_path / "p.json").read_text())["models"][0]
    assert data["name"] == "tiny" and data["architecture"] == "MistralForCausalLM" and data["n_layers"] == 2
