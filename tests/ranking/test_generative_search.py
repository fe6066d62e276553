"""Generative recall in ``ranking.search``: registry-driven serving, hot swap, learned flag."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pytest

import ranking
from catalog import docids
from catalog.models import Product
from learners import registry
from learners.generative.data import load_products
from learners.generative.train import train
from learners.models import ModelVersion
from ranking import generative, inverted
from tests.conftest import make_category
from tests.tiny_models import TINY, tiny_train_config

SPECK = "Speck Presidio Case for Samsung Galaxy S8"


@pytest.fixture(scope="module")
def trained_cache(tmp_path_factory) -> dict[str, Path]:
    """Trained version directories by seed, shared by the module's tests (training costs
    seconds; the small catalog's docids are deterministic, so a copy fits every test's DB)."""
    return {"root": tmp_path_factory.mktemp("trained")}


def publish_version(cache: dict, slug: str, seed: int = 0, status: str = "active") -> ModelVersion:
    """Train (once per seed) on ``slug``'s catalog, copy into the registry, register."""
    source = cache["root"] / f"seed{seed}"
    if not source.exists():
        train(
            load_products(slug),
            source,
            model_config=TINY,
            config=tiny_train_config(memorisation_sample=4, seed=seed),
        )
    name, path = registry.new_version_dir("base", slug)
    shutil.copytree(source, path, dirs_exist_ok=True)
    return registry.register("base", name, path, merchant=slug, status=status)


def test_generative_pipeline_finds_a_memorised_product_by_title(small_catalog, trained_cache):
    version = publish_version(trained_cache, "phone-shop")
    response = ranking.search(SPECK, pipeline="generative", merchant="phone-shop")
    assert response.results[0].sku == "P2"
    assert response.results[0].paths == ["generative"]
    assert response.model_version == version.name
    assert all(r.learned is True for r in response.results)


def test_without_an_active_model_generative_is_empty_and_bm25_unflagged(small_catalog):
    assert ranking.search(SPECK, pipeline="generative").results == []
    response = ranking.search(SPECK, pipeline="bm25")
    assert response.results and all(r.learned is None for r in response.results)
    assert response.model_version is None


def test_merchant_and_category_filters_constrain_decoding(small_catalog, trained_cache):
    publish_version(trained_cache, "phone-shop")
    grocer = ranking.search(SPECK, pipeline="generative", merchant="grocer")
    assert grocer.results == [] and grocer.model_version is None
    handsets = "cell-phones/unlocked-phones"
    response = ranking.search(SPECK, pipeline="generative", category=handsets)
    assert {r.sku for r in response.results} <= {"P3", "P4"} and response.results
    everywhere = ranking.search(SPECK, pipeline="generative")
    assert everywhere.results[0].sku == "P2"


def test_hybrid_fuses_bm25_and_generative(small_catalog, trained_cache):
    publish_version(trained_cache, "phone-shop")
    response = ranking.search(SPECK, pipeline="hybrid", merchant="phone-shop")
    assert response.results[0].sku == "P2"
    assert set(response.results[0].paths) == {"bm25", "generative"}
    assert response.model_version is not None


def test_activation_switches_the_serving_model_without_restart(small_catalog, trained_cache):
    first = publish_version(trained_cache, "phone-shop", seed=0)
    held = generative.load_active("phone-shop")
    assert held is not None and held.version == first.name
    second = publish_version(trained_cache, "phone-shop", seed=1)
    assert ranking.search(SPECK, pipeline="generative").model_version == second.name
    # a request that started before the swap still decodes with the object it holds
    assert held.recall.retriever.search(SPECK, k=1)[0].docid.startswith("cell-phones/")
    registry.rollback("base", "phone-shop")
    assert ranking.search(SPECK, pipeline="generative").model_version == first.name


def test_registry_is_rechecked_only_after_the_reload_interval(
    small_catalog, trained_cache, settings
):
    settings.GENERATIVE_RELOAD_SECONDS = 3600.0
    assert generative.load_active("phone-shop") is None
    publish_version(trained_cache, "phone-shop")
    assert generative.load_active("phone-shop") is None  # cached answer, no DB hit
    settings.GENERATIVE_RELOAD_SECONDS = 0.0
    assert generative.load_active("phone-shop") is not None


def test_product_added_after_training_is_not_learned_but_found_by_bm25(
    small_catalog, trained_cache
):
    publish_version(trained_cache, "phone-shop")
    phones = small_catalog["phones"]
    Product.objects.create(
        merchant=phones,
        sku="P5",
        title="Zagg InvisibleShield Glass for Google Pixel",
        brand="Zagg",
        category=make_category(phones, ["Cell Phones", "Accessories", "Cases"]),
        price=Decimal("19.99"),
    )
    docids.assign(phones)
    inverted.rebuild_index()
    response = ranking.search("zagg invisibleshield", pipeline="bm25", merchant="phone-shop")
    assert [(r.sku, r.learned) for r in response.results] == [("P5", False)]
    known = ranking.search("otterbox defender", pipeline="bm25", merchant="phone-shop")
    assert known.results[0].learned is True
    generated = ranking.search("zagg invisibleshield", pipeline="generative")
    assert "P5" not in {r.sku for r in generated.results}


def test_learned_flags_judge_a_page_by_the_models_held_when_it_was_built(
    small_catalog, trained_cache, settings
):
    settings.GENERATIVE_RELOAD_SECONDS = 0.0
    publish_version(trained_cache, "phone-shop")
    learned = generative.learned_flags()
    docid = Product.objects.get(sku="P2").docid.path
    ModelVersion.objects.filter(kind="base").update(status="retired")  # swapped out mid-page
    assert generative.load_active("phone-shop") is None
    assert learned("phone-shop", docid) is True and learned("phone-shop", "no/such/docid") is False
    assert learned("grocer", docid) is None
    assert generative.learned_flags()("phone-shop", docid) is None  # the next page


def test_a_broken_version_falls_back_instead_of_failing(small_catalog, trained_cache):
    good = publish_version(trained_cache, "phone-shop")
    name, path = registry.new_version_dir("adapter", "phone-shop")
    adapter = registry.register("adapter", name, path, merchant="phone-shop", parent=good)
    registry.activate(adapter)  # no loader for adapters yet: the base keeps serving
    assert generative.load_active("phone-shop").version == good.name
    name, path = registry.new_version_dir("base", "phone-shop")
    registry.register("base", name, path, merchant="phone-shop", status="active")  # empty dir
    response = ranking.search(SPECK, pipeline="hybrid", merchant="phone-shop")
    assert response.results[0].sku == "P2"  # bm25 still answers
    assert response.model_version is None


def load_as_adapter(version: ModelVersion):
    """A stand-in adapter loader: serves its parent's weights, declines (None) when the parent
    is no longer the active base, as a real adapter trained on an older base must."""
    from learners.generative.model import load_version

    if registry.active("base", version.merchant) != version.parent:
        return None
    return load_version(version.parent.directory)


def test_an_active_adapter_with_a_loader_wins_over_the_base(
    small_catalog, trained_cache, monkeypatch
):
    monkeypatch.setitem(generative.LOADERS, "adapter", f"{__name__}:load_as_adapter")
    base = publish_version(trained_cache, "phone-shop")
    name, path = registry.new_version_dir("adapter", "phone-shop")
    adapter = registry.register("adapter", name, path, merchant="phone-shop", parent=base)
    registry.activate(adapter)
    response = ranking.search(SPECK, pipeline="generative", merchant="phone-shop")
    assert response.model_version == adapter.name and response.results[0].sku == "P2"
    rebuilt = publish_version(trained_cache, "phone-shop", seed=1)  # the adapter stays active
    assert generative.load_active("phone-shop").version == rebuilt.name


def test_default_pipeline_is_hybrid_only_while_a_generative_model_serves(
    small_catalog, trained_cache
):
    from ranking.service import default_pipeline

    assert default_pipeline() == "bm25"
    assert ranking.search(SPECK).results[0].paths == ["bm25"]
    publish_version(trained_cache, "phone-shop")
    assert default_pipeline() == "hybrid"
    assert set(ranking.search(SPECK).results[0].paths) == {"bm25", "generative"}


def test_generative_weight_in_fusion_is_configurable(settings):
    from ranking.recall import RecallResult
    from ranking.service import fuse
    from ranking.types import Candidate

    results = {
        "bm25": RecallResult([Candidate(1, 9.0, "bm25", 1), Candidate(2, 8.0, "bm25", 20)], 2),
        "generative": RecallResult([Candidate(2, -0.1, "generative", 1)], 1),
    }
    settings.GENERATIVE_RRF_WEIGHT = 0.2
    assert [c.product_id for c in fuse(results)] == [1, 2]
    settings.GENERATIVE_RRF_WEIGHT = 1.0
    assert [c.product_id for c in fuse(results)] == [2, 1]
