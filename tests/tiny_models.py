"""Tiny, randomly initialised Hugging Face classifiers, saved to disk for real loading.

They reuse the packaged MiniLM's WordPiece vocabulary, so the tokenizer is a real one;
only the network is small (two layers of width 32) and untrained.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from processors.models.encoder import default_model_dir

NLI_LABELS = ("entailment", "neutral", "contradiction")


def save_tiny_classifier(path: Path, labels: Sequence[str], seed: int = 0) -> Path:
    """A `BertForSequenceClassification` with `labels` as its id2label, saved at `path`."""
    tokenizer = BertTokenizerFast(vocab_file=str(default_model_dir() / "vocab.txt"))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        # Wide initial weights, so untrained logits still differ from text to text.
        initializer_range=0.5,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(seed)
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def reference_logits(
    path: Path, texts: Sequence[str], pairs: Sequence[str] | None = None
) -> torch.Tensor:
    """The saved model's logits, one input at a time, loaded and run the plain way."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    network = AutoModelForSequenceClassification.from_pretrained(path).eval()
    rows = []
    with torch.inference_mode():
        for i, text in enumerate(texts):
            pair = None if pairs is None else pairs[i]
            encoded = tokenizer(text, pair, truncation=True, max_length=128, return_tensors="pt")
            rows.append(network(**encoded).logits[0].float())
    return torch.stack(rows)
