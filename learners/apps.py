import logging

from django.apps import AppConfig


class LearnersConfig(AppConfig):
    name = "learners"
    verbose_name = "Learners"

    def ready(self) -> None:
        # kafka-python logs every connection and metadata refresh at INFO, which buries the
        # platform's own logs; quiet it unless LOGGING configured the "kafka" logger explicitly.
        kafka_logger = logging.getLogger("kafka")
        if kafka_logger.level == logging.NOTSET:
            kafka_logger.setLevel(logging.WARNING)
