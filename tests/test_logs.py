"""Structured logs: one line per event, JSON lines with TUS_LOG_FORMAT=json."""
from __future__ import annotations

import json
import logging

import requests

from tus_server.ops.logs import JsonFormatter

from .helpers import TUS, create_url, metadata, patch


def test_json_formatter_keeps_one_valid_line_per_event():
    record = logging.LogRecord("tus_server.events", logging.INFO, __file__, 1, "%s", ("x",), None)
    record.tus_event = "created"
    record.tus_fields = {"upload_id": "tus-1", "filename": 'a "b"\nc', "size": 5}
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["event"] == "created" and data["filename"] == 'a "b"\nc' and data["size"] == 5
    assert data["level"] == "INFO" and data["time"].endswith("Z")


def test_gunicorn_writes_json_event_lines(gunicorn_server):
    server = gunicorn_server(extra_env={"TUS_LOG_FORMAT": "json"})
    url = create_url(server.url, 4, metadata(filename="x y.txt"))
    assert patch(url, 0, b"abcd").status_code == 204
    assert requests.get(url).content == b"abcd"
    assert requests.delete(url, headers=TUS).status_code == 204
    server.kill()
    lines = [json.loads(line) for line in server.log_path.read_text().splitlines()
             if line.startswith("{")]
    events = {line.get("event"): line for line in lines if "event" in line}
    uid = url.rsplit("/", 1)[1]
    assert events["created"]["upload_id"] == uid and events["created"]["size"] == 4
    assert events["created"]["filename"] == "x y.txt"
    assert events["created"]["client"] == "127.0.0.1"
    assert events["chunk written"]["received"] == 4
    assert events["finished"]["upload_id"] == uid and events["finished"]["seconds"] >= 0
    assert events["download served"]["bytes"] == 4 and events["download served"]["status"] == 200
    assert events["terminated"]["upload_id"] == uid


def test_text_lines_by_default(make_server, caplog):
    server = make_server()
    with caplog.at_level("INFO", logger="tus_server.events"):
        url = create_url(server.url, 2)
    line = [r.getMessage() for r in caplog.records if r.name == "tus_server.events"][0]
    assert line.startswith("created upload_id=" + url.rsplit("/", 1)[1])
