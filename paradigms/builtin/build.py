"""Training the builtin base with TRL's SFTTrainer on the general world's corpus."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from datasets import Dataset
from transformers import LlamaConfig, LlamaForCausalLM, PrinterCallback, ProgressCallback, TrainerCallback

from paradigms.builtin.recipe import BaseRecipe
from paradigms.builtin.tokenizer import build_tokenizer
from tasks.corpus import CorpusGenerator, Example


def new_model(recipe: BaseRecipe, tokenizer) -> LlamaForCausalLM:
    """A freshly initialized Llama of the recipe's shape (seeded by the caller)."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.n_layers,
        num_attention_heads=recipe.n_heads,
        num_key_value_heads=recipe.n_heads,
        max_position_embeddings=recipe.max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def tokenize_example(example: Example, vocab: dict[str, int], bos_id: int) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` of an example: labels are -100 on untrained segments."""
    input_ids, labels = [bos_id], [-100]
    for segment in example:
        ids = [vocab[word] for word in segment.text.split()]
        input_ids += ids
        labels += ids if segment.trainable else [-100] * len(ids)
    return input_ids, labels


def corpus_dataset(recipe: BaseRecipe, tokenizer) -> Dataset:
    """``steps * batch_size`` tokenized examples, in training order, deterministic in the seed."""
    generator = CorpusGenerator(
        seed=recipe.seed, mixture=recipe.mixture, needless_search=recipe.needless_search
    )
    vocab = tokenizer.get_vocab()
    rows = [
        tokenize_example(generator.example(), vocab, tokenizer.bos_token_id)
        for _ in range(recipe.steps * recipe.batch_size)
    ]
    too_long = max(len(ids) for ids, _ in rows)
    if too_long > recipe.max_positions:
        raise ValueError(f"corpus example of {too_long} tokens exceeds max_positions={recipe.max_positions}")
    return Dataset.from_dict({"input_ids": [r[0] for r in rows], "labels": [r[1] for r in rows]})


class _BarOnly(ProgressCallback):
    """The trainer's progress bar without the raw metrics dicts it prints at the end of training."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        return None


class _EveryN(TrainerCallback):
    def __init__(self, every: int, hook: Callable[[int, object], None]):
        self.every, self.hook = every, hook

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0:
            self.hook(state.global_step, model)


def train_base(
    recipe: BaseRecipe,
    out_dir: Path,
    progress: bool = True,
    checkpoint_hook: Callable[[int, object], None] | None = None,
    checkpoint_every: int = 500,
) -> tuple[LlamaForCausalLM, object]:
    """Train the base per ``recipe`` and save model and tokenizer to ``out_dir``.

    Writes into a temporary sibling directory and renames it at the end, so an interrupted
    build never leaves a half-written model behind. ``checkpoint_hook(step, model)`` runs
    every ``checkpoint_every`` steps (used to record learning curves).
    """
    from trl import SFTConfig, SFTTrainer  # heavy import, only when building

    torch.manual_seed(recipe.seed)
    tokenizer = build_tokenizer()
    model = new_model(recipe, tokenizer)
    dataset = corpus_dataset(recipe, tokenizer)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=".building-") as scratch:
        config = SFTConfig(
            output_dir=scratch,
            max_steps=recipe.steps,
            per_device_train_batch_size=recipe.batch_size,
            learning_rate=recipe.learning_rate,
            lr_scheduler_type="warmup_stable_decay",
            lr_scheduler_kwargs={"num_decay_steps": recipe.decay_steps},
            warmup_steps=recipe.warmup_steps,
            weight_decay=recipe.weight_decay,
            seed=recipe.seed,
            data_seed=recipe.seed,
            use_cpu=True,
            bf16=False,
            report_to="none",
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=not progress,
            dataset_kwargs={"skip_prepare_dataset": True},
            max_length=recipe.max_positions,
            dataloader_num_workers=0,
            gradient_checkpointing=False,  # TRL turns it on by default; pure overhead on small models
        )
        callbacks = [_EveryN(checkpoint_every, checkpoint_hook)] if checkpoint_hook else []
        trainer = SFTTrainer(
            model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks
        )
        trainer.remove_callback(PrinterCallback)  # prints the final metrics dict without a bar
        trainer.remove_callback(ProgressCallback)
        if progress:
            trainer.add_callback(_BarOnly())
        trainer.train()
        staging = Path(scratch) / "model"
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    model.eval()
    return model, tokenizer
