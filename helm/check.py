"""Renders, lints and validates the chart; `make helm-check` (part of `make test`) runs it
with the tools deploy/local/tools.sh pins.

For the default values and each file of examples/: `helm lint --strict` and a render with
the values schema, then every manifest through `kubernetes-validate --strict` (Kubernetes
schemas, unknown fields refused). Custom resources (KEDA, Prometheus Operator, Strimzi) have
no schema there; they are checked for their apiVersion and the fields the chart sets, and
the alert rules with `promtool check rules` when promtool is installed. The rendered
config.toml is loaded by the real binary (`mentorstream config`, $MENTORSTREAM_BIN) with each
Deployment's environment, so a setting the services would refuse fails here.
Each file of tests/invalid/ must be refused, with the message its `# refused:` line names.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import helm_python as helm
import yaml

HERE = pathlib.Path(__file__).resolve().parent
CHART = HERE / "mentorstream"
KUBERNETES_VERSION = "1.30.0"
CUSTOM = {
    "ScaledObject": "keda.sh/v1alpha1",
    "TriggerAuthentication": "keda.sh/v1alpha1",
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
    "KafkaTopic": "kafka.strimzi.io/v1beta2",
}


def values_of(path: pathlib.Path | None) -> dict:
    return yaml.safe_load(path.read_text()) or {} if path else {}


def render(values: dict) -> list[dict]:
    chart = helm.Chart.load(CHART)
    chart.validate_schema(values)
    manifests = chart.render(values, name="ms", namespace="mentorstream", is_install=True)
    documents = []
    for template, text in sorted(manifests.items()):
        if template.endswith("NOTES.txt"):
            continue
        for document in yaml.safe_load_all(text):
            if document:
                documents.append(document)
    return documents


def lint(values: dict) -> list[str]:
    report = helm.lint(str(CHART), values, strict=True, kube_version=f"v{KUBERNETES_VERSION}")
    problems = [m["error"] for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    return problems + list(report.get("errors") or [])


def check_valid(name: str, path: pathlib.Path | None) -> list[str]:
    values = values_of(path)
    failures = [f"{name}: lint: {problem}" for problem in lint(values)]
    documents = render(values)
    kinds: dict[str, int] = {}
    dashboards = False
    with tempfile.TemporaryDirectory() as directory:
        files = []
        for index, document in enumerate(documents):
            kind = document["kind"]
            kinds[kind] = kinds.get(kind, 0) + 1
            if kind in CUSTOM:
                if document["apiVersion"] != CUSTOM[kind]:
                    failures.append(f"{name}: {kind} has apiVersion {document['apiVersion']}")
                if not document.get("spec"):
                    failures.append(f"{name}: {kind} {document['metadata']['name']} has no spec")
                if kind == "PrometheusRule":
                    failures += promtool(name, document["spec"])
                continue
            if kind == "ConfigMap" and "grafana_dashboard" in document["metadata"].get("labels", {}):
                failures += grafana(name, document)
                dashboards = True
            file = pathlib.Path(directory) / f"{index:03}-{kind}.yaml"
            file.write_text(yaml.safe_dump(document))
            files.append(str(file))
        validated = subprocess.run(
            [str(pathlib.Path(sys.executable).parent / "kubernetes-validate"), "--strict",
             "--quiet", "-k", KUBERNETES_VERSION, *files],
            capture_output=True, text=True,
        )
        if validated.returncode != 0:
            failures.append(f"{name}: kubernetes-validate:\n{validated.stdout}{validated.stderr}")
        failures += load_configuration(name, documents, pathlib.Path(directory))
    # `values` override the chart's defaults, which ship the board.
    if values.get("metrics", {}).get("grafanaDashboard", {}).get("enabled", True) and not dashboards:
        failures.append(f"{name}: no ConfigMap carries the Grafana board")
    print(f"ok   {name}: {sum(kinds.values())} manifests "
          f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))})" if not failures else
          f"FAIL {name}")
    return failures


# Stand-ins for what the Secrets hold, in the form the services require.
SECRET_STAND_INS = {
    "MENTORSTREAM__POSTGRES__URL": "postgres://mentorstream:secret@postgres:5432/mentorstream",
    "MENTORSTREAM__MENTORSHIP__DATABASE_URL": "postgres://m:secret@postgres:5432/mentorship",
    "MENTORSTREAM__NOTIFIER__DATABASE_URL": "postgres://n:secret@postgres:5432/notifier",
    "MENTORSTREAM__REDIS__URL": "rediss://:secret@redis:6379",
    "MENTORSTREAM_KAFKA_PROPERTY_SASL_PASSWORD": "secret",
}


def load_configuration(name: str, documents: list[dict], directory: pathlib.Path) -> list[str]:
    binary = os.environ.get("MENTORSTREAM_BIN")
    if not binary:
        print(f"note {name}: MENTORSTREAM_BIN unset; config.toml not loaded by the services")
        return []
    config_maps = [d for d in documents
                   if d["kind"] == "ConfigMap" and "config.toml" in d.get("data", {})]
    config = directory / "config.toml"
    config.write_text(config_maps[0]["data"]["config.toml"])
    failures = []
    for document in documents:
        if document["kind"] not in ("Deployment", "Job"):
            continue
        environment = {"PATH": os.environ.get("PATH", "")}
        for container in document["spec"]["template"]["spec"]["containers"]:
            for variable in container.get("env", []):
                if "valueFrom" in variable and variable["name"] in SECRET_STAND_INS:
                    environment[variable["name"]] = SECRET_STAND_INS[variable["name"]]
        loaded = subprocess.run([binary, "--config", str(config), "config"],
                                capture_output=True, text=True, env=environment)
        if loaded.returncode != 0:
            failures.append(f"{name}: {document['metadata']['name']} would not start: "
                            f"{loaded.stdout}{loaded.stderr}")
        elif "secret@" in loaded.stdout:
            failures.append(f"{name}: `mentorstream config` printed a secret")
    return failures


ALERT_TESTS = CHART / "files" / "alerts-test.yaml"
SOURCES = HERE.parent


def exported_metrics() -> set[str]:
    """Every `mentorstream_*` metric name the Rust sources mention."""
    names: set[str] = set()
    for root in ("crates", "services"):
        for source in (SOURCES / root).rglob("*.rs"):
            names.update(re.findall(r'"(mentorstream_[a-z0-9_]+)"', source.read_text()))
    return names


def grafana(name: str, document: dict) -> list[str]:
    """The Grafana board parses, every panel queries something, every query is valid PromQL
    (checked by promtool as recording rules) and names only metrics the services export."""
    failures = []
    board = json.loads(document["data"]["mentorstream.json"])
    exprs = []
    for panel in board.get("panels", []):
        targets = [t.get("expr", "") for t in panel.get("targets", [])]
        if not targets or not all(targets):
            failures.append(f"{name}: Grafana panel {panel.get('title')!r} has no query")
        exprs += targets
    exported = exported_metrics()
    for expr in exprs:
        for metric in re.findall(r"\b(mentorstream_[a-z0-9_]+?)(?:_bucket|_sum|_count)?\b", expr):
            if metric not in exported:
                failures.append(f"{name}: Grafana query {expr!r} names {metric}, which nothing exports")
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel_{index}", "expr": expr} for index, expr in enumerate(exprs)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        yaml.safe_dump(rules, file)
        file.flush()
        checked = subprocess.run(["promtool", "check", "rules", file.name],
                                 capture_output=True, text=True)
    if checked.returncode != 0:
        failures.append(f"{name}: Grafana queries: {checked.stdout}{checked.stderr}")
    return failures


def promtool(name: str, spec: dict) -> list[str]:
    """The rendered rules pass `promtool check rules` and the fixtures of `files/alerts-test.yaml`
    (`promtool test rules`: each alert fires where it should and stays quiet where it should)."""
    if shutil.which("promtool") is None:
        return [f"{name}: promtool is missing (make tools installs Debian's prometheus)"]
    with tempfile.TemporaryDirectory() as directory:
        rules = pathlib.Path(directory) / "alerts.yaml"
        rules.write_text(yaml.safe_dump(spec))
        tests = pathlib.Path(directory) / "alerts-test.yaml"
        tests.write_text(ALERT_TESTS.read_text())
        failures = []
        for command in (["promtool", "check", "rules", str(rules)],
                        ["promtool", "test", "rules", str(tests)]):
            checked = subprocess.run(command, capture_output=True, text=True)
            if checked.returncode != 0:
                failures.append(f"{name}: {' '.join(command[:3])}: {checked.stdout}{checked.stderr}")
        return failures


def check_refused(path: pathlib.Path) -> list[str]:
    expected = next(
        (line.split(":", 1)[1].strip() for line in path.read_text().splitlines()
         if line.startswith("# refused:")),
        None,
    )
    if expected is None:
        return [f"{path.name}: names no `# refused:` message"]
    try:
        render(values_of(path))
    except helm.HelmError as error:
        message = str(error)
        if expected not in message:
            return [f"{path.name}: refused, but with `{message}`, not `{expected}`"]
        print(f"ok   refused {path.name}: {expected}")
        return []
    return [f"{path.name}: rendered, but must be refused ({expected})"]


def main() -> int:
    failures = check_valid("default values", None)
    for example in sorted((HERE / "examples").glob("*.yaml")):
        failures += check_valid(f"examples/{example.name}", example)
    for invalid in sorted((HERE / "tests" / "invalid").glob("*.yaml")):
        failures += check_refused(invalid)
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
