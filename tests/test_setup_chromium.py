"""`make test` never passes with the browser tests skipped: it installs Chromium first when it
can, otherwise stops with the command to run; and it makes a missing browser a failure."""
from __future__ import annotations

import os
import subprocess

from .minio_process import ROOT

SCRIPT = ROOT / "scripts" / "ensure-chromium.sh"


def test_missing_chromium_that_cannot_be_installed_stops_with_the_command():
    env = dict(os.environ, TUS_CHROMIUM="/nonexistent/chromium")
    done = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "sudo apt-get install chromium" in done.stderr
    assert "/nonexistent/chromium" in done.stderr


def test_present_chromium_is_left_alone(tmp_path):
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    env = dict(os.environ, TUS_CHROMIUM=str(fake))
    done = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


def test_make_test_checks_chromium_first_and_requires_the_browser():
    env = {k: v for k, v in os.environ.items() if k != "TUS_REQUIRE_BROWSER"}
    done = subprocess.run(["make", "-n", "test"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    ensure = next(i for i, line in enumerate(lines) if "ensure-chromium.sh" in line)
    pytest_line = next(i for i, line in enumerate(lines) if "-m pytest" in line)
    assert ensure < pytest_line
    printed = subprocess.run(["make", "-s", "--eval", "show: ; @echo $$TUS_REQUIRE_BROWSER",
                              "show"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=60)
    assert printed.stdout.strip() == "1", printed
