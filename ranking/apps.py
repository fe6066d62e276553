from django.apps import AppConfig


class RankingConfig(AppConfig):
    name = "ranking"
    verbose_name = "Ranking"

    def ready(self) -> None:
        from catalog.signals import products_changed
        from ranking.index_sync import on_products_changed

        products_changed.connect(on_products_changed, dispatch_uid="ranking.index_sync")
