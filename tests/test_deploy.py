"""The Dockerfile and deploy/docker-compose.yml (Docker does not run here: they are parsed and checked)."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import yaml

from bot.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions (continuation lines joined), split into build stages."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stages.append([])
        stages[-1].append((word.upper(), rest.strip()))
    return stages


def test_the_image_is_multi_stage_installs_from_the_lock_and_runs_as_a_user_who_owns_the_data_volume():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    build = " ".join(rest for word, rest in stages[0] if word == "RUN")
    assert "--require-hashes -r requirements.lock" in build and "--no-deps ." in build
    run = stages[-1]
    users = [rest for word, rest in run if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    user = users[-1]
    setup = " ".join(rest for word, rest in run if word == "RUN")
    assert "useradd" in setup and re.search(rf"chown {user}(:{user})? /data", setup)
    assert ("VOLUME", '["/data"]') in run
    env = " ".join(rest for word, rest in run if word == "ENV")
    assert "CCCD_DATABASE_URL=sqlite+aiosqlite:////data/" in env and "CCCD_PORT=8080" in env
    health = [rest for word, rest in run if word == "HEALTHCHECK"]
    assert health and "CCCD_PORT" in health[0] and "/healthz" in health[0]
    assert ("EXPOSE", "8080") in run
    cmd = [rest for word, rest in run if word == "CMD"][-1]
    assert cmd.startswith('["cccd-bot", "serve"')
    copies = [rest for stage in stages for word, rest in stage if word == "COPY"]
    assert any("requirements.lock" in c for c in copies)


def test_the_lock_pins_every_dependency_with_hashes():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for lock, deps in (
        ("requirements.lock", project["dependencies"]),
        ("requirements-test.lock", project["dependencies"] + project["optional-dependencies"]["test"]),
    ):
        text = (ROOT / lock).read_text().lower()
        pinned = set(re.findall(r"^([a-z0-9_.-]+)==", text, re.M))
        for dep in deps:
            name = re.split(r"[\[<>=!~ ]", dep, maxsplit=1)[0].lower().replace("_", "-")
            assert name in pinned, f"{name} missing from {lock}"
        assert text.count("--hash=sha256:") >= len(pinned)
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    assert "--require-hashes -r \"$lock\"" in bootstrap and "requirements-test.lock" in bootstrap


def test_compose_runs_postgresql_n_web_processes_one_sender_and_an_https_proxy():
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    services = compose["services"]
    db = services["db"]
    assert db["image"].startswith("postgres:") and "pg_isready" in " ".join(db["healthcheck"]["test"])
    parser = build_parser()
    roles = {}
    for name in ("web", "sender"):
        service = services[name]
        args = parser.parse_args(service["command"][1:])
        roles[name] = (args.role, service["deploy"]["replicas"])
        assert service["environment"]["CCCD_DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert "@db:5432/" in service["environment"]["CCCD_DATABASE_URL"]
        assert service["depends_on"]["db"]["condition"] == "service_healthy"
        assert service["build"]["dockerfile"] == "Dockerfile" and (ROOT / "deploy" / service["build"]["context"] / "Dockerfile").exists()
    assert roles["web"][0] == "web" and roles["web"][1] >= 2
    assert roles["sender"] == ("sender", 1)  # one sender: the lease would idle any other
    proxy = services["proxy"]
    assert "443:443" in proxy["ports"]
    mount = next(v for v in proxy["volumes"] if v.endswith(":/etc/caddy/Caddyfile:ro"))
    caddyfile = (ROOT / "deploy" / mount.split(":")[0]).read_text()
    assert "{$CCCD_DOMAIN}" in caddyfile and "reverse_proxy web:8080" in caddyfile
    assert "health_uri /readyz" in caddyfile and "/metrics" not in caddyfile.split("@public", 1)[1].split("\n")[0]
    assert "/media/broadcasts/*" in caddyfile.split("@public", 1)[1].split("\n")[0]  # Zalo fetches broadcasts' images


def test_the_env_example_names_only_known_settings():
    from bot.config import Settings

    known = {f"CCCD_{name.upper()}" for name in Settings.model_fields} | {"CCCD_DOMAIN"}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name = line.split("=", 1)[0]
            assert name in known or name == "POSTGRES_PASSWORD", name


def test_serve_accepts_the_three_roles():
    parser = build_parser()
    assert parser.parse_args(["serve"]).role == "all"
    for role in ("web", "sender", "all"):
        assert parser.parse_args(shlex.split(f"serve --role {role}")).role == role
