"""A tiny chat backbone built in the test: a byte-level BPE tokenizer with a ChatML chat template
(SmolLM2's layout) and a randomly initialised one-layer Llama, saved to a directory on request."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from tasks.protocols.chat import FORMAT_REQUESTS, TOOL_INSTRUCTIONS, USER_NOTES, USER_QUESTIONS

#: SmolLM2-135M-Instruct's template: ChatML with a default system message, no tools section.
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _corpus() -> list[str]:
    texts = [TOOL_INSTRUCTIONS, *FORMAT_REQUESTS.values(), *(q for qs in USER_QUESTIONS.values() for q in qs)]
    texts += [n.format(value=v) for n in USER_NOTES.values() for v in ("Rex", "Lima", "nurse", "tea", "golf")]
    texts += ['<tool_call>{"name": "search", "arguments": {"query": "my dog"}}</tool_call>', "No results."]
    texts += ["The capital of Peru is Lima.", '{"answer": "Lima"}', "- Lima", "system user assistant tool"]
    return texts * 20


def chat_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE (any text encodes) with ChatML special tokens and template."""
    core = Tokenizer(models.BPE(unk_token=None))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(
        _corpus(),
        trainers.BpeTrainer(
            vocab_size=600, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        padding_side="left",
    )
    tokenizer.chat_template = CHATML
    return tokenizer


def tiny_chat_model(tokenizer, seed: int = 0) -> LlamaForCausalLM:
    import torch

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config).eval()


def save_tiny_chat_backbone(directory: Path) -> Path:
    tokenizer = chat_tokenizer()
    model = tiny_chat_model(tokenizer)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
