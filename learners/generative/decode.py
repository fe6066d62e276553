"""Lean constrained beam search over the docid prefix tree.

Why not ``model.generate(prefix_allowed_tokens_fn=...)``: on 2 CPU cores the generic path took
~62 ms per query at beam 10 (ARCHITECTURE.md) and even a hand-driven HF decoder loop with its
cache objects spends ~3 ms per step in Python overhead. Serving needs ≤ 15 ms, so this module
drives T5's own sub-modules directly:

* the encoder runs once per query; each cross-attention layer's keys/values are projected once
  for that single row, and the query's beams attend to it as the positions of one row;
* the decoder runs one position per step with a plain tensor self-attention KV cache that is
  re-indexed when beams are re-ranked;
* logits are computed only for the docid components that some live beam may continue with
  (the union of their trie children) and masked to each beam's own valid children (a
  precomputed mask row per trie node), then log-softmaxed, so scores are renormalised over
  valid continuations and **no invalid docid can be produced**;
* stretches where every live beam has exactly one valid continuation (the shared ``cell-phones``
  root, single-child categories) are fed in one multi-token step at log-prob 0 instead of one
  decoder call each, and a beam whose docid is complete and has no longer extensions finishes
  without paying a step for ``</s>``;
* many queries (the evaluations: memorisation check, adapter gate and probes) decode in batches,
  the beams of all of them in one decoder call per step (:func:`beam_search_batch`).

Sub-modules are *called* (``attn.q(x)``) rather than their weights copied, so a PEFT/LoRA-wrapped
model decodes correctly without merging.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import T5ForConditionalGeneration
from transformers.models.t5.modeling_t5 import T5DenseActDense

from catalog.docids import DocidTrie
from learners.generative.data import clean
from learners.generative.model import GenerativeModel, load_version, output_scale
from learners.generative.tokenizer import DocidVocab

NEG_INF = float("-inf")
#: Longest docid (in tokens, plus start and EOS) the position-bias table covers.
MAX_DECODE_LEN = 24
#: Longest query (in tokens) the encoder's position-bias table covers; longer ones get theirs
#: computed per call.
MAX_ENCODE_LEN = 64
#: Queries per batched beam search in :meth:`GenerativeRetriever.search_many`.
BATCH = 32


@dataclass(frozen=True)
class Hit:
    docid: str
    score: float  # log-probability of the docid under the model, renormalised over the trie


# --------------------------------------------------------------------------------------------
# The trie over output classes
# --------------------------------------------------------------------------------------------


class CompiledTrie:
    """A :class:`DocidTrie` re-keyed by output-class id, with a logit mask row per inner node.

    Docids with a component the vocabulary lacks (products added after training) are skipped:
    the model cannot spell them, other recall paths serve them.
    """

    def __init__(self, paths: Iterable[str], vocab: DocidVocab) -> None:
        self.vocab = vocab
        self.children: list[dict[int, int]] = [{}]
        self.terminal: list[bool] = [False]
        self.skipped = 0
        for path in paths:
            self._add(path)
        self._build_masks()
        self._tails = self._build_tails()

    @classmethod
    def from_trie(cls, trie: DocidTrie, vocab: DocidVocab) -> CompiledTrie:
        return cls(iter(trie), vocab)

    def _add(self, path: str) -> None:
        if not self.vocab.knows(path):
            self.skipped += 1
            return
        node = 0
        for cls_id in self.vocab.encode(path)[:-1]:
            nxt = self.children[node].get(cls_id)
            if nxt is None:
                nxt = len(self.children)
                self.children[node][cls_id] = nxt
                self.children.append({})
                self.terminal.append(False)
            node = nxt
        self.terminal[node] = True

    def _build_masks(self) -> None:
        inner = [n for n, kids in enumerate(self.children) if kids]
        self.row = {n: i for i, n in enumerate(inner)}
        self.masks = torch.full((max(len(inner), 1), len(self.vocab)), NEG_INF)
        for node, i in self.row.items():
            self.masks[i, list(self.allowed(node))] = 0.0

    def allowed(self, node: int) -> list[int]:
        """Valid next output classes after the prefix at ``node`` (EOS when it is complete)."""
        kids = list(self.children[node])
        return kids + [self.vocab.eos] if self.terminal[node] and kids else kids

    def done(self, node: int) -> bool:
        """Complete with nothing longer below: the docid ends here without decoding EOS."""
        return self.terminal[node] and not self.children[node]

    def tail(self, node: int) -> list[int] | None:
        """Forced tokens from ``node`` to a complete docid, if the chain of single continuations
        ends in one (those steps all have log-prob 0, so the docid is finished right away).
        The list is shared: do not modify it."""
        return self._tails[node]

    def _build_tails(self) -> list[list[int] | None]:
        """Every node's :meth:`tail`, computed once: beam selection asks it of each of the
        ~20 expansions it looks at per step, and following the chain on every call was a
        quarter of the selection's time. Children are numbered after their parents, so one
        pass from the last node up sees each child's tail before its parent's."""
        tails: list[list[int] | None] = [None] * len(self.children)
        for node in range(len(self.children) - 1, -1, -1):
            cls_id = self.forced(node)
            if self.done(node):
                tails[node] = []
            elif cls_id is not None:
                rest = tails[self.children[node][cls_id]]
                tails[node] = None if rest is None else [cls_id, *rest]
        return tails

    def forced(self, node: int) -> int | None:
        """The only valid continuation of ``node``, if there is exactly one (and no EOS)."""
        kids = self.children[node]
        if len(kids) == 1 and not self.terminal[node]:
            return next(iter(kids))
        return None

    def __len__(self) -> int:
        return sum(self.terminal)


# --------------------------------------------------------------------------------------------
# The lean decoder
# --------------------------------------------------------------------------------------------


class LeanT5:
    """Step-wise T5 decoding over a restricted output vocabulary with a tensor KV cache.

    The encoder is run the same lean way: the same layers and weights (LoRA-wrapped ones
    included) called directly, with its position bias computed once -- the transformers forward
    spends as long in per-call Python (output capture, masks, bias) as in the arithmetic of a
    short query. ``test_lean_decoder_matches_the_full_t5_forward`` holds both to the full model.
    """

    def __init__(self, model: T5ForConditionalGeneration, vocab: DocidVocab) -> None:
        cfg = model.config
        self.model = model
        self.heads = cfg.num_heads
        self.d_kv = cfg.d_kv
        self.blocks = [_LeanBlock(block) for block in model.decoder.block]
        self.final_norm = _norm(model.decoder.final_layer_norm)
        self.encoder_blocks = [_LeanBlock(block) for block in model.encoder.block]
        self.encoder_norm = _norm(model.encoder.final_layer_norm)
        self.embed = model.get_input_embeddings()
        self.start_id = cfg.decoder_start_token_id
        with torch.inference_mode():
            ids = torch.tensor(vocab.token_ids)
            self.out_rows = (self.embed.weight[ids] * output_scale(model)).contiguous()
            self.class_to_embed = ids
            self.self_bias = self._causal_bias()
            self.encoder_bias = self._encoder_bias(MAX_ENCODE_LEN)

    def _causal_bias(self) -> torch.Tensor:
        attn = self.model.decoder.block[0].layer[0].SelfAttention
        bias = attn.compute_bias(MAX_DECODE_LEN, MAX_DECODE_LEN).clone()
        causal = torch.ones(MAX_DECODE_LEN, MAX_DECODE_LEN, dtype=torch.bool).triu(1)
        return bias.masked_fill(causal, NEG_INF)

    def _encoder_bias(self, length: int) -> torch.Tensor:
        """Bidirectional relative-position bias; it depends on j - i only, so the top-left
        block of a longer table is the bias of a shorter input."""
        attn = self.model.encoder.block[0].layer[0].SelfAttention
        return attn.compute_bias(length, length).clone()

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        n, m, _ = x.shape
        return x.view(n, m, self.heads, self.d_kv).transpose(1, 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        n, _, m, _ = x.shape
        return x.transpose(1, 2).reshape(n, m, self.heads * self.d_kv)

    def encode(
        self, input_ids: torch.Tensor, pad_mask: torch.Tensor | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Encoder once; each decoder layer's cross-attention keys/values for that input.

        ``pad_mask`` (``[queries, 1, 1, n]``, 0 or -inf) hides the padding of a batch of
        right-padded queries from attention; the position bias is unchanged by right padding.
        """
        n = input_ids.shape[1]
        bias = self.encoder_bias if n <= MAX_ENCODE_LEN else self._encoder_bias(n)
        bias = bias[:, :, :n, :n]
        if pad_mask is not None:
            bias = bias + pad_mask
        h = self.embed(input_ids)
        for block in self.encoder_blocks:
            h, _ = self._self_attention(block, h, None, bias)
            h = block.feed_forward(h)
        hidden = self.encoder_norm(h)
        return [
            (self._heads(block.cross_k(hidden)), self._heads(block.cross_v(hidden)))
            for block in self.blocks
        ]

    def step(
        self,
        class_ids: torch.Tensor,
        cache: list[tuple[torch.Tensor, torch.Tensor]] | None,
        cross: list[tuple[torch.Tensor, torch.Tensor]],
        first: bool = False,
        cross_mask: torch.Tensor | None = None,
        classes: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Feed ``class_ids`` ``[beams, m]`` (output classes); return last-position logits
        over ``classes`` (all output classes when None), in that order.

        With ``first`` a decoder-start column is prepended (the very first call). ``cross``
        holds one row of keys/values per beam, or one row for all of them (a single query);
        ``cross_mask`` hides the padding of beams whose query was padded in a batch.
        """
        tokens = self.class_to_embed[class_ids]
        if first:
            start = torch.full((tokens.shape[0], 1), self.start_id, dtype=tokens.dtype)
            tokens = torch.cat([start, tokens], dim=1)
        past = 0 if cache is None else cache[0][0].shape[2]
        m = tokens.shape[1]
        bias = self.self_bias[:, :, past : past + m, : past + m]
        h = self.embed(tokens)
        new_cache = []
        for i, block in enumerate(self.blocks):
            h, kv = self._self_attention(block, h, None if cache is None else cache[i], bias)
            new_cache.append(kv)
            h = self._cross_attention(block, h, cross[i], cross_mask)
            h = block.feed_forward(h)
        h = self.final_norm(h[:, -1])
        out = self.out_rows if classes is None else self.out_rows.index_select(0, classes)
        return F.linear(h, out), new_cache

    def _self_attention(self, block: _LeanBlock, h, kv, bias):
        x = block.self_norm(h)
        q, k, v = (
            self._heads(block.self_q(x)),
            self._heads(block.self_k(x)),
            self._heads(block.self_v(x)),
        )
        if kv is not None:
            k, v = torch.cat([kv[0], k], dim=2), torch.cat([kv[1], v], dim=2)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)
        return h + block.self_o(self._merge(attended)), (k, v)

    def _cross_attention(self, block: _LeanBlock, h, kv, mask):
        """A single query's one row of keys/values serves all its beams, so the beams are laid
        out as the positions of one row (``[1, beams·m, d]``) rather than broadcast against it:
        attention over a broadcast key row took 77-104 µs a call at 10 beams, the same
        product as one row's positions 22-25 µs (micro-benchmark, one thread); the values
        are the same up to float rounding."""
        shape = h.shape
        if kv[0].shape[0] == 1:
            h = h.reshape(1, -1, shape[-1])
        q = self._heads(block.cross_q(block.cross_norm(h)))
        attended = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=mask, scale=1.0)
        return (h + block.cross_o(self._merge(attended))).view(shape)


Layer = Callable[[torch.Tensor], torch.Tensor]


def _linear(module: nn.Module) -> Layer:
    """A plain ``nn.Linear`` as a direct ``F.linear`` call on its (live) weight: the module
    call machinery cost more than the product of a 128-wide layer. Anything else -- a LoRA
    wrapper during adapter training -- is called as the module it is."""
    if type(module) is not nn.Linear:
        return module
    weight, bias = module.weight, module.bias
    return lambda x: F.linear(x, weight, bias)


def _norm(module: nn.Module) -> Layer:
    """T5's RMS layer norm, ``x · w / sqrt(mean(x²) + eps)``, computed as ``x · (w·√d) /
    hypot(‖x‖, √(d·eps))``: the same value, since hypot(‖x‖, √(d·eps))² = d·(mean(x²) + eps).
    On a 10 × 128 batch of beams it took 7.6-9.6 µs where ``F.rms_norm`` took 16-21 µs (a
    mean over the last axis alone costs ~6.8 µs, ``vector_norm`` ~2.7 µs); with ~40 norms per
    decoded query that was the decoder's second cost after the projections. ``w·√d`` is taken
    once, like the output rows: a :class:`LeanT5` is built per evaluation, on fixed weights
    (the norms are not LoRA targets)."""
    d = module.weight.shape[0]
    floor = torch.tensor(math.sqrt(d * module.variance_epsilon))
    with torch.inference_mode():
        scale = module.weight.detach() * math.sqrt(d)

    def norm(x: torch.Tensor) -> torch.Tensor:
        return x * (scale / torch.hypot(torch.linalg.vector_norm(x, dim=-1, keepdim=True), floor))

    return norm


class _LeanBlock:
    """One T5 block's projections and norms as direct calls (the cross-attention ones exist
    in decoder blocks only)."""

    def __init__(self, block: nn.Module) -> None:
        attention = block.layer[0]
        self.self_norm = _norm(attention.layer_norm)
        attn = attention.SelfAttention
        self.self_q, self.self_k = _linear(attn.q), _linear(attn.k)
        self.self_v, self.self_o = _linear(attn.v), _linear(attn.o)
        if block.is_decoder:
            cross = block.layer[1]
            self.cross_norm = _norm(cross.layer_norm)
            attn = cross.EncDecAttention
            self.cross_q, self.cross_k = _linear(attn.q), _linear(attn.k)
            self.cross_v, self.cross_o = _linear(attn.v), _linear(attn.o)
        self.feed_forward = self._feed_forward(block.layer[-1])

    @staticmethod
    def _feed_forward(layer: nn.Module) -> Layer:
        dense = layer.DenseReluDense
        if not isinstance(dense, T5DenseActDense) or not isinstance(dense.act, nn.ReLU):
            return layer  # gated or other activations: transformers' own forward
        norm, wi, wo = _norm(layer.layer_norm), _linear(dense.wi), _linear(dense.wo)
        return lambda h: h + wo(F.relu(wi(norm(h))))


# --------------------------------------------------------------------------------------------
# Beam search
# --------------------------------------------------------------------------------------------


@dataclass
class _Beams:
    nodes: list[int]
    paths: list[list[int]]
    scores: torch.Tensor


@dataclass(frozen=True)
class DecodeJob:
    """One query of a batched beam search: the trie it decodes in, its token ids, its top-k."""

    trie: CompiledTrie
    input_ids: Sequence[int]
    k: int


@dataclass
class _Decoding:
    """One query's beams and finished docids inside a batched beam search."""

    slot: int  # its position in the jobs (and results)
    row: int  # its row in the batch's encoder output
    trie: CompiledTrie
    k: int
    beams: _Beams = field(default_factory=lambda: _Beams([0], [[]], torch.zeros(1)))
    finished: list[tuple[float, list[int]]] = field(default_factory=list)

    def hits(self) -> list[Hit]:
        self.finished.sort(key=lambda item: -item[0])
        return [Hit(self.trie.vocab.decode(path), score) for score, path in self.finished[: self.k]]


def beam_search(
    lean: LeanT5, trie: CompiledTrie, input_ids: Sequence[int], beam: int = 10, k: int | None = None
) -> list[Hit]:
    """Top-``k`` (≤ ``beam``) docids for one encoded query, best first."""
    k = beam if k is None else min(k, beam)
    return beam_search_batch(lean, [DecodeJob(trie, input_ids, k)], beam)[0]


def beam_search_batch(lean: LeanT5, jobs: Sequence[DecodeJob], beam: int = 10) -> list[list[Hit]]:
    """:func:`beam_search` for several queries at once: one encoder call, one decoder call per
    step for the beams of all of them.

    Why: at 10 beams a decoder step costs as much in per-operation overhead as in arithmetic,
    so stacking the beams of several queries costs far less than a call each (8 queries: ~3x
    one query's step, micro-benchmark). Each query keeps its own trie, beams and finished
    docids; forced stretches are fed only while *every* live beam of every query is forced, so
    the rows stay at one position and share one self-attention cache. A query's hits are the
    ones it gets alone, up to float rounding.
    """
    results: list[list[Hit]] = [[] for _ in jobs]
    decodings: list[_Decoding] = []
    for slot, job in enumerate(jobs):
        if not job.trie.children[0]:  # no docids: no hits
            continue
        root_tail = job.trie.tail(0)
        if root_tail is not None:  # a single docid
            results[slot] = [Hit(job.trie.vocab.decode(root_tail), 0.0)]
            continue
        decodings.append(_Decoding(slot, len(decodings), job.trie, min(job.k, beam)))
    if not decodings:
        return results
    with torch.inference_mode():
        cross, pad_mask = _encode(lean, [jobs[d.slot].input_ids for d in decodings])
        live, cache = decodings, None
        feed = _advance_forced(live)
        while True:
            rows, mask = _cross_rows(cross, pad_mask, live)
            classes = _valid_classes(live)
            index = torch.tensor(classes)
            logits, cache = lean.step(
                feed, cache, rows, first=cache is None, cross_mask=mask, classes=index
            )
            logp = (logits + _trie_masks(live, index)).log_softmax(-1)
            live, keep = _select_all(live, logp, beam, classes)
            if not live:
                break
            cache = [(kk[keep], vv[keep]) for kk, vv in cache]
            last = torch.tensor([[path[-1]] for d in live for path in d.beams.paths])
            feed = torch.cat([last, _advance_forced(live)], dim=1)
    for d in decodings:
        results[d.slot] = d.hits()
    return results


def _encode(
    lean: LeanT5, inputs: list[Sequence[int]]
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor | None]:
    """Cross-attention keys/values of right-padded queries, and the mask of their padding."""
    width = max(len(ids) for ids in inputs)
    ids = torch.tensor([[*ids, *[0] * (width - len(ids))] for ids in inputs])
    pad_mask = None
    if any(len(x) < width for x in inputs):
        padding = torch.arange(width)[None, :] >= torch.tensor([len(x) for x in inputs])[:, None]
        pad_mask = torch.zeros(len(inputs), 1, 1, width).masked_fill(
            padding[:, None, None, :], NEG_INF
        )
    return lean.encode(ids, pad_mask), pad_mask


def _cross_rows(
    cross: list[tuple[torch.Tensor, torch.Tensor]],
    pad_mask: torch.Tensor | None,
    live: list[_Decoding],
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor | None]:
    """The encoder keys/values (and padding mask) each live beam attends to: with one query
    left its single row, which all its beams share (:meth:`LeanT5._cross_attention`),
    otherwise each beam gets its query's row."""
    if len(live) == 1:
        r = live[0].row
        rows = [(k[r : r + 1], v[r : r + 1]) for k, v in cross]
        return rows, None if pad_mask is None else pad_mask[r : r + 1]
    owner = torch.tensor([d.row for d in live for _ in d.beams.nodes])
    rows = [(k.index_select(0, owner), v.index_select(0, owner)) for k, v in cross]
    return rows, None if pad_mask is None else pad_mask.index_select(0, owner)


def _valid_classes(live: list[_Decoding]) -> list[int]:
    """The output classes some live beam may continue with, sorted: the only logits a step
    needs. Why: over the BestBuy dev queries the union is 64 of the 1,077 docid components at
    the median step (111 at most), and the full ``[beams, 1077]`` projection with its mask,
    log-softmax and top-k was ~10% of decoding in a torch profile."""
    valid: set[int] = set()
    for d in live:
        for node in d.beams.nodes:
            valid.update(d.trie.allowed(node))
    return sorted(valid)


def _trie_masks(live: list[_Decoding], classes: torch.Tensor) -> torch.Tensor:
    """Each live beam's mask over ``classes``: 0 for the valid continuations of its prefix,
    -inf else."""
    parts = [
        d.trie.masks.index_select(
            0, torch.tensor([d.trie.row[n] for n in d.beams.nodes])
        ).index_select(1, classes)
        for d in live
    ]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _select_all(
    live: list[_Decoding], logp: torch.Tensor, beam: int, classes: list[int]
) -> tuple[list[_Decoding], torch.Tensor]:
    """Each query's :func:`_select` on its rows of ``logp`` (columns: ``classes``): the
    queries still decoding, and for each of their new beams the batch row it continues."""
    still: list[_Decoding] = []
    keep: list[torch.Tensor] = []
    offset = 0
    for d in live:
        n = len(d.beams.nodes)
        beams, rows = _select(d, logp[offset : offset + n], beam, classes)
        if beams.nodes and not _settled(d.finished, beams, beam):
            d.beams = beams
            still.append(d)
            keep.append(rows + offset)
        offset += n
    return still, torch.cat(keep) if keep else torch.empty(0, dtype=torch.long)


def _advance_forced(live: list[_Decoding]) -> torch.Tensor:
    """Extend beams while *all* live beams (of every query) have a single valid continuation;
    return those tokens, a row per beam."""
    steps: list[list[int]] = [[] for d in live for _ in d.beams.nodes]
    while steps and all(d.trie.forced(n) is not None for d in live for n in d.beams.nodes):
        row = 0
        for d in live:
            for i, node in enumerate(d.beams.nodes):
                cls_id = d.trie.forced(node)
                assert cls_id is not None
                d.beams.paths[i].append(cls_id)
                d.beams.nodes[i] = d.trie.children[node][cls_id]
                steps[row].append(cls_id)
                row += 1
    return torch.tensor(steps, dtype=torch.long).reshape(len(steps), -1)


def _select(
    d: _Decoding, logp: torch.Tensor, beam: int, classes: list[int]
) -> tuple[_Beams, torch.Tensor]:
    """Expand every beam of ``d`` (``logp``: its rows, columns ``classes``), move complete
    docids to its finished ones, keep the best ``beam`` live."""
    trie, beams = d.trie, d.beams
    total = (beams.scores[:, None] + logp).view(-1)
    top = total.topk(min(2 * beam, total.numel()))
    width = logp.shape[1]
    nodes, paths, scores, keep = [], [], [], []
    for score, flat in zip(top.values.tolist(), top.indices.tolist(), strict=True):
        if score == NEG_INF:  # fewer valid continuations than 2·beam: the rest are masked
            break
        b, column = divmod(flat, width)
        cls_id = classes[column]
        path = [*beams.paths[b], cls_id]
        if cls_id == trie.vocab.eos:
            d.finished.append((score, beams.paths[b]))
            continue
        child = trie.children[beams.nodes[b]][cls_id]
        tail = trie.tail(child)
        if tail is not None:
            d.finished.append((score, path + tail))
        elif len(nodes) < beam:
            nodes.append(child)
            paths.append(path)
            scores.append(score)
            keep.append(b)
    return _Beams(nodes, paths, torch.tensor(scores)), torch.tensor(keep, dtype=torch.long)


def _settled(finished: list[tuple[float, list[int]]], beams: _Beams, beam: int) -> bool:
    """Scores only fall as docids grow: stop once no live beam can enter the top ``beam``."""
    if len(finished) < beam:
        return False
    kth = sorted((s for s, _ in finished), reverse=True)[beam - 1]
    return float(beams.scores.max()) <= kth


# --------------------------------------------------------------------------------------------
# Query → docids
# --------------------------------------------------------------------------------------------


class GenerativeRetriever:
    """Loaded model + compiled trie: ``search(query)`` returns scored docids."""

    #: category-restricted tries kept per retriever (each costs a mask row per inner node)
    MAX_SUBTREES = 64

    def __init__(self, bundle: GenerativeModel, docids: Iterable[str] | None = None) -> None:
        self.bundle = bundle
        self.lean = LeanT5(bundle.model.eval(), bundle.vocab)
        self.paths = list(bundle.docids if docids is None else docids)
        self.trie = CompiledTrie(self.paths, bundle.vocab)
        self._subtrees: dict[str, CompiledTrie] = {}

    @classmethod
    def load(
        cls, directory: Path | str, docids: Iterable[str] | None = None
    ) -> GenerativeRetriever:
        return cls(load_version(directory), docids)

    def encode(self, query: str) -> list[int]:
        """Token ids of ``query`` in the same normal form as the training texts."""
        return self.bundle.encode([clean(query)])[0]

    def search(
        self, query: str, k: int = 10, beam: int | None = None, prefix: str = ""
    ) -> list[Hit]:
        """Top-``k`` docids for ``query``; ``beam`` defaults to ``k`` (beam ≥ k needed).

        With ``prefix`` (a category path) decoding is constrained to docids under it, so a
        category filter gets a full beam of its own products instead of what is left of a
        catalog-wide beam after filtering.
        """
        return self.search_many([query], k, beam, prefix)[0]

    def search_many(
        self, queries: Sequence[str], k: int = 10, beam: int | None = None, prefix: str = ""
    ) -> list[list[Hit]]:
        """:meth:`search` for each of ``queries``, decoded :data:`BATCH` at a time by one
        batched beam search: the evaluations (memorisation check, adapter gate, probes) decode
        hundreds of queries, and on the BestBuy dev queries batches of 32 took 2.0-2.2 ms per
        query against 9.0-9.7 one by one (ad hoc script, one thread, identical top-10 lists)."""
        beam = max(beam or k, k)
        trie = self.subtree(prefix) if prefix else self.trie
        jobs = [DecodeJob(trie, self.encode(query), k) for query in queries]
        return [
            hits
            for start in range(0, len(jobs), BATCH)
            for hits in beam_search_batch(self.lean, jobs[start : start + BATCH], beam)
        ]

    def subtree(self, prefix: str) -> CompiledTrie:
        """The compiled trie of the docids under ``prefix`` (cached, bounded)."""
        trie = self._subtrees.get(prefix)
        if trie is None:
            below = f"{prefix.rstrip('/')}/"
            trie = CompiledTrie((p for p in self.paths if p.startswith(below)), self.bundle.vocab)
            if len(self._subtrees) >= self.MAX_SUBTREES:
                self._subtrees.pop(next(iter(self._subtrees)))
            self._subtrees[prefix] = trie
        return trie


# --------------------------------------------------------------------------------------------
# Recall-path adapter (for ranking.service.PIPELINES)
# --------------------------------------------------------------------------------------------


class GenerativeRecall:
    """A :class:`ranking.recall.RecallPath` over one merchant's generative model.

    Serves only requests for its own merchant (a model decodes one merchant's docids). The
    beam, not ``request.limit``, bounds the candidates: beam width is what latency pays for, and
    the fused pipeline gets depth from the other paths. A category filter constrains decoding to
    the docids under that category path (docids start with their category path).
    """

    name = "generative"

    def __init__(self, retriever: GenerativeRetriever, merchant: str, beam: int = 10) -> None:
        self.retriever = retriever
        self.merchant = merchant
        self.beam = beam
        self.refresh()

    def refresh(self) -> None:
        """Reload docid → product id (call after imports; new docids stay undecodable)."""
        from catalog.models import Docid

        rows = Docid.objects.filter(merchant__slug=self.merchant).values_list("path", "product_id")
        self.product_of = dict(rows)

    def recall(self, request):  # -> ranking.recall.RecallResult
        from ranking.recall import RecallResult
        from ranking.types import Candidate

        if request.merchant and request.merchant != self.merchant:
            return RecallResult(candidates=[], total=0)
        hits = self.retriever.search(
            request.query, k=self.beam, beam=self.beam, prefix=request.category or ""
        )
        ids = [(self.product_of[h.docid], h.score) for h in hits if h.docid in self.product_of]
        candidates = [
            Candidate(product_id=pid, score=score, path=self.name, rank=rank)
            for rank, (pid, score) in enumerate(ids[: request.limit], start=1)
        ]
        return RecallResult(candidates=candidates, total=len(candidates))
