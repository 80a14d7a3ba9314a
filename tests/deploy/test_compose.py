"""docker-compose.yml is a production shape, checked here as Docker Compose reads it: valid
against the Compose specification, only the API published, every Kassa process in production
mode with its settings from deploy/kassa.env, the migration and the Temporal set-up run once
before the API and the workers, several workers, no emulator, Temporal on PostgreSQL, a
read-only Temporal UI that decodes through Kassa's codec server. And the committed env
examples, filled in as their comments say, are a configuration production mode accepts."""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kassa.settings import Settings, key_hash
from tooling.devstack import temporal_server_command

ROOT = Path(__file__).resolve().parents[2]
ENV_FILES = ("kassa", "postgres", "temporal-ui")
KASSA_SERVICES = {"api", "worker", "migrate", "temporal-setup", "codec-server"}


def render(compose: list[str], project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*compose, "--file", str(project / "docker-compose.yml"), "config", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")},
    )


def project(tmp: Path) -> Path:
    """A copy of the stack as an operator lays it out: the compose file, and each env file
    copied from its example, plus a probe line that tells which services read it."""
    shutil.copy(ROOT / "docker-compose.yml", tmp / "docker-compose.yml")
    (tmp / "deploy").mkdir()
    shutil.copy(ROOT / "deploy" / "temporal-dynamicconfig.yaml", tmp / "deploy")
    for name in ENV_FILES:
        example = (ROOT / "deploy" / f"{name}.env.example").read_text()
        probe = f"\nPROBE_{name.upper().replace('-', '_')}_ENV=read\n"
        (tmp / "deploy" / f"{name}.env").write_text(example + probe)
    return tmp


@pytest.fixture(scope="module")
def stack(compose, tmp_path_factory) -> dict:
    """The model Compose would run (`docker compose config`, normalized, as JSON)."""
    rendered = render(compose, project(tmp_path_factory.mktemp("stack")), "--format", "json")
    assert rendered.returncode == 0, rendered.stderr
    return json.loads(rendered.stdout)


@pytest.fixture(scope="module")
def services(stack) -> dict[str, dict]:
    return stack["services"]


def readers(services: dict, env_file: str) -> set[str]:
    probe = f"PROBE_{env_file.upper().replace('-', '_')}_ENV"
    return {name for name, s in services.items() if probe in s.get("environment", {})}


def test_compose_validates_the_file_and_refuses_a_broken_one(compose, services, tmp_path):
    assert set(services) == KASSA_SERVICES | {
        "postgres",
        "temporal-schema",
        "temporal",
        "temporal-ui",
    }
    broken = project(tmp_path)
    text = (broken / "docker-compose.yml").read_text()
    (broken / "docker-compose.yml").write_text(text.replace("replicas: 3", "replicas: many"))
    refused = render(compose, broken, "--quiet")
    assert refused.returncode != 0 and "replicas" in refused.stderr, refused.stderr


def test_only_the_api_publishes_a_port(services):
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    assert list(published) == ["api"]
    assert [(p["target"], p["published"]) for p in published["api"]] == [(8000, "8000")]


def test_every_kassa_process_runs_in_production_from_the_env_file(services):
    assert readers(services, "kassa") == KASSA_SERVICES
    for name in KASSA_SERVICES:
        service = services[name]
        assert service["image"] == "kassa" and service["build"]["dockerfile"] == "Dockerfile"
        # Set by the compose file itself: an env file cannot turn production mode off.
        assert service["environment"]["KASSA_ENVIRONMENT"] == "production", name
    # Kassa's secrets stay with Kassa; the database's with the database and Temporal.
    assert readers(services, "postgres") == {"postgres", "temporal-schema", "temporal"}
    assert readers(services, "temporal-ui") == {"temporal-ui"}


def test_several_workers_and_api_processes(services):
    assert services["worker"]["command"] == ["python", "-m", "worker"]
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert int(services["api"]["environment"]["WEB_CONCURRENCY"]) >= 2  # uvicorn's workers


def test_migration_and_temporal_setup_run_once_before_the_api_and_workers(services):
    assert services["migrate"]["command"] == ["kassa", "migrate"]
    assert services["temporal-setup"]["command"] == ["kassa", "temporal", "setup"]
    for one_shot in ("migrate", "temporal-setup", "temporal-schema"):
        assert services[one_shot].get("restart", "no") == "no", one_shot
    for name in ("api", "worker"):
        waits = {dep: d["condition"] for dep, d in services[name]["depends_on"].items()}
        assert waits == {
            "migrate": "service_completed_successfully",
            "temporal-setup": "service_completed_successfully",
        }, name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["temporal-setup"]["depends_on"]["temporal"]["condition"] == "service_healthy"


def test_no_emulator_and_no_sandbox(services):
    for name, service in services.items():
        words = " ".join((service.get("entrypoint") or []) + (service.get("command") or []))
        assert "emulator" not in words and "sandbox" not in words, name
        assert "emulator" not in service["image"], name
        sandbox = [key for key in service.get("environment", {}) if "SANDBOX" in key]
        assert sandbox == [], (name, sandbox)


def test_temporal_runs_on_postgresql_with_its_schema_set_up_first(services):
    temporal = services["temporal"]
    assert temporal["image"].startswith("temporalio/server:")
    assert (temporal["environment"]["DB"], temporal["environment"]["POSTGRES_SEEDS"]) == (
        "postgres12",
        "postgres",
    )
    assert temporal["depends_on"] == {
        "temporal-schema": {"condition": "service_completed_successfully", "required": True}
    }
    assert (
        temporal["image"].rpartition(":")[2]
        == (
            services["temporal-schema"]["image"].rpartition(":")[2]  # schema of the same version
        )
    )


def test_the_temporal_schema_step_sets_up_both_databases(services, tmp_path):
    """The one-shot's script, run by `sh` as the container would, against a stand-in
    `temporal-sql-tool` that records what it is asked and refuses to create a database
    twice, as the real one does."""
    schema = services["temporal-schema"]
    script = schema["command"][0].replace("$$", "$")  # `config` escapes $ as $$
    tool = tmp_path / "temporal-sql-tool"
    tool.write_text(
        """#!/bin/sh
echo "$SQL_PASSWORD $*" >> "$CALLS"
db=$(echo "$*" | sed 's/.* --db \\([^ ]*\\) .*/\\1/')
case "$*" in *" create") [ -e "$CALLS.$db" ] && exit 1; touch "$CALLS.$db";; esac
"""
    )
    tool.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "CALLS": str(tmp_path / "calls")}
    env |= {"POSTGRES_USER": "kassa", "POSTGRES_PWD": "pw"}
    for run in (1, 2):  # a second `up` runs it again: databases exist by then
        done = subprocess.run(
            [*schema["entrypoint"], script], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, (run, done.stderr)
    calls = (tmp_path / "calls").read_text().splitlines()
    steps = [re.sub(r".* --db (\S+) (\S+).*", r"\1 \2", call) for call in calls[: len(calls) // 2]]
    assert steps == [
        f"{db} {step}"
        for db in ("temporal", "temporal_visibility")
        for step in ("create", "setup-schema", "update-schema")
    ]
    assert all(call.startswith("pw --plugin postgres12 --ep postgres") for call in calls)


def test_the_temporal_ui_is_read_only_and_decodes_through_kassas_codec_server(services):
    ui = services["temporal-ui"]["environment"]
    for flag in (
        "TEMPORAL_DISABLE_WRITE_ACTIONS",
        "TEMPORAL_WORKFLOW_TERMINATE_DISABLED",
        "TEMPORAL_WORKFLOW_CANCEL_DISABLED",
        "TEMPORAL_WORKFLOW_SIGNAL_DISABLED",
        "TEMPORAL_WORKFLOW_RESET_DISABLED",
        "TEMPORAL_BATCH_ACTIONS_DISABLED",
    ):
        assert ui.get(flag) == "true", flag
    assert ui["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert ui["TEMPORAL_CODEC_ENDPOINT"].startswith("https://")
    assert services["codec-server"]["command"][:2] == ["kassa", "codec-server"]
    assert not services["temporal-ui"].get("ports") and not services["codec-server"].get("ports")


# How the env examples' comments say each <...> is made.
PLACEHOLDERS = {
    "<postgres password>": lambda: secrets.token_urlsafe(32),
    "<storefront key sha256>": lambda: key_hash("sk_live_" + secrets.token_urlsafe(32)),
    "<support key sha256>": lambda: key_hash("sk_live_" + secrets.token_urlsafe(32)),
    "<payload key base64>": lambda: base64.b64encode(os.urandom(32)).decode(),
    "<webhook secret base64>": lambda: base64.b64encode(os.urandom(32)).decode(),
}


def test_the_filled_in_env_examples_are_a_production_configuration(services, monkeypatch):
    """What the API's container gets from Compose (compose file and kassa.env), with every
    placeholder made as its comment says: production mode starts on it."""
    environment = services["api"]["environment"]
    found = {p for value in environment.values() for p in re.findall(r"<[^<>]+>", value)}
    assert found == set(PLACEHOLDERS)  # a new placeholder needs its recipe here
    made = {placeholder: make() for placeholder, make in PLACEHOLDERS.items()}
    for key in [k for k in os.environ if k.startswith("KASSA_")]:
        monkeypatch.delenv(key)
    for key, value in environment.items():
        for placeholder, real in made.items():
            value = value.replace(placeholder, real)
        monkeypatch.setenv(key, value)

    settings = Settings()
    assert settings.environment == "production" and not settings.sandbox_enabled
    assert {k.role for k in settings.api_keys} == {"storefront", "support"}
    assert list(settings.payload_keys) == ["2026-11"]
    assert settings.alipay_gateway_url == "https://openapi.alipay.com/gateway.do"
    assert made["<postgres password>"] in settings.database_url
    postgres = services["postgres"]["environment"]
    assert postgres["POSTGRES_PASSWORD"] == postgres["POSTGRES_PWD"] == "<postgres password>"


def test_the_temporal_server_is_configured_as_the_dev_server_is():
    configured = yaml.safe_load((ROOT / "deploy" / "temporal-dynamicconfig.yaml").read_text())
    command = temporal_server_command(Path("t.db"), 7233, None)
    dev = dict(
        value.split("=")
        for flag, value in itertools.pairwise(command)
        if flag == "--dynamic-config-value"
    )
    assert {key: str(entries[0]["value"]) for key, entries in configured.items()} == dev


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), continuations joined."""
    joined = re.sub(r"\\\n", " ", dockerfile)
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.partition(" ") for line in lines)
        if word and not word.startswith("#")
    ]


def test_the_image_runs_kassa_as_a_user_in_production_without_extras():
    steps = instructions((ROOT / "Dockerfile").read_text())
    users = [args for step, args in steps if step == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    env = " ".join(args for step, args in steps if step == "ENV")
    assert "KASSA_ENVIRONMENT=production" in env
    installs = [args for step, args in steps if step == "RUN" and "pip install" in args]
    assert installs and all("[" not in args for args in installs)  # no extras: dev, embedded
    sources = [src for step, args in steps if step in ("COPY", "ADD") for src in args.split()[:-1]]
    assert sources and "." not in sources  # named parts only: never the secrets in deploy/
    assert not {"tests", "deploy", ".kassa", ".venv"} & {src.strip("/") for src in sources}
