"""Security defaults a worker starts with (docs/reliability.md §6): every listener on 127.0.0.1 unless told
otherwise, and model releases loaded only after their checksums match and never through pickle.
Complements tests/test_release.py (tampered embeddings on a trained release) and tests/test_deploy.py (compose
publishes ports on 127.0.0.1 only); nothing here trains or starts a server."""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import pathlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream.config import ENV_NAMES, Settings

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"


@pytest.fixture
def no_bind_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (ENV_NAMES["web_bind"], "MINDSTREAM_BROKER_HOST"):
        monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------- listeners


def test_worker_http_and_metrics_listen_on_loopback_by_default(no_bind_env: None, tmp_path: Path) -> None:
    from stream.worker import main as worker
    from stream.worker.app import create_app

    assert Settings().web_bind == LOOPBACK and Settings.from_env().web_bind == LOOPBACK
    parser = argparse.ArgumentParser()
    worker.configure(parser)
    settings = worker.settings_from_args(parser.parse_args([]))
    assert settings.web_bind == LOOPBACK
    # /metrics is a page of the Faust app's web server: the address it binds is the app's web_bind
    conf = create_app(Settings(state_dir=str(tmp_path / "state"))).conf
    assert (conf.web_bind, conf.web_host) == (LOOPBACK, LOOPBACK)


def test_embedded_broker_listens_on_loopback_by_default(no_bind_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from infra import broker, broker_cli

    parser = argparse.ArgumentParser()
    broker_cli.configure(parser)
    assert parser.parse_args([]).host == LOOPBACK
    argv: list[list[str]] = []

    class Popen:
        def __init__(self, args: list[str], **kwargs: Any) -> None:
            argv.append([str(a) for a in args])

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(broker.subprocess, "Popen", Popen)
    monkeypatch.setattr(broker, "wait_until_answering", lambda *a, **k: None)
    started = broker.EmbeddedBroker().start()
    (args,) = argv
    listener = args[args.index("--listener-url") + 1]
    assert listener == f"tcp://{LOOPBACK}:{started.port}"


def test_local_prometheus_listens_on_loopback_by_default() -> None:
    from infra.prometheus_server import PrometheusServer

    server = PrometheusServer(["127.0.0.1:6066"])
    assert server.host == LOOPBACK and server.url.startswith(f"http://{LOOPBACK}:")


# --------------------------------------------------------------------------- releases


def _release(path: Path, embeddings: np.ndarray | None = None) -> Path:
    """A release directory whose checksums match but whose files are not a model: whatever fails to load
    in it got past the checksums."""
    from model.release import FILES, FORMAT

    path.mkdir()
    for name in FILES:
        (path / name).write_bytes(f"not really {name}\n".encode() * 8)
    if embeddings is not None:
        np.save(path / "item_embeddings.npy", embeddings, allow_pickle=True)
    files = {name: hashlib.sha256((path / name).read_bytes()).hexdigest() for name in FILES}
    manifest = {"format": FORMAT, "hnsw": {"radius": 1.0}, "version": "v-test", "files": files,
                "item_count": 1, "d": 2, "K": 1, "max_len": 4,
                "profile_fields": []}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every attempt of load_release to parse a file (numpy, hnswlib, onnxruntime)."""
    from model import release

    seen: list[str] = []

    def recorder(what: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> None:
            seen.append(what)
            raise RuntimeError(f"{what} reached")
        return record

    monkeypatch.setattr(release.np, "load", recorder("np.load"))
    monkeypatch.setattr(release.hnswlib, "Index", recorder("hnswlib.Index"))
    monkeypatch.setattr(release.ort, "InferenceSession", recorder("ort.InferenceSession"))
    return seen


def test_release_with_one_byte_changed_in_any_file_fails_before_anything_is_loaded(tmp_path: Path,
                                                                                   loads: list[str]) -> None:
    from model.release import FILES, ReleaseError, load_release

    intact = _release(tmp_path / "intact")
    with pytest.raises(RuntimeError, match="np.load reached"):
        load_release(intact)  # the control: with matching checksums the loader goes on to parse files
    loads.clear()
    for name in FILES:
        release = _release(tmp_path / name.replace(".", "-"))
        raw = bytearray((release / name).read_bytes())
        raw[len(raw) // 2] ^= 0x01
        (release / name).write_bytes(bytes(raw))
        with pytest.raises(ReleaseError, match=f"{name}: sha256 mismatch"):
            load_release(release)
        assert loads == [], f"{name}: {loads} before the checksum failed"


class _Payload:
    """Unpickling it creates `marker`: the proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return pathlib.Path.touch, (self.marker,)


def test_pickled_embeddings_are_refused_without_unpickling(tmp_path: Path) -> None:
    from model.release import ReleaseError, load_release

    marker = tmp_path / "unpickled"
    release = _release(tmp_path / "release", np.array([_Payload(marker)], dtype=object))
    with pytest.raises(ReleaseError, match="cannot load without pickle"):
        load_release(release)  # the checksums match: only the no-pickle rule stops it
    assert not marker.exists()
    np.load(release / "item_embeddings.npy", allow_pickle=True)  # the control: the payload is live
    assert marker.exists()


def test_serving_path_has_no_pickle() -> None:
    """Nothing a worker runs can unpickle: no pickle/joblib/dill import, no allow_pickle=True, no torch.load."""
    sources = sorted((ROOT / "stream").rglob("*.py")) + [ROOT / "model" / "release.py"]
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                assert not {"pickle", "cPickle", "joblib", "dill", "cloudpickle"} & {
                    (n or "").split(".")[0] for n in names}, where
            if isinstance(node, ast.keyword) and node.arg == "allow_pickle":
                assert isinstance(node.value, ast.Constant) and node.value.value is False, where
            if isinstance(node, ast.Attribute) and node.attr == "load" and isinstance(node.value, ast.Name):
                assert node.value.id != "torch", where
