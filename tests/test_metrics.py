"""GET /metrics: tusd's names, counts that add up across gunicorn workers, TUS_METRICS=0."""
from __future__ import annotations

import os
import signal
import time

import requests
from prometheus_client.parser import text_string_to_metric_families

from .helpers import TUS, create_url, patch


def scrape(base_url: str) -> dict[tuple, float]:
    response = requests.get(base_url + "/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    values = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def value(values: dict, name: str, **labels) -> float:
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


def worker_pids_with_counts(directory) -> set[str]:
    return {name.rsplit("_", 1)[1].split(".")[0] for name in os.listdir(directory)
            if name.startswith("counter_")}


def test_counts_add_up_across_two_workers(gunicorn_server, tmp_path):
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    server = gunicorn_server(workers=2, extra_env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    uploads, total = 0, 0
    # Each request on a new connection; go on until both workers have served some.
    while uploads < 6 or (len(worker_pids_with_counts(metrics_dir)) < 2 and uploads < 60):
        size = 1000 + uploads * 37
        url = create_url(server.url, size)
        assert patch(url, 0, os.urandom(size)).status_code == 204
        assert len(requests.get(url).content) == size
        uploads += 1
        total += size
    assert len(worker_pids_with_counts(metrics_dir)) == 2
    assert requests.get(server.url + "/files/tus-" + "0" * 32, headers=TUS).status_code == 404

    values = scrape(server.url)
    assert value(values, "tusd_uploads_created") == uploads
    assert value(values, "tusd_uploads_finished") == uploads
    assert value(values, "tusd_bytes_received") == total
    assert value(values, "tusminio_download_bytes_total") == total
    assert value(values, "tusd_requests_total", method="POST") == uploads
    assert value(values, "tusd_requests_total", method="PATCH") == uploads
    assert value(values, "tusd_requests_total", method="GET") == uploads + 1
    assert value(values, "tusd_errors_total", status="404", code="Not Found") == 1
    assert value(values, "tusminio_store_seconds_count", verb="write") == uploads
    assert value(values, "tusminio_store_seconds_count", verb="create") == uploads
    assert value(values, "tusd_connections_open") == 0
    assert value(values, "tusd_uploads_terminated") == 0

    # A worker that dies keeps its counts; a new one starts from there.
    os.kill(server.worker_pids()[0], signal.SIGKILL)
    time.sleep(1.5)
    after = scrape(server.url)
    assert value(after, "tusd_uploads_created") == uploads
    assert value(after, "tusd_bytes_received") == total


def test_in_process_metrics_and_hook_counts(make_server):
    server = make_server()
    before = scrape(server.url)
    url = create_url(server.url, 3)
    assert patch(url, 0, b"abc").status_code == 204
    assert requests.delete(url, headers=TUS).status_code == 204
    after = scrape(server.url)
    for name in ("tusd_uploads_created", "tusd_uploads_finished", "tusd_uploads_terminated"):
        assert value(after, name) - value(before, name) == 1, name
    assert value(after, "tusd_bytes_received") - value(before, "tusd_bytes_received") == 3
    assert value(after, "tusd_requests_total", method="DELETE") - \
        value(before, "tusd_requests_total", method="DELETE") == 1
    assert ("tusminio_hook_outbox_depth", ()) in after


def test_metrics_off(make_server):
    server = make_server(metrics=False)
    assert requests.get(server.url + "/metrics").status_code == 404
