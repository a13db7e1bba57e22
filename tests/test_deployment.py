"""The deployment files hold together: compose services, the Dockerfile, the config the
container runs, Grafana provisioning and the systemd unit. No Docker engine runs here, so the
compose file and the image are checked structurally; whatever can run here runs for real (the
config through `collector check`, the image's health check against a collector, the unit
through `systemd-analyze`). The dashboard's SQL, the database roles and the broker config
run against real peers in tests/test_deployment_peers.py."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.kit.ports import free_port
from tests.kit.programs import need_program

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
SECRETS = {"LEDGER_PASSWORD": "s3cret1", "MQTT_PASSWORD": "s3cret2", "COLLECTOR_API_KEY": "k3y"}
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY", re.IGNORECASE)
ENV_REF = re.compile(r"^\$\{([A-Z_][A-Z0-9_]*)(:\?[^}]*)?\}$")  # ${NAME} or ${NAME:?message}


def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, with continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = dockerfile()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def instruction(word: str) -> str:
    found = [args for w, args in final_stage() if w == word]
    assert len(found) == 1, f"the final stage should have exactly one {word}"
    return found[0]


def bind_mounts(svc: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of every ./ bind mount of a service."""
    mounts = []
    for spec in svc.get("volumes", []):
        host, container = spec.split(":")[:2]
        if host.startswith("."):
            mounts.append((host, container))
    return mounts


# -- docker-compose.yml ------------------------------------------------------------------------

def test_compose_has_the_four_services() -> None:
    assert set(compose()["services"]) == {"collector", "postgres", "mosquitto", "grafana"}
    assert service("collector")["build"] == "."


def test_images_are_pinned_to_a_major_version() -> None:
    images = {name: svc["image"] for name, svc in compose()["services"].items()}
    for name, image in images.items():
        repo, _, tag = image.rpartition(":")
        assert repo and re.match(r"^\d+(\.\d+)*$", tag), f"{name}: {image} is not pinned"
    assert images["postgres"] == "postgres:16"
    assert images["mosquitto"] == "eclipse-mosquitto:2"
    assert images["grafana"].startswith("grafana/grafana:")


def test_named_volumes_hold_every_service_state() -> None:
    doc = compose()
    declared = set(doc["volumes"])
    wanted = {
        "collector": "/var/lib/collector", "postgres": "/var/lib/postgresql/data",
        "mosquitto": "/mosquitto/data", "grafana": "/var/lib/grafana",
    }  # fmt: skip
    for name, target in wanted.items():
        named = {c: h for h, c in (v.split(":")[:2] for v in doc["services"][name]["volumes"])
                 if not h.startswith(".")}
        assert named.get(target) in declared, f"{name}: no named volume at {target}"
    assert instruction("VOLUME") == '["/var/lib/collector"]'


def test_healthchecks_and_start_order() -> None:
    for name in ("postgres", "mosquitto", "grafana"):
        check = service(name)["healthcheck"]
        assert check["test"][0] == "CMD-SHELL" and check["retries"] >= 3
    assert "pg_isready" in service("postgres")["healthcheck"]["test"][1]
    # the collector's own health check is in the image (HEALTHCHECK), tested below
    depends = service("collector")["depends_on"]
    assert depends["postgres"] == {"condition": "service_healthy"}
    assert service("grafana")["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert service("collector")["stop_grace_period"] == "60s"


def test_every_mounted_host_path_exists_in_the_repository() -> None:
    for name, svc in compose()["services"].items():
        for host, container in bind_mounts(svc):
            assert (REPO / host).exists(), f"{name} mounts {host}, which is not in the repository"
            assert container.startswith("/")
    # the broker's entrypoint script comes from its mounted config folder
    entry = service("mosquitto")["entrypoint"]
    mounts = dict((c, h) for h, c in bind_mounts(service("mosquitto")))
    script = entry[-1]
    folder = str(Path(script).parent)
    assert (REPO / mounts[folder] / Path(script).name).is_file()


def test_collector_config_mount_matches_the_image_command() -> None:
    cmd = json.loads(instruction("CMD"))
    assert json.loads(instruction("ENTRYPOINT")) == ["collector"]
    assert cmd[:2] == ["run", "-c"]
    mounts = dict((c, h) for h, c in bind_mounts(service("collector")))
    assert mounts[cmd[2]] == "./deploy/collector/collector.yaml"
    assert f"COLLECTOR_CONFIG={cmd[2]}" in instruction("ENV").replace(" ", "")


def test_no_plaintext_passwords_anywhere() -> None:
    for name, svc in compose()["services"].items():
        for key, value in svc.get("environment", {}).items():
            if SECRET_WORDS.search(key):
                assert ENV_REF.match(str(value)), f"{name}.{key} must come from .env, not {value!r}"
    config = yaml.safe_load((DEPLOY / "collector/collector.yaml").read_text())
    assert "${LEDGER_PASSWORD}" in config["ledger"]["url"]
    assert config["api"]["api_keys"] == ["${COLLECTOR_API_KEY}"]
    mqtt = config["machines"][0]["sources"][0]
    assert mqtt["password"] == "${MQTT_PASSWORD}"
    source = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/ledger.yaml").read_text())
    assert source["datasources"][0]["secureJsonData"]["password"] == "${GRAFANA_DB_PASSWORD}"


def test_env_example_names_every_secret_with_a_placeholder() -> None:
    required = set(re.findall(r"\$\{([A-Z_]+):\?", (REPO / "docker-compose.yml").read_text()))
    example = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            example[key] = value
    assert required == set(example), "every required variable appears in .env.example"
    assert set(example.values()) == {"change-me"}


# -- Dockerfile --------------------------------------------------------------------------------

def test_dockerfile_is_multi_stage_and_runs_unprivileged() -> None:
    froms = [args for word, args in dockerfile() if word == "FROM"]
    assert froms[0] == "python:${PYTHON_VERSION}-slim AS builder"
    assert froms[-1] == "python:${PYTHON_VERSION}-slim"
    assert "ARG PYTHON_VERSION=3.11" in (REPO / "Dockerfile").read_text()
    assert any(w == "RUN" and "pip wheel" in a for w, a in dockerfile()[: len(dockerfile()) - len(final_stage())])
    assert "from=builder" in " ".join(a for w, a in final_stage() if w == "RUN")
    user = instruction("USER")
    assert user not in ("root", "0") and "useradd" in (REPO / "Dockerfile").read_text()
    assert instruction("EXPOSE") == "8080"
    assert instruction("STOPSIGNAL") == "SIGTERM"


def test_dockerignore_keeps_what_the_build_copies() -> None:
    rules = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]

    def ignored(path: str) -> bool:
        result = False
        for rule in rules:
            negate, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
            pattern = pattern.removeprefix("**/")
            if any(fnmatch.fnmatch(part, pattern) for part in _prefixes(path)):
                result = not negate
        return result

    copied = [a.split()[0] for w, a in dockerfile() if w == "COPY" and "--from" not in a]
    for source in copied:
        assert (REPO / source).exists() and not ignored(source), f"COPY {source} is excluded"
    for inside in ("collector/cli.py", "collector/ledger/migrations/env.py", "pyproject.toml"):
        assert not ignored(inside)
    for left_out in (".venv", ".git", "tests/test_deployment.py", "adapters/modbus/tests/x.py",
                     "demo-data", ".env", "collector/__pycache__/cli.cpython-311.pyc"):
        assert ignored(left_out), f"{left_out} would be sent to the build"


def _prefixes(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))] + parts


def test_healthcheck_probes_a_running_collector(tmp_path: Path) -> None:
    """Runs the image's HEALTHCHECK command as it is written, against a real collector."""
    check = instruction("HEALTHCHECK")
    assert "curl" not in check and "urllib" in check and "/api/v1/health" in check
    argv = json.loads(check[check.index("CMD") + 3:].strip())
    assert argv[0] == "python"
    argv[0] = sys.executable
    port = free_port()
    env = {**os.environ, "COLLECTOR_HEALTH_URL": f"http://127.0.0.1:{port}/api/v1/health"}
    assert subprocess.run(argv, env=env, capture_output=True, timeout=30).returncode != 0

    config = tmp_path / "collector.yaml"
    config.write_text(f"ledger: {{url: 'sqlite:///{tmp_path}/ledger.db'}}\n"
                      f"api: {{host: 127.0.0.1, port: {port}}}\nmachines: [{{id: m1}}]\n")
    proc = subprocess.Popen([sys.executable, "-m", "collector.cli", "run", "-c", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            result = subprocess.run(argv, env=env, capture_output=True, timeout=30)
            if result.returncode == 0 or time.monotonic() > deadline or proc.poll() is not None:
                break
            time.sleep(0.3)
        assert result.returncode == 0, result.stderr.decode()[-500:]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0


# -- the config the container runs -------------------------------------------------------------

def test_collector_check_accepts_the_compose_config() -> None:
    path = DEPLOY / "collector/collector.yaml"
    cmd = [sys.executable, "-m", "collector.cli", "check", "-c", str(path)]
    ok = subprocess.run(cmd, env={**os.environ, **SECRETS}, capture_output=True, text=True,
                        timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "2 machines, 2 sources, 5 tags"

    bare = {k: v for k, v in os.environ.items() if k not in SECRETS}
    missing = subprocess.run(cmd, env=bare, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2
    for name in SECRETS:
        assert f"environment variable {name} is not set" in missing.stderr


def test_compose_config_points_at_the_compose_services() -> None:
    config = yaml.safe_load((DEPLOY / "collector/collector.yaml").read_text())
    url = config["ledger"]["url"]
    assert url == "postgresql://collector:${LEDGER_PASSWORD}@postgres:5432/plant"
    assert service("postgres")["environment"]["POSTGRES_DB"] == "plant"
    assert config["machines"][0]["sources"][0]["broker"] == "mqtt://mosquitto:1883"
    assert config["machines"][0]["sources"][0]["username"] == (
        service("mosquitto")["environment"]["MQTT_USERNAME"])
    # reachable from outside the container, on the port the image exposes and compose publishes
    assert config["api"]["host"] == "0.0.0.0"
    assert str(config["api"]["port"]) == instruction("EXPOSE")
    assert "8080:8080" in service("collector")["ports"]
    assert config["spool"]["path"].startswith("/var/lib/collector/")
    # a recreated container gets a new host name: the box id must not follow it
    assert config["box"] == "site-collector"


# -- Grafana provisioning ----------------------------------------------------------------------

def test_grafana_provisioning_matches_the_mounts() -> None:
    mounts = dict(bind_mounts(service("grafana")))
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    providers = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/dashboards.yaml").read_text())
    assert providers["providers"][0]["options"]["path"] == mounts["./deploy/grafana/dashboards"]
    home = service("grafana")["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == mounts["./deploy/grafana/dashboards"] + "/collector.json"

    source = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/ledger.yaml").read_text())
    ds = source["datasources"][0]
    assert ds["type"] == "grafana-postgresql-datasource" and ds["uid"] == "ledger"
    assert ds["url"] == "postgres:5432" and ds["jsonData"]["database"] == "plant"
    # the read-only role the init script creates
    assert ds["user"] == "grafana"
    assert "CREATE ROLE grafana" in (DEPLOY / "postgres/init/10-roles.sh").read_text()


def test_dashboard_json_is_consistent() -> None:
    dash = json.loads((DEPLOY / "grafana/dashboards/collector.json").read_text())
    source = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/ledger.yaml").read_text())
    uid = source["datasources"][0]["uid"]
    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert set(variables) == {"machine", "tag"}
    for var in variables.values():
        assert var["datasource"]["uid"] == uid and "FROM series" in var["query"]
    titles = set()
    for p in panels:
        if p["type"] == "row":
            continue
        titles.add(p["title"])
        assert p["datasource"]["uid"] == uid, p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == uid and t["rawQuery"] and t["rawSql"]
            assert t["format"] in ("time_series", "table")
        if "repeat" in p:
            assert p["repeat"] in variables
    assert {"Sources", "Ingest rate (readings per minute), by machine", "${machine:text}"} <= titles
    # no two panels overlap on the grid
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & area, f"panel {p['title']!r} overlaps another"
        cells |= area


# -- init scripts and docs ---------------------------------------------------

def test_shell_scripts_parse() -> None:
    for script in (DEPLOY / "mosquitto/start.sh", DEPLOY / "postgres/init/10-roles.sh"):
        assert os.access(script, os.X_OK), f"{script} must be executable"
        subprocess.run(["sh", "-n", str(script)], check=True)


def test_deploy_readme_names_only_files_that_exist() -> None:
    text = (DEPLOY / "README.md").read_text()
    named = set(re.findall(r"(?<![\w/.])((?:deploy|config)/[\w./-]+\.(?:yaml|yml|service|sh|json|conf))", text))
    named |= {"deploy/" + p for p in re.findall(r"`((?:collector|postgres|mosquitto|grafana|systemd)/[\w./-]+)`", text)}
    assert len(named) >= 8
    for path in named:
        assert (REPO / path).exists(), f"deploy/README.md names {path}, which does not exist"


def test_readme_lists_the_packages_ci_installs() -> None:
    """README.md's "Tests" names exactly the Debian packages `.ci/run` installs."""
    packages = re.search(r"^PACKAGES=\((.*)\)$", (REPO / ".ci/run").read_text(), re.MULTILINE)
    assert packages
    section = (REPO / "README.md").read_text().split("\n### Tests\n", 1)[1].split("\n#", 1)[0]
    assert re.findall(r"^- `([\w.+-]+)`: ", section, re.MULTILINE) == packages.group(1).split()


# -- systemd -----------------------------------------------------------------------------------

UNIT = DEPLOY / "systemd/collector.service"


def unit_keys() -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def test_systemd_unit_is_hardened() -> None:
    keys = unit_keys()
    expected = {
        "User": "collector", "Restart": "always", "RestartSec": "5s", "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/collector", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
        "ProtectHome": "yes", "CapabilityBoundingSet": "", "SupplementaryGroups": "dialout",
        "EnvironmentFile": "-/etc/collector/collector.env", "KillSignal": "SIGTERM",
        "TimeoutStopSec": "90s", "WorkingDirectory": "/var/lib/collector",
    }  # fmt: skip
    for key, value in expected.items():
        assert keys.get(key) == [value], key
    argv = shlex.split(keys["ExecStart"][0])
    assert argv[1:] == ["run", "-c", "/etc/collector/collector.yaml"]


def test_systemd_analyze_accepts_the_unit(tmp_path: Path) -> None:
    """`verify` names unknown keys and bad values; the exposure score keeps the hardening honest."""
    analyze = need_program("systemd-analyze", "systemd")
    collector = Path(sys.executable).parent / "collector"
    unit = tmp_path / "collector.service"
    unit.write_text(UNIT.read_text().replace("/opt/collector/bin/collector", str(collector)))
    verify = subprocess.run([analyze, "verify", str(unit)], capture_output=True,
                            text=True, timeout=60)
    complaints = [line for line in (verify.stdout + verify.stderr).splitlines()
                  if "collector.service" in line]
    assert verify.returncode == 0 and not complaints, complaints
    security = subprocess.run([analyze, "security", "--offline=yes", str(unit)],
                              capture_output=True, text=True, timeout=60)
    score = re.search(r"Overall exposure level for collector.service: ([\d.]+)", security.stdout)
    assert score, security.stdout[-500:] + security.stderr
    assert float(score.group(1)) <= 2.5
