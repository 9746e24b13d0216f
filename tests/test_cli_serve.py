"""`tus-minio serve` builds the gunicorn command `make run` runs (no server here: the command
line and the environment it hands over; tests/test_wheel.py and test_run_script.py run it)."""
from __future__ import annotations

import sys

import pytest

from tus_server.cli import build_parser
from tus_server.cli.serve import gunicorn_command
from tus_server.config import ConfigError


def command(*argv: str, **env: str) -> tuple[list[str], dict]:
    env = dict(env)
    return gunicorn_command(build_parser().parse_args(["serve", *argv]), env), env


def test_the_project_config_on_host_and_port_from_the_environment():
    argv, env = command(HOST="127.0.0.2", PORT="6001")
    assert argv == [sys.executable, "-m", "gunicorn", "tus_server.wsgi:app",
                    "--bind", "127.0.0.2:6001", "-c", "python:tus_server.ops.gunicorn_conf",
                    "--access-logfile", "-"]
    assert env == {"HOST": "127.0.0.2", "PORT": "6001"}


def test_flags_override_the_environment_the_app_and_gunicorn_conf_read():
    argv, env = command("--host", "::1", "--port", "6002", "--workers", "3", "--threads", "16",
                        "--no-access-log", HOST="127.0.0.1", WORKERS="1")
    assert argv[argv.index("--bind") + 1] == "[::1]:6002"
    assert "--access-logfile" not in argv
    assert env == {"HOST": "::1", "PORT": "6002", "WORKERS": "3", "THREADS": "16"}


def test_gunicorn_options_after_the_double_dash_pass_through():
    argv, _ = command("--", "--certfile", "c.pem", "--keyfile", "k.pem")
    assert argv[-4:] == ["--certfile", "c.pem", "--keyfile", "k.pem"]


@pytest.mark.parametrize("argv, env, message", [
    (["stray"], {}, "unrecognized argument 'stray'"),
    ([], {"WORKERS": "0"}, "WORKERS must be a whole number"),
    ([], {"THREADS": "many"}, "THREADS must be a whole number"),
    ([], {"PORT": "http"}, "PORT"),
    (["--host", "0.0.0.0"], {}, "TUS_AUTH is not set"),
])
def test_what_the_server_would_refuse_is_refused_before_gunicorn_starts(argv, env, message):
    with pytest.raises(ConfigError, match=message):
        command(*argv, **env)
