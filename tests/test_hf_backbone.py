"""Any causal LM saved to a directory works as a backbone: GPT-2 architecture, BPE tokenizer; a model
without a chat template speaks the grammar only when asked to, and a chat model is found by its template."""

import mlflow
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
from typer.testing import CliRunner

from experiments.cli import app
from paradigms.backbone import BackboneUnavailable, load_backbone
from tasks.corpus import CorpusGenerator
from tests.chat_model import save_tiny_chat_backbone
from tests.conftest import SMOKE


def save_gpt2_with_bpe(directory):
    """A 1-layer GPT-2 and a byte-level BPE tokenizer trained on the fly on the harness's corpus."""
    generator = CorpusGenerator(seed=0)
    texts = [" ".join(segment.text for segment in generator.example()) for _ in range(2000)]
    core = Tokenizer(models.BPE(unk_token=None))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|endoftext|>", bos_token="<|endoftext|>"
    )
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=256,
            n_embd=32,
            n_layer=1,
            n_head=2,
            bos_token_id=tokenizer.eos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_smoke_runs_on_a_gpt2_with_a_bpe_tokenizer(tmp_path, tracking_uri):
    model_dir = save_gpt2_with_bpe(tmp_path / "gpt2-bpe")
    result = CliRunner().invoke(
        app, ["run", str(SMOKE), "--set", f"backbone={model_dir}", "--set", "protocol=grammar", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    client = mlflow.MlflowClient(tracking_uri)
    [child] = [
        r
        for r in client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
        if "mlflow.parentRunId" in r.data.tags
    ]
    assert child.info.status == "FINISHED"
    assert child.data.tags["backbone"] == str(model_dir)
    assert "eval/personal_accuracy" in child.data.metrics


def test_a_model_without_a_chat_template_is_refused_with_the_fix(tmp_path):
    model_dir = save_gpt2_with_bpe(tmp_path / "gpt2-bpe")
    with pytest.raises(BackboneUnavailable, match=r"no chat template.*protocol: grammar"):
        load_backbone(model_dir, device="cpu")
    assert load_backbone(model_dir, device="cpu", protocol="grammar").protocol.name == "grammar"


def test_a_chat_model_speaks_the_chat_protocol(tmp_path):
    backbone = load_backbone(save_tiny_chat_backbone(tmp_path / "chat"), device="cpu")
    assert backbone.protocol.name == "chat"
