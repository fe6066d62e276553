"""Online learning: hourly LoRA adapters on the month's generative base model.

Every hour (Celery beat, or ``manage.py train_adapter --hour``) one merchant's traffic becomes
an adapter, and only a better one serves:

* :mod:`~learners.online.pairs` -- the hour's (query → docid) pairs from clicks, carts and
  purchases, weighted by signal; the last slice of the hour is held out for the gate;
* :mod:`~learners.online.replay` -- the on-disk replay buffer (base pseudo-queries + earlier
  hours) and the fixed probe set that measures forgetting;
* :mod:`~learners.online.adapter` -- PEFT LoRA on the T5 base: training, saving, loading and
  layering an adapter for serving;
* :mod:`~learners.online.gate` -- candidate vs serving model on the held-out slice and the
  probe; the decision is recorded in the model registry;
* :mod:`~learners.online.hourly` -- ``train_hourly_adapter(hour)``: idempotent, locked, the one
  code path of the Celery task and the command;
* :mod:`~learners.online.simulator` -- shoppers with a cascade click model for end-to-end tests
  and the learning-curve benchmark;
* :mod:`~learners.online.config` -- every knob, from settings / environment.

Modules import torch lazily or not at all where they can, so the Django app loads cheaply.
"""
