"""The tiny generative model every test trains: a T5 of ~100k parameters that memorises a
20-product catalog in a few seconds on one thread."""

from __future__ import annotations

from learners.generative.model import ModelConfig
from learners.generative.train import TrainConfig

TINY = ModelConfig(d_model=64, d_ff=128, num_heads=2, num_layers=2, num_decoder_layers=1)


def tiny_train_config(**overrides) -> TrainConfig:
    base = {
        "batch_size": 32,
        "lr": 8e-3,
        "warmup_steps": 10,
        "max_minutes": None,
        "max_steps": 150,
        "vocab_size": 400,
        "memorisation_sample": None,  # every title view
        "progress": False,
        "threads": 1,  # tiny tensors: a second thread only adds synchronisation
        # tiny matrices gain nothing from bf16, and fp32 trains the same on every CPU
        "precision": "fp32",
    }
    return TrainConfig(**{**base, **overrides})
