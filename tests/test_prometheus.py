"""Prometheus configuration, alert rules and the Grafana dashboard, checked with the real promtool.

promtool comes from Debian's `prometheus` package (`.ci/run` installs it). Without it these tests
skip on a developer machine and fail under CI (CI set), so a CI run never passes by skipping them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from broker.metrics import DEPRECATED_NAMES, BrokerMetrics

REPO = Path(__file__).resolve().parent.parent
PROM = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "dmdt-broker.json"
OPERATIONS = REPO / "docs" / "operations.md"
BUILTIN_METRICS = {"up"}  # series Prometheus itself adds to every target
METRIC_TOKEN = re.compile(r"\bdmdt_[A-Za-z0-9_]+")
# Grafana's template variables, replaced by what they expand to for parsing.
GRAFANA_VARS = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$instance": ".*",
}


def in_ci() -> bool:
    """True under CI (CI=true or any value but empty/0/false)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def need_binary(name: str) -> str:
    """Path of a Prometheus binary: skip without it on a developer machine, fail under CI."""
    path = shutil.which(name)
    if path is None:
        message = (
            f"{name} not found: install Debian's prometheus package "
            "(apt-get install prometheus; .ci/run does)"
        )
        if in_ci():
            pytest.fail(f"CI is set and {message}")
        pytest.skip(message)
    return path


def promtool(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    """Run promtool; the test fails with its output when it exits non-zero."""
    result = subprocess.run(
        [need_binary("promtool"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result


def exposed_metric_names() -> set[str]:
    """Every sample name BrokerMetrics can expose (counters with _total, histograms' series)."""
    registry = CollectorRegistry()
    BrokerMetrics(registry)
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in registry.collect():
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def unknown_metrics(expr: str) -> set[str]:
    """dmdt_* names in a PromQL expression that broker/metrics.py does not expose."""
    return set(METRIC_TOKEN.findall(expr)) - exposed_metric_names()


def alert_rules() -> list[dict[str, Any]]:
    """The alerting rules of deploy/prometheus/alerts.yml."""
    doc = yaml.safe_load((PROM / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard JSON."""
    return dict(json.loads(DASHBOARD.read_text()))


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every dashboard target."""
    return [
        (panel["title"], target["expr"])
        for panel in panels(dashboard()["panels"])
        for target in panel.get("targets", [])
    ]


def expand(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced, ready for Prometheus."""
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unexpanded variable in {expr!r}"
    return expr


# ---------------------------------------------------------------- configuration


def test_promtool_check_config() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert "SUCCESS" in result.stdout + result.stderr
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = jobs["dmdt-broker"]["static_configs"][0]["targets"]
    assert targets == ["consumer-1:9108", "consumer-2:9108"]  # the compose services
    assert config["rule_files"] == ["alerts.yml"]


def test_promtool_check_kubernetes_config(tmp_path: Path) -> None:
    """The cluster config; Debian's promtool lacks Kubernetes discovery, so that part is swapped."""
    text = (PROM / "prometheus-kubernetes.yml").read_text()
    config = yaml.safe_load(text)
    job = config["scrape_configs"][0]
    assert job["job_name"] == "dmdt-broker"  # the job the alert rules and dashboard select
    assert job["kubernetes_sd_configs"][0]["role"] == "pod"
    keeps = {
        tuple(r["source_labels"]): r["regex"]
        for r in job["relabel_configs"]
        if r.get("action") == "keep"
    }
    assert keeps == {
        ("__meta_kubernetes_pod_label_app_kubernetes_io_name",): "dmdt-broker",
        ("__meta_kubernetes_pod_container_port_name",): "metrics",
    }
    result = subprocess.run(
        [need_binary("promtool"), "check", "config", "prometheus-kubernetes.yml"],
        cwd=PROM,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        assert "kubernetes_sd_configs not found" in result.stdout + result.stderr, result.stdout
        # Same file with file-based discovery: promtool still checks everything else.
        del job["kubernetes_sd_configs"]
        job["file_sd_configs"] = [{"files": [str(tmp_path / "targets.json")]}]
        (tmp_path / "targets.json").write_text("[]")
        shutil.copy(PROM / "alerts.yml", tmp_path / "alerts.yml")
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        promtool("check", "config", "prometheus.yml", cwd=tmp_path)


# ---------------------------------------------------------------- alert rules


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_rule_unit_tests() -> None:
    result = promtool("test", "rules", "tests/alerts_test.yml")
    assert "SUCCESS" in result.stdout


def test_the_issue_alerts_exist_with_severity_and_runbook() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert {
        "DmdtConsumerLagGrowing",
        "DmdtDeadLettersRising",
        "DmdtNoClassifications",
        "DmdtModelLoadFailures",
        "DmdtStateStoreErrors",
    } <= names
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor == rule["alert"].lower()


def test_every_alert_has_unit_tests_that_fire_and_stay_quiet() -> None:
    doc = yaml.safe_load((PROM / "tests" / "alerts_test.yml").read_text())
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in doc["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fired == set(), "alerts with no test where they fire"
    assert names - quiet == set(), "alerts with no test where they stay quiet"


def test_alert_rules_use_only_exposed_metrics() -> None:
    for rule in alert_rules():
        assert unknown_metrics(rule["expr"]) == set(), rule["alert"]
        assert METRIC_TOKEN.search(rule["expr"]) or "up{" in rule["expr"], rule["alert"]


def test_every_alert_is_explained_in_the_operations_doc() -> None:
    text = OPERATIONS.read_text()
    headings = {
        line.lstrip("#").strip().lower() for line in text.splitlines() if line.startswith("#")
    }
    for rule in alert_rules():
        assert rule["alert"].lower() in headings, f"docs/operations.md: no '### {rule['alert']}'"


# ---------------------------------------------------------------- Grafana dashboard


def test_dashboard_shape() -> None:
    dash = dashboard()
    assert dash["uid"] == "dmdt-broker"
    titles = {p["title"] for p in panels(dash["panels"])}
    for wanted in (
        "Throughput",
        "End-to-end latency percentiles",
        "Batch stage latency p50 / p95",
        "Consumer lag per partition",
        "Dead letters by reason",
        "Model version",
        "Sources held",
    ):
        assert wanted in titles
    ids = [p["id"] for p in panels(dash["panels"])]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels(dash["panels"]):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel.get("description"), f"panel {panel['title']!r} has no description"


def test_dashboard_queries_use_only_exposed_metrics() -> None:
    queries = dashboard_queries()
    assert len(queries) >= 15
    used: set[str] = set()
    for title, expr in queries:
        assert unknown_metrics(expr) == set(), f"{title}: {expr}"
        used |= set(METRIC_TOKEN.findall(expr))
        tokens = set(re.findall(r"\b([a-z_:][a-z0-9_:]*)\s*\{", expr))
        assert tokens <= exposed_metric_names() | BUILTIN_METRICS, f"{title}: {expr}"
    latency = [e for t, e in queries if "latency" in t.lower()]
    assert latency
    assert all("histogram_quantile(" in e and "_seconds_bucket" in e for e in latency)
    for name in (
        "dmdt_messages_consumed_total",
        "dmdt_source_bands_classified_total",
        "dmdt_messages_dead_lettered_total",
        "dmdt_end_to_end_seconds_bucket",
        "dmdt_inference_seconds_bucket",
        "dmdt_consumer_lag",
        "dmdt_model_info",
        "dmdt_sources_held",
    ):
        assert name in used


def test_dashboard_and_rules_use_no_deprecated_name() -> None:
    """The shipped dashboard and alert rules read the current names; the deprecated ones are
    exposed only for the dashboards and rules of others."""
    old = {f"dmdt_{name}_total" for name in DEPRECATED_NAMES}
    exprs = [e for _, e in dashboard_queries()] + [r["expr"] for r in alert_rules()]
    tests = (PROM / "tests" / "alerts_test.yml").read_text()
    for text in [*exprs, tests, OPERATIONS.read_text().split("**Deprecated names**")[0]]:
        assert not old & set(METRIC_TOKEN.findall(text)), text


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """Each query as a recording rule in a throwaway file: promtool parses every one."""
    rules = [
        {"record": f"dmdt_dashboard:query_{i}", "expr": expand(expr)}
        for i, (_, expr) in enumerate(dashboard_queries())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path), cwd=tmp_path)
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_grafana_provisioning_points_at_the_dashboard() -> None:
    grafana = REPO / "deploy" / "grafana" / "provisioning"
    sources = yaml.safe_load((grafana / "datasources" / "prometheus.yml").read_text())
    (source,) = sources["datasources"]
    assert (source["type"], source["url"]) == ("prometheus", "http://prometheus:9090")
    providers = yaml.safe_load((grafana / "dashboards" / "dmdt.yml").read_text())
    (provider,) = providers["providers"]
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts


# ---------------------------------------------------------------- a real Prometheus, end to end


class Prometheus:
    """A Prometheus server on loopback with a throwaway config and storage (for tests)."""

    def __init__(self, workdir: Path, target: str, scrape_s: int = 1) -> None:
        from broker.tools.testing import free_port

        self.binary = need_binary("prometheus")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROM / "alerts.yml", workdir / "alerts.yml")
        config = {
            "global": {"scrape_interval": f"{scrape_s}s", "evaluation_interval": f"{scrape_s}s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [
                {
                    "job_name": "dmdt-broker",
                    "scrape_timeout": f"{scrape_s}s",
                    "static_configs": [{"targets": [target]}],
                }
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = (workdir / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.workdir = workdir
        self.wait(lambda: self._get("/-/ready") is not None, 30, "Prometheus ready")

    def _get(self, path: str) -> Any:
        import urllib.error
        import urllib.request

        if self.process.poll() is not None:
            raise AssertionError(
                f"prometheus exited: {(self.workdir / 'prometheus.log').read_text()}"
            )
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as response:
                body = response.read()
        except (urllib.error.URLError, OSError):
            return None
        return json.loads(body) if path.startswith("/api/") else body

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of a PromQL expression now (/api/v1/query)."""
        import urllib.parse

        answer = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert answer is not None, f"no answer to {expr}"
        assert answer["status"] == "success", answer
        assert answer["data"]["resultType"] == "vector", answer
        return list(answer["data"]["result"])

    def value(self, expr: str) -> float | None:
        """The single value of an expression now, or None when it has no series."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def rules(self) -> list[dict[str, Any]]:
        answer = self._get("/api/v1/rules")
        assert answer is not None
        return [rule for group in answer["data"]["groups"] for rule in group["rules"]]

    @staticmethod
    def wait(condition: Any, timeout_s: float, what: str) -> None:
        import time

        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.log.close()


@pytest.mark.kafka
@pytest.mark.slow
def test_prometheus_scrapes_a_consumer_during_a_replay(
    kafka_settings: Any, make_topic: Any, tmp_path: Path
) -> None:
    """Replay CRTS through a running consumer; a real Prometheus finds throughput and latency."""
    need_binary("prometheus")
    from stream_helpers import tiny_model

    from broker.app import App, run_in_thread
    from broker.settings import BrokerSettings
    from broker.tools.replay import load_source, replay_to_topic
    from broker.tools.testing import TEST_CONSUMER_OVERRIDES, free_port, unique_name

    n_sources = 20
    model = tiny_model(tmp_path / "model", min_points=5)
    settings = BrokerSettings(
        bootstrap_servers=kafka_settings.bootstrap_servers,
        group_id=unique_name("group"),
        input_topics={make_topic(partitions=2, prefix="e2e-alerts"): "lightcurve"},
        output_topic=make_topic(prefix="e2e-classifications"),
        dead_letter_topic=make_topic(prefix="e2e-dead"),
        model=str(model.path),
        device="cpu",
        batch_size=400,
        batch_wait_ms=50,
        metrics_host="127.0.0.1",
        metrics_port=free_port(),
        state_dir=tmp_path / "state",
    )
    registry = CollectorRegistry()
    app = App(settings, registry=registry, consumer_overrides=TEST_CONSUMER_OVERRIDES)
    thread, outcome = run_in_thread(app, serve_metrics=True)
    prometheus: Prometheus | None = None
    try:
        Prometheus.wait(lambda: app.metrics_port or outcome, 30, "the metrics server")
        assert not outcome, outcome
        assert app.metrics_port == settings.metrics_port
        prometheus = Prometheus(tmp_path / "prom", f"127.0.0.1:{app.metrics_port}")
        prom = prometheus
        Prometheus.wait(lambda: prom.value('up{job="dmdt-broker"}') == 1, 30, "a first scrape")
        Prometheus.wait(lambda: app.health.readiness().ok, 60, "partitions assigned")

        # ~6 s of replay at a pace that spreads 8.6 years of sky over several scrapes.
        topic = next(iter(settings.input_topics))
        summary = replay_to_topic(
            settings, load_source("crts"), topic, speedup=4.5e7, limit_sources=n_sources, seed=1
        )
        assert summary.alerts > 1000
        Prometheus.wait(lambda: app.stats.consumed >= summary.alerts, 60, "the replay consumed")
        classified = app.stats.classified
        assert classified > summary.alerts // 2
        Prometheus.wait(
            lambda: prom.value("sum(dmdt_source_bands_classified_total)") == classified,
            15,
            "a scrape after the replay",
        )

        # Totals: exactly what the consumer counted.
        assert prom.value("sum(dmdt_messages_consumed_total)") == summary.alerts
        assert prom.value("sum(dmdt_messages_dead_lettered_total)") is None  # none, not even 0
        # Throughput: the peak per-second rate over the replay, plausible for ~6 s of sending.
        peak = prom.value("max_over_time(sum(rate(dmdt_source_bands_classified_total[5s]))[2m:1s])")
        assert peak is not None
        assert classified / 60 < peak < classified, peak
        consumed_rate = prom.value(
            "max_over_time(sum(rate(dmdt_messages_consumed_total[5s]))[2m:1s])"
        )
        assert consumed_rate is not None
        assert consumed_rate >= peak * 0.5
        # Latency percentiles from the histograms, over the whole run.
        e2e = {
            q: prom.value(
                f"histogram_quantile({q}, sum by (le) "
                "(increase(dmdt_end_to_end_seconds_bucket[2m])))"
            )
            for q in (0.5, 0.95, 0.99)
        }
        assert all(v is not None and 0 < v < 30 for v in e2e.values()), e2e
        assert e2e[0.5] <= e2e[0.95] <= e2e[0.99]  # type: ignore[operator]
        inference = prom.value(
            "histogram_quantile(0.95, sum by (le) (increase(dmdt_inference_seconds_bucket[2m])))"
        )
        assert inference is not None
        assert 0 < inference < 10
        print(
            f"prometheus saw {summary.alerts} alerts, {classified} classified; peak "
            f"{peak:.0f}/s classified, {consumed_rate:.0f}/s consumed; end-to-end p50/p95/p99 "
            f"{e2e[0.5]:.3f}/{e2e[0.95]:.3f}/{e2e[0.99]:.3f} s; inference p95 {inference:.4f} s"
        )
        e2e_count = registry.get_sample_value("dmdt_end_to_end_seconds_count")
        assert prom.value("sum(dmdt_end_to_end_seconds_count)") == e2e_count == classified
        assert prom.value("sum(dmdt_sources_held)") == n_sources  # one band per CRTS source
        assert prom.value(f'dmdt_model_info{{version="{model.version}"}}') == 1

        # Every dashboard query runs on the real server; the main panels have data.
        with_data: set[str] = set()
        for title, expr in dashboard_queries():
            if prom.query(expand(expr).replace("[1m]", "[2m]")):
                with_data.add(title)
        assert {
            "Throughput",
            "End-to-end latency percentiles",
            "Batch stage latency p50 / p95",
            "Batch size",
            "Consumer lag per partition",
            "Model version",
            "Sources held",
            "Classified / s",
            "Consumers up",
        } <= with_data

        # The alert rules load and evaluate on the real server; none fires on a healthy run.
        names = {rule["alert"] for rule in alert_rules()}
        Prometheus.wait(
            lambda: all(r["health"] == "ok" for r in prom.rules()), 15, "rules evaluated"
        )
        loaded = {r["name"]: r for r in prom.rules()}
        assert set(loaded) == names
        assert all(r["state"] == "inactive" for r in loaded.values()), loaded
    finally:
        app.stop()
        thread.join(60)
        if prometheus is not None:
            prometheus.close()
    assert outcome
    assert not isinstance(outcome[0], BaseException), outcome[0]
