"""Tokenizer for the generative recall model, trained on the merchant's own catalog text.

Why train one: no pretrained vocabulary can be downloaded here, and a catalog's vocabulary
(brands, model numbers, category words) is small and peculiar, so a BPE model fitted on the
catalog's titles, brands, category names and descriptions covers it with few pieces.

Why docid tokens live in the same tokenizer: the model is a plain tied-embedding T5, so the
decoder's inputs and outputs share the encoder's embedding table. Every docid *path component*
(category slug, learned code ``c3``, leaf ``0012``) is one dedicated special token, written
``<d:c3>`` so that it can never be produced by ordinary text (a query "c3" stays text). Leaf and
code tokens are shared by all parents, which keeps the decoder vocabulary small (hundreds, not
thousands). The decoder's output layer is restricted to these tokens plus ``</s>``
(:class:`DocidVocab`), so training and decoding never pay for a softmax over the text vocabulary.

Leaf tokens are *reserved* up to :data:`RESERVED_LEAVES` (and codes up to ``c{k-1}``) even when
the catalog does not use them yet, so that products added after training (which take fresh leaf
numbers) can be taught to an adapter without resizing the embedding table.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import tantivy
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import BpeTrainer

PAD = "<pad>"  # id 0: also T5's decoder start token
EOS = "</s>"  # id 1: ends encoder inputs and docid targets
UNK = "<unk>"  # id 2
SPECIALS = (PAD, EOS, UNK)
DOCID_TOKEN = "<d:{}>"
SEPARATOR = "/"
#: Leaf codes reserved in the vocabulary (``0000``..``0999``): room for new products per parent.
RESERVED_LEAVES = 1000
LEAF_WIDTH = 4
#: Learned-code tokens always present (``c0``..``c9``), matching the docid scheme's k=10.
RESERVED_CODES = 10
DEFAULT_VOCAB_SIZE = 8000
TOKENIZER_FILE = "tokenizer.json"
DOCID_VOCAB_FILE = "docid_vocab.json"


def docid_token(component: str) -> str:
    """The special token spelling of one docid path component."""
    return DOCID_TOKEN.format(component)


def _normalizer() -> normalizers.Normalizer:
    """NFKC + lowercase + accent stripping; trademark-like marks become spaces.

    The BestBuy feed writes ``Apple® iPhone®`` (sometimes mangled to ``Apple°``); shoppers type
    ``apple iphone``, so those marks must not glue onto words.
    """
    return normalizers.Sequence(
        [
            normalizers.Replace(Regex("[®™©°]"), " "),  # before NFKC, which spells ™ "TM"
            normalizers.NFKC(),
            normalizers.Lowercase(),
            normalizers.NFD(),
            normalizers.StripAccents(),
        ]
    )


def new_tokenizer() -> Tokenizer:
    """An untrained BPE tokenizer with this module's normalisation and pre-tokenisation.

    Pre-tokenisation splits on whitespace/punctuation and separates digit runs (``128gb`` →
    ``128 gb``) so that capacities and model numbers generalise across spellings.
    """
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.normalizer = _normalizer()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=False)]
    )
    tok.decoder = decoders.BPEDecoder()
    return tok


def train_tokenizer(
    texts: Iterable[str],
    docid_paths: Iterable[str],
    vocab_size: int = DEFAULT_VOCAB_SIZE,
) -> Tokenizer:
    """Fit BPE on ``texts`` and add one special token per docid component (plus reserves).

    ``texts`` should be everything the encoder will see (titles, brands, category names,
    descriptions); ``docid_paths`` all docids the model must be able to generate.
    """
    tok = new_tokenizer()
    trainer = BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=list(SPECIALS), show_progress=False
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_special_tokens([docid_token(c) for c in docid_components(docid_paths)])
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", special_tokens=[(EOS, tok.token_to_id(EOS))]
    )
    return tok


def docid_components(paths: Iterable[str]) -> list[str]:
    """Every distinct path component, plus reserved leaf and code tokens, in a stable order."""
    seen: dict[str, None] = {}
    for path in paths:
        for component in path.split(SEPARATOR):
            if component:
                seen.setdefault(component, None)
    for i in range(RESERVED_CODES):
        seen.setdefault(f"c{i}", None)
    for i in range(RESERVED_LEAVES):
        seen.setdefault(f"{i:0{LEAF_WIDTH}d}", None)
    return list(seen)


@dataclass
class DocidVocab:
    """The decoder's restricted output vocabulary: ``</s>`` then one entry per docid component.

    ``token_ids[i]`` is the tokenizer (= embedding) id of output class ``i``; the model's logits
    over this vocabulary are ``hidden @ embedding[token_ids].T``.
    """

    components: list[str]  # index 0 is EOS
    token_ids: list[int]

    @classmethod
    def from_tokenizer(cls, tok: Tokenizer) -> DocidVocab:
        prefix, suffix = DOCID_TOKEN.split("{}")
        components = [EOS]
        token_ids = [tok.token_to_id(EOS)]
        for token_id, added in sorted(tok.get_added_tokens_decoder().items()):
            content = added.content
            if content.startswith(prefix) and content.endswith(suffix):
                components.append(content[len(prefix) : len(content) - len(suffix)])
                token_ids.append(token_id)
        return cls(components, token_ids)

    def __post_init__(self) -> None:
        self.index = {c: i for i, c in enumerate(self.components)}

    @property
    def eos(self) -> int:
        return 0

    def __len__(self) -> int:
        return len(self.components)

    def encode(self, path: str | Sequence[str]) -> list[int]:
        """Output-class ids of a docid, ending with EOS; KeyError for unknown components."""
        parts = path.split(SEPARATOR) if isinstance(path, str) else list(path)
        return [self.index[p] for p in parts if p] + [self.eos]

    def knows(self, path: str) -> bool:
        return all(p in self.index for p in path.split(SEPARATOR) if p)

    def decode(self, ids: Sequence[int]) -> str:
        return SEPARATOR.join(self.components[i] for i in ids if i != self.eos)

    def to_tokens(self, ids: Sequence[int]) -> list[int]:
        """Output-class ids → tokenizer ids (decoder *inputs* are embedding ids)."""
        return [self.token_ids[i] for i in ids]

    def save(self, directory: Path) -> None:
        data = {"components": self.components, "token_ids": self.token_ids}
        (directory / DOCID_VOCAB_FILE).write_text(json.dumps(data))

    @classmethod
    def load(cls, directory: Path) -> DocidVocab:
        data = json.loads((directory / DOCID_VOCAB_FILE).read_text())
        return cls(data["components"], data["token_ids"])


def save_tokenizer(tok: Tokenizer, directory: Path) -> None:
    tok.save(str(directory / TOKENIZER_FILE))


def load_tokenizer(directory: Path) -> Tokenizer:
    return Tokenizer.from_file(str(directory / TOKENIZER_FILE))


@functools.cache
def _stemmer() -> tantivy.TextAnalyzer:
    """The analyser of the inverted index's ``en_stem`` fields: words, lowercase, English stems."""
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )


def stem_words(text: str) -> str:
    """``text`` as BM25 sees it, space-joined: "Flowers Textured" -> "flower textur".

    BPE keeps frequent word forms whole ("flowers", "flower", "textured", "texture" are four
    unrelated tokens of the BestBuy tokenizer), so without stems the model must learn every
    form of a word from the products that spell it that way.
    """
    return " ".join(_stemmer().analyze(text))


def encode_batch(tok: Tokenizer, texts: Sequence[str], max_len: int) -> list[list[int]]:
    """Token ids per text, truncated to ``max_len`` with the final ``</s>`` kept."""
    eos = tok.token_to_id(EOS)
    out = []
    for enc in tok.encode_batch(list(texts)):
        ids = enc.ids
        if len(ids) > max_len:
            ids = ids[: max_len - 1] + [eos]
        out.append(ids)
    return out
