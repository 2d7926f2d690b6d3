"""Static wiring checks of deploy/: Dockerfile, docker-compose, Kubernetes, Prometheus and Grafana.

No Docker daemon or cluster runs here, so these tests read every file and check that the pieces agree
with each other and with the code: env names are aliases of ``engine.config.Settings``, ports are the
Settings' HTTP port, probe paths are the ones the API serves, every metric in the dashboard and the
alerts is in ``engine.metrics.METRIC_NAMES``. Where ``promtool`` or ``kubectl`` is installed, they
validate too (Debian's ``prometheus`` package ships promtool; ``kubectl kustomize`` works offline), and
the ``kubernetes-validate`` package checks the built-in objects against the Kubernetes API schemas.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import AliasChoices, AliasPath, ValidationError
from pydantic_settings import BaseSettings

from engine.config import Settings
from engine.metrics import METRIC_NAMES

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
ALERTS_FILE = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS_FILE = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD_FILE = DEPLOY / "grafana" / "dashboards" / "abengine.json"
DATASOURCES_DIR = DEPLOY / "grafana" / "provisioning" / "datasources"
DASHBOARD_PROVIDERS_DIR = DEPLOY / "grafana" / "provisioning" / "dashboards"
DEPLOY_DOC = REPO / "docs" / "DEPLOY.md"

#: The HTTP paths the engine serves for probes and scraping (fixed by the API contract).
LIVENESS_PATH, READINESS_PATH, METRICS_PATH = "/healthz", "/readyz", "/metrics"

#: Non-engine variables the image may set for the Python runtime and the offline embedder.
# fmt: off
RUNTIME_ENV = frozenset({
    "PATH", "VIRTUAL_ENV", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE", "XDG_CACHE_HOME", "MPLCONFIGDIR", "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
})
# fmt: on

#: apiVersion each kind in deploy/k8s must use (the stable ones).
K8S_API_VERSIONS = {
    "Namespace": "v1",
    "ConfigMap": "v1",
    "Service": "v1",
    "Deployment": "apps/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
    "PodDisruptionBudget": "policy/v1",
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
}
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


# ============================================================ what the code defines


def settings_models() -> list[type[BaseSettings]]:
    """The settings models a worker reads: Settings, plus generation's own while it lives apart."""
    models: list[type[BaseSettings]] = [Settings]
    try:
        from engine.generation.config import GenerationSettings
    except ImportError:
        return models
    return [*models, GenerationSettings]


def env_to_field(model: type[BaseSettings]) -> dict[str, str]:
    """Environment variable name -> field name, as pydantic-settings resolves them."""
    prefix = str(model.model_config.get("env_prefix", ""))
    out: dict[str, str] = {}
    for field_name, field in model.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            out[(prefix + (field.alias or field_name)).upper()] = field_name
        elif isinstance(alias, str):
            out[alias] = field_name
        elif isinstance(alias, AliasChoices):
            out.update({c: field_name for c in alias.choices if isinstance(c, str)})
        elif isinstance(alias, AliasPath):
            out[str(alias.path[0])] = field_name
    return out


@cache
def settings_env_names() -> frozenset[str]:
    """Every environment variable the settings models read (Settings: the aliases of its fields)."""
    return frozenset(name for model in settings_models() for name in env_to_field(model))


def validate_env(values: dict[str, str]) -> None:
    """Build every settings model from ``values`` so a bad type or range fails here, not in a pod."""
    for model in settings_models():
        kwargs = {
            env if model.model_fields[field].validation_alias else field: values[env]
            for env, field in env_to_field(model).items()
            if env in values
        }
        model(**kwargs)


def settings_http_port() -> int:
    return int(Settings.model_fields["http_port"].default)


def metric_names() -> tuple[str, ...]:
    """The single list of exported metric names."""
    return tuple(METRIC_NAMES)


def histogram_names() -> frozenset[str]:
    """Names exported as histograms (they also have _bucket/_sum/_count series)."""
    try:
        from engine.metrics import PrometheusSensor

        families = PrometheusSensor().registry.collect()
        return frozenset(f.name for f in families if f.type == "histogram")
    except (ImportError, AttributeError, TypeError):  # the sensor is not the contract: use the naming rule
        return frozenset(n for n in metric_names() if n.endswith("_seconds"))


@cache
def known_series() -> frozenset[str]:
    """Series names a PromQL selector may use: each metric, plus a histogram's own series."""
    names = set(metric_names())
    for h in histogram_names():
        names.update({f"{h}_bucket", f"{h}_sum", f"{h}_count"})
    return frozenset(names)


# ============================================================ PromQL lint (promtool-lite)

# fmt: off
PROMQL_FUNCTIONS = frozenset({
    "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp", "clamp_max",
    "clamp_min", "count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "delta",
    "deriv", "exp", "floor", "histogram_quantile", "holt_winters", "hour", "idelta", "increase", "irate",
    "label_join", "label_replace", "last_over_time", "ln", "log10", "log2", "max_over_time",
    "min_over_time", "minute", "month", "predict_linear", "present_over_time", "quantile_over_time",
    "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc", "sqrt", "stddev_over_time",
    "stdvar_over_time", "sum_over_time", "time", "timestamp", "vector", "year",
})
# fmt: on
# fmt: off
PROMQL_AGGREGATIONS = frozenset({
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile",
})
# fmt: on
PROMQL_LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
PROMQL_KEYWORDS = frozenset({"bool", "offset", "and", "or", "unless", "atan2", "inf", "nan"})
#: Series Prometheus itself writes for every scrape target.
PROMETHEUS_BUILTIN_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_PAIRS = {"(": ")", "[": "]", "{": "}"}


def _strip_strings_and_check_brackets(expr: str) -> str:
    """Blank out string literals and raise if brackets or quotes do not balance."""
    out: list[str] = []
    stack: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(expr):
        ch = expr[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
                out.append('""')
            i += 1
            continue
        if ch in "\"'`":
            quote = ch
        elif ch in _PAIRS:
            stack.append(_PAIRS[ch])
            out.append(ch)
        elif ch in ")]}":
            if not stack or stack.pop() != ch:
                raise ValueError(f"unbalanced {ch!r} at offset {i} in {expr!r}")
            out.append(ch)
        else:
            out.append(ch)
        i += 1
    if quote:
        raise ValueError(f"unterminated string in {expr!r}")
    if stack:
        raise ValueError(f"unclosed bracket (expected {stack[-1]!r}) in {expr!r}")
    return "".join(out)


def _drop_groups(s: str, open_ch: str, close_ch: str) -> str:
    """Remove the contents of every (non-nested) ``open_ch ... close_ch`` group."""
    return re.sub(
        re.escape(open_ch) + r"[^" + re.escape(open_ch + close_ch) + r"]*" + re.escape(close_ch), " ", s
    )


def promql_selectors(expr: str) -> list[str]:
    """The metric names an expression selects; raises ValueError on malformed or unknown syntax."""
    s = _strip_strings_and_check_brackets(expr)
    s = _drop_groups(s, "{", "}")  # label matchers
    s = _drop_groups(s, "[", "]")  # ranges and subqueries
    selectors: list[str] = []
    pos = 0
    while (m := _IDENT.search(s, pos)) is not None:
        name, pos = m.group(), m.end()
        if m.start() > 0 and (s[m.start() - 1].isdigit() or s[m.start() - 1] == "."):
            continue  # unit of a number or duration: 5m, 1e3
        rest = s[pos:].lstrip()
        if name in PROMQL_LABEL_LIST_KEYWORDS:
            if not rest.startswith("("):
                raise ValueError(f"{name!r} without a label list in {expr!r}")
            pos = s.index(")", pos) + 1
        elif name in PROMQL_KEYWORDS:
            continue
        elif name in PROMQL_AGGREGATIONS and re.match(r"(by|without)\b", rest):
            continue  # sum by (x) (...)
        elif rest.startswith("("):
            if name not in PROMQL_FUNCTIONS | PROMQL_AGGREGATIONS:
                raise ValueError(f"unknown PromQL function {name!r} in {expr!r}")
        else:
            selectors.append(name)
    if not selectors:
        raise ValueError(f"no metric selected in {expr!r}")
    return selectors


def unknown_series(expr: str) -> list[str]:
    allowed = known_series() | PROMETHEUS_BUILTIN_SERIES
    return [name for name in promql_selectors(expr) if name not in allowed]


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (apt-get install prometheus); the Python lint still ran")
    return path


def promtool_check_exprs(exprs: dict[str, str], tmp_path: Path) -> None:
    """Parse expressions with promtool by checking them as recording rules."""
    rules = [
        {"record": f"abengine_check:{re.sub(r'[^a-z0-9_]', '_', k.lower())}:{i}", "expr": e}
        for i, (k, e) in enumerate(exprs.items())
    ]
    path = tmp_path / "exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "check", "rules": rules}]}))
    proc = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ============================================================ loaders


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for d in docs:
        assert isinstance(d, dict), f"{path}: a YAML document is not a mapping"
    return docs


@cache
def k8s_objects() -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        objs.extend(load_yaml_docs(path))
    return objs


def k8s_one(kind: str) -> dict[str, Any]:
    found = [o for o in k8s_objects() if o["kind"] == kind]
    assert len(found) == 1, f"expected exactly one {kind} in deploy/k8s, found {len(found)}"
    return found[0]


def container(pod_spec: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [c for c in pod_spec["containers"] if c["name"] == name]
    assert matches, f"no container {name!r} in the pod (has {[c['name'] for c in pod_spec['containers']]})"
    return matches[0]


def engine_container() -> dict[str, Any]:
    return container(k8s_one("Deployment")["spec"]["template"]["spec"], "engine")


def vllm_container() -> dict[str, Any]:
    return container(k8s_one("Deployment")["spec"]["template"]["spec"], "vllm")


def configmap_data() -> dict[str, str]:
    return dict(k8s_one("ConfigMap")["data"])


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose_engine_services(spec: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Services built from deploy/Dockerfile: the engine workers."""
    spec = spec or compose()
    return {
        name: svc
        for name, svc in spec["services"].items()
        if isinstance(svc.get("build"), dict) and svc["build"].get("dockerfile") == "deploy/Dockerfile"
    }


_INTERP = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")


def interpolate(value: Any) -> str | None:
    """Compose's ${VAR:-default} with nothing set: the default; ${VAR:?err} and ${VAR} give None."""
    if value is None:
        return None
    text = str(value)
    if "${" not in text:
        return text
    m = _INTERP.fullmatch(text)
    assert m is not None, f"unsupported interpolation {text!r}"
    return m.group("arg") if m.group("op") in (":-", "-") else None


def compose_env(svc: dict[str, Any]) -> dict[str, Any]:
    env = svc.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


@cache
def parse_dockerfile(path: Path = DOCKERFILE) -> list[list[tuple[str, str]]]:
    """Instructions per build stage as (INSTRUCTION, arguments); stage 0 is the global ARG scope."""
    stages: list[list[tuple[str, str]]] = [[]]
    logical = ""
    for raw in path.read_text().splitlines():
        line = raw.rstrip()
        if not logical and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue  # comment inside a continued instruction
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        instruction, _, args = logical.strip().partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stages.append([])
        stages[-1].append((instruction, args.strip()))
        logical = ""
    assert not logical, "Dockerfile ends inside a continued line"
    return stages


def dockerfile_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in stage:
        if instruction == "ENV":
            for m in re.finditer(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)', args):
                env[m.group(1)] = m.group(2).strip('"')
    return env


def url_port(url: str) -> int:
    parts = urlsplit(url if "://" in url else f"tcp://{url}")
    assert parts.port is not None, f"no port in {url!r}"
    return parts.port


# ============================================================ the PromQL lint itself


@pytest.mark.parametrize(
    ("expr", "selected"),
    [
        (
            "sum by (topic) (max by (topic, partition) (abengine_consumer_lag)) > 10000",
            ["abengine_consumer_lag"],
        ),
        (
            'histogram_quantile(0.9, sum by (le) (rate(abengine_decide_latency_seconds_bucket{a="(b"}[1m])))',
            ["abengine_decide_latency_seconds_bucket"],
        ),
        (
            "sum(rate(abengine_deadletter_total[5m])) / sum(rate(abengine_events_consumed_total[5m])) > 1e-2",
            ["abengine_deadletter_total", "abengine_events_consumed_total"],
        ),
        ('up{job="abengine"} == 0 offset 5m', ["up"]),
    ],
)
def test_promql_lint_finds_the_selected_metrics(expr: str, selected: list[str]) -> None:
    assert promql_selectors(expr) == selected
    assert unknown_series(expr) == []


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("sum(rate(abengine_decisions_total[5m])", "unclosed"),
        ("sum(rate(abengine_decisions_total[5m)))", "unbalanced"),
        ("rates(abengine_decisions_total[5m])", "unknown PromQL function"),
        ('abengine_decisions_total{experiment="x}', "unterminated"),
        ("sum by abengine_decisions_total", "without a label list"),
    ],
)
def test_promql_lint_rejects_malformed_expressions(expr: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        promql_selectors(expr)


def test_env_validation_rejects_values_a_worker_would_refuse() -> None:
    with pytest.raises(ValidationError, match="ABENGINE_HTTP_PORT"):
        validate_env({"ABENGINE_HTTP_PORT": "eighty"})
    validate_env({"ABENGINE_HTTP_PORT": "8080"})


def test_promql_lint_flags_metrics_the_engine_does_not_export() -> None:
    assert unknown_series("sum(rate(abengine_decisons_total[5m]))") == ["abengine_decisons_total"]
    assert unknown_series("rate(abengine_decisions_total_bucket[5m])") == ["abengine_decisions_total_bucket"]


# ============================================================ Dockerfile


def test_dockerfile_stages_build_from_python_311_slim() -> None:
    stages = parse_dockerfile()
    global_args = {}
    for instruction, args in stages[0]:
        if instruction == "ARG" and "=" in args:
            k, v = args.split("=", 1)
            global_args[k] = v
    froms = [args for stage in stages[1:] for instruction, args in stage if instruction == "FROM"]
    assert froms, "no FROM in deploy/Dockerfile"
    for spec in froms:
        image = spec.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: global_args.get(m.group(1), m.group(0)), image)
        assert image.startswith("python:3.11-slim"), f"stage base {image!r} is not python:3.11-slim"


def test_dockerfile_runtime_stage_runs_as_non_root() -> None:
    runtime = parse_dockerfile()[-1]
    users = [args for instruction, args in runtime if instruction == "USER"]
    assert users, "the final stage never switches to a non-root USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    # Kubernetes checks the same numeric uid (runAsNonRoot needs a number to verify).
    assert engine_container()["securityContext"]["runAsUser"] == int(user)
    assert engine_container()["securityContext"]["runAsNonRoot"] is True


def test_dockerfile_exposes_and_binds_the_settings_port() -> None:
    runtime = parse_dockerfile()[-1]
    exposed = {
        int(p.split("/")[0]) for instruction, args in runtime if instruction == "EXPOSE" for p in args.split()
    }
    env = dockerfile_env(runtime)
    assert exposed == {settings_http_port()}
    assert int(env["ABENGINE_HTTP_PORT"]) == settings_http_port()
    assert env["ABENGINE_HTTP_HOST"] == "0.0.0.0", "the API must listen beyond the container's loopback"


def test_dockerfile_env_names_are_settings_or_python_runtime() -> None:
    known = settings_env_names() | RUNTIME_ENV
    for stage in parse_dockerfile()[1:]:
        unknown = set(dockerfile_env(stage)) - known
        assert not unknown, f"deploy/Dockerfile sets env names Settings does not know: {sorted(unknown)}"


def test_dockerfile_healthcheck_and_cmd() -> None:
    runtime = parse_dockerfile()[-1]
    healthchecks = [args for instruction, args in runtime if instruction == "HEALTHCHECK"]
    assert healthchecks and LIVENESS_PATH in healthchecks[-1]
    assert "ABENGINE_HTTP_PORT" in healthchecks[-1], "the healthcheck must follow the configured port"
    cmds = [json.loads(args) for instruction, args in runtime if instruction == "CMD"]
    entrypoints = [json.loads(args) for instruction, args in runtime if instruction == "ENTRYPOINT"]
    argv = (entrypoints[-1] if entrypoints else []) + cmds[-1]
    assert argv == ["abengine", "worker"]


def test_dockerfile_installs_every_package_and_the_pinned_torch() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    stages = parse_dockerfile()
    copied = {args.split()[0] for stage in stages for instruction, args in stage if instruction == "COPY"}
    assert packages <= copied, f"packages not copied into the image: {sorted(packages - copied)}"
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    for pkg in packages | {"pyproject.toml"}:
        assert any(line.startswith(f"!{pkg}") for line in ignore), f"{pkg} is excluded from the build context"
    torch_pin = next(d for d in pyproject["project"]["dependencies"] if d.startswith("torch"))
    runs = " ".join(args for stage in stages for instruction, args in stage if instruction == "RUN")
    assert torch_pin in runs, f"the image must install {torch_pin} like pyproject.toml"


# ============================================================ docker-compose


def test_compose_has_the_whole_stack() -> None:
    services = compose()["services"]
    for name in ("kafka", "redis", "vllm", "prometheus", "grafana"):
        assert name in services, f"docker-compose.yml lacks the {name} service"
    assert len(compose_engine_services()) == 2, "the stack runs two engine workers"
    for name, svc in compose_engine_services().items():
        assert svc.get("image", "").startswith("abengine"), name


def test_compose_depends_on_and_healthchecks() -> None:
    services = compose()["services"]
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        deps = {d: {"condition": "service_started"} for d in deps} if isinstance(deps, list) else deps
        for dep, cond in deps.items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert cond["condition"] in {
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            }
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], (
                    f"{name} waits for {dep} to be healthy; it has no check"
                )
    for name, svc in compose_engine_services().items():
        deps = svc["depends_on"]
        assert deps["kafka"]["condition"] == deps["redis"]["condition"] == "service_healthy", name
        assert deps["vllm"].get("required") is False, f"{name} must serve decisions without the LLM"


def test_compose_engine_env_is_known_to_settings_and_valid() -> None:
    known = settings_env_names()
    for name, svc in compose_engine_services().items():
        env = compose_env(svc)
        unknown = set(env) - known
        assert not unknown, f"{name} sets env names Settings does not know: {sorted(unknown)}"
        values = {k: v for k, v in ((k, interpolate(v)) for k, v in env.items()) if v is not None}
        validate_env(values)  # every value parses as its field's type


def test_compose_engine_reaches_kafka_redis_and_vllm_by_service_name() -> None:
    spec = compose()
    services = spec["services"]
    kafka_env = services["kafka"]["environment"]
    internal = dict(item.split("://") for item in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    vllm_cmd = services["vllm"]["command"]
    vllm_port = int(vllm_cmd[vllm_cmd.index("--port") + 1])
    for name, svc in compose_engine_services(spec).items():
        env = compose_env(svc)
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == internal["INTERNAL"], f"{name}: not the internal listener"
        assert env["KAFKA_BOOTSTRAP_SERVERS"].split(":")[0] in services
        redis = urlsplit(env["REDIS_URL"])
        assert redis.scheme == "redis" and redis.hostname in services
        vllm = urlsplit(env["ABENGINE_GEN_VLLM_BASE_URL"])
        assert (vllm.hostname, vllm.port, vllm.path) == ("vllm", vllm_port, "/v1")
        model_default = interpolate(env["ABENGINE_GEN_VLLM_MODEL"])
        assert interpolate(vllm_cmd[0]) == model_default, "the sidecar serves a different model"
        assert env["ABENGINE_HTTP_HOST"] == "0.0.0.0"


def test_compose_engine_ports_and_readiness_check() -> None:
    for name, svc in compose_engine_services().items():
        port = int(compose_env(svc).get("ABENGINE_HTTP_PORT", settings_http_port()))
        assert port == settings_http_port()
        container_ports = {int(str(p).rsplit(":", 1)[-1]) for p in svc["ports"]}
        assert container_ports == {port}, name
        check = " ".join(svc["healthcheck"]["test"])
        assert f"127.0.0.1:{port}{READINESS_PATH}" in check, name
    host_ports = [
        str(p).rsplit(":", 1)[0] for svc in compose_engine_services().values() for p in svc["ports"]
    ]
    assert len(host_ports) == len(set(host_ports)), "two workers publish the same host port"


def test_compose_workers_learn_at_idle_priority_as_in_kubernetes() -> None:
    """The two deployments run workers the same way: serving first, learning in an idle process."""
    config = configmap_data()
    for name, svc in compose_engine_services().items():
        env = compose_env(svc)
        assert env["ABENGINE_LEARN_IN"] == config["ABENGINE_LEARN_IN"] == "idle-process", name
        assert env["ABENGINE_LEARNER_HTTP_PORT"] != env.get("ABENGINE_HTTP_PORT", str(settings_http_port()))


def test_compose_kafka_runs_kraft_without_zookeeper() -> None:
    kafka = compose()["services"]["kafka"]
    env = kafka["environment"]
    assert kafka["image"].startswith("apache/kafka:")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in k for k in env)
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert any(v.split("@")[0] == str(env["KAFKA_NODE_ID"]) for v in voters)
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in listeners
    assert set(env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].replace(":", ",").split(",")[::2]) == set(
        listeners
    )
    assert env["CLUSTER_ID"], "KRaft storage needs a cluster id to format"
    assert any(str(v).endswith(f":{env['KAFKA_LOG_DIRS']}") for v in kafka["volumes"]), (
        "broker data not persisted"
    )


def test_compose_redis_persists_with_aof() -> None:
    redis = compose()["services"]["redis"]
    cmd = redis["command"]
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert cmd[cmd.index("--maxmemory-policy") + 1] == "noeviction", "evicting would drop ledger keys"
    assert any(str(v).endswith(":/data") for v in redis["volumes"])


def test_compose_vllm_sidecar_reserves_a_gpu() -> None:
    vllm = compose()["services"]["vllm"]
    assert vllm["image"].startswith("vllm/vllm-openai:")
    assert vllm["entrypoint"] == ["vllm", "serve"]
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] and d["driver"] == "nvidia" for d in devices)


def test_compose_volumes_are_declared_and_bind_sources_exist() -> None:
    spec = compose()
    declared = set(spec.get("volumes", {}))
    for name, svc in spec["services"].items():
        for vol in svc.get("volumes", []):
            source = str(vol).split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"


def test_compose_prometheus_scrapes_every_engine_worker() -> None:
    spec = compose()
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    engine_job = jobs["abengine"]
    assert engine_job.get("metrics_path", "/metrics") == METRICS_PATH
    targets = {t for sc in engine_job["static_configs"] for t in sc["targets"]}
    expected = set()
    for name, svc in compose_engine_services(spec).items():
        env = compose_env(svc)
        expected.add(f"{name}:{env['ABENGINE_HTTP_PORT']}")
        if env.get("ABENGINE_LEARN_IN") == "idle-process":  # its learning process's /metrics too
            expected.add(f"{name}:{env['ABENGINE_LEARNER_HTTP_PORT']}")
    assert targets == expected
    mounts = dict(str(v).split(":")[:2] for v in spec["services"]["prometheus"]["volumes"])
    assert mounts["./prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    for rule_file in config["rule_files"]:
        assert rule_file in mounts.values(), f"rule file {rule_file} is not mounted into Prometheus"
    assert mounts["./prometheus/alerts.yml"] in config["rule_files"]


def test_compose_grafana_is_provisioned() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict(str(v).split(":")[:2] for v in grafana["volumes"])
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    providers = [
        p for f in DASHBOARD_PROVIDERS_DIR.glob("*.yml") for p in yaml.safe_load(f.read_text())["providers"]
    ]
    assert providers, "no dashboard provider"
    provider_paths = {p["options"]["path"] for p in providers}
    assert mounts["./grafana/dashboards"] in provider_paths, "Grafana would not find the dashboard JSON"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{mounts['./grafana/dashboards']}/{DASHBOARD_FILE.name}"


def test_grafana_datasource_points_at_the_compose_prometheus() -> None:
    datasources = [
        d for f in DATASOURCES_DIR.glob("*.yml") for d in yaml.safe_load(f.read_text())["datasources"]
    ]
    proms = [d for d in datasources if d["type"] == "prometheus"]
    assert len(proms) == 1 and proms[0]["isDefault"] is True
    url = urlsplit(proms[0]["url"])
    prometheus = compose()["services"]["prometheus"]
    assert url.hostname == "prometheus"
    assert url.port in {int(str(p).rsplit(":", 1)[-1]) for p in prometheus["ports"]}


# ============================================================ Kubernetes


def test_k8s_objects_have_valid_api_versions_and_names() -> None:
    objs = k8s_objects()
    assert {o["kind"] for o in objs} == set(K8S_API_VERSIONS), "a required kind is missing or unexpected"
    for obj in objs:
        assert obj["apiVersion"] == K8S_API_VERSIONS[obj["kind"]], obj["kind"]
        assert DNS1123.match(obj["metadata"]["name"]), obj["metadata"]["name"]


#: Oldest Kubernetes the manifests target (ContainerResource HPA metrics are GA from 1.30) and the newest.
K8S_SCHEMA_VERSIONS = ("1.30", "latest")


@pytest.mark.parametrize("version", K8S_SCHEMA_VERSIONS)
def test_k8s_builtin_objects_match_the_api_schemas(version: str) -> None:
    """Strict OpenAPI-schema validation (unknown fields, wrong types) of every non-CRD object."""
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    version = kv.latest_version() if version == "latest" else version
    checked = 0
    for obj in k8s_objects():
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # Prometheus Operator CRDs: no bundled schema; the field checks below cover them
        kv.validate(obj, version, strict=True)
        checked += 1
    assert checked == 6


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    namespace = k8s_one("Namespace")["metadata"]["name"]
    assert kustomization["namespace"] == namespace
    assert k8s_one("ServiceMonitor")["spec"]["namespaceSelector"]["matchNames"] == [namespace]
    image_names = {i["name"] for i in kustomization["images"]}
    assert engine_container()["image"].split(":")[0] in image_names


def test_kubectl_kustomize_renders_every_object_in_the_namespace() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed; the Python checks still ran")
    proc = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rendered = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert sorted(o["kind"] for o in rendered) == sorted(o["kind"] for o in k8s_objects())
    for obj in rendered:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "abengine", obj["kind"]


def test_deployment_selector_matches_its_pod_labels() -> None:
    deployment = k8s_one("Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"


def test_service_targets_the_engine_http_port() -> None:
    service = k8s_one("Service")
    pod_labels = k8s_one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    ports = {p["name"]: p["containerPort"] for p in engine_container()["ports"]}
    svc_ports = {p["name"]: p for p in service["spec"]["ports"]}
    target = svc_ports["http"]["targetPort"]
    container_port = ports[target] if isinstance(target, str) else target
    assert container_port in ports.values()
    assert container_port == settings_http_port() == int(configmap_data()["ABENGINE_HTTP_PORT"])
    # the idle learning process's port, where its metrics are scraped, is the one the ConfigMap sets
    config = Settings(**configmap_data())
    if config.learn_in == "idle-process":
        assert ports[svc_ports["learner"]["targetPort"]] == config.learner_http_port


def test_engine_probes_hit_the_api_paths() -> None:
    engine = engine_container()
    port_names = {p["name"] for p in engine["ports"]}
    expected = {
        "startupProbe": LIVENESS_PATH,
        "livenessProbe": LIVENESS_PATH,
        "readinessProbe": READINESS_PATH,
    }
    for probe, path in expected.items():
        get = engine[probe]["httpGet"]
        assert get["path"] == path, probe
        assert get["port"] in port_names or get["port"] == settings_http_port(), probe


def test_probe_and_metrics_paths_are_served_by_the_api() -> None:
    api = REPO / "engine" / "api.py"
    if not api.exists():
        pytest.skip("engine/api.py not written yet; paths checked against the fixed contract only")
    source = api.read_text()
    for path in (LIVENESS_PATH, READINESS_PATH, METRICS_PATH):
        assert f'"{path}"' in source or f"'{path}'" in source, f"engine/api.py serves no {path}"


def test_k8s_engine_env_names_are_known_to_settings() -> None:
    known = settings_env_names()
    unknown = set(configmap_data()) - known
    assert not unknown, f"ConfigMap keys Settings does not know: {sorted(unknown)}"
    engine = engine_container()
    unknown = {e["name"] for e in engine.get("env", [])} - known
    assert not unknown, f"engine container env names Settings does not know: {sorted(unknown)}"
    for ref in engine["envFrom"]:
        assert ref["configMapRef"]["name"] == k8s_one("ConfigMap")["metadata"]["name"]


def test_k8s_configmap_values_parse_as_settings() -> None:
    validate_env(configmap_data())
    settings = Settings(**configmap_data())
    assert settings.http_host == "0.0.0.0"
    assert settings.kafka_bootstrap_servers and settings.redis_url, "workers must use the cluster's services"


def test_k8s_engine_user_and_writable_paths() -> None:
    engine = engine_container()
    assert engine["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in engine["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in engine["env"]}
    assert {"/tmp", env["ABENGINE_DATA_DIR"]} <= mounts, "a read-only root needs writable /tmp and data dir"
    runtime_env = dockerfile_env(parse_dockerfile()[-1])
    assert env["ABENGINE_DATA_DIR"] == runtime_env["ABENGINE_DATA_DIR"]
    volumes = {v["name"] for v in k8s_one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    for c in k8s_one("Deployment")["spec"]["template"]["spec"]["containers"]:
        for m in c.get("volumeMounts", []):
            assert m["name"] in volumes, f"{c['name']} mounts undefined volume {m['name']}"


def test_vllm_sidecar_requests_a_gpu_and_matches_the_engine_url() -> None:
    vllm = vllm_container()
    assert vllm["image"].startswith("vllm/vllm-openai:")
    assert int(vllm["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert "nvidia.com/gpu" not in engine_container()["resources"].get("limits", {})
    args = vllm["args"]
    port = int(args[args.index("--port") + 1])
    assert port in {p["containerPort"] for p in vllm["ports"]}
    base = urlsplit(configmap_data()["ABENGINE_GEN_VLLM_BASE_URL"])
    assert (base.hostname, base.port, base.path) == ("localhost", port, "/v1"), "engine looks elsewhere"
    # The served model and the model the engine asks for come from the same ConfigMap key.
    assert vllm["command"] == ["vllm", "serve"] and args[0] == "$(ABENGINE_GEN_VLLM_MODEL)"
    env = {e["name"]: e for e in vllm["env"]}
    ref = env["ABENGINE_GEN_VLLM_MODEL"]["valueFrom"]["configMapKeyRef"]
    assert ref["name"] == k8s_one("ConfigMap")["metadata"]["name"] and ref["key"] in configmap_data()
    assert vllm["livenessProbe"]["httpGet"]["port"] in {p["name"] for p in vllm["ports"]}


def test_hpa_scales_the_deployment_within_the_partition_count() -> None:
    hpa, deployment = k8s_one("HorizontalPodAutoscaler"), k8s_one("Deployment")
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == (
        "apps/v1",
        "Deployment",
        deployment["metadata"]["name"],
    )
    lo, hi = hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]
    assert 2 <= lo <= hi <= int(configmap_data()["ABENGINE_TOPIC_PARTITIONS"]), (
        "idle workers beyond partitions"
    )
    for metric in hpa["spec"]["metrics"]:
        if metric["type"] == "ContainerResource":
            spec = metric["containerResource"]
            target = container(deployment["spec"]["template"]["spec"], spec["container"])
            assert spec["name"] in target["resources"]["requests"], "utilization needs a request"


def test_pdb_covers_the_worker_pods_and_leaves_one_running() -> None:
    pdb = k8s_one("PodDisruptionBudget")
    pod_labels = k8s_one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] < k8s_one("HorizontalPodAutoscaler")["spec"]["minReplicas"]


def test_servicemonitor_scrapes_the_service_metrics_port() -> None:
    monitor, service = k8s_one("ServiceMonitor"), k8s_one("Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint["path"] == METRICS_PATH
    # The alert on `up{job="abengine"}` relies on the job label defaulting to the Service's name.
    assert "jobLabel" not in monitor["spec"] and service["metadata"]["name"] == "abengine"


def test_secret_keys_are_documented() -> None:
    doc = DEPLOY_DOC.read_text()
    pod = k8s_one("Deployment")["spec"]["template"]["spec"]
    refs = [
        e["valueFrom"]["secretKeyRef"]
        for c in pod["containers"]
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    ]
    assert refs
    for ref in refs:
        assert ref["name"] in doc and ref["key"] in doc, f"docs/DEPLOY.md never says how to create {ref}"


# ============================================================ alerts and dashboard


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(ALERTS_FILE.read_text())["groups"] for r in g["rules"]]


def test_prometheusrule_carries_the_alerts_file() -> None:
    assert k8s_one("PrometheusRule")["spec"]["groups"] == yaml.safe_load(ALERTS_FILE.read_text())["groups"]


def test_alerts_cover_lag_dead_letters_and_decide_p99() -> None:
    exprs = {r["alert"]: r["expr"] for r in alert_rules()}
    joined = list(exprs.values())
    assert any("abengine_consumer_lag" in e for e in joined)
    assert any("abengine_deadletter_total" in e for e in joined)
    assert any(
        "histogram_quantile(0.99" in e and "abengine_decide_latency_seconds_bucket" in e for e in joined
    )
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]


def test_alert_expressions_reference_known_metrics() -> None:
    for rule in alert_rules():
        assert unknown_series(rule["expr"]) == [], rule["alert"]


def test_alert_rules_and_prometheus_config_pass_promtool(tmp_path: Path) -> None:
    tool = promtool()
    proc = subprocess.run(
        [tool, "check", "rules", str(ALERTS_FILE)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    config["rule_files"] = [str(ALERTS_FILE)]  # the in-container path, resolved here
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run([tool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@cache
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_FILE.read_text())


def dashboard_targets() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


def grafana_to_promql(expr: str) -> str:
    """Replace Grafana's variables with values Prometheus would see; unknown variables fail."""
    variables = {v["name"] for v in dashboard()["templating"]["list"]}
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
    for name in re.findall(r"\$(\w+)", expr):
        assert name in variables, f"dashboard uses undefined variable ${name}"
    return re.sub(r"\$(\w+)", ".*", expr)


def test_dashboard_has_a_panel_for_each_required_chart() -> None:
    panels = [(p["title"], [t["expr"] for t in p.get("targets", [])]) for p in dashboard()["panels"]]

    def has(pred: Any) -> bool:
        return any(pred(" ".join(exprs)) for _, exprs in panels)

    assert has(lambda e: "rate(abengine_decisions_total" in e), "decisions/s"
    assert has(
        lambda e: (
            "histogram_quantile(0.5," in e
            and "histogram_quantile(0.99," in e
            and "abengine_decide_latency_seconds_bucket" in e
        )
    ), "decide latency p50/p99"
    assert has(lambda e: "by (type)" in e and "rate(abengine_events_consumed_total" in e), "events/s by type"
    assert has(lambda e: "abengine_consumer_lag" in e), "consumer lag"
    assert has(lambda e: "abengine_variant_reward_rate" in e and "variant" in e), "reward rate per variant"
    assert has(lambda e: "rate(abengine_deadletter_total" in e), "dead-letter rate"


def test_dashboard_queries_reference_known_metrics() -> None:
    for panel, target in dashboard_targets():
        assert unknown_series(grafana_to_promql(target["expr"])) == [], panel["title"]
    for var in dashboard()["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((\w+), *\w+\)", var["query"]["query"])
            assert m and m.group(1) in known_series(), var["name"]


def test_dashboard_queries_pass_promtool(tmp_path: Path) -> None:
    exprs = {f"{p['title']}_{t['refId']}": grafana_to_promql(t["expr"]) for p, t in dashboard_targets()}
    promtool_check_exprs(exprs, tmp_path)


def test_dashboard_panels_use_the_datasource_variable() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel, target in dashboard_targets():
        for ds in (panel["datasource"], target["datasource"]):
            assert ds == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_dashboard_layout_is_sound() -> None:
    d = dashboard()
    assert d["uid"] and d["title"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"panel {p['title']!r} overlaps another"
        cells |= mine
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]


# ============================================================ every ABENGINE_* name anywhere


def _deploy_text_files() -> Iterator[Path]:
    for path in sorted(DEPLOY.rglob("*")):
        if path.is_file() and "vllm" not in path.relative_to(DEPLOY).parts[:1]:
            yield path
    yield DEPLOY_DOC


def test_every_abengine_env_name_in_deploy_files_and_docs_is_a_setting() -> None:
    known = settings_env_names()
    for path in _deploy_text_files():
        names = set(re.findall(r"\bABENGINE_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
        unknown = names - known
        assert not unknown, f"{path.relative_to(REPO)} names settings that do not exist: {sorted(unknown)}"
