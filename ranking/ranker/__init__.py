"""The multitask fusion ranker: model and loss (``model``), training queries (``data``),
training + registry (``train``) and search-time reranking with MMR (``serving``)."""
