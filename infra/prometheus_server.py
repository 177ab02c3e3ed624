"""A real Prometheus server on a loopback port, for tests and local runs.

Debian's `prometheus` package provides the binaries (infra/install_prometheus.sh installs it when
missing). The server here gets its own config, storage directory and port, so it never touches the
package's service or /etc/prometheus. The rule file is infra/prometheus/rules.yml, the one the
docker-compose deployment loads, so tests exercise the deployed rules.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.broker import free_port
from infra.processes import stop_process

INFRA = Path(__file__).resolve().parent
RULES = INFRA / "prometheus" / "rules.yml"
INSTALL_SCRIPT = INFRA / "install_prometheus.sh"


def ensure_installed() -> Path:
    """Path of the prometheus binary, installing Debian's package first when it is missing."""
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        subprocess.run(["bash", str(INSTALL_SCRIPT)], check=True)
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus is still missing after infra/install_prometheus.sh")
    return Path(binary)


def render_config(targets: list[str], interval_s: float = 1.0, job: str = "mindstream-local") -> str:
    """A scrape config for `targets` (host:port) that loads the project's rule file."""
    # JSON is valid YAML, and json.dumps quotes every string correctly.
    config = {
        "global": {"scrape_interval": f"{interval_s:g}s", "evaluation_interval": f"{interval_s:g}s"},
        "rule_files": ["rules.yml"],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}],
    }
    return json.dumps(config, indent=2)


@dataclass
class PrometheusServer:
    """`with PrometheusServer(["127.0.0.1:6066"]) as prom: prom.query("up")`"""

    targets: list[str]
    interval_s: float = 1.0
    host: str = "127.0.0.1"
    port: int = 0
    _proc: subprocess.Popen | None = field(default=None, init=False, repr=False)
    _dir: tempfile.TemporaryDirectory | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> PrometheusServer:
        binary = ensure_installed()
        self._dir = tempfile.TemporaryDirectory(prefix="mindstream-prom-")
        work = Path(self._dir.name)
        (work / "prometheus.yml").write_text(render_config(self.targets, self.interval_s))
        shutil.copy(RULES, work / "rules.yml")
        if self.port == 0:
            self.port = free_port(self.host)
        self._log = open(work / "prometheus.log", "wb")
        self._proc = subprocess.Popen(
            [str(binary), f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
             f"--web.listen-address={self.host}:{self.port}"],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self._proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"prometheus did not become ready within {timeout_s:.0f}s")

    def log_tail(self, n: int = 4000) -> str:
        if self._dir is None:
            return ""
        path = Path(self._dir.name) / "prometheus.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector (empty when the expression has no data)."""
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] == "vector" else [data["result"]]

    def targets_health(self) -> list[str]:
        return [t["health"] for t in self.api("targets")["activeTargets"]]

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._proc is not None:
            stop_process(self._proc, timeout_s)
        if getattr(self, "_log", None) is not None:
            self._log.close()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
