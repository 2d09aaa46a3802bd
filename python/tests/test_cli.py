"""The `vflash` command the package installs (console entry point)."""
import json
import os
import shutil
import subprocess
import sys

import pytest


def run(*args):
    exe = shutil.which("vflash", path=os.path.dirname(sys.executable))
    cmd = [exe] if exe else [sys.executable, "-m", "vflash"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=600)


def test_doctor_text_and_json():
    text = run("doctor")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("vflash ") and "Representative calls" in text.stdout
    report = json.loads(run("doctor", "--json").stdout)
    assert report["families"] is not None and report["calls"]


def test_demo_passes():
    pytest.importorskip("numpy")
    p = run("demo")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "PASS" in p.stdout


def test_usage_errors():
    assert run().returncode == 2
    assert run("doctor", "--yaml").returncode == 2
    assert run("bench").returncode == 2
    assert run("--help").returncode == 0
