"""A small bi-encoder for dense recall, trained on the merchant's own catalog (no downloaded
weights).

Why this shape: queries in a shop are two or three words, often misspelt or abbreviated
("iphone 12mp", "protectors"). A bag of word and character-trigram embeddings (fastText-style)
captures both the words and their sub-word overlap, trains in a minute on two CPU cores and
encodes a query in well under a millisecond -- a Transformer would cost far more for little gain
on such short texts. Queries and products share one tower (siamese), because the pseudo-queries
are drawn from the same product fields the documents are made of.

The vocabulary (words and trigrams seen in the catalog) is fixed at training time; n-grams
first seen later (a new product's brand) are hashed into ``buckets`` shared slots, so new
products still get sensible vectors without retraining.

A version directory holds ``config.json``, ``vocab.json`` and ``weights.pt``.
"""

from __future__ import annotations

import functools
import json
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from learners.generative.data import ProductDoc, category_names, clean, singular, words

CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE = "config.json", "vocab.json", "weights.pt"


@dataclass(frozen=True)
class EncoderConfig:
    dim: int = 128
    #: shared slots for n-grams not in the vocabulary (new products' words, typos)
    buckets: int = 8192
    #: drop vocabulary entries seen fewer times than this (rare trigrams are noise)
    min_count: int = 1
    #: description words a product's text keeps. Measured on the BestBuy dev set: 24 words
    #: gave NDCG@10 0.48, none 0.57 -- the mean of the bag dilutes the title's words
    description_words: int = 0


def ngrams(text: str) -> list[str]:
    """Words (singular form too) and boundary-marked character trigrams of ``text``."""
    out: list[str] = []
    for word in words(text):
        out.append(f"w:{word}")
        base = singular(word)
        if base != word:
            out.append(f"w:{base}")
        marked = f"<{word}>"
        out.extend(f"c:{marked[i : i + 3]}" for i in range(len(marked) - 2))
    return out


def product_text(doc: ProductDoc, description_words: int) -> str:
    """What a product's vector is made of: title, brand, category names, attributes and the
    start of the description."""
    attributes = " ".join(value for _, value in doc.attributes)
    description = " ".join(clean(doc.description).split()[:description_words])
    categories = " ".join(category_names(doc.categories))
    return f"{doc.title} {doc.brand} {categories} {attributes} {description}"


class Vocabulary:
    """n-gram -> row of the embedding table; unknown n-grams hash into the bucket rows."""

    def __init__(self, tokens: Sequence[str], buckets: int) -> None:
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.buckets = buckets

    @classmethod
    def fit(cls, texts: Iterable[str], config: EncoderConfig) -> Vocabulary:
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(ngrams(text))
        tokens = sorted(t for t, n in counts.items() if n >= config.min_count)
        return cls(tokens, config.buckets)

    def __len__(self) -> int:
        return len(self.tokens) + self.buckets

    def ids(self, text: str) -> list[int]:
        out = []
        for gram in ngrams(text):
            row = self.index.get(gram)
            if row is None:  # crc32: stable across processes, unlike hash()
                row = len(self.tokens) + zlib.crc32(gram.encode()) % self.buckets
            out.append(row)
        return out


class BagEncoder(nn.Module):
    """Mean of n-gram embeddings -> linear projection -> unit vector (cosine = inner product)."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.embed = nn.EmbeddingBag(vocab_size, dim, mode="mean")
        self.project = nn.Linear(dim, dim)
        nn.init.normal_(self.embed.weight, std=0.1)

    def forward(self, flat: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.project(self.embed(flat, offsets)), dim=-1)


class DenseEncoder:
    """A trained encoder version: turns query and product texts into unit vectors."""

    def __init__(self, config: EncoderConfig, vocab: Vocabulary, model: BagEncoder) -> None:
        self.config = config
        self.vocab = vocab
        self.model = model.eval()
        # catalog texts and popular queries repeat: n-gram extraction dominated training time
        self._ids = functools.lru_cache(maxsize=200_000)(vocab.ids)

    @classmethod
    def new(cls, texts: Iterable[str], config: EncoderConfig | None = None) -> DenseEncoder:
        config = config or EncoderConfig()
        vocab = Vocabulary.fit(texts, config)
        return cls(config, vocab, BagEncoder(len(vocab), config.dim))

    @property
    def dim(self) -> int:
        return self.config.dim

    def batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """EmbeddingBag inputs; an empty text gets the bucket row of "" so it is never NaN."""
        rows = [self._ids(t) or [len(self.vocab) - 1] for t in texts]
        offsets = torch.tensor([0, *np.cumsum([len(r) for r in rows])[:-1]], dtype=torch.long)
        flat = torch.tensor([i for r in rows for i in r], dtype=torch.long)
        return flat, offsets

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        """Vectors with gradients (training)."""
        return self.model(*self.batch(texts))

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 1024) -> np.ndarray:
        """Unit float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [
            self.model(*self.batch(texts[i : i + batch_size])).numpy()
            for i in range(0, len(texts), batch_size)
        ]
        return np.concatenate(parts).astype(np.float32)

    def encode_products(self, docs: Sequence[ProductDoc]) -> np.ndarray:
        return self.encode([product_text(d, self.config.description_words) for d in docs])

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=2))
        (directory / VOCAB_FILE).write_text(json.dumps(self.vocab.tokens))
        torch.save(self.model.state_dict(), directory / WEIGHTS_FILE)

    @classmethod
    def load(cls, directory: Path) -> DenseEncoder:
        config = EncoderConfig(**json.loads((directory / CONFIG_FILE).read_text()))
        vocab = Vocabulary(json.loads((directory / VOCAB_FILE).read_text()), config.buckets)
        model = BagEncoder(len(vocab), config.dim)
        model.load_state_dict(torch.load(directory / WEIGHTS_FILE, weights_only=True))
        return cls(config, vocab, model)
