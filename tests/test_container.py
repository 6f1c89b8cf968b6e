"""The container files are kept in step with the code: the Dockerfile builds every package that
``pyproject.toml`` installs, and ``compose.yaml`` wires its services to settings that exist.

Nothing here needs a Docker engine: the files are read as the engine would read them. The image
once shipped without ``jobs/`` and ``notifications/`` because the Dockerfile named the packages
one by one and two were added later; these tests are why that cannot happen again.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import yaml

from core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


# --- the Dockerfile and .dockerignore ---------------------------------------------------------


def _discovered_packages() -> set[str]:
    """The top-level packages of pyproject.toml's package discovery (``include = ["api*"...]``)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    return {pattern.split(".")[0].rstrip("*") for pattern in include}


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    assert not pending, "a Dockerfile instruction ends with a continuation"
    out = []
    for line in lines:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _stages(text: str) -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for word, rest in _instructions(text):
        if word == "FROM":
            name = rest.split()[-1] if " as " in rest.lower() else str(len(stages))
            current = stages.setdefault(name, [])
        elif current is not None:
            current.append((word, rest))
    return stages


def _copied_sources(stage: list[tuple[str, str]]) -> list[str]:
    """The build-context sources of a stage's COPY instructions (not ``--from`` ones)."""
    sources: list[str] = []
    for word, rest in stage:
        if word not in ("COPY", "ADD"):
            continue
        args = shlex.split(rest)
        if any(a.startswith("--from") for a in args):
            continue
        paths = [a for a in args if not a.startswith("--")]
        sources += [p.removeprefix("./").rstrip("/") or "." for p in paths[:-1]]
    return sources


def _ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as (exception?, regex) in order, with Docker's ``*``, ``?`` and ``**``."""
    patterns = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line.removeprefix("!").strip("/")
        regex = ""
        i = 0
        while i < len(line):
            if line.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif line.startswith("**", i):
                regex += ".*"
                i += 2
            elif line[i] == "*":
                regex += "[^/]*"
                i += 1
            elif line[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(line[i])
                i += 1
        patterns.append((negated, re.compile(regex)))
    return patterns


def _sent_to_the_build(relative: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether .dockerignore lets a file through (a pattern matching a parent folder excludes
    everything under it; the last matching pattern wins)."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, pattern in patterns:
        if any(pattern.fullmatch(p) for p in prefixes):
            excluded = not negated
    return not excluded


def _package_files(package: str) -> list[str]:
    files = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / package).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    ]
    return sorted(files)


def test_the_dockerfile_builds_every_package_pyproject_installs():
    packages = _discovered_packages()
    assert {"api", "core", "jobs", "notifications", "migrations"} <= packages
    stages = _stages((ROOT / "Dockerfile").read_text())
    build = stages["build"]
    sources = _copied_sources(build)
    patterns = _ignore_patterns()
    for package in sorted(packages):
        assert (ROOT / package / "__init__.py").is_file(), f"{package} is no package"
        assert "." in sources or package in sources, (
            f"the Dockerfile's build stage does not copy {package}/"
        )
        files = _package_files(package)
        assert files
        left_out = [f for f in files if not _sent_to_the_build(f, patterns)]
        assert not left_out, f".dockerignore keeps {package} files out of the build: {left_out}"
    for needed in ("pyproject.toml", "README.md"):  # the metadata the install reads
        assert "." in sources or needed in sources
        assert _sent_to_the_build(needed, patterns)


def test_every_package_in_the_tree_is_discovered_by_pyproject():
    """A new top-level package must be added to pyproject's discovery, or it is not installed
    (in the image or anywhere else) although the tests, run from the tree, pass."""
    packages = _discovered_packages()
    in_tree = {
        p.parent.name
        for p in ROOT.glob("*/__init__.py")
        if p.parent.name not in ("tests", "bench") and not p.parent.name.startswith(".")
    }
    assert in_tree - packages == set(), "packages missing from pyproject's include list"
    assert packages - in_tree == set(), "pyproject includes packages that do not exist"


def test_the_build_context_leaves_out_what_the_image_does_not_need():
    patterns = _ignore_patterns()
    for path in (".venv/bin/python", "var/backbone.db", "tests/conftest.py", "bench/run.py"):
        assert not _sent_to_the_build(path, patterns), path
    assert not _sent_to_the_build(".git/HEAD", patterns)
    assert not _sent_to_the_build("api/__pycache__/app.cpython-311.pyc", patterns)
    assert _sent_to_the_build("api/app.py", patterns)
    assert _sent_to_the_build("migrations/versions/0001_initial.py", patterns)


def test_the_runtime_stage_is_production_with_a_data_volume_and_no_build_tools():
    text = (ROOT / "Dockerfile").read_text()
    stages = _stages(text)
    runtime = stages["runtime"]
    assert list(stages)[-1] == "runtime"  # the image is the runtime stage
    assert _copied_sources(runtime) == [], "the runtime stage copies from the build stage only"
    env = " ".join(rest for word, rest in runtime if word == "ENV")
    assert "BACKBONE_ENV=production" in env
    data_dir = re.search(r"BACKBONE_DATA_DIR=(\S+)", env)
    assert data_dir is not None
    volumes = [rest for word, rest in runtime if word == "VOLUME"]
    assert volumes and data_dir.group(1) in volumes[0]
    assert any(word == "USER" and rest != "root" for word, rest in runtime)
    # pip and its build tools are uninstalled from the environment the runtime stage receives
    build = " ".join(rest for word, rest in stages["build"] if word == "RUN")
    assert re.search(r"pip uninstall --yes pip setuptools wheel", build)
    assert "'.[postgres]'" in build  # procrastinate and psycopg: the worker's queue


# --- compose.yaml -----------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def _setting_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"BACKBONE_{name.upper()}")
        alias = field.validation_alias
        for choice in getattr(alias, "choices", ()):
            if isinstance(choice, str) and choice.isupper():
                names.add(choice)
    return names


BACKBONE_SERVICES = ("migrate", "api1", "api2", "worker")


def test_compose_runs_the_documented_topology():
    services = _compose()["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api1", "api2", "worker", "proxy"}
    assert services["postgres"]["image"].startswith("postgres:")
    assert "healthcheck" in services["postgres"]
    assert services["redis"]["image"].startswith("redis:")
    proxy = services["proxy"]
    assert proxy["image"].startswith("caddy:")
    assert len(proxy["ports"]) == 1  # one published port; the instances publish none
    for name in BACKBONE_SERVICES:
        assert "ports" not in services[name], name

    images = {services[name]["image"] for name in BACKBONE_SERVICES}
    assert len(images) == 1, images
    for key in ("BACKBONE_DATABASE_URL", "BACKBONE_RATE_LIMIT_STORAGE", "BACKBONE_ISSUER"):
        values = {services[name]["environment"][key] for name in BACKBONE_SERVICES}
        assert len(values) == 1, (key, values)
    env = services["api1"]["environment"]
    assert env["BACKBONE_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in env["BACKBONE_DATABASE_URL"]
    assert env["BACKBONE_RATE_LIMIT_STORAGE"].startswith("redis://redis:")
    assert env["BACKBONE_ENV"] == "production"

    # Only `migrate` migrates; the others start after it has succeeded, and serve or work.
    assert services["migrate"]["command"] == ["backbone", "migrate"]
    assert services["worker"]["command"][:2] == ["backbone", "worker"]
    # The releases are counted where they are computed: the worker serves its own metrics.
    assert "--metrics-port" in services["worker"]["command"]
    # The image's HEALTHCHECK asks the server's /healthz; the worker has none.
    assert services["worker"]["healthcheck"] == {"disable": True}
    for name in ("api1", "api2"):
        assert "healthcheck" not in services[name]
    for name in ("api1", "api2", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends["postgres"] == {"condition": "service_healthy"}, name
        assert "migrate" not in services[name]["command"]
    for name in ("api1", "api2"):
        command = services[name]["command"]
        assert command[:2] == ["backbone", "serve"]
        assert "--proxy-headers" in command
        assert command[command.index("--port") + 1] == "8000"


def test_compose_gives_the_master_key_as_a_secret_and_keeps_data_in_named_volumes():
    compose = _compose()
    services = compose["services"]
    assert "master_key" in compose["secrets"]
    for name in BACKBONE_SERVICES:
        service = services[name]
        assert service["secrets"] == ["master_key"], name
        assert service["environment"]["BACKBONE_MASTER_KEY_FILE"] == "/run/secrets/master_key"
        assert "BACKBONE_MASTER_KEY" not in service["environment"]  # never the key itself
        volume = service["volumes"][0].split(":")
        assert volume[0] in compose["volumes"] and volume[1] == "/var/lib/backbone", name
    volume = services["postgres"]["volumes"][0].split(":")
    assert volume[0] in compose["volumes"]


def test_compose_names_only_real_settings():
    known = _setting_names()
    assert "BACKBONE_RATE_LIMIT_STORAGE" in known and "BACKBONE_PORT" in known
    services = _compose()["services"]
    for name in BACKBONE_SERVICES:
        for key in services[name]["environment"]:
            assert key in known, f"{name}: {key} is no Backbone setting"
            assert Settings.model_fields[key.removeprefix("BACKBONE_").lower()] is not None


def test_compose_interpolates_no_backbone_variable_that_is_not_a_setting():
    """``${BACKBONE_...}`` read from the operator's .env is passed on as that setting; a name
    that looks like a setting but is none would be set in vain."""
    text = (ROOT / "compose.yaml").read_text()
    interpolated = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    assert {"POSTGRES_PASSWORD", "BACKBONE_ISSUER"} <= interpolated
    backbone = {name for name in interpolated if name.startswith("BACKBONE_")}
    assert backbone <= _setting_names(), backbone - _setting_names()


def test_compose_trusts_forwarded_headers_from_the_proxy_alone():
    services = _compose()["services"]
    proxy_address = services["proxy"]["networks"]["backend"]["ipv4_address"]
    env = services["api1"]["environment"]
    assert env["BACKBONE_FORWARDED_ALLOW_IPS"] == proxy_address
    subnet = _compose()["networks"]["backend"]["ipam"]["config"][0]["subnet"]
    import ipaddress

    assert ipaddress.ip_address(proxy_address) in ipaddress.ip_network(subnet)
    # Settings accept the metrics networks as written (a wrong value refuses to start).
    Settings(database_url="sqlite://", metrics_allow=env["BACKBONE_METRICS_ALLOW"], master_key=None)


def test_the_proxy_balances_both_api_instances():
    services = _compose()["services"]
    mount = next(v for v in services["proxy"]["volumes"] if v.endswith("/etc/caddy/Caddyfile:ro"))
    caddyfile = (ROOT / mount.split(":")[0]).read_text()
    upstreams = re.search(r"reverse_proxy\s+([^{\n]+)", caddyfile)
    assert upstreams is not None
    assert set(upstreams.group(1).split()) == {"api1:8000", "api2:8000"}
    published = services["proxy"]["ports"][0].rsplit(":", 1)[1]
    assert re.search(rf"^:{published}\s*{{", caddyfile, re.M), "Caddy listens on the port published"
    assert "health_uri /readyz" in caddyfile
