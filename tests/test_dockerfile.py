"""The Dockerfile and .dockerignore, parsed (there is no Docker engine here): a slim multi-stage build
that installs the project's wheel, no compilers in the final image, a non-root user, the HEALTHCHECK run
for real against a live gateway, and the command line the Helm chart relies on."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.fakes.redis_server import free_port

ROOT = Path(__file__).resolve().parents[1]
COMPILERS = ("build-essential", "gcc", "g++", "clang", "make", "cc ", "cython", "-dev ", "-dev\n")


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"stage {self.name} has no {keyword}"
        return found[-1]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs and stages, with line continuations joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = rest.split()
            words = [w for w in words if not w.startswith("--platform")]
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), words[0])
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(base, name))
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append((keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse((ROOT / "Dockerfile").read_text())[1]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for word in shlex.split(args):
            name, _, value = word.partition("=")
            env[name] = value
    return env


def test_a_multi_stage_build_on_a_slim_python(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    for stage in stages:
        assert re.fullmatch(r"python:3\.1[1-9][\w.]*-slim(-\w+)?", stage.base), stage.base
    builder, final = stages[0], stages[-1]
    assert builder.name != final.name


def test_the_builder_makes_the_wheel_and_the_final_stage_installs_only_wheels(stages: list[Stage]) -> None:
    builder, final = stages[0], stages[-1]
    assert any(re.search(r"pip wheel --no-deps --wheel-dir /wheels \.$", r) for r in builder.all("RUN"))
    copied = {w for args in builder.all("COPY") for w in args.split()[:-1]}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data_files = {f for files in project["tool"]["setuptools"]["data-files"].values() for f in files}
    readme = project["project"]["readme"]
    assert {"pyproject.toml", readme, "gateway", *data_files} <= copied  # everything the wheel build reads
    installs = [r for r in final.all("RUN") if "pip install" in r]
    assert len(installs) == 2
    locked, own = installs
    # Dependencies: exactly the lock file's pins, each file checked against its hash, wheels only.
    assert {"--require-hashes", "--only-binary=:all:", "--no-deps"} <= set(locked.split())
    assert re.search(r'-r "?/locks/requirements\$\{EXTRAS:\+-\$\{EXTRAS\}\}\.lock"?', locked), locked
    for lock in lock_files():
        assert f"source={lock.name},target=/locks/{lock.name}" in locked, lock.name
    # The project itself: the builder's wheel, nothing fetched.
    assert "--no-index" in own and "--no-deps" in own and "/wheels/llm_gateway-*.whl" in own
    assert f"from={builder.name}" in own, "the final stage must install the wheel built by the builder"
    assert "COPY . " not in " ".join(f"COPY {c}" for c in final.all("COPY"))  # no source tree


def lock_files() -> list[Path]:
    return sorted(ROOT.glob("requirements*.lock"))


@dataclass
class Pin:
    version: str
    marker: str
    hashes: list[str]
    via: set[str]


def read_lock(path: Path) -> dict[str, Pin]:
    """``name: Pin`` for every requirement of a ``--generate-hashes`` lock file (uv or pip-compile)."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    via_block = False
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if line and not line[0].isspace() and not line.startswith("#"):
            requirement = Requirement(line.rstrip(" \\"))
            specs = list(requirement.specifier)
            assert len(specs) == 1 and specs[0].operator == "==", f"{path.name}: {line} is not pinned"
            current = Pin(specs[0].version, str(requirement.marker or ""), [], set())
            pins[canonicalize_name(requirement.name)] = current
            via_block = False
        elif current and stripped.startswith("--hash="):
            current.hashes.append(stripped.removeprefix("--hash=").rstrip(" \\"))
        elif current and stripped.startswith("# via"):
            rest = stripped.removeprefix("# via").strip()
            via_block = not rest
            if rest:
                current.via.add(rest)
        elif current and via_block and stripped.startswith("#   "):
            current.via.add(stripped.removeprefix("#").strip())
    return pins


def image_requirements(extras: tuple[str, ...]) -> list[Requirement]:
    """pyproject's runtime dependencies (plus ``extras``) that apply in the image (Linux, CPython 3.12)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    env = {"sys_platform": "linux", "platform_system": "Linux", "python_version": "3.12", "extra": ""}
    requirements = [Requirement(line) for line in lines]
    return [r for r in requirements if r.marker is None or r.marker.evaluate(env)]


@pytest.mark.parametrize("lock", [p.name for p in lock_files()])
def test_every_lock_pins_every_package_with_hashes_and_matches_pyproject(lock: str) -> None:
    """Each lock holds every runtime dependency of pyproject at a version its specifier allows, every
    entry is an exact pin with sha256 hashes, and nothing in it is left over from an older pyproject."""
    path = ROOT / lock
    extra = lock.removeprefix("requirements").removeprefix("-").removesuffix(".lock")
    extras = (extra,) if extra else ()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert set(extras) <= project["optional-dependencies"].keys(), f"{lock} names no extra of pyproject"
    pins = read_lock(path)
    assert pins
    for name, pin in pins.items():
        assert pin.hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in pin.hashes), name
    for requirement in image_requirements(extras):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock} lacks {requirement}: regenerate it (see its header)"
        assert requirement.specifier.contains(pins[name].version, prereleases=True), (
            f"{lock} pins {name}=={pins[name].version}, outside pyproject's {requirement}"
        )
    # Every entry is needed: by pyproject itself or by another locked package (uv's "# via" notes).
    roots = {"llm-gateway (pyproject.toml)"}
    for name, pin in pins.items():
        parents = {canonicalize_name(p.split(" ")[0]) for p in pin.via - roots}
        assert pin.via & roots or parents & pins.keys(), f"{lock}: nothing needs {name} any more"
    header = path.read_text().splitlines()[:2]
    assert "--generate-hashes" in header[1] and f"-o {lock}" in header[1]  # how to regenerate it


def test_the_litellm_lock_pins_the_vetted_release() -> None:
    pins = read_lock(ROOT / "requirements-litellm.lock")
    assert pins["litellm"].version == "1.81.0"
    assert "litellm" not in read_lock(ROOT / "requirements.lock")


def test_oci_labels_name_the_image_and_its_version(stages: list[Stage]) -> None:
    final = stages[-1]
    labels: dict[str, str] = {}
    for args in final.all("LABEL"):
        for word in shlex.split(args):
            key, _, value = word.partition("=")
            labels[key] = value
    for key in ("title", "description", "version", "revision", "created", "base.name"):
        assert f"org.opencontainers.image.{key}" in labels, key
    assert labels["org.opencontainers.image.title"] == "llm-gateway"
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert labels["org.opencontainers.image.revision"] == "${REVISION}"
    stage_args = dict(a.partition("=")[::2] for a in final.all("ARG"))
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert stage_args["VERSION"] == version  # the default build labels the project's own version
    assert {"REVISION", "CREATED", "EXTRAS"} <= stage_args.keys()


def test_no_compilers_or_build_tools_in_the_final_image(stages: list[Stage]) -> None:
    final = stages[-1]
    for run in final.all("RUN"):
        assert "apt-get install" not in run and "apk add" not in run, run
        for tool in COMPILERS:
            assert tool not in run + "\n", (tool, run)


def test_a_non_root_numeric_user(stages: list[Stage]) -> None:
    user = stages[-1].last("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and (not gid or int(gid) > 0)
    creates = " ".join(stages[-1].all("RUN"))
    assert f"--uid {uid}" in creates  # the user exists in the image (names in logs, no "I have no name")


def test_the_command_line_the_chart_relies_on(stages: list[Stage]) -> None:
    final = stages[-1]
    assert exec_form(final.last("ENTRYPOINT")) == ["llm-gateway"]
    assert exec_form(final.last("CMD")) == ["serve"]
    assert "llm-gateway" in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    exposed = {p.split("/")[0] for args in final.all("EXPOSE") for p in args.split()}
    assert {"8080", "9091"} <= exposed
    env = env_of(final)
    assert env["GATEWAY_CONFIG"] == "/etc/llm-gateway/policy.yaml"
    assert env["PYTHONUNBUFFERED"] == "1"  # JSON log lines reach `kubectl logs` at once
    policy_copies = [c for c in final.all("COPY") if c.split()[-1] == env["GATEWAY_CONFIG"]]
    assert policy_copies and policy_copies[0].split()[-2] == "policies/default.yaml"
    chart_mount = (ROOT / "helm" / "llm-gateway" / "templates" / "deployment.yaml").read_text()
    assert "mountPath: /etc/llm-gateway," in chart_mount


def healthcheck(stages: list[Stage]) -> list[str]:
    args = stages[-1].last("HEALTHCHECK")
    options, _, command = args.partition("CMD ")
    assert re.search(r"--interval=\d+s", options) and re.search(r"--timeout=\d+s", options)
    return exec_form(command)


def test_the_healthcheck_needs_no_curl_and_hits_healthz(stages: list[Stage]) -> None:
    command = healthcheck(stages)
    assert command[:2] == ["python", "-c"]
    assert "curl" not in " ".join(command) and "wget" not in " ".join(command)
    assert env_of(stages[-1])["LLMGW_HEALTHCHECK_URL"] == "http://127.0.0.1:8080/healthz"


def test_the_healthcheck_passes_on_a_live_gateway_and_fails_on_a_dead_one(
    stages: list[Stage], gateway: str
) -> None:
    command = [sys.executable, *healthcheck(stages)[1:]]

    def run(url: str) -> int:
        env = {**os.environ, "LLMGW_HEALTHCHECK_URL": url}
        return subprocess.run(command, env=env, capture_output=True, timeout=10).returncode

    assert run(f"{gateway}/healthz") == 0
    assert run(f"http://127.0.0.1:{free_port()}/healthz") != 0


def ignored(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last matching pattern wins, ``!`` re-includes, a matched folder covers its files."""
    result = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.rstrip("/")
        regex = fnmatch.translate(body).replace(".*", "[^/]*").replace("[^/]*[^/]*", ".*")
        if body.startswith("**/"):
            regex = "(.*/)?" + fnmatch.translate(body[3:]).replace(".*", "[^/]*")
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            result = not negate
    return result


def test_the_build_context_holds_only_what_the_image_needs(stages: list[Stage]) -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in lines if p.strip() and not p.startswith("#")]
    for stage in stages:
        for args in stage.all("COPY"):
            if "--from=" in args:
                continue
            for source in [w for w in args.split() if not w.startswith("--")][:-1]:
                assert (ROOT / source).exists(), source
                assert not ignored(patterns, source), f"{source} is copied but excluded by .dockerignore"
        for run in stage.all("RUN"):
            for mount in re.findall(r"--mount=type=bind,source=([^,\s]+)", run):
                assert (ROOT / mount).exists(), mount
                assert not ignored(patterns, mount), f"{mount} is mounted but excluded by .dockerignore"
    for kept in ("gateway/cli.py", "gateway/autoscaler/runner.py", "pyproject.toml", "requirements.lock"):
        assert not ignored(patterns, kept), kept
    for dropped in (
        ".git/config",
        "tests/conftest.py",
        ".venv/bin/python",
        "helm/llm-gateway/Chart.yaml",
        "benchmarks/x.py",
        "gateway/__pycache__/cli.cpython-311.pyc",
        ".ci/run",
        "Dockerfile",
    ):
        assert ignored(patterns, dropped), dropped
