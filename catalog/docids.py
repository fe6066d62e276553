"""Semantic docids: stable, hierarchical ids that a seq2seq model can learn to generate.

A docid is a ``/``-joined token path with three parts::

    cell-phones/cell-phone-accessories/cases/c3/c7/0012
    \\________ category path ________/ \\codes/ \\leaf/

* the merchant's category path (or ``uncategorized``): a coarse prefix shared by siblings, so the
  decoder can lean on the taxonomy it has already seen for other products;
* learned codes ``c<i>`` for categories too large to enumerate: hierarchical k-means over product
  text vectors splits them until every node holds at most ``max_leaf`` products, so similar
  products share long prefixes and no decoding step has to pick among thousands of leaves;
* a 4-digit leaf counter, unique within its parent prefix, that tells the siblings apart.

Docids are *stable*: a product's docid is written once and only ``assign(rebuild=True)`` (the
monthly re-derivation, done together with retraining the decoder) ever replaces it. New products
are routed down the *stored* scheme (vectoriser + centroids in a ``DocidScheme`` row) and take the
next unused leaf number under their parent ("reserved space"), so existing docids -- and what a
trained model has memorised about them -- never change between re-derivations.

The set of valid docids is a prefix tree (:class:`DocidTrie`) used to constrain decoding.
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import chain
from typing import Any

import numpy as np
from django.db import transaction
from tqdm import tqdm

from catalog.models import Docid, DocidScheme, Merchant, Product, RetiredDocid

SEPARATOR = "/"
#: Category token for products that have no category.
UNCATEGORIZED = "uncategorized"
#: Leaf codes are zero-padded to this width (they simply grow wider past 9999).
LEAF_WIDTH = 4
#: Version of the pickled codebook layout stored in ``DocidScheme.codebook``.
CODEBOOK_FORMAT = 1
BATCH_SIZE = 1000
#: Characters of description used for the text vector; the title/brand carry most of the signal
#: and capping keeps vectorising 10k products fast.
MAX_DESCRIPTION_CHARS = 2000

# A node of the learned tree: (category path, codes below it), e.g. ("phones/cases", ("c3",)).
# Keyed separately from the string prefix so that a category slug that happens to look like a
# code (``c3``) can never be mistaken for a learned node.
NodeKey = tuple[str, tuple[str, ...]]


@dataclass(frozen=True)
class SchemeParams:
    """Knobs for fitting a new scheme; stored in ``DocidScheme.params`` so a scheme is
    self-describing and incremental assignment never depends on code defaults changing."""

    k: int = 10
    max_leaf: int = 100
    max_depth: int = 4
    dims: int = 64
    random_state: int = 0
    max_features: int = 50_000


@dataclass(frozen=True)
class AssignReport:
    assigned: int  #: docids created by this call
    kept: int  #: targeted products that already had a docid (left untouched)
    scheme_version: int | None  #: scheme in force afterwards (None: merchant has none yet)


# --------------------------------------------------------------------------------------------
# Paths and the prefix tree
# --------------------------------------------------------------------------------------------


def tokens_of(path: str) -> list[str]:
    """Split a docid path into tokens (tolerates leading/trailing/double separators)."""
    return [t for t in path.split(SEPARATOR) if t]


def _as_tokens(path: str | Sequence[str]) -> list[str]:
    return tokens_of(path) if isinstance(path, str) else list(path)


class _Node:
    __slots__ = ("children", "end")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.end = False


class DocidTrie:
    """Prefix tree over docid token paths.

    Built for constrained decoding: :meth:`children` is a walk of ``len(prefix)`` dict lookups.
    A docid may in principle also be a proper prefix of another one (a category slug like
    ``0001`` under a category that also has direct leaves), so completeness is a flag on the node
    (:meth:`is_docid`) rather than "has no children".
    """

    END = "$"  # terminal marker in the JSON form; ``$`` never occurs in a slug or code

    __slots__ = ("_root", "_size")

    def __init__(self) -> None:
        self._root = _Node()
        self._size = 0

    @classmethod
    def from_paths(cls, paths: Iterable[str | Sequence[str]]) -> DocidTrie:
        trie = cls()
        for path in paths:
            trie.add(path)
        return trie

    def add(self, path: str | Sequence[str]) -> bool:
        """Insert a docid; returns False if it was already present."""
        tokens = _as_tokens(path)
        if not tokens:
            raise ValueError("a docid needs at least one token")
        node = self._root
        for tok in tokens:
            if not tok or SEPARATOR in tok or tok == self.END:
                raise ValueError(f"invalid docid token {tok!r}")
            child = node.children.get(tok)
            if child is None:
                child = node.children[tok] = _Node()
            node = child
        if node.end:
            return False
        node.end = True
        self._size += 1
        return True

    def _find(self, prefix: Sequence[str]) -> _Node | None:
        node: _Node | None = self._root
        for tok in prefix:
            node = node.children.get(tok)
            if node is None:
                return None
        return node

    def children(self, prefix: Sequence[str]) -> list[str]:
        """Valid next tokens after ``prefix`` (``[]`` if the prefix is unknown or complete)."""
        node = self._find(prefix)
        return list(node.children) if node is not None else []

    def is_docid(self, tokens: str | Sequence[str]) -> bool:
        node = self._find(_as_tokens(tokens))
        return node is not None and node.end

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, str | list | tuple):
            return False
        return self.is_docid(item)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[str]:
        """All docids as ``/``-joined paths, in insertion order of their tokens."""
        stack: list[tuple[_Node, tuple[str, ...]]] = [(self._root, ())]
        while stack:
            node, prefix = stack.pop()
            if node.end:
                yield SEPARATOR.join(prefix)
            for tok, child in reversed(node.children.items()):
                stack.append((child, (*prefix, tok)))

    # -- serialisation ------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """Nested dict ``{token: subtree}``; a complete docid's node carries ``{"$": 1}``."""

        def dump(node: _Node) -> dict[str, Any]:
            out: dict[str, Any] = {tok: dump(child) for tok, child in node.children.items()}
            if node.end:
                out[self.END] = 1
            return out

        return dump(self._root)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DocidTrie:
        trie = cls()

        def load(src: dict[str, Any]) -> _Node:
            node = _Node()
            for tok, sub in src.items():
                if tok == cls.END:
                    node.end = True
                    trie._size += 1
                else:
                    node.children[tok] = load(sub)
            return node

        trie._root = load(data)
        return trie

    # -- statistics ---------------------------------------------------------------------------

    def depth_stats(self) -> dict[str, Any]:
        """Docid depth (token count) and per-level branching of internal nodes.

        ``levels[i]`` describes the nodes reached after ``i`` tokens (level 0 is the root)
        that have children: how many there are and how many children they have.
        """
        depths: list[int] = []
        levels: dict[int, list[int]] = defaultdict(list)
        stack: list[tuple[_Node, int]] = [(self._root, 0)]
        while stack:
            node, depth = stack.pop()
            if node.end:
                depths.append(depth)
            if node.children:
                levels[depth].append(len(node.children))
                stack.extend((child, depth + 1) for child in node.children.values())
        return {
            "docids": self._size,
            "max_depth": max(depths, default=0),
            "mean_depth": float(np.mean(depths)) if depths else 0.0,
            "levels": [
                {
                    "level": level,
                    "nodes": len(fanouts),
                    "mean_branching": float(np.mean(fanouts)),
                    "max_branching": max(fanouts),
                }
                for level, fanouts in sorted(levels.items())
            ],
        }

    def leaf_parents(self) -> Counter[str]:
        """Number of docids directly under each prefix (i.e. the sibling-group sizes)."""
        counts: Counter[str] = Counter()
        stack: list[tuple[_Node, tuple[str, ...]]] = [(self._root, ())]
        while stack:
            node, prefix = stack.pop()
            for tok, child in node.children.items():
                if child.end:
                    counts[SEPARATOR.join(prefix)] += 1
                if child.children:
                    stack.append((child, (*prefix, tok)))
        return counts


def prefix_tree(merchant: Merchant) -> DocidTrie:
    """The merchant's current docids as a :class:`DocidTrie`."""
    paths = Docid.objects.filter(merchant=merchant).values_list("path", flat=True).iterator(2000)
    return DocidTrie.from_paths(paths)


# --------------------------------------------------------------------------------------------
# The learned part: text vectors, hierarchical k-means, routing
# --------------------------------------------------------------------------------------------


def _product_text(title: str, brand: str, description: str, attributes: Any) -> str:
    parts = [title or "", brand or ""]
    if isinstance(attributes, dict):
        for key, value in attributes.items():
            if isinstance(value, list | tuple):
                value = " ".join(map(str, value))
            parts.append(f"{key} {value}")
    parts.append((description or "")[:MAX_DESCRIPTION_CHARS])
    return " ".join(parts)


def _nearest(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (squared Euclidean) for each row.

    Used both when fitting and when routing new products, so a new product with the same text
    as a clustered one always lands in the same cluster.
    """
    scores = vectors @ centroids.T
    scores *= -2.0
    scores += np.einsum("ij,ij->i", centroids, centroids)[None, :]
    return scores.argmin(axis=1)


class _Codebook:
    """Unpickled ``DocidScheme.codebook``: vectoriser and per-node centroids."""

    def __init__(
        self, vectorizer: Any, svd: Any, centroids: dict[NodeKey, np.ndarray], dims: int
    ) -> None:
        self.vectorizer = vectorizer
        self.svd = svd
        self.centroids = centroids
        self.dims = dims

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        from sklearn.preprocessing import normalize

        x = self.vectorizer.transform(texts)
        dense = self.svd.transform(x) if self.svd is not None else x.toarray()
        return normalize(np.asarray(dense, dtype=np.float64))

    def route(self, categories: Sequence[str], texts: Sequence[str]) -> list[tuple[str, ...]]:
        """Codes for new products: descend from each category node to the nearest centroid
        while the node was split when the scheme was fitted."""
        codes: list[tuple[str, ...]] = [() for _ in categories]
        pending = [i for i, cat in enumerate(categories) if (cat, ()) in self.centroids]
        if not pending:
            return codes
        vectors = self.embed([texts[i] for i in pending])
        row_of = {i: r for r, i in enumerate(pending)}
        while pending:
            groups: dict[NodeKey, list[int]] = defaultdict(list)
            for i in pending:
                groups[(categories[i], codes[i])].append(i)
            pending = []
            for key, members in groups.items():
                labels = _nearest(vectors[[row_of[i] for i in members]], self.centroids[key])
                for i, label in zip(members, labels, strict=True):
                    codes[i] = (*codes[i], f"c{label}")
                    if (categories[i], codes[i]) in self.centroids:
                        pending.append(i)
        return codes

    def dumps(self) -> bytes:
        # A plain dict (not this class) so renaming this module never breaks stored schemes.
        return pickle.dumps(
            {
                "format": CODEBOOK_FORMAT,
                "vectorizer": self.vectorizer,
                "svd": self.svd,
                "centroids": self.centroids,
                "dims": self.dims,
            },
            protocol=pickle.HIGHEST_PROTOCOL,
        )

    @classmethod
    def loads(cls, blob: bytes) -> _Codebook:
        # Trusted input: written by this module into our own database.
        data = pickle.loads(blob)  # noqa: S301
        if data.get("format") != CODEBOOK_FORMAT:
            raise ValueError(f"unsupported docid codebook format {data.get('format')!r}")
        return cls(data["vectorizer"], data["svd"], data["centroids"], data["dims"])


# Schemes are immutable, so an unpickled codebook can be reused across calls (a product saved
# one at a time triggers one ``assign`` each). Keyed by content hash, not pk: pks can be reused
# after a rollback.
_CODEBOOK_CACHE: OrderedDict[str, _Codebook] = OrderedDict()
_CODEBOOK_CACHE_SIZE = 4


def _load_codebook(scheme: DocidScheme) -> _Codebook:
    blob = bytes(scheme.codebook)
    digest = hashlib.sha256(blob).hexdigest()
    book = _CODEBOOK_CACHE.get(digest)
    if book is None:
        book = _Codebook.loads(blob)
        _CODEBOOK_CACHE[digest] = book
        while len(_CODEBOOK_CACHE) > _CODEBOOK_CACHE_SIZE:
            _CODEBOOK_CACHE.popitem(last=False)
    else:
        _CODEBOOK_CACHE.move_to_end(digest)
    return book


def _fit(
    categories: Sequence[str], texts: Sequence[str], params: SchemeParams, progress: bool
) -> tuple[_Codebook, list[tuple[str, ...]]]:
    """Fit vectoriser + hierarchical k-means; return the codebook and each product's codes."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import TruncatedSVD
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    codes: list[tuple[str, ...]] = [() for _ in categories]
    by_category: dict[str, list[int]] = defaultdict(list)
    for i, cat in enumerate(categories):
        by_category[cat].append(i)
    large = sorted(cat for cat, members in by_category.items() if len(members) > params.max_leaf)
    empty = _Codebook(None, None, {}, 0)
    if not large:
        return empty, codes  # nothing to split: no need to learn anything

    vectorizer = TfidfVectorizer(
        lowercase=True,
        strip_accents="unicode",
        sublinear_tf=True,
        max_features=params.max_features,
        dtype=np.float32,
    )
    try:
        x = vectorizer.fit_transform(texts)
    except ValueError:  # empty vocabulary (no usable text at all)
        return empty, codes
    n_components = min(params.dims, x.shape[1] - 1, x.shape[0] - 1)
    svd = None
    if n_components >= 2:
        svd = TruncatedSVD(n_components=n_components, random_state=params.random_state).fit(x)
    book = _Codebook(vectorizer, svd, {}, n_components if svd is not None else x.shape[1])
    # transform() (not fit_transform) so fitted and routed products use the very same numbers.
    dense = svd.transform(x) if svd is not None else x.toarray()
    vectors = normalize(np.asarray(dense, dtype=np.float64))

    stack: list[tuple[str, tuple[str, ...], np.ndarray]] = [
        (cat, (), np.asarray(by_category[cat])) for cat in reversed(large)
    ]
    bar = tqdm(desc="docids: clustering", unit="node", disable=not progress, leave=False)
    with warnings.catch_warnings(), bar:
        warnings.simplefilter("ignore", ConvergenceWarning)  # duplicate texts -> fewer clusters
        while stack:
            cat, path, members = stack.pop()
            if len(members) <= params.max_leaf or len(path) >= params.max_depth:
                continue
            sub = vectors[members]
            n_clusters = min(params.k, len(np.unique(sub.round(6), axis=0)))
            if n_clusters < 2:
                continue  # identical vectors: no split can separate them
            km = KMeans(n_clusters=n_clusters, n_init=3, random_state=params.random_state)
            centroids = km.fit(sub).cluster_centers_.astype(np.float64)
            labels = _nearest(sub, centroids)
            if np.bincount(labels).max() == len(members):
                continue  # split made no progress
            book.centroids[(cat, path)] = centroids
            bar.update()
            for label in np.unique(labels):
                child = (*path, f"c{label}")
                child_members = members[labels == label]
                for i in child_members:
                    codes[i] = child
                stack.append((cat, child, child_members))
    return book, codes


# --------------------------------------------------------------------------------------------
# Assignment
# --------------------------------------------------------------------------------------------


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _product_rows(merchant: Merchant, ids: Sequence[int] | None) -> list[tuple]:
    fields = ("pk", "title", "brand", "description", "attributes", "category__path")
    qs = Product.objects.filter(merchant=merchant).order_by("pk").values_list(*fields)
    if ids is None:
        return list(qs)
    rows: list[tuple] = []
    for chunk in _chunks(sorted(ids), 500):  # stay under SQLite's bound-parameter limit
        rows.extend(qs.filter(pk__in=chunk))
    return rows


def _leaf_counters(merchant: Merchant) -> dict[str, int]:
    """Highest leaf number ever handed out under each parent prefix (deleted products'
    docids included: a leaf is never reused)."""
    counters: dict[str, int] = {}
    live = Docid.objects.filter(merchant=merchant).values_list("path", flat=True)
    retired = RetiredDocid.objects.filter(merchant=merchant).values_list("path", flat=True)
    for path in chain(live.iterator(2000), retired.iterator(2000)):
        parent, _, leaf = path.rpartition(SEPARATOR)
        if leaf.isdigit():
            counters[parent] = max(counters.get(parent, 0), int(leaf))
    return counters


def _latest_scheme(merchant: Merchant) -> DocidScheme | None:
    return DocidScheme.objects.filter(merchant=merchant).order_by("-version").first()


def assign(
    merchant: Merchant,
    *,
    product_ids: list[int] | None = None,
    rebuild: bool = False,
    progress: bool = False,
    params: SchemeParams | None = None,
) -> AssignReport:
    """Give every product of ``merchant`` (or of ``product_ids``) that lacks a docid one.

    Existing docids are never touched unless ``rebuild=True``, which deletes all of the
    merchant's docids and re-derives them under a freshly fitted scheme (new version). A scheme
    is also fitted, on all the merchant's products, when the merchant has none yet; otherwise
    new products are routed through the stored scheme and get the next free leaf under their
    parent. ``params`` only applies when a scheme is fitted. Safe inside or outside a
    transaction; concurrent calls for one merchant are serialised by a row lock (where the
    database supports it) so two calls cannot hand out the same leaf.
    """
    if rebuild and product_ids is not None:
        raise ValueError("rebuild re-derives every docid of the merchant; omit product_ids")
    params = params or SchemeParams()
    with transaction.atomic():
        list(Merchant.objects.select_for_update().filter(pk=merchant.pk).values_list("pk"))
        scheme = _latest_scheme(merchant)
        if rebuild:
            Docid.objects.filter(merchant=merchant).delete()
            RetiredDocid.objects.filter(merchant=merchant).delete()  # models are retrained

        fit = scheme is None or rebuild
        rows = _product_rows(merchant, None if fit else product_ids)
        if product_ids is not None and fit:
            wanted = set(product_ids)
            targets = [r for r in rows if r[0] in wanted]
        else:
            targets = rows
        has_docid: set[int] = set()
        if not rebuild:
            target_ids = [r[0] for r in targets]
            has_docid_qs = Docid.objects.filter(merchant=merchant)
            if product_ids is None:
                has_docid.update(has_docid_qs.values_list("product_id", flat=True))
            else:
                for chunk in _chunks(target_ids, 500):
                    has_docid.update(
                        has_docid_qs.filter(product_id__in=chunk).values_list(
                            "product_id", flat=True
                        )
                    )
        missing = [r for r in targets if r[0] not in has_docid]
        kept = len(targets) - len(missing)
        if not missing and not rebuild:
            return AssignReport(0, kept, scheme.version if scheme else None)

        def category(row: tuple) -> str:
            return row[5] or UNCATEGORIZED

        def text(row: tuple) -> str:
            return _product_text(row[1], row[2], row[3], row[4])

        if fit:
            book, all_codes = _fit(
                [category(r) for r in rows], [text(r) for r in rows], params, progress
            )
            code_of = {r[0]: c for r, c in zip(rows, all_codes, strict=True)}
            codes = [code_of[r[0]] for r in missing]
            scheme = DocidScheme.objects.create(
                merchant=merchant,
                version=(scheme.version + 1) if scheme else 1,
                params={
                    **asdict(params),
                    "dims": book.dims,
                    "split_nodes": len(book.centroids),
                    "fitted_products": len(rows),
                    "codebook_format": CODEBOOK_FORMAT,
                },
                codebook=book.dumps(),
            )
        else:
            assert scheme is not None
            if scheme.params.get("split_nodes", 0):
                book = _load_codebook(scheme)
                codes = book.route([category(r) for r in missing], [text(r) for r in missing])
            else:
                codes = [() for _ in missing]

        counters = _leaf_counters(merchant)
        new: list[Docid] = []
        for row, code in zip(missing, codes, strict=True):
            parent = SEPARATOR.join((category(row), *code))
            leaf = counters.get(parent, 0) + 1
            counters[parent] = leaf
            path = f"{parent}{SEPARATOR}{leaf:0{LEAF_WIDTH}d}"
            new.append(Docid(product_id=row[0], merchant=merchant, path=path, scheme=scheme))
        with tqdm(
            total=len(new), desc=f"docids: {merchant.slug}", unit="product", disable=not progress
        ) as bar:
            for batch in _chunks(new, BATCH_SIZE):
                Docid.objects.bulk_create(batch)
                bar.update(len(batch))
    return AssignReport(len(new), kept, scheme.version)


# --------------------------------------------------------------------------------------------
# Stats
# --------------------------------------------------------------------------------------------


def stats(merchant: Merchant) -> dict[str, Any]:
    """Shape of the merchant's docid tree: size, depth, branching per level, biggest sibling
    groups (the hardest last decoding step) and the scheme in force."""
    trie = prefix_tree(merchant)
    depth = trie.depth_stats()
    scheme = _latest_scheme(merchant)
    products = Product.objects.filter(merchant=merchant).count()
    return {
        "merchant": merchant.name,
        "products": products,
        "docids": len(trie),
        "without_docid": products - len(trie),
        "max_depth": depth["max_depth"],
        "mean_depth": depth["mean_depth"],
        "levels": depth["levels"],
        "largest_nodes": trie.leaf_parents().most_common(10),
        "split_nodes": scheme.params.get("split_nodes", 0) if scheme else 0,
        "scheme_version": scheme.version if scheme else None,
        "scheme_params": dict(scheme.params) if scheme else {},
    }
