from django.apps import AppConfig


class RankingConfig(AppConfig):
    name = "ranking"
    verbose_name = "Ranking"

    def ready(self) -> None:
        from catalog.signals import products_changed
        from ranking.catalog_cache import on_products_changed as evict_cached
        from ranking.dense import on_products_changed as sync_dense
        from ranking.index_sync import on_products_changed

        products_changed.connect(on_products_changed, dispatch_uid="ranking.index_sync")
        products_changed.connect(sync_dense, dispatch_uid="ranking.dense")
        products_changed.connect(evict_cached, dispatch_uid="ranking.catalog_cache")
