"""`tailscope.perplexity` against transformers' own loss, the bundled texts, and bad input."""

from __future__ import annotations

import math

import pytest

import tailscope
from tailscope.cli import main
from tailscope.errors import InputError
from tailscope.surgery.texts import CALIBRATION, HELDOUT

from char_tokenizer import with_char_tokenizer

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def char_model(tiny_mistral_dir, tmp_path_factory):
    return with_char_tokenizer(tiny_mistral_dir, tmp_path_factory.mktemp("ppl") / "m")


def test_perplexity_is_transformers_loss_over_the_windows(char_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    text = "Alice was beginning to get very tired of sitting by her sister on the bank. " * 5
    ours = tailscope.perplexity(char_model, text, context=100)
    model, tok = AutoModelForCausalLM.from_pretrained(char_model), AutoTokenizer.from_pretrained(char_model)
    ids = tok(text, return_tensors="pt")["input_ids"][0]
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, ids.numel(), 100):
            w = ids[start : start + 100][None]
            total += float(model(input_ids=w, labels=w).loss) * (w.shape[1] - 1)
            count += w.shape[1] - 1
    assert ours.tokens == count == ids.numel() - math.ceil(ids.numel() / 100)
    assert ours.windows == math.ceil(ids.numel() / 100)
    assert ours.perplexity == pytest.approx(math.exp(total / count), rel=1e-5)
    same = tailscope.perplexity(AutoModelForCausalLM.from_pretrained(char_model), text, tokenizer=tok, context=100)
    assert same.perplexity == pytest.approx(ours.perplexity, rel=1e-9)


def test_bundled_texts_are_separate_public_domain_prose_of_a_few_thousand_words():
    held, cal = HELDOUT.read_text(), CALIBRATION.read_text()
    assert 3000 < len(held.split()) < 6000 and 2000 < len(cal.split()) < 6000
    sentences = {s.strip() for s in held.split(".") if len(s.split()) > 6}
    assert not any(s in cal for s in sentences)  # different works, no shared sentence
    readme = (HELDOUT.parent / "README.md").read_text()
    assert readme.count("public domain") >= 2 and HELDOUT.name in readme and CALIBRATION.name in readme


def test_default_text_is_the_heldout_text(char_model, capsys):
    assert main(["perplexity", str(char_model), "--context", "256"]) == 0
    out = capsys.readouterr().out
    assert "heldout_alice.txt" in out and "perplexity" in out


def test_bad_text_or_model_is_one_line_and_exit_2(char_model, tmp_path, capsys):
    with pytest.raises(InputError, match="text file not found"):
        tailscope.perplexity(char_model, tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("  \n")
    assert main(["perplexity", str(char_model), "--text", str(tmp_path / "empty.txt")]) == 2
    assert main(["perplexity", str(tmp_path / "nothing-here")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("tailscope: error: ") for line in err)
    with pytest.raises(InputError, match="needs its `tokenizer`"):
        from transformers import AutoModelForCausalLM

        tailscope.perplexity(AutoModelForCausalLM.from_pretrained(char_model), "some text")
