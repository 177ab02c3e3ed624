"""A real headless browser for tests: Debian's `chromium` (installed by infra/install_debian.sh when missing).

`dump_dom(url)` is the DOM after the page loaded and rendered (`chromium --headless --dump-dom`), and
`screenshot(url, path)` a PNG of it. Every call gets a fresh profile directory, so runs never share state.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

INFRA = Path(__file__).resolve().parent
INSTALL_SCRIPT = INFRA / "install_debian.sh"


def ensure_installed() -> Path:
    """Path of the chromium binary, installing Debian's package first when it is missing."""
    if not shutil.which("chromium"):
        subprocess.run(["bash", str(INSTALL_SCRIPT), "chromium", "chromium"], check=True)
    binary = shutil.which("chromium")
    if binary is None:
        raise RuntimeError("chromium is still missing after infra/install_debian.sh chromium")
    return Path(binary)


def _run(url: str, *flags: str, timeout_s: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="mindstream-chromium-") as profile:
        # --no-sandbox: the sandbox refuses to run as root (CI containers); the pages are our own
        cmd = [str(ensure_installed()), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}", *flags, url]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                             env={**os.environ, "HOME": profile})
    if out.returncode != 0:
        raise RuntimeError(f"chromium exited with {out.returncode} on {url}:\n{out.stderr[-3000:]}")
    return out


def dump_dom(url: str, timeout_s: float = 120) -> str:
    """The serialized DOM of `url` once loaded."""
    return _run(url, "--dump-dom", timeout_s=timeout_s).stdout


def screenshot(url: str, path: Path, width: int = 1280, height: int = 1400, timeout_s: float = 120) -> Path:
    """A PNG of `url` rendered in a `width` x `height` window."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    _run(url, f"--screenshot={path}", f"--window-size={width},{height}", timeout_s=timeout_s)
    if not path.is_file():
        raise RuntimeError(f"chromium wrote no screenshot to {path}")
    return path
