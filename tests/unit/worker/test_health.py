"""The metrics and health endpoints over real HTTP."""

from __future__ import annotations

import time

import httpx

from worker.health import HealthServer, HealthState
from worker.prometheus_metrics import WorkerMetrics


def test_metrics_health_and_readiness() -> None:
    redis_up = [True]
    state = HealthState(max_tick_age_s=0.2, redis_ok=lambda: redis_up[0])
    metrics = WorkerMetrics()
    metrics.events.labels("scored").inc(3)
    metrics.dead_letters.labels("CorruptImage").inc()
    server = HealthServer("127.0.0.1", 0, state, metrics.registry)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        body = httpx.get(f"{base}/metrics").text
        assert 'alocc_events_total{outcome="scored"} 3.0' in body
        assert 'alocc_dead_letters_total{reason="CorruptImage"} 1.0' in body

        state.tick()
        assert httpx.get(f"{base}/healthz").status_code == 200
        time.sleep(0.3)  # the loop stopped ticking: wedged
        assert httpx.get(f"{base}/healthz").status_code == 503

        not_ready = httpx.get(f"{base}/readyz")
        assert not_ready.status_code == 503 and "model not loaded" in not_ready.text
        state.model_loaded = state.consumer_ready = True
        assert httpx.get(f"{base}/readyz").status_code == 200
        redis_up[0] = False
        assert "redis unreachable" in httpx.get(f"{base}/readyz").text
        assert httpx.get(f"{base}/nope").status_code == 404
    finally:
        server.stop()
