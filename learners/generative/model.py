"""The generative recall model: a small T5 trained from scratch, and its on-disk version format.

Size (:class:`ModelConfig` defaults: 2.28M parameters, ~1.0M of them the 7.6k-token embedding
table) and why -- measured on the BestBuy catalog (3.3k products) on 2 shared CPU cores:

* ``d_model=128`` (4 heads of 32), ``d_ff=512`` ReLU: memorising a few thousand products is an
  *optimisation-speed* problem, not a capacity one (3.3k docids x log2(~90 siblings) ≈ 22 kbit),
  and within a fixed wall-clock budget the number of passes over every product decides the
  memorisation rate. This size trains at ~1,100 samples/s on 2 idle cores (d_model 256: ~480/s,
  the 9.5M model of ARCHITECTURE.md: ~124/s); on the shared dev box a 20-minute run averaged
  1,000 samples/s = 50 epochs and memorised 98% of titles exactly (90% after ~13 minutes);
* ``num_layers=4`` encoder layers: the encoder does the understanding of the (short) input;
* ``num_decoder_layers=2``: docids are only 3-7 tokens from ~1.1k classes, and the decoder runs
  once per beam per step at serving time, so decoder depth is what decode latency pays for;
* ``dropout_rate=0.0``: dropout's Bernoulli sampling was 25% of a CPU training step, and the
  many noisy pseudo-query views already regularise; memorisation wants every pass to count;
* ``max_input_tokens=64``: DSI found longer indexing inputs hurt; queries are far shorter.

Embeddings are tied (plain T5): decoder inputs and outputs reuse the encoder's embedding table,
and the output layer is *restricted* to the docid tokens (:func:`docid_logits`), so the softmax is
over ~1.1k classes instead of the whole text vocabulary.

A version directory holds everything serving needs, written by :func:`save_version`::

    config.json, model.safetensors   T5 config and weights (transformers' own format)
    tokenizer.json                    catalog BPE + docid tokens
    docid_vocab.json                  restricted output vocabulary (component ↔ embedding id)
    docids.json                       the docids the model was trained on (its prefix tree)
    metadata.json                     merchant, configs, training stats and metrics
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from transformers import T5Config, T5ForConditionalGeneration

from learners.generative.tokenizer import (
    DocidVocab,
    encode_batch,
    load_tokenizer,
    save_tokenizer,
    stem_words,
)

METADATA_FILE = "metadata.json"
DOCIDS_FILE = "docids.json"


@dataclass(frozen=True)
class ModelConfig:
    d_model: int = 128
    d_ff: int = 512
    num_heads: int = 4
    num_layers: int = 4
    num_decoder_layers: int = 2
    dropout_rate: float = 0.0
    max_input_tokens: int = 64
    #: feed the encoder English word stems, as BM25 indexes them (:func:`stem_words`)
    stem_input: bool = False

    def t5_config(self, vocab_size: int) -> T5Config:
        return T5Config(
            vocab_size=vocab_size,
            d_model=self.d_model,
            d_kv=self.d_model // self.num_heads,
            d_ff=self.d_ff,
            num_layers=self.num_layers,
            num_decoder_layers=self.num_decoder_layers,
            num_heads=self.num_heads,
            dropout_rate=self.dropout_rate,
            feed_forward_proj="relu",
            relative_attention_num_buckets=32,
            relative_attention_max_distance=64,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
            use_cache=False,
        )


def build_model(config: ModelConfig, vocab_size: int, seed: int = 0) -> T5ForConditionalGeneration:
    """A freshly initialised T5 (deterministic for a given seed)."""
    torch.manual_seed(seed)
    return T5ForConditionalGeneration(config.t5_config(vocab_size))


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def output_scale(model: T5ForConditionalGeneration) -> float:
    """T5 with tied embeddings scales decoder states by d_model^-0.5 before the output layer."""
    return model.config.d_model**-0.5 if model.config.scale_decoder_outputs else 1.0


def docid_logits(
    model: T5ForConditionalGeneration,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    decoder_input_ids: torch.Tensor,
    output_ids: torch.Tensor,
) -> torch.Tensor:
    """Logits over the restricted docid vocabulary, ``[batch, target_len, len(output_ids)]``.

    ``output_ids`` are the embedding ids of the output classes (``DocidVocab.token_ids``). This
    is T5's own forward pass with the output layer sliced to those rows, so training never
    computes a softmax over the text vocabulary.
    """
    encoded = model.encoder(input_ids=input_ids, attention_mask=attention_mask)
    hidden = model.decoder(
        input_ids=decoder_input_ids,
        encoder_hidden_states=encoded.last_hidden_state,
        encoder_attention_mask=attention_mask,
        use_cache=False,
    ).last_hidden_state
    weight = model.get_input_embeddings().weight[output_ids]
    return (hidden * output_scale(model)) @ weight.T


@dataclass
class GenerativeModel:
    """A loaded version: model, tokenizer, docid vocabulary, trained docids and metadata."""

    model: T5ForConditionalGeneration
    tokenizer: Tokenizer
    vocab: DocidVocab
    docids: list[str]
    metadata: dict[str, Any]

    @property
    def max_input_tokens(self) -> int:
        return int(self.metadata.get("model_config", {}).get("max_input_tokens", 64))

    @property
    def stem_input(self) -> bool:
        return bool(self.metadata.get("model_config", {}).get("stem_input", False))

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of ``texts`` in this model's input form (stemmed if it was trained so)."""
        if self.stem_input:
            texts = [stem_words(text) for text in texts]
        return encode_batch(self.tokenizer, texts, self.max_input_tokens)


def save_version(directory: Path, bundle: GenerativeModel) -> None:
    """Write a version directory (see the module docstring); files are replaced in place."""
    directory.mkdir(parents=True, exist_ok=True)
    bundle.model.save_pretrained(directory, safe_serialization=True)
    save_tokenizer(bundle.tokenizer, directory)
    bundle.vocab.save(directory)
    (directory / DOCIDS_FILE).write_text(json.dumps(bundle.docids))
    (directory / METADATA_FILE).write_text(json.dumps(bundle.metadata, indent=2, default=str))


def load_version(directory: Path | str) -> GenerativeModel:
    """Load a version directory written by :func:`save_version`, in eval mode."""
    directory = Path(directory)
    model = T5ForConditionalGeneration.from_pretrained(directory, local_files_only=True)
    model.eval()
    return GenerativeModel(
        model=model,
        tokenizer=load_tokenizer(directory),
        vocab=DocidVocab.load(directory),
        docids=json.loads((directory / DOCIDS_FILE).read_text()),
        metadata=read_metadata(directory),
    )


def read_metadata(directory: Path) -> dict[str, Any]:
    path = directory / METADATA_FILE
    return json.loads(path.read_text()) if path.exists() else {}
