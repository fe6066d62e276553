"""``GET /healthz``: is the platform up, and which part of it is not?

The answer combines two sources:

* live checks made by this request -- the database (a query), the Kafka bootstrap servers (TCP
  reachability: a Kafka client would block for seconds), the Celery broker (Redis PING) and the
  event store (when the newest event was stored, which shows a stalled pipeline);
* the state the process supervisor (``platform/supervisor.py``) writes to
  ``DATA_DIR/run/platform.json``: each process's status, pid, restarts and last exit code.
  Without that file (tests, a deployment run by another orchestrator) the processes are
  reported as ``unmanaged``; a file the supervisor stopped updating makes them ``unknown``.

``status`` is ``ok`` when every component is, else ``degraded``. The HTTP status is 503 only
when a *required* component is down: without the database nothing works, whereas with Kafka
down events are spooled and search still serves, so a load balancer should keep sending
traffic. Each network check has a 0.5 s timeout and the two run concurrently.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse

from learners import conf
from learners.broker import tcp_reachable
from learners.redis_server import redis_ready

CHECK_TIMEOUT_S = 0.5
#: The supervisor rewrites its state twice a second; older than this means it is gone.
STATE_STALE_S = 10.0
#: Statuses that do not make the platform ``degraded``.
HEALTHY = {"ok", "unmanaged"}
#: Supervisor process status -> component status.
PROCESS_STATUS = {"running": "ok", "starting": "starting", "backoff": "down", "stopped": "down"}

Component = dict[str, Any]


def healthz(request: HttpRequest) -> JsonResponse:
    components: dict[str, Component] = {"database": check_database()}
    with ThreadPoolExecutor(max_workers=2) as pool:
        kafka = pool.submit(check_kafka)
        broker = pool.submit(check_celery_broker)
        components["event_store"] = check_event_store(components["database"])
        components["kafka"] = kafka.result()
        components["redis"] = broker.result()
    merge_processes(components, read_platform_state(state_file()))
    statuses = {c["status"] for c in components.values()}
    down = any(c.get("required") and c["status"] == "down" for c in components.values())
    body = {"status": "ok" if statuses <= HEALTHY else "degraded", "components": components}
    return JsonResponse(body, status=503 if down else 200)


def state_file() -> Path:
    return Path(settings.DATA_DIR) / "run" / "platform.json"


def check_database() -> Component:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return {"status": "down", "required": True, "error": str(exc)[:200]}
    return {"status": "ok", "required": True, "vendor": connection.vendor}


def check_event_store(database: Component) -> Component:
    """When the newest event was stored: by primary key, so it is an index lookup."""
    if database["status"] != "ok":
        return {"status": "unknown"}
    from learners.models import Event

    try:
        last = Event.objects.order_by("-pk").values_list("received_at", flat=True).first()
    except DatabaseError as exc:
        return {"status": "down", "error": str(exc)[:200]}
    if last is None:
        return {"status": "ok", "last_event_at": None}
    age = max(0.0, time.time() - last.timestamp())
    return {"status": "ok", "last_event_at": last.isoformat(), "age_s": round(age, 1)}


def check_kafka() -> Component:
    bootstrap = conf.bootstrap_servers()
    reachable = tcp_reachable(bootstrap, timeout=CHECK_TIMEOUT_S)
    return {"status": "ok" if reachable else "down", "bootstrap": bootstrap}


def check_celery_broker() -> Component:
    """PING a Redis broker; a TCP connect for any other kind (e.g. RabbitMQ)."""
    url = conf.celery_broker_url()
    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port or ''}"  # never echo a password
    if parts.scheme in ("redis", "rediss"):
        up = redis_ready(url)
    else:
        up = tcp_reachable(f"{parts.hostname}:{parts.port}", timeout=CHECK_TIMEOUT_S)
    return {"status": "ok" if up else "down", "broker": f"{parts.scheme}://{where}"}


def read_platform_state(path: Path) -> dict[str, Any] | None:
    """The supervisor's state, or None when there is none (or it is being replaced)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def merge_processes(components: dict[str, Component], state: dict[str, Any] | None) -> None:
    """Add the supervised processes; a process named like a live check (``redis``) joins it,
    and the worse of the two statuses wins."""
    if state is None:
        components["supervisor"] = {"status": "unmanaged"}
        return
    age = time.time() - float(state.get("updated_at", 0))
    stale = age > STATE_STALE_S
    components["supervisor"] = {
        "status": "down" if stale else "ok",
        "pid": state.get("supervisor_pid"),
        "updated_s_ago": round(age, 1),
    }
    for name, process in state.get("components", {}).items():
        status = "unknown" if stale else PROCESS_STATUS.get(process.get("status"), "unknown")
        entry = components.setdefault(name, {"status": "ok"})
        if entry["status"] == "ok":
            entry["status"] = status
        entry["required"] = entry.get("required", False) or bool(process.get("required"))
        entry["process"] = {
            key: process.get(key) for key in ("status", "pid", "port", "restarts", "last_exit_code")
        }
