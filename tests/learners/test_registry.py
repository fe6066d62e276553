"""The model registry: life cycle, one active version per (kind, merchant), rollback."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from catalog.models import Merchant
from learners import registry
from learners.models import ModelVersion


@pytest.fixture
def shop(db) -> Merchant:
    return Merchant.objects.create(name="Phone Shop")


def new(kind: str = "base", merchant: Merchant | None = None, **kwargs) -> ModelVersion:
    name, path = registry.new_version_dir(kind, merchant)
    return registry.register(kind, name, path, merchant=merchant, **kwargs)


def test_new_version_dir_lives_under_data_dir_and_is_unique(shop, isolated_data_dir):
    name, path = registry.new_version_dir("base", shop)
    other, _ = registry.new_version_dir("base", shop)
    assert path.is_dir() and path.parent == isolated_data_dir / "models"
    assert name.startswith("base-phone-shop-") and name != other


def test_register_stores_a_relative_path_and_resolves_it(shop, isolated_data_dir):
    version = new(merchant=shop, metrics={"exact": 0.9})
    assert version.status == "candidate" and version.metrics == {"exact": 0.9}
    assert not version.path.startswith("/")
    assert version.directory == isolated_data_dir / "models" / version.name


def test_activate_retires_the_previous_active_of_the_same_kind_and_merchant(shop):
    first, second = new(merchant=shop), new(merchant=shop)
    other_kind, global_base = new("adapter", shop), new()
    for version in (first, other_kind, global_base):
        registry.activate(version)
    registry.activate(second)
    statuses = dict(ModelVersion.objects.values_list("name", "status"))
    assert statuses == {
        first.name: "retired",
        second.name: "active",
        other_kind.name: "active",
        global_base.name: "active",
    }
    assert registry.active("base", shop) == second
    assert registry.active("base", "phone-shop") == second
    assert registry.active("base") == global_base
    assert registry.active("ranker", shop) is None


def test_register_as_active_activates(shop):
    old = new(merchant=shop, status="active")
    current = new(merchant=shop, status="active")
    old.refresh_from_db()
    assert (old.status, current.status) == ("retired", "active")
    assert current.activated_at is not None


def test_database_refuses_two_active_versions(shop):
    new(merchant=shop, status="active")
    another = new(merchant=shop)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=another.pk).update(status="active")


def test_database_refuses_two_active_global_versions(db):
    new(status="active")
    another = new()
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=another.pk).update(status="active")


def test_rollback_reactivates_the_most_recently_retired_and_rejects_the_current(shop):
    a, b, c = new(merchant=shop), new(merchant=shop), new(merchant=shop)
    for version in (a, b, c):
        registry.activate(version)
    assert registry.rollback("base", shop) == b
    c.refresh_from_db()
    assert c.status == "rejected" and c.decision["restored"] == b.name
    assert registry.rollback("base", shop) == a  # further back, not back to c
    assert registry.active("base", shop) == a
    with pytest.raises(registry.RegistryError, match="no retired"):
        registry.rollback("base", shop)


def test_reject_records_the_decision_and_blocks_activation(shop):
    version = new(merchant=shop)
    registry.reject(version, {"gate": "failed", "recall_new": 0.1})
    version.refresh_from_db()
    assert version.status == "rejected" and version.decision["gate"] == "failed"
    with pytest.raises(registry.RegistryError, match="rejected"):
        registry.activate(version)


def test_unknown_kind_merchant_and_version_are_errors(shop):
    with pytest.raises(registry.RegistryError, match="kind"):
        registry.new_version_dir("bogus", shop)
    with pytest.raises(registry.RegistryError, match="merchant"):
        registry.active("base", "nope")
    with pytest.raises(registry.RegistryError, match="unknown model version"):
        registry.activate("missing")


def test_adapter_keeps_its_parent(shop):
    base = new(merchant=shop, status="active")
    adapter = new("adapter", shop, parent=base)
    assert adapter.parent == base and list(base.children.all()) == [adapter]


def test_models_command_lists_activates_and_rolls_back(shop):
    from io import StringIO

    from django.core.management import CommandError, call_command

    first, second = new(merchant=shop, metrics={"products": 4}), new(merchant=shop)

    def run(*args: str) -> str:
        out = StringIO()
        call_command("models", *args, stdout=out)
        return out.getvalue()

    assert "activated" in run("activate", first.name)
    run("activate", second.name)
    listing = run("list", "--kind", "base", "--merchant", "phone-shop")
    assert first.name in listing and "retired" in listing and "products=4" in listing
    assert first.name in run("rollback", "--kind", "base", "--merchant", "phone-shop")
    assert registry.active("base", shop) == first
    with pytest.raises(CommandError, match="needs --kind"):
        run("rollback")
    with pytest.raises(CommandError, match="no retired"):
        run("rollback", "--kind", "ranker", "--merchant", "phone-shop")


def test_a_successor_descends_from_the_serving_version(shop):
    def successor(**kwargs) -> ModelVersion:
        name, path = registry.new_version_dir("ranker", shop)
        return registry.register_successor(
            "ranker", name, path, merchant=shop, metrics={}, **kwargs
        )

    first = successor()
    second = successor()
    candidate = successor(activate=False)
    assert first.parent is None and first.status == "active"
    second.refresh_from_db()
    assert second.parent == first and second.status == "active"
    assert candidate.parent == second and candidate.status == "candidate"
    assert registry.active("ranker", shop) == second
