"""The Prometheus alerts and the Grafana dashboard name only metrics Cartridge exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml
from fastapi.testclient import TestClient

DEPLOY = Path(__file__).parents[1] / "deploy"
METRIC = re.compile(r"\b(cartridge_[a-z_]+)")


def exported(client: TestClient) -> set[str]:
    text = client.get("/metrics").text
    names = set(re.findall(r"^# TYPE (cartridge_[a-z_]+) ", text, flags=re.M))
    # Counters and histograms are queried by their sample names.
    return names | {f"{n}_total" for n in names} | {f"{n}_bucket" for n in names}


def test_alerts_are_valid_rules_on_exported_metrics(client: TestClient) -> None:
    path = DEPLOY / "prometheus" / "alerts.yml"
    rules = yaml.safe_load(path.read_text())["groups"][0]["rules"]
    assert {rule["alert"] for rule in rules} >= {
        "CartridgeBuildsWaiting",
        "CartridgeOutboxBacklog",
        "CartridgeStatusesFailing",
        "CartridgeReplicaUnhealthy",
    }
    names = exported(client)
    for rule in rules:
        assert set(rule) >= {"alert", "expr", "for", "labels", "annotations"}
        for metric in METRIC.findall(rule["expr"]):
            assert metric in names, (rule["alert"], metric)
    if shutil.which("promtool"):
        subprocess.run(["promtool", "check", "rules", str(path)], check=True)


def test_dashboard_panels_query_exported_metrics(client: TestClient) -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "cartridge.json").read_text())
    names = exported(client)
    assert len(dashboard["panels"]) >= 10
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for metric in METRIC.findall(target["expr"]):
                assert metric in names, (panel["title"], metric)
