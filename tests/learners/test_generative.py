"""Generative recall: catalog tokenizer, training data, T5 training/resume, constrained decoding."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from catalog.docids import DocidTrie
from learners.generative import decode
from learners.generative.data import (
    AMBIGUOUS_KINDS,
    DataConfig,
    Example,
    KeywordIndex,
    ProductDoc,
    QueryGenerator,
    TrainingData,
    clean,
    composed_queries,
    load_products,
    split_title,
    teacher_leaf_targets,
    vocabulary_queries,
)
from learners.generative.decode import (
    CompiledTrie,
    DecodeJob,
    GenerativeRecall,
    GenerativeRetriever,
    Hit,
    LeanT5,
    beam_search,
    beam_search_batch,
)
from learners.generative.model import (
    GenerativeModel,
    build_model,
    docid_logits,
    load_version,
)
from learners.generative.tokenizer import DocidVocab, docid_token, stem_words, train_tokenizer
from learners.generative.train import CHECKPOINT_DIR, LEAF_TARGETS_FILE, collate, train
from tests.tiny_models import TINY, tiny_train_config

BRANDS = ["OtterBox", "Speck", "Incipio", "Belkin", "Samsung"]
BRANDS_LOWER = [b.lower() for b in BRANDS]
ITEMS = [
    ("Defender Series Case", "cases", "Cell Phone Cases"),
    ("Car Charger", "chargers", "Car Chargers"),
    ("Screen Protector", "protectors", "Screen Protectors"),
    ("Wireless Charging Pad", "wireless", "Wireless Chargers"),
]
DEVICES = ["Apple® iPhone® 7", "Samsung Galaxy S8", "Google Pixel", "Apple® iPhone® 6s", "LG G6"]
COLOURS = ["Black", "Rose Gold", "Blue", "White", "Purple"]


def tiny_catalog() -> list[ProductDoc]:
    """20 products, 4 categories; one category is split by learned codes like the real scheme."""
    products = []
    for i in range(20):
        name, slug, category = ITEMS[i % 4]
        brand, device, colour = BRANDS[i % 5], DEVICES[(i // 4) % 5], COLOURS[(i * 3) % 5]
        code = f"/c{i % 2}" if slug == "cases" else ""
        products.append(
            ProductDoc(
                product_id=i + 1,
                docid=f"cell-phones/{slug}{code}/{i // 4 + 1:04d}",
                title=f"{brand} - {name} for {device} - {colour}",
                brand=brand,
                categories=("Cell Phones", category),
                description=f"Keep your {device} going with this {colour.lower()} {name.lower()} "
                f"from {brand}, made of durable materials for everyday use.",
            )
        )
    return products


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained once for the module (a few seconds)."""
    directory = tmp_path_factory.mktemp("generative") / "v1"
    metadata = train(
        tiny_catalog(), directory, model_config=TINY, config=tiny_train_config(), merchant="tiny"
    )
    return directory, metadata


# --------------------------------------------------------------------------------------------
# Tokenizer and data
# --------------------------------------------------------------------------------------------


def test_docid_components_are_single_tokens_and_text_never_becomes_one():
    products = tiny_catalog()
    tok = train_tokenizer((p.title for p in products), [p.docid for p in products], 300)
    vocab = DocidVocab.from_tokenizer(tok)
    assert tok.token_to_id(docid_token("cell-phones")) in vocab.token_ids
    assert {"c0", "c1", "0001", "0999", "cases"} <= set(vocab.components)
    assert vocab.decode(vocab.encode("cell-phones/cases/c1/0002")) == "cell-phones/cases/c1/0002"
    # a query that *spells* a code stays text, and trademark marks do not glue onto words
    ids = tok.encode("c1 InsigniaTM Apple® iPhone®").ids
    assert not set(ids) & set(vocab.token_ids[1:])
    assert tok.encode("Apple® iPhone®").tokens == tok.encode("apple iphone").tokens


def test_title_anatomy_yields_shopper_style_queries():
    parts = split_title("OtterBox - Defender Series Case for Apple® iPhone® 7 - Black", "OtterBox")
    assert parts.product_type == "defender series case"
    assert parts.devices == ("apple iphone 7",)
    assert parts.variant == "black"
    doc = tiny_catalog()[0]
    kinds = QueryGenerator(KeywordIndex(tiny_catalog())).candidates(doc)
    assert kinds["brand"] == ["otterbox"]
    assert "iphone 7 cases" in kinds["device"]
    assert "cell phone cases" in kinds["category"]


def test_epochs_are_balanced_and_reproducible():
    config = DataConfig(queries_per_product=7, description_rate=1.0, seed=3)
    data = TrainingData(tiny_catalog(), config)
    epoch = data.epoch(0)
    per_docid: dict[str, int] = {}
    for example in epoch:
        per_docid[example.docid] = per_docid.get(example.docid, 0) + 1
    assert set(per_docid.values()) == {3 + 1 + 7}  # fixed views + description + queries
    assert data.epoch(0) == epoch
    assert data.epoch(1) != epoch
    # group-naming queries train only the docid prefix; product-specific views train it all
    assert all(e.prefix_only == (e.kind in AMBIGUOUS_KINDS) for e in epoch)


def last_first(text: str, depth: int) -> list[str]:
    """A fake lexical teacher: the products whose text holds every query word, last id first."""
    found = [
        p.docid
        for p in reversed(tiny_catalog())
        if all(w in clean(f"{p.brand} {p.title} {p.categories[-1]}") for w in text.split())
    ]
    return found[:depth]


def test_teacher_picks_which_products_a_shared_query_trains_the_leaf_of():
    config = DataConfig(queries_per_product=7, teacher_depth=2, seed=3)
    data = TrainingData(tiny_catalog(), config)
    targets = teacher_leaf_targets(data, last_first)
    otterbox = [p.docid for p in tiny_catalog() if p.brand == "OtterBox"]
    assert targets["otterbox"] == otterbox[::-1][:2]  # the teacher's two best sharers
    catalog = tiny_catalog()
    assert targets["cell phone cases"] == [catalog[16].docid, catalog[12].docid]  # 5 sharers
    shared = data.shared_queries()
    assert all(len(shared[text]) > 2 for text in targets if text in shared)
    composed = composed_queries(catalog) - set(shared)
    assert "belkin cell phones" in composed  # brand + root category: no product generates it
    assert all(targets[text] == last_first(text, 2) for text in composed)

    taught = data.taught_by(targets)
    seen = {(e.text, e.docid, e.prefix_only) for i in range(5) for e in taught.epoch(i)}
    assert ("otterbox", otterbox[-1], False) in seen
    assert ("otterbox", otterbox[0], True) in seen
    # a query at most two products generate trains their leaves, whatever its kind
    assert not any(prefix_only for text, _, prefix_only in seen if text not in targets)
    assert any(kind == "brand" for kind in {e.kind for e in taught.epoch(0)})


def test_teacher_examples_draw_the_teachers_ranked_answers_top_first():
    config = DataConfig(queries_per_product=7, teacher_depth=2, teacher_rate=1.5, seed=3)
    catalog = tiny_catalog()
    untaught = TrainingData(catalog, config)
    targets = teacher_leaf_targets(untaught, last_first)
    taught = untaught.taught_by(targets)
    drawn = [e for i in range(40) for e in taught.epoch(i) if e.kind == "teacher"]

    assert len(drawn) == 40 * 30  # 1.5 per product per epoch
    assert all(e.docid in targets[e.text] and not e.prefix_only for e in drawn)
    answered = {text for text, docids in targets.items() if docids}
    assert {e.text for e in drawn} == answered  # every answered query comes round
    ranks = Counter(targets[e.text].index(e.docid) for e in drawn if len(targets[e.text]) == 2)
    assert 1.3 < ranks[0] / ranks[1] < 1.9  # weights 1 : 1/log2(3) = 1.58
    assert not any(e.kind == "teacher" for e in untaught.epoch(0))


def test_the_teacher_also_answers_the_catalogs_shared_words_and_word_pairs():
    catalog = tiny_catalog()
    vocabulary = vocabulary_queries(catalog, min_products=3)
    # title words, adjacent title words and brand + title word, when 3 products hold them
    assert {"charger", "car charger", "lg g6", "belkin purple"} <= vocabulary
    assert "for" not in vocabulary and "charger for" not in vocabulary  # stopwords: no
    assert "belkin charger" not in vocabulary and "7 black" not in vocabulary  # held by 1-2
    held = Counter(t for p in catalog for t in vocabulary_queries([p], 1))
    assert vocabulary == {text for text, count in held.items() if count >= 3}
    assert vocabulary_queries(catalog, min_products=0) == set()

    data = TrainingData(catalog, DataConfig(teacher_depth=2, vocabulary_min_products=3))
    targets = teacher_leaf_targets(data, last_first)
    for text in ("wireless charging", "incipio rose"):  # no product generates these
        assert text not in data.shared_queries()
        assert targets[text] == last_first(text, 2)
    switched_off = DataConfig(teacher_depth=2, vocabulary_min_products=0)
    assert "wireless charging" not in teacher_leaf_targets(
        TrainingData(catalog, switched_off), last_first
    )


def test_prefix_only_examples_do_not_train_the_leaf():
    products = tiny_catalog()
    bundle = random_bundle([p.docid for p in products])
    docid = products[0].docid
    batch = collate(
        [Example("otterbox", docid, "brand", True), Example("x", docid, "title")], bundle
    )
    depth = len(docid.split("/"))
    assert batch.labels[0, : depth - 1].ge(0).all()
    assert batch.labels[0, depth - 1 :].eq(-100).all()
    assert batch.labels[1, : depth + 1].ge(0).all()  # leaf and EOS trained


@pytest.mark.django_db
def test_load_products_reads_docids_and_category_names(small_catalog):
    docs = load_products(small_catalog["phones"].slug)
    assert len(docs) == 4
    case = next(d for d in docs if "OtterBox" in d.title)
    assert case.categories == ("Cell Phones", "Accessories", "Cases")
    assert case.docid.startswith("cell-phones/accessories/cases/")


# --------------------------------------------------------------------------------------------
# Training, memorisation, version directory, resume
# --------------------------------------------------------------------------------------------


def test_tiny_catalog_memorises_and_retrieves_by_title(trained):
    directory, metadata = trained
    assert metadata["metrics"]["memorisation_exact_match"] >= 0.9
    assert metadata["metrics"]["memorisation_sample"] == len(tiny_catalog())  # every title
    retriever = GenerativeRetriever.load(directory)
    for product in tiny_catalog()[:8]:
        hits = retriever.search(product.title, k=3)
        assert hits[0].docid == product.docid
        assert hits[0].score > hits[-1].score


def test_stem_words_spells_text_as_the_inverted_index_does():
    """Held to the index itself: the terms tantivy's ``en_stem`` field makes of the same text
    (read from the parsed query), since ``stem_words`` rebuilds that analyser by hand."""
    import re

    import tantivy

    from ranking.inverted import PRIMARY_FIELD, build_schema

    index = tantivy.Index(build_schema())
    texts = ["Flowers, Textured®", "Apple® iPhone® 6s Chargers", "Wireless charging-pads (2-pack)"]
    for text in texts:
        query = repr(index.parse_query(text, [PRIMARY_FIELD]))
        assert stem_words(text).split() == re.findall(r'type=Str, "([^"]*)"', query)
    assert stem_words("Flowers, Textured®") == "flower textur"
    assert stem_words("Apple® iPhone® 6s Chargers") == "appl iphon 6s charger"


def test_a_stemmed_input_model_reads_every_form_of_a_word_alike(trained, tmp_path):
    stemmed = dataclasses.replace(TINY, stem_input=True)
    train(tiny_catalog(), tmp_path / "v", model_config=stemmed, config=tiny_train_config())
    retriever = GenerativeRetriever.load(tmp_path / "v")
    plain = GenerativeRetriever.load(trained[0])

    assert retriever.bundle.metadata["model_config"]["stem_input"] is True
    assert "chargers" not in retriever.bundle.tokenizer.get_vocab()  # BPE learnt stems
    assert retriever.encode("Car Chargers") == retriever.encode("car charger")
    assert plain.encode("Car Chargers") != plain.encode("car charger")
    for product in tiny_catalog()[:8]:
        assert retriever.search(product.title, k=3)[0].docid == product.docid


def test_version_directory_round_trips(trained):
    directory, metadata = trained
    bundle = load_version(directory)
    assert not (directory / CHECKPOINT_DIR).exists()
    assert bundle.metadata["parameters"] == metadata["parameters"]
    assert sorted(bundle.docids) == sorted(p.docid for p in tiny_catalog())
    assert bundle.metadata["training"]["step"] == 150
    assert bundle.model.config.d_model == TINY.d_model


def test_bf16_training_multiplies_in_bf16_and_saves_a_float32_model(tmp_path):
    product_dtypes: Counter[torch.dtype] = Counter()

    def record(module, inputs, output):
        if isinstance(module, torch.nn.Linear) and module.training:
            product_dtypes[output.dtype] += 1

    hook = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        metadata = train(
            tiny_catalog(),
            tmp_path / "v",
            model_config=TINY,
            config=tiny_train_config(precision="bf16"),
        )
    finally:
        hook.remove()

    assert set(product_dtypes) == {torch.bfloat16}
    assert metadata["training"]["precision"] == "bf16"
    assert metadata["metrics"]["memorisation_exact_match"] >= 0.9
    weights = load_file(tmp_path / "v" / "model.safetensors")
    assert {w.dtype for w in weights.values()} == {torch.float32}


class Interrupted(Exception):
    pass


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    config = tiny_train_config(max_steps=12, checkpoint_steps=4, memorisation_sample=2)
    kwargs = {"model_config": TINY, "config": config}

    def crash(state):
        if state.step == 10:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(tiny_catalog(), tmp_path / "resumed", callback=crash, **kwargs)
    assert (tmp_path / "resumed" / CHECKPOINT_DIR / "state.json").exists()
    resumed = train(tiny_catalog(), tmp_path / "resumed", **kwargs)
    straight = train(tiny_catalog(), tmp_path / "straight", **kwargs)

    assert resumed["training"]["resumed_from_step"] == 8
    assert resumed["training"]["step"] == straight["training"]["step"] == 12
    a = load_file(tmp_path / "resumed" / "model.safetensors")
    b = load_file(tmp_path / "straight" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_a_resumed_run_reuses_the_teachers_answers(tmp_path):
    config = tiny_train_config(max_steps=12, checkpoint_steps=4, memorisation_sample=2)
    kwargs = {"model_config": TINY, "config": config, "data_config": DataConfig(teacher_depth=2)}

    def crash(state):
        if state.step == 10:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(tiny_catalog(), tmp_path / "resumed", callback=crash, teacher=last_first, **kwargs)
    resumed = train(tiny_catalog(), tmp_path / "resumed", **kwargs)  # no teacher given now
    straight = train(tiny_catalog(), tmp_path / "straight", teacher=last_first, **kwargs)

    assert resumed["teacher_queries"] == straight["teacher_queries"] > 0
    saved = (tmp_path / "resumed" / LEAF_TARGETS_FILE).read_text()
    assert saved == (tmp_path / "straight" / LEAF_TARGETS_FILE).read_text()
    a = load_file(tmp_path / "resumed" / "model.safetensors")
    b = load_file(tmp_path / "straight" / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_a_teacher_moves_its_picks_up_the_beam_of_a_group_query(tmp_path):
    config = DataConfig(queries_per_product=8, teacher_depth=1)
    picks = {b: next(d for d in last_first(b, 20) if d in brand_docids(b)) for b in BRANDS_LOWER}
    ranks = {}
    for name, teacher in (("taught", last_first), ("untaught", None)):
        directory = tmp_path / name
        train(
            tiny_catalog(),
            directory,
            model_config=TINY,
            data_config=config,
            config=tiny_train_config(),
            teacher=teacher,
        )
        retriever = GenerativeRetriever.load(directory)
        ranks[name] = [beam_rank(retriever, brand, picks[brand]) for brand in BRANDS_LOWER]
    assert sum(ranks["taught"]) < sum(ranks["untaught"]), ranks
    in_top_5 = {name: sum(rank <= 5 for rank in found) for name, found in ranks.items()}
    assert in_top_5["taught"] >= in_top_5["untaught"] + 2, ranks  # measured: 4 vs 1 of 5


def beam_rank(retriever: GenerativeRetriever, query: str, docid: str, beams: int = 10) -> int:
    """The 1-based rank of ``docid`` in the beam for ``query`` (beams + 1 when absent)."""
    found = [hit.docid for hit in retriever.search(query, k=beams, beam=beams)]
    return found.index(docid) + 1 if docid in found else beams + 1


def brand_docids(brand: str) -> set[str]:
    return {p.docid for p in tiny_catalog() if p.brand.lower() == brand}


@pytest.mark.django_db
def test_recall_path_maps_decoded_docids_to_the_merchants_products(small_catalog, tmp_path):
    from catalog.models import Product
    from ranking.recall import RecallRequest

    slug = small_catalog["phones"].slug
    train(load_products(slug), tmp_path / "v", model_config=TINY, config=tiny_train_config())
    path = GenerativeRecall(GenerativeRetriever.load(tmp_path / "v"), slug, beam=3)
    title = "Speck Presidio Case for Samsung Galaxy S8"
    result = path.recall(RecallRequest(query=title, terms=[], limit=10, merchant=slug))
    assert result.candidates[0].product_id == Product.objects.get(sku="P2").pk
    assert [c.rank for c in result.candidates] == list(range(1, len(result.candidates) + 1))
    assert all(c.path == "generative" for c in result.candidates)
    other = RecallRequest(query=title, terms=[], limit=10, merchant="grocer")
    assert path.recall(other).candidates == []


# --------------------------------------------------------------------------------------------
# Constrained decoding
# --------------------------------------------------------------------------------------------


def random_bundle(paths: list[str], seed: int = 0) -> GenerativeModel:
    tok = train_tokenizer(["red case", "blue charger", "c1 phone"], paths, 100)
    vocab = DocidVocab.from_tokenizer(tok)
    model = build_model(TINY, tok.get_vocab_size(), seed=seed).eval()
    return GenerativeModel(model, tok, vocab, paths, {})


def test_lean_decoder_matches_the_full_t5_forward():
    paths = ["cell-phones/cases/c0/0001", "cell-phones/cases/c1/0002", "cell-phones/chargers/0001"]
    bundle = random_bundle(paths, seed=1)
    lean = LeanT5(bundle.model, bundle.vocab)
    source = torch.tensor([bundle.tokenizer.encode("red case").ids])
    target = bundle.vocab.encode(paths[1])
    decoder_in = torch.tensor([[0, *bundle.vocab.to_tokens(target[:-1])]])
    with torch.inference_mode():
        full = docid_logits(
            bundle.model,
            source,
            torch.ones_like(source),
            decoder_in,
            torch.tensor(bundle.vocab.token_ids),
        )[0]
        cross = lean.encode(source)
        logits, cache = lean.step(torch.tensor([target[:2]]), None, cross, first=True)
        assert torch.allclose(logits[0], full[2], atol=1e-4)  # multi-token first step
        for pos in range(2, len(target) - 1):
            logits, cache = lean.step(torch.tensor([[target[pos]]]), cache, cross)
            assert torch.allclose(logits[0], full[pos + 1], atol=1e-4)
        some = torch.tensor([target[2], 0, target[1]])  # a subset, in any order
        logits, _ = lean.step(torch.tensor([target[:2]]), None, cross, first=True, classes=some)
        assert torch.allclose(logits[0], full[2][some], atol=1e-4)


def test_beams_sharing_one_querys_encoder_row_each_get_the_full_t5_forward():
    """Several beams of one query attend to its single encoder row (laid out as one row's
    positions, not broadcast): each beam's logits must still be its own full forward."""
    paths = ["cell-phones/cases/c0/0001", "cell-phones/cases/c1/0002", "cell-phones/chargers/0001"]
    bundle = random_bundle(paths, seed=4)
    lean = LeanT5(bundle.model, bundle.vocab)
    source = torch.tensor([bundle.tokenizer.encode("blue charger").ids])
    targets = [bundle.vocab.encode(path) for path in paths]
    classes = torch.tensor(bundle.vocab.token_ids)
    with torch.inference_mode():
        cross = lean.encode(source)
        beams = torch.tensor([t[:3] for t in targets])  # three beams, three different prefixes
        logits, cache = lean.step(beams[:, :2], None, cross, first=True)
        logits, _ = lean.step(beams[:, 2:], cache, cross)
        for row, target in enumerate(targets):
            decoder_in = torch.tensor([[0, *bundle.vocab.to_tokens(target[:3])]])
            full = docid_logits(bundle.model, source, torch.ones_like(source), decoder_in, classes)
            assert torch.allclose(logits[row], full[0][3], atol=1e-4)


def test_lean_decoder_calls_lora_layers_unmerged_as_it_would_the_merged_model():
    """Adapter training's probe checks decode a PEFT-wrapped model: its LoRA layers must be
    called as modules, not resolved to their base weights like plain ``Linear`` layers."""
    import copy

    from peft import LoraConfig, get_peft_model

    paths = ["cell-phones/cases/c0/0001", "cell-phones/cases/c1/0002", "cell-phones/chargers/0001"]
    bundle = random_bundle(paths, seed=3)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q", "v", "wi"], lora_dropout=0.0)
    wrapped = get_peft_model(copy.deepcopy(bundle.model), config)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, weight in wrapped.named_parameters():
            if "lora_B" in name:  # PEFT starts B at zero: make the adapter change something
                weight.normal_(0.0, 0.5)
    merged = copy.deepcopy(wrapped).merge_and_unload().eval()
    source = torch.tensor([bundle.tokenizer.encode("red case").ids])
    target = torch.tensor([bundle.vocab.encode(paths[1])[:2]])
    with torch.inference_mode():
        logits = {}
        for name, model in (
            ("base", bundle.model),
            ("wrapped", wrapped.eval()),
            ("merged", merged),
        ):
            lean = LeanT5(model.base_model.model if name == "wrapped" else model, bundle.vocab)
            logits[name], _ = lean.step(target, None, lean.encode(source), first=True)
    assert torch.allclose(logits["wrapped"], logits["merged"], atol=1e-4)
    assert not torch.allclose(logits["wrapped"], logits["base"], atol=1e-2)


def test_exhaustive_beam_is_a_probability_distribution_over_the_trie():
    paths = [f"a/{c}/{i:04d}" for c in ("c0", "c1") for i in range(1, 4)] + ["b/0001", "b/x/0001"]
    bundle = random_bundle(paths, seed=2)
    lean = LeanT5(bundle.model, bundle.vocab)
    trie = CompiledTrie(paths, bundle.vocab)
    hits = beam_search(lean, trie, bundle.tokenizer.encode("blue").ids, beam=len(paths))
    assert sorted(h.docid for h in hits) == sorted(paths)  # "b/0001" also prefixes "b/x/0001"
    assert math.isclose(sum(math.exp(h.score) for h in hits), 1.0, rel_tol=1e-4)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


component = st.sampled_from(["a", "b", "cases", "c0", "c1", "c2", "x-y"])
docid_path = st.builds(
    lambda parts, leaf: "/".join([*parts, f"{leaf:04d}"]),
    st.lists(component, min_size=0, max_size=4),
    st.integers(min_value=1, max_value=30),
)


@settings(max_examples=40, deadline=None)
@given(paths=st.lists(docid_path, min_size=1, max_size=25, unique=True))
def test_a_nodes_tail_completes_its_only_docid_and_no_other_node_has_one(paths):
    """Tails are precomputed once per trie: each must be exactly the rest of the one docid
    below its node, and None wherever more than one docid lies below."""
    vocab = DocidVocab.from_tokenizer(train_tokenizer(["red case"], paths, 100))
    trie = CompiledTrie(paths, vocab)

    def docids_below(node: int, prefix: list[int]) -> list[list[int]]:
        here = [prefix] if trie.terminal[node] else []
        return here + [
            docid
            for cls_id, child in trie.children[node].items()
            for docid in docids_below(child, [*prefix, cls_id])
        ]

    def visit(node: int, prefix: list[int]) -> None:
        below, tail = docids_below(node, prefix), trie.tail(node)
        if len(below) == 1:
            assert tail is not None and [*prefix, *tail] == below[0]
        else:
            assert tail is None
        for cls_id, child in trie.children[node].items():
            visit(child, [*prefix, cls_id])

    visit(0, [])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    paths=st.lists(docid_path, min_size=1, max_size=25, unique=True),
    beam=st.integers(min_value=1, max_value=12),
    seed=st.integers(min_value=0, max_value=3),
    query=st.text(alphabet="abcdefghij klm", max_size=20),
)
def test_constrained_decoding_only_yields_valid_docids(paths, beam, seed, query):
    bundle = random_bundle(paths, seed=seed)
    retriever = GenerativeRetriever(bundle)
    reference = DocidTrie.from_paths(paths)
    hits = retriever.search(query, k=beam, beam=beam)
    assert 1 <= len(hits) <= beam
    assert all(reference.is_docid(h.docid) for h in hits)
    assert len({h.docid for h in hits}) == len(hits)
    assert all(h.score <= 1e-6 for h in hits)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    paths=st.lists(docid_path, min_size=1, max_size=25, unique=True),
    pick=st.integers(min_value=0, max_value=24),
    beam=st.integers(min_value=1, max_value=8),
)
def test_prefix_constrained_decoding_stays_under_the_prefix(paths, pick, beam):
    path = paths[pick % len(paths)]
    prefix = path.rsplit("/", 1)[0]
    retriever = GenerativeRetriever(random_bundle(paths, seed=1))
    hits = retriever.search("red case", k=beam, beam=beam, prefix=prefix)
    under = [p for p in paths if p.startswith(f"{prefix}/")]
    assert {h.docid for h in hits} <= set(under)
    assert len(hits) == min(beam, len(under))


def assert_same_ranking(got: list[Hit], alone: list[Hit]) -> None:
    """Equal up to float rounding: same scores, same docids except where two scores tie."""
    assert len(got) == len(alone)
    for i, (a, b) in enumerate(zip(got, alone, strict=True)):
        assert math.isclose(a.score, b.score, abs_tol=1e-4)
        tied = any(abs(b.score - o.score) < 1e-4 for j, o in enumerate(alone) if j != i)
        assert a.docid == b.docid or tied


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    paths=st.lists(docid_path, min_size=2, max_size=25, unique=True),
    jobs=st.lists(
        st.tuples(
            st.text(alphabet="abcdefghij klm", max_size=30),  # queries of different lengths
            st.sets(st.integers(min_value=0, max_value=24), min_size=1, max_size=25),
            st.integers(min_value=1, max_value=12),
        ),
        min_size=1,
        max_size=6,
    ),
    beam=st.integers(min_value=1, max_value=10),
)
def test_a_batched_beam_search_gives_each_query_what_it_gets_alone(paths, jobs, beam):
    """Queries of different lengths (padding), each in its own trie (a category's subtree,
    a single docid) and with its own k, decoded together."""
    bundle = random_bundle(paths, seed=3)
    lean = LeanT5(bundle.model, bundle.vocab)
    batch = [
        DecodeJob(
            CompiledTrie([paths[i % len(paths)] for i in picks], bundle.vocab),
            bundle.tokenizer.encode(query).ids or [1],
            min(k, beam),
        )
        for query, picks, k in jobs
    ]
    together = beam_search_batch(lean, batch, beam)
    for job, got in zip(batch, together, strict=True):
        assert_same_ranking(got, beam_search(lean, job.trie, job.input_ids, beam, job.k))


def test_search_many_decodes_in_batches_what_search_finds_one_by_one(monkeypatch):
    paths = [f"{c}/{d}/{i:04d}" for c in ("a", "b") for d in ("c0", "c1", "x-y") for i in (1, 2)]
    retriever = GenerativeRetriever(random_bundle(paths, seed=4))
    queries = ["red case", "blue", "c1 phone charger for the car", "", "a", "red case", "m"]
    monkeypatch.setattr(decode, "BATCH", 3)  # three batches, the last one short
    many = retriever.search_many(queries, k=4, beam=6)
    assert len(many) == len(queries)
    for query, got in zip(queries, many, strict=True):
        assert_same_ranking(got, retriever.search(query, k=4, beam=6))
    assert_same_ranking(many[5], many[0])  # the same query in another batch


# --------------------------------------------------------------------------------------------
# Base model into the registry (manage.py train_base_model, monthly rebuild)
# --------------------------------------------------------------------------------------------


def test_train_base_model_registers_and_activates_a_memorised_model(small_catalog):
    from learners import registry
    from learners.generative.base import train_base_model

    report = train_base_model(
        "phone-shop", config=tiny_train_config(memorisation_sample=4), model_config=TINY
    )
    assert report.status == "active" and report.decision["passed"]
    assert report.metrics["memorisation_exact_match"] >= 0.9
    assert report.metrics["products"] == 4 and report.metrics["steps"] == 150
    version = registry.active("base", "phone-shop")
    assert version.name == report.version
    assert load_version(version.directory).metadata["merchant"] == "phone-shop"


def test_a_model_below_the_memorisation_bar_stays_a_candidate(small_catalog, settings):
    from learners import registry
    from learners.generative.base import train_base_model

    settings.GENERATIVE_MIN_EXACT_MATCH = 1.01
    report = train_base_model("grocer", config=tiny_train_config(max_steps=5), model_config=TINY)
    assert report.status == "candidate" and not report.decision["passed"]
    assert "memorised only" in report.decision["reason"]
    assert registry.active("base", "grocer") is None


def test_bootstrap_serves_a_first_model_below_the_bar_but_never_replaces_one(
    small_catalog, settings
):
    from learners import registry
    from learners.generative.base import train_base_model

    settings.GENERATIVE_MIN_EXACT_MATCH = 1.01
    config = tiny_train_config(max_steps=5)
    first = train_base_model("grocer", config=config, model_config=TINY, bootstrap=True)
    assert first.status == "active" and first.decision["bootstrap"]
    assert "first model of grocer, served although memorised only" in first.decision["reason"]

    second = train_base_model("grocer", config=config, model_config=TINY, bootstrap=True)
    assert second.status == "candidate" and not second.decision["passed"]
    assert registry.active("base", "grocer").name == first.version


def test_train_base_model_resumes_an_interrupted_run(small_catalog):
    from learners import registry
    from learners.generative.base import train_base_model

    config = tiny_train_config(max_steps=12, checkpoint_steps=4, memorisation_sample=2)
    name, path = registry.new_version_dir("base", "phone-shop")

    def crash(state):
        if state.step == 10:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(load_products("phone-shop"), path, model_config=TINY, config=config, callback=crash)
    report = train_base_model("phone-shop", config=config, model_config=TINY, resume=True)
    assert report.resumed and report.version == name
    assert load_version(path).metadata["training"]["resumed_from_step"] == 8
    fresh = train_base_model("phone-shop", config=config, model_config=TINY, resume=True)
    assert not fresh.resumed and fresh.version != name  # nothing left to resume


def test_command_if_missing_skips_merchants_with_a_finished_model(small_catalog):
    from io import StringIO

    from django.core.management import CommandError, call_command

    from learners import registry

    name, path = registry.new_version_dir("base", "phone-shop")
    registry.register("base", name, path, merchant="phone-shop", status="active")
    name, path = registry.new_version_dir("base", "grocer")
    registry.register("base", name, path, merchant="grocer")  # a candidate below the gate
    out = StringIO()
    call_command("train_base_model", "--if-missing", stdout=out)
    assert "phone-shop: active base model exists, skipped" in out.getvalue()
    assert f"grocer: skipped, candidate {name} did not pass" in out.getvalue()
    with pytest.raises(CommandError, match="unknown merchant"):
        call_command("train_base_model", "--merchant", "nope")


def test_command_trains_a_stemmed_model_with_the_seed_it_is_given(small_catalog):
    """``--stem-input`` and ``--seed`` reach the model the command registers (the default-size
    model, a few steps: the flags are what is checked, not memorisation)."""
    from io import StringIO

    from django.core.management import call_command

    from learners import registry

    out = StringIO()
    args = ["--merchant", "grocer", "--epochs", "0.5", "--threads", "1", "--no-activate"]
    call_command("train_base_model", *args, "--stem-input", "--seed", "7", stdout=out)
    (version,) = registry.versions("base", "grocer")
    assert version.status == "candidate" and f"{version.name} -> candidate" in out.getvalue()
    metadata = load_version(version.directory).metadata
    assert metadata["model_config"]["stem_input"] is True
    assert metadata["train_config"]["seed"] == 7


def test_experiment_scores_taught_and_unseen_wordings_apart(tmp_path):
    """``learners.generative.experiment`` splits the dev queries by whether the BM25 teacher
    answered that exact wording in training (saved with the version) and scores each part."""
    import json

    from learners.generative.experiment import by_wording, ndcg_by_wording

    (tmp_path / LEAF_TARGETS_FILE).write_text(json.dumps({"cell phones chargers": ["a/0001"]}))
    queries = {"q1": "Cell Phones  Chargers", "q2": "fast phone", "q3": "cell phones"}
    groups = by_wording(tmp_path, queries)
    assert groups == {"teacher-answered": ["q1"], "other wordings": ["q2", "q3"]}

    qrels = {"q1": {"sku1": 2}, "q2": {"sku2": 1}, "q3": {"sku3": 1}}
    run = {"q1": {"sku1": 1.0}, "q2": {"sku9": 1.0}, "q3": {"sku3": 1.0}}
    scores = ndcg_by_wording(groups, qrels, run)
    assert scores["teacher-answered"] == {"queries": 1, "ndcg@10": pytest.approx(1.0)}
    assert scores["other wordings"] == {"queries": 2, "ndcg@10": pytest.approx(0.5)}
    assert by_wording(tmp_path / "no-teacher", queries)["teacher-answered"] == []


def test_experiment_trains_on_the_served_data_config_unless_told_otherwise():
    """An experiment without data flags measures what ``train_base_model`` would serve."""
    from learners.generative.experiment import data_config, parse_args

    required = ["--merchant", "m", "--version-dir", "d"]
    assert data_config(parse_args(required)) == DataConfig()
    told = data_config(parse_args([*required, "--teacher-rate", "5", "--seed", "2"]))
    assert (told.teacher_rate, told.seed) == (5, 2)
