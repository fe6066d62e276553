"""Training examples for the generative recall model: text → docid pairs built from the catalog.

Two kinds of examples teach the model (DSI, arXiv 2202.06991; DSI-QG, arXiv 2206.10128):

*Indexing views* (doc → docid) make it memorise every product under several surface forms:

* ``title`` -- the full title, the view the memorisation check decodes;
* ``title_brand`` -- brand + the title's main segment (no variant suffix);
* ``category_brand`` -- leaf category name + brand;
* ``description`` -- a chunk of the description of at most ``chunk_words`` words (≈ ≤ 64 BPE
  tokens: DSI found longer indexing inputs hurt).

*Pseudo-queries* (query → docid) are the change that matters most for retrieval (DSI-QG/NCI:
indexing each document through 10-15 generated queries). No query log may be used, so they are
generated from product fields by :class:`QueryGenerator`, mimicking what shoppers type:

* ``brand`` -- the brand and its first one/two words (``kate spade``);
* ``category`` -- leaf and parent category names, ``parent leaf``, without "All"/"&" noise;
* ``brand_category`` -- brand + leaf category, brand + product type;
* ``product_type`` -- the head noun phrase of the title before " for " (``case``,
  ``shell case``), singular and plural;
* ``device`` -- the compatible device after " for " (``iphone 6 plus``), alone and + product type;
* ``model`` -- the model name: the title's main segment up to "with"/"(" etc.;
* ``variant`` -- the colour/variant suffix (``black``), alone, with brand and with product type;
* ``keyword`` -- salient description/title words by TF-IDF (``textured``, ``aluminum``),
  alone, with product type and with brand;
* ``attribute`` -- attribute values (and ``key value``) where the feed has attributes;
* ``span`` / ``subset`` -- random contiguous 1-5-word spans and ordered word subsets of the
  title, redrawn every epoch.

Sampling is *balanced*: every epoch gives every product the same number of examples (the fixed
views plus ``queries_per_product`` pseudo-queries drawn first uniformly over the query kinds it
has, then uniformly within the kind), so rare products are seen as often as products with long
texts, and kinds with many candidates (keywords) do not drown out short, high-value ones
(brand). Epochs are generated from ``(seed, epoch)`` alone, so a resumed run sees exactly the
examples an uninterrupted run would.

*Prefix-only targets*: a brand, category or product-type query ("samsung", "cases") names a
whole group of products, so its leaf target is an arbitrary pick among many siblings. Training
those leaves pushes every leaf distribution towards uniform and fights the memorisation of the
leaves that the specific views teach; by default such examples train only the docid prefix
(category and learned codes), which is the part they do carry information about.

*Teacher-ranked leaves*: a shopper who types "incipio" still gets ten leaves, and which ten
matters. With a lexical teacher (:func:`teacher_leaf_targets`: the merchant's BM25 index, the
weak-supervision recipe of Dehghani et al., SIGIR 2017), a pseudo-query that more than
``teacher_depth`` products share trains its leaf only on the products the teacher ranks in its
top ``teacher_depth``; the other products that share it train the prefix alone. The leaf
distribution of a group query then concentrates on the group's lexically best products
instead of spreading over all of them.

The teacher also answers *composed queries* (:func:`composed_queries`) that no single product
generates but shoppers type: an ancestor category with a descendant ("cell phones car
chargers"), a brand with any of its categories or its product type ("apple chargers"). Every
epoch adds ``teacher_rate`` examples per product drawn from the teacher's answers (shared and
composed queries alike): a query uniformly, then one of its ranked docids with the weight NDCG
gives that rank, 1/log2(rank + 1), full target. This is distillation of the lexical ranker
into the decoder over a query space built from the catalog alone.

That query space also holds the catalog's *vocabulary* (:func:`vocabulary_queries`):
every title word, adjacent pair of title words and brand + title word that at least
``vocabulary_min_products`` products share. Shoppers' short queries are mostly such words and
pairs; without them the decoder learns a ranking only for the wordings the generator produces
whole, and a title span like "purple" trains the leaf of whichever purple product drew it.
"""

from __future__ import annotations

import copy
import math
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

SPAN_KINDS = ("span", "subset")
#: Query kinds shared by whole groups of products ("samsung", "cases"): their leaf target is
#: arbitrary among many siblings, so by default only the prefix is trained on them.
AMBIGUOUS_KINDS = frozenset({"brand", "category", "brand_category", "product_type"})
_MARKS = re.compile(r"[®™©°]")
_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"[a-z0-9][a-z0-9'+.&-]*[a-z0-9+]|[a-z0-9]")
_ALPHA = re.compile(r"^[a-z][a-z-]{2,}$")
_MODEL_STOP = re.compile(r"\s(?:with|for|featuring|-|\()\s?", re.IGNORECASE)


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


STOPWORDS = _wordset(
    """a about after all also an and any are as at be because been being best both but by can
    could day do does each easy even every for from get gives go has have help helps here how
    if in into is it its just keep keeps let lets like make makes more most much new no not of
    off on one only or other our out over own per plus so some such than that the their them
    then there these they this those through to too up use used using very via was way we well
    what when where which while who will with without you your yours features feature design
    designed provides provide lets allows ensure ensures offers offer enjoy great perfect ideal
    quality included includes including compatible around against across along toward
    towards within whether inside onto upon among"""
)
#: Words that qualify a product type rather than name it ("Cell Phone Unlocked").
QUALIFIERS = _wordset("unlocked refurbished prepaid new certified pre-owned")


def clean(text: str) -> str:
    """Lowercase, NFKC, drop trademark marks, collapse whitespace (the query-side normal form)."""
    # marks first: NFKC would turn "™" into the letters "TM" ("InsigniaTM")
    text = unicodedata.normalize("NFKC", _MARKS.sub(" ", text or ""))
    text = text.replace("&", " ")
    return _SPACES.sub(" ", text).strip().lower()


def words(text: str) -> list[str]:
    return _WORD.findall(clean(text))


def singular(phrase: str) -> str:
    head, _, last = phrase.rpartition(" ")
    if last.endswith("ies") and len(last) > 4:
        last = last[:-3] + "y"
    elif last.endswith("s") and not last.endswith("ss") and len(last) > 3:
        last = last[:-1]
    return f"{head} {last}".strip()


def plural(phrase: str) -> str:
    head, _, last = phrase.rpartition(" ")
    if last.endswith("s") and not last.endswith("ss"):
        return phrase
    if last.endswith("y") and len(last) > 2 and last[-2] not in "aeiou":
        last = last[:-1] + "ies"
    elif last.endswith(("s", "x", "ch", "sh")):
        last += "es"
    elif last[-1:].isalpha():
        last += "s"
    return f"{head} {last}".strip()


@dataclass(frozen=True)
class ProductDoc:
    """The fields of one product that training reads (decoupled from the ORM for tests)."""

    product_id: int
    docid: str
    title: str
    brand: str = ""
    categories: tuple[str, ...] = ()  # names, root → leaf
    description: str = ""
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Example:
    text: str
    docid: str
    kind: str
    #: train only the docid's prefix (not its leaf): the text names many products alike
    prefix_only: bool = False


@dataclass(frozen=True)
class DataConfig:
    #: pseudo-queries per product per epoch. Few per epoch but many epochs: over a run every
    #: product still sees ~100 queries, while the indexing views (which carry what tells
    #: siblings apart) come round more often -- on a 600-product probe, 4/epoch memorised 84%
    #: of titles where 10/epoch reached 62% for the same number of training samples.
    queries_per_product: int = 4
    #: expected description chunks per product per epoch (fractional: drawn with that chance);
    #: chunks are ~8x longer than queries, so they are drawn sparingly
    description_rate: float = 0.3
    chunk_words: int = 40
    keywords_per_product: int = 6
    #: mask the leaf target of ambiguous query kinds (see AMBIGUOUS_KINDS); without a teacher
    ambiguous_prefix_only: bool = True
    #: with a lexical teacher, a pseudo-query shared by more products than this trains its leaf
    #: only on the teacher's top ``teacher_depth`` of them (0: no teacher)
    teacher_depth: int = 10
    #: teacher examples (query -> one of the teacher's ranked docids) per product per epoch;
    #: 4 with the vocabulary below (at rate 2 it gained nothing in the same training time)
    teacher_rate: float = 4.0
    #: the teacher also answers catalog words and word pairs that at least this many products
    #: share (:func:`vocabulary_queries`; 0: not). On BestBuy, 20-minute bases with 3 and
    #: ``teacher_rate`` 4 led the previous default (rate 2, no vocabulary) on three seeds by
    #: +0.033 NDCG@10, nearly all of it on wordings the teacher never answered (README)
    vocabulary_min_products: int = 3
    seed: int = 0


# --------------------------------------------------------------------------------------------
# Loading from the catalog
# --------------------------------------------------------------------------------------------


def load_products(merchant_slug: str) -> list[ProductDoc]:
    """Active products of a merchant that have a docid, ordered by id."""
    from catalog.models import Product

    rows = (
        Product.objects.filter(merchant__slug=merchant_slug, active=True, docid__isnull=False)
        .select_related("docid", "category")
        .order_by("pk")
    )
    return [product_doc(p) for p in rows.iterator(2000)]


def product_doc(product: Any) -> ProductDoc:
    names = tuple(product.category.full_name.split(" > ")) if product.category else ()
    attrs = product.attributes if isinstance(product.attributes, dict) else {}
    return ProductDoc(
        product_id=product.pk,
        docid=product.docid.path,
        title=product.title,
        brand=product.brand or "",
        categories=names,
        description=product.description or "",
        attributes=tuple((str(k), _attr_value(v)) for k, v in attrs.items()),
    )


def _attr_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return " ".join(map(str, value))
    return str(value)


def catalog_texts(products: Iterable[ProductDoc]) -> Iterable[str]:
    """Everything the encoder will read, for fitting the tokenizer."""
    for p in products:
        yield p.title
        yield p.brand
        yield " ".join(p.categories)
        yield p.description
        for key, value in p.attributes:
            yield f"{key} {value}"


# --------------------------------------------------------------------------------------------
# Title anatomy: "Brand - Main segment for Device - Variant"
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TitleParts:
    main: str  # the product segment, cleaned
    variant: str  # trailing colour/variant segment or ""
    product_type: str  # head noun phrase before " for ", e.g. "hard shell case"
    devices: tuple[str, ...]  # compatible devices named after " for "
    model: str  # main segment up to "with"/"for"/"(" -- the model name of a device


def split_title(title: str, brand: str) -> TitleParts:
    segments = [s.strip() for s in re.split(r"\s+-\s+", title) if s.strip()]
    if len(segments) > 1 and _same_brand(segments[0], brand):
        segments = segments[1:]
    main = segments[0] if segments else title
    variant = clean(segments[-1]) if len(segments) > 1 else ""
    product_part, _, device_part = main.partition(" for ")
    return TitleParts(
        main=clean(main),
        variant=variant if len(variant.split()) <= 4 else "",
        product_type=_product_type(product_part),
        devices=_devices(device_part),
        model=clean(_MODEL_STOP.split(main, maxsplit=1)[0]),
    )


def _same_brand(segment: str, brand: str) -> bool:
    a, b = clean(segment), clean(brand)
    return bool(a) and bool(b) and (a.startswith(b) or b.startswith(a))


def _product_type(product_part: str) -> str:
    """Trailing alphabetic words of the part before " for " (``Hard Shell Case``)."""
    tail: list[str] = []
    found = words(product_part)
    while found and found[-1] in QUALIFIERS:
        found.pop()
    for word in reversed(found):
        if not _ALPHA.match(word) or word in STOPWORDS:
            break
        tail.append(word)
        if len(tail) == 3:
            break
    return " ".join(reversed(tail))


def _devices(device_part: str) -> tuple[str, ...]:
    """``Apple iPhone 6 Plus and 6s Plus`` → (``apple iphone 6 plus``, ``apple iphone 6s plus``)."""
    chunks = [clean(c) for c in re.split(r",|\band\b|/|&", device_part) if c.strip()]
    devices: list[str] = []
    lead = ""
    for chunk in chunks:
        if not chunk:
            continue
        if chunk[0].isdigit() and lead:
            chunk = f"{lead} {chunk}"
        else:
            lead = " ".join(w for w in chunk.split() if not any(ch.isdigit() for ch in w))
            lead = " ".join(lead.split()[:2])
        devices.append(chunk)
    return tuple(devices[:4])


def category_names(categories: Sequence[str]) -> list[str]:
    """Cleaned leaf and parent names (``All Prepaid Phones`` → ``prepaid phones``)."""
    return _dedupe(map(category_name, categories[-2:][::-1]))


def category_name(name: str) -> str:
    """A category as shoppers type it: cleaned, without a leading "all"."""
    name = clean(name)
    return name[4:] if name.startswith("all ") else name


# --------------------------------------------------------------------------------------------
# Pseudo-query generation
# --------------------------------------------------------------------------------------------


class KeywordIndex:
    """Salient words per product by TF-IDF over title + description.

    A word must occur in at least two products (so it is a word shoppers could share, not a
    part number) and in at most ``max_df`` of them (so it still discriminates).
    """

    def __init__(self, products: Sequence[ProductDoc], max_df: float = 0.05) -> None:
        self.df: Counter[str] = Counter()
        for p in products:
            self.df.update(set(self._terms(p)))
        self.n = max(len(products), 1)
        self.max_count = max(2, int(max_df * self.n))

    @staticmethod
    def _terms(p: ProductDoc) -> list[str]:
        return [w for w in words(f"{p.title} {p.description}") if _useful(w)]

    def top(self, p: ProductDoc, k: int) -> list[str]:
        tf = Counter(self._terms(p))
        scored = [
            (count * math.log(self.n / self.df[w]), w)
            for w, count in tf.items()
            if 2 <= self.df[w] <= self.max_count
        ]
        return [w for _, w in sorted(scored, reverse=True)[:k]]


def _useful(word: str) -> bool:
    return bool(_ALPHA.match(word)) and word not in STOPWORDS


class QueryGenerator:
    """Candidate pseudo-queries of one product, grouped by kind (see the module docstring)."""

    def __init__(self, keywords: KeywordIndex, keywords_per_product: int = 6) -> None:
        self.keywords = keywords
        self.keywords_per_product = keywords_per_product

    def candidates(self, p: ProductDoc) -> dict[str, list[str]]:
        parts = split_title(p.title, p.brand)
        brand = clean(p.brand)
        ptype = parts.product_type
        head = ptype.split()[-1] if ptype else ""
        cats = category_names(p.categories)
        kinds: dict[str, list[str]] = {
            "brand": _brand_forms(brand),
            "category": cats + ([f"{cats[1]} {cats[0]}"] if len(cats) > 1 else []),
            "brand_category": [f"{brand} {c}" for c in cats[:1]]
            + ([f"{brand} {plural(head)}"] if head else []),
            "product_type": _type_forms(ptype),
            "device": _device_forms(parts.devices, head),
            "model": [parts.model] if 1 < len(parts.model.split()) <= 8 else [],
            "variant": _variant_forms(parts.variant, brand, head),
            "keyword": _keyword_forms(self._keywords(p, brand, ptype), brand, head),
            "attribute": _attribute_forms(p.attributes),
        }
        return {k: _dedupe(v) for k, v in kinds.items() if _dedupe(v)}

    def _keywords(self, p: ProductDoc, brand: str, ptype: str) -> list[str]:
        """Top keywords that say something the brand and product type do not already say."""
        known = set(brand.split()) | {singular(w) for w in ptype.split()}
        top = self.keywords.top(p, self.keywords_per_product + len(known))
        return [w for w in top if singular(w) not in known and w not in known][
            : self.keywords_per_product
        ]


def _dedupe(texts: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for t in texts:
        t = _SPACES.sub(" ", t).strip()
        if t:
            seen.setdefault(t, None)
    return list(seen)


def _brand_forms(brand: str) -> list[str]:
    parts = brand.split()
    return [brand, *(" ".join(parts[:n]) for n in (1, 2) if n < len(parts))] if brand else []


def _type_forms(ptype: str) -> list[str]:
    if not ptype:
        return []
    head = ptype.split()[-1]
    tail2 = " ".join(ptype.split()[-2:])
    return [head, plural(head), tail2, plural(tail2)]


def _device_forms(devices: Sequence[str], head: str) -> list[str]:
    out: list[str] = []
    for device in devices[:3]:
        short = " ".join(device.split()[1:]) if len(device.split()) > 2 else device
        out += [device, short]
        if head:
            out += [f"{short} {plural(head)}", f"{device} {head}"]
    return out


def _variant_forms(variant: str, brand: str, head: str) -> list[str]:
    if not variant:
        return []
    return [variant, f"{brand} {variant}", f"{variant} {head}"]


def _keyword_forms(keywords: Sequence[str], brand: str, head: str) -> list[str]:
    out: list[str] = []
    for kw in keywords:
        out += [kw, f"{kw} {plural(head)}" if head else kw, f"{brand} {kw}"]
    return out


def _attribute_forms(attributes: Sequence[tuple[str, str]]) -> list[str]:
    out: list[str] = []
    for key, value in attributes:
        value = clean(value)
        if value and len(value.split()) <= 5:
            out += [value, f"{clean(key)} {value}"]
    return out


def title_span(title_words: Sequence[str], rng: random.Random) -> str:
    """A random contiguous span of 1-5 words (prefers 2-3), never only stopwords."""
    if not title_words:
        return ""
    for _ in range(4):
        n = min(len(title_words), rng.choice((1, 2, 2, 3, 3, 4, 5)))
        start = rng.randrange(len(title_words) - n + 1)
        span = title_words[start : start + n]
        if any(w not in STOPWORDS for w in span):
            return " ".join(span)
    return " ".join(title_words[:2])


def title_subset(title_words: Sequence[str], rng: random.Random) -> str:
    """An ordered random subset of 2-4 of the title's content words."""
    content = [w for w in title_words if w not in STOPWORDS]
    if len(content) < 2:
        return " ".join(content)
    picked = sorted(rng.sample(range(len(content)), min(len(content), rng.randint(2, 4))))
    return " ".join(content[i] for i in picked)


# --------------------------------------------------------------------------------------------
# Epochs
# --------------------------------------------------------------------------------------------


@dataclass
class _Prepared:
    doc: ProductDoc
    title_words: list[str]
    fixed: list[Example]
    chunks: list[str]
    queries: dict[str, list[str]] = field(default_factory=dict)


#: A lexical teacher: (query text, depth) → the docids it ranks first, best first.
LeafTeacher = Callable[[str, int], Sequence[str]]


class TrainingData:
    """Balanced, reproducible epochs of :class:`Example` for a catalog.

    Untaught, the ambiguous query kinds train the prefix only (``ambiguous_prefix_only``);
    :meth:`taught_by` gives the same data with a teacher's answers instead.
    """

    def __init__(self, products: Sequence[ProductDoc], config: DataConfig | None = None) -> None:
        self.config = config or DataConfig()
        generator = QueryGenerator(KeywordIndex(products), self.config.keywords_per_product)
        self.items = [self._prepare(p, generator) for p in products]
        #: the teacher's ranked docids per query (see :func:`teacher_leaf_targets`); None: untaught
        self.leaf_targets: dict[str, tuple[str, ...]] | None = None
        self._answered: list[str] = []

    def taught_by(self, leaf_targets: Mapping[str, Sequence[str]]) -> TrainingData:
        """This data with a teacher's answers (the prepared products are shared, not rebuilt).

        A query the answers name trains its leaf only for the docids they list (the others train
        the prefix) and is drawn for teacher examples; other queries train every leaf.
        """
        taught = copy.copy(self)
        taught.leaf_targets = {text: tuple(docids) for text, docids in leaf_targets.items()}
        taught._answered = sorted(text for text, docids in taught.leaf_targets.items() if docids)
        return taught

    def _prepare(self, p: ProductDoc, generator: QueryGenerator) -> _Prepared:
        parts = split_title(p.title, p.brand)
        brand = clean(p.brand)
        leaf = category_names(p.categories)[:1]
        fixed = [Example(clean(p.title), p.docid, "title")]
        if brand and not parts.main.startswith(brand):
            fixed.append(Example(f"{brand} {parts.main}", p.docid, "title_brand"))
        else:
            fixed.append(Example(parts.main, p.docid, "title_brand"))
        if leaf or brand:
            fixed.append(Example(" ".join([*leaf, brand]).strip(), p.docid, "category_brand"))
        return _Prepared(
            doc=p,
            title_words=words(p.title),
            fixed=fixed,
            chunks=description_chunks(p.description, self.config.chunk_words),
            queries=generator.candidates(p),
        )

    def __len__(self) -> int:
        return len(self.items)

    def epoch(self, index: int) -> list[Example]:
        """All examples of epoch ``index``, shuffled; a pure function of (seed, index)."""
        rng = random.Random(f"{self.config.seed}:{index}")
        out: list[Example] = []
        for item in self.items:
            out.extend(item.fixed)
            if item.chunks and rng.random() < self.config.description_rate:
                out.append(Example(rng.choice(item.chunks), item.doc.docid, "description"))
            out.extend(self._queries(item, rng))
        out.extend(self._teacher_examples(rng))
        rng.shuffle(out)
        return out

    def _teacher_examples(self, rng: random.Random) -> list[Example]:
        """``teacher_rate`` per product: a taught query, then a docid weighted by its rank."""
        if not self._answered:
            return []
        out = []
        for _ in range(round(self.config.teacher_rate * len(self.items))):
            text = rng.choice(self._answered)
            ranked = self.leaf_targets[text]
            weights = [1 / math.log2(rank + 1) for rank in range(1, len(ranked) + 1)]
            out.append(Example(text, rng.choices(ranked, weights)[0], "teacher"))
        return out

    def _queries(self, item: _Prepared, rng: random.Random) -> list[Example]:
        kinds = [*item.queries, *SPAN_KINDS]
        out = []
        for _ in range(self.config.queries_per_product):
            kind = rng.choice(kinds)
            if kind == "span":
                text = title_span(item.title_words, rng)
            elif kind == "subset":
                text = title_subset(item.title_words, rng)
            else:
                text = rng.choice(item.queries[kind])
            if text:
                out.append(Example(text, item.doc.docid, kind, self._prefix_only(text, kind, item)))
        return out

    def _prefix_only(self, text: str, kind: str, item: _Prepared) -> bool:
        if self.leaf_targets is None:
            return self.config.ambiguous_prefix_only and kind in AMBIGUOUS_KINDS
        targets = self.leaf_targets.get(text)
        return targets is not None and item.doc.docid not in targets

    def shared_queries(self) -> dict[str, set[str]]:
        """Deterministic pseudo-queries → the docids of every product that generates them."""
        sharers: dict[str, set[str]] = {}
        for item in self.items:
            for texts in item.queries.values():
                for text in texts:
                    sharers.setdefault(text, set()).add(item.doc.docid)
        return sharers

    def title_views(self) -> list[Example]:
        """The ``title`` view of every product (for the memorisation check)."""
        return [item.fixed[0] for item in self.items]

    def query_pool(self) -> dict[str, list[str]]:
        """All deterministic pseudo-query candidates by docid (for inspection and replay)."""
        return {
            item.doc.docid: [q for texts in item.queries.values() for q in texts]
            for item in self.items
        }


def teacher_leaf_targets(data: TrainingData, teacher: LeafTeacher) -> dict[str, list[str]]:
    """The teacher's ranked docids for shared pseudo-queries, composed and vocabulary queries.

    A pseudo-query shared by more than ``teacher_depth`` products maps to the sharers the
    teacher ranks in its top ``teacher_depth``, best first (maybe none: then every sharer trains
    the prefix only); queries that few products share are left out, so all their sharers keep
    training the leaf. A composed or vocabulary query that no product generates maps to the
    teacher's top ``teacher_depth``.
    """
    depth = data.config.teacher_depth
    shared = data.shared_queries()
    targets: dict[str, list[str]] = {}
    for text, sharers in sorted(shared.items()):
        if len(sharers) > depth:
            # ask deeper: products that do not generate the query may rank among the first
            targets[text] = [d for d in teacher(text, 3 * depth) if d in sharers][:depth]
    docs = [item.doc for item in data.items]
    asked = composed_queries(docs) | vocabulary_queries(docs, data.config.vocabulary_min_products)
    for text in sorted(asked):
        if text not in shared:
            targets[text] = list(teacher(text, depth))[:depth]
    return targets


def composed_queries(products: Iterable[ProductDoc]) -> set[str]:
    """Queries built from catalog structure that no single product's pseudo-queries hold.

    An ancestor category with each of its descendants, and the brand with every category name
    and with its product type's head noun (plural). Shoppers shorten category names to their
    head noun ("cell phones chargers" for the leaf "car chargers"), so each name also stands in
    by its last word.
    """
    texts: set[str] = set()
    for p in products:
        names = [_name_forms(n) for n in _dedupe(map(category_name, p.categories))]
        for i, ancestor in enumerate(names):
            for descendant in names[i + 1 :]:
                texts.update(f"{a} {d}" for a in ancestor for d in descendant if a != d)
        brand = clean(p.brand)
        if brand:
            head = split_title(p.title, p.brand).product_type.split()[-1:]
            forms = [form for name in names for form in name]
            texts.update(f"{brand} {n}" for n in [*forms, *map(plural, head)] if n != brand)
    return texts


def vocabulary_queries(products: Sequence[ProductDoc], min_products: int) -> set[str]:
    """Short queries made of the catalog's own words that at least ``min_products`` share.

    Every content word of a title, every pair of adjacent title words, and the brand with each
    title word. Shoppers' short queries are mostly such words and pairs ("purple", "iphone
    16gb", "samsung usb"), and a product's own pseudo-queries or title spans do not teach which
    of the hundreds of products holding a word come first; the teacher's answers do, for the
    whole vocabulary rather than the wordings the generator happens to produce.
    """
    if min_products <= 0:
        return set()
    holders: Counter[str] = Counter()
    for p in products:
        title = words(p.title)
        brand = clean(p.brand)
        content = [w for w in title if w not in STOPWORDS]
        texts = set(content)
        texts.update(f"{a} {b}" for a, b in pairwise(title) if _content_pair(a, b))
        if brand:
            texts.update(f"{brand} {w}" for w in content if w not in brand.split())
        holders.update(texts)
    return {text for text, count in holders.items() if count >= min_products}


def _content_pair(a: str, b: str) -> bool:
    return a not in STOPWORDS and b not in STOPWORDS and a != b


def _name_forms(name: str) -> list[str]:
    """A category name and, for a longer one, its head noun ("car chargers" -> "chargers")."""
    head = name.split()[-1]
    return [name, head] if head != name else [name]


def description_chunks(description: str, chunk_words: int) -> list[str]:
    """Consecutive chunks of at most ``chunk_words`` words (≈ ≤ 64 tokens each)."""
    tokens = clean(description).split()
    return [
        " ".join(tokens[i : i + chunk_words])
        for i in range(0, len(tokens), chunk_words)
        if len(tokens[i : i + chunk_words]) >= 5
    ]
