"""The alert rules (deploy/prometheus/alerts.yml) with Prometheus's own checker: they parse
(`promtool check rules`) and each fires when it should (`promtool test rules`, cases in
alerts_test.yml). promtool comes from Debian's `prometheus` package: installed here with
apt-get when missing; a machine that cannot install it fails, never skips. The rules and the
Grafana dashboard name only series Kassa exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

import kassa.metrics  # noqa: F401  (registers Kassa's series)

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "kassa.json"


@pytest.fixture(scope="session")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        assert shutil.which("apt-get") and os.geteuid() == 0, (
            "promtool is needed (Debian's `prometheus` package): install it, or run as root "
            "with apt-get"
        )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        command = ["apt-get", "install", "-y", "-o", "DPkg::Lock::Timeout=300", "prometheus"]
        installed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        if installed.returncode != 0:  # a fresh machine: no package lists yet
            subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=600)
            installed = subprocess.run(
                command, capture_output=True, text=True, env=env, timeout=900
            )
        assert installed.returncode == 0, installed.stderr[-2000:]
        found = shutil.which("promtool")
    assert found, "apt-get installed prometheus but no promtool is on the PATH"
    return found


def run(promtool: str, *args: str) -> str:
    done = subprocess.run([promtool, *args], cwd=RULES, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_rules_are_valid(promtool):
    assert "SUCCESS: 6 rules found" in run(promtool, "check", "rules", "alerts.yml")


def test_every_alert_fires_in_its_unit_test(promtool):
    run(promtool, "test", "rules", "alerts_test.yml")
    alerts = set(re.findall(r"- alert: (\w+)", (RULES / "alerts.yml").read_text()))
    tested = set(re.findall(r"alertname: (\w+)", (RULES / "alerts_test.yml").read_text()))
    assert alerts == tested


def kassa_series() -> set[str]:
    """Every series name Kassa's metrics expose (a counter's _total, a histogram's _bucket,
    _count and _sum), whether counted yet or not."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        if family.name.startswith("kassa_")
        for suffix in suffixes[family.type]
    }


def named_in(text: str) -> set[str]:
    return set(re.findall(r"\bkassa_[a-z_]+", text))


def test_the_rules_name_only_kassas_series():
    assert named_in((RULES / "alerts.yml").read_text()) <= kassa_series()


def test_the_dashboard_names_only_kassas_series():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = " ".join(
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    )
    assert named_in(exprs) <= kassa_series()
    assert "temporal_" in exprs  # the SDK's own, from the worker's Runtime
