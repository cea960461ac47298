"""Metrics: names, labels and isolation, read back through the exposition format."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from homealert_mqtt.metrics import LATENCY_BUCKETS, Metrics


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = metrics.exposition()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_counters() -> None:
    metrics = Metrics()
    metrics.alert_received()
    metrics.alert_received()
    metrics.alert_rejected("bad_json")
    metrics.alert_deduplicated()
    metrics.notification_sent("email")
    metrics.notification_failed("sms")
    samples = _samples(metrics)
    assert samples[("homealert_alerts_received_total", ())] == 2
    assert samples[("homealert_alerts_rejected_total", (("reason", "bad_json"),))] == 1
    assert samples[("homealert_alerts_deduplicated_total", ())] == 1
    assert samples[("homealert_notifications_sent_total", (("channel", "email"),))] == 1
    assert samples[("homealert_notifications_failed_total", (("channel", "sms"),))] == 1


def test_known_labels_start_at_zero() -> None:
    samples = _samples(Metrics(channels=("email", "slack")))
    assert samples[("homealert_notifications_sent_total", (("channel", "slack"),))] == 0
    assert samples[("homealert_notifications_failed_total", (("channel", "email"),))] == 0
    for priority in ("P1", "P2", "P3", "P4", "P5"):
        assert samples[("homealert_open_alerts", (("priority", priority),))] == 0


def test_open_alerts_gauge_follows_the_summary() -> None:
    metrics = Metrics()
    metrics.set_open_alerts({"P1": 2, "P3": 1})
    metrics.set_open_alerts({"P3": 4})  # P1 went away: back to 0, not left at 2
    samples = _samples(metrics)
    assert samples[("homealert_open_alerts", (("priority", "P1"),))] == 0
    assert samples[("homealert_open_alerts", (("priority", "P3"),))] == 4


def test_latency_histogram() -> None:
    metrics = Metrics()
    metrics.observe_latency(0.0004)
    metrics.observe_latency(0.2)
    with metrics.time_pipeline():
        pass
    samples = _samples(metrics)
    assert samples[("homealert_pipeline_latency_seconds_count", ())] == 3
    assert samples[("homealert_pipeline_latency_seconds_bucket", (("le", "0.0005"),))] == 2
    assert samples[("homealert_pipeline_latency_seconds_bucket", (("le", "0.1"),))] == 2
    assert samples[("homealert_pipeline_latency_seconds_bucket", (("le", "1.0"),))] == 3
    assert LATENCY_BUCKETS[0] == 0.0005
    assert LATENCY_BUCKETS[-1] == 1.0


def test_registries_are_isolated() -> None:
    first, second = Metrics(), Metrics()
    first.alert_received()
    assert _samples(second)[("homealert_alerts_received_total", ())] == 0


def test_exposition_negotiates_the_format() -> None:
    metrics = Metrics()
    _, plain = metrics.exposition("")
    assert plain.startswith("text/plain; version=0.0.4")
    body, openmetrics = metrics.exposition("application/openmetrics-text; version=1.0.0")
    assert openmetrics.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
