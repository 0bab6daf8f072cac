"""Shared pytest fixtures of the effhub test suite.

Hub isolation (for every test, automatic):
- One local hub (`effhub.hub.server.LocalHubServer`) serves the whole test session on 127.0.0.1 (port from the OS)
  from a temporary root. `HF_ENDPOINT` points at it in `os.environ` *before* any Hub client is imported (this file
  binds the socket at import time), so `huggingface_hub`, `transformers`, `peft` and `datasets` in the test process
  and in every subprocess talk to it, never to the network. `HF_HUB_OFFLINE` and `TRANSFORMERS_OFFLINE` are removed.
- Each test gets a fresh, empty `HF_HOME` (autouse fixture `hf_home`): the environment variables and the cache paths
  the already-imported clients froze at import (`huggingface_hub.constants`, `datasets.config`) are redirected for
  that test, so no test sees another's cache or the user's token.

Fixtures:
- `local_hub` (session): the running `LocalHubServer`; `.url`, `.root`, `.store`, `.log_lines()` (one
  "time METHOD path status" line per request this session, e.g. to check `/resolve/` calls).
- `hub_url` (session): `local_hub.url`, the endpoint string (also in `os.environ["HF_ENDPOINT"]`).
- `hub_api` (function): `huggingface_hub.HfApi(endpoint=hub_url)`.
- `hub_repo_id` (function): a repo id unique to the test, e.g. "effhub-tests/test-push-3f2a1c"; the server is
  shared by the session, so always push to a fresh id.
- `hf_home` (function, autouse): the test's `HF_HOME` as a `Path`; the hub cache is `hf_home / "hub"`.
- `subprocess_env` (function): a copy of `os.environ` for `subprocess.run(..., env=...)` (has HF_ENDPOINT and the
  test's HF_HOME); add `HF_HUB_OFFLINE="1"` to it for offline checks.
Use them as plain fixture arguments, for example:

    def test_push(hub_api, hub_repo_id):
        hub_api.create_repo(hub_repo_id)
        model.push_to_hub(hub_repo_id)   # goes to the local hub through HF_ENDPOINT
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

# Bind the local hub's socket now, before any Hub client is imported: huggingface_hub and datasets freeze
# HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE at import, and importing effhub (which registers its models) imports them.
_HUB_SOCKET = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
_HUB_SOCKET.bind(("127.0.0.1", 0))
_HUB_URL = f"http://127.0.0.1:{_HUB_SOCKET.getsockname()[1]}"
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="effhub-tests-"))
os.environ["HF_ENDPOINT"] = _HUB_URL
os.environ["HF_HOME"] = str(_SESSION_DIR / "hf_home")
# generated data sets are cached per test session, never in the user's cache
os.environ["EFFHUB_CACHE"] = str(_SESSION_DIR / "effhub_cache")
for _name in ("HF_HUB_CACHE", "HF_DATASETS_CACHE", "HF_ASSETS_CACHE", "HF_XET_CACHE", "HF_TOKEN_PATH", "HF_TOKEN",
              "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE",
              "HUGGINGFACE_CO_STAGING", "TRANSFORMERS_CACHE"):
    os.environ.pop(_name, None)
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# the local hub speaks LFS, not Xet: with hf_xet installed the client would send large or binary files through Xet
os.environ["HF_HUB_DISABLE_XET"] = "1"
# One intra-op thread per process: on 2 shared cores torch's default threads oversubscribe (tests launch subprocesses
# and 2-rank runs), which made elementwise ops up to ~100x slower. Subprocesses inherit the variable.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

_LOCAL_HUB = None


def _point_imported_clients_at(url: str) -> None:
    """Redirect the endpoint constants of Hub clients that were imported before this file (e.g. by a plugin)."""
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None and constants.ENDPOINT != url:
        constants.ENDPOINT = url
        constants.HUGGINGFACE_CO_URL_TEMPLATE = url + "/{repo_id}/resolve/{revision}/{filename}"
        constants.HF_URL_HOSTS = frozenset(constants.HF_URL_HOSTS | {"127.0.0.1"})
        constants.HF_HUB_OFFLINE = False
    datasets_config = sys.modules.get("datasets.config")
    if datasets_config is not None and datasets_config.HF_ENDPOINT != url:
        datasets_config.HF_ENDPOINT = url
        datasets_config.HUB_DATASETS_URL = url + "/datasets/{repo_id}/resolve/{revision}/{path}"
        datasets_config.HF_HUB_OFFLINE = False


def pytest_configure(config):
    global _LOCAL_HUB
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    from effhub.hub.server import LocalHubServer

    _LOCAL_HUB = LocalHubServer(_SESSION_DIR / "hub-root", sock=_HUB_SOCKET).start()
    _point_imported_clients_at(_LOCAL_HUB.url)


def pytest_unconfigure(config):
    if _LOCAL_HUB is not None:
        _LOCAL_HUB.stop()
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def local_hub():
    """The session's running local hub (`effhub.hub.server.LocalHubServer`)."""
    if _LOCAL_HUB is None or _LOCAL_HUB._httpd is None:
        pytest.fail("the session's local hub is not running (tests/conftest.py pytest_configure did not start it)")
    return _LOCAL_HUB


@pytest.fixture(scope="session")
def hub_url(local_hub) -> str:
    """The local hub's endpoint URL, equal to `os.environ["HF_ENDPOINT"]`."""
    return local_hub.url


@pytest.fixture
def hub_api(hub_url):
    """A `huggingface_hub.HfApi` bound to the local hub."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub_url)


@pytest.fixture
def hub_repo_id(request) -> str:
    """A repo id no other test uses: 'effhub-tests/<test name>-<6 hex>'."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-_")[:60] or "test"
    return f"effhub-tests/{name}-{uuid.uuid4().hex[:6]}"


_HOME_CONSTANTS = {
    # module: {attribute: path relative to HF_HOME}
    "huggingface_hub.constants": {"HF_HOME": "", "HF_HUB_CACHE": "hub", "HF_ASSETS_CACHE": "assets",
                                  "HF_TOKEN_PATH": "token", "HF_STORED_TOKENS_PATH": "stored_tokens",
                                  "HF_XET_CACHE": "xet"},
    "datasets.config": {"HF_CACHE_HOME": "", "HF_DATASETS_CACHE": "datasets", "HF_MODULES_CACHE": "modules",
                        "DOWNLOADED_DATASETS_PATH": "datasets/downloads",
                        "EXTRACTED_DATASETS_PATH": "datasets/downloads/extracted"},
    "evaluate.config": {"HF_CACHE_HOME": "", "HF_EVALUATE_CACHE": "evaluate", "HF_METRICS_CACHE": "metrics",
                        "HF_MODULES_CACHE": "modules"},
}


@pytest.fixture(autouse=True)
def hf_home(tmp_path_factory, monkeypatch) -> Path:
    """A fresh, empty HF_HOME for this test, in the environment and in the already-imported clients' constants."""
    home = tmp_path_factory.mktemp("hf_home")
    monkeypatch.setenv("HF_HOME", str(home))
    for module_name, attributes in _HOME_CONSTANTS.items():
        module = sys.modules.get(module_name)
        if module is None:
            continue
        for attribute, relative in attributes.items():
            if hasattr(module, attribute):
                current = getattr(module, attribute)
                value = home / relative if relative else home
                monkeypatch.setattr(module, attribute, value if isinstance(current, Path) else str(value))
    return home


@pytest.fixture
def subprocess_env(hf_home, hub_url) -> dict[str, str]:
    """`os.environ` for a subprocess: the local hub's HF_ENDPOINT and this test's HF_HOME, no offline flags."""
    env = dict(os.environ)
    env.update(HF_ENDPOINT=hub_url, HF_HOME=str(hf_home))
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        env.pop(name, None)
    return env
