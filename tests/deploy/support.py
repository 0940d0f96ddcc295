"""Helpers for the deployment checks: render the kustomize overlays, read the compose file,
and the minimal schemas of the two custom resources the Kubernetes schemas do not cover."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
COMPOSE_FILE = ROOT / "docker-compose.yml"
SERVICES = {"intake": 8001, "triage": 8002, "payout": 8003, "notify": 8004, "risk": 8005,
            "insights": 8006}
# The Kubernetes version whose schemas (shipped by kubernetes-validate) the manifests must meet.
KUBERNETES_VERSION = "1.30.0"
LISTEN_ALL = "0.0.0.0"

Manifest = dict[str, Any]


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        raise AssertionError("kubectl is required to render the overlays (kubectl kustomize)")
    return path


@cache
def _render(overlay: str) -> str:
    result = subprocess.run([kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"kubectl kustomize {overlay} failed:\n{result.stderr}"
    return result.stdout


def render(overlay: str) -> list[Manifest]:
    """Every object of an overlay, as `kubectl kustomize` renders it (parsed afresh)."""
    return [doc for doc in yaml.safe_load_all(_render(overlay)) if doc]


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def named(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    for manifest in of_kind(manifests, kind):
        if manifest["metadata"]["name"] == name:
            return manifest
    raise KeyError(f"{kind}/{name}")


def service_deployments(manifests: list[Manifest]) -> dict[str, Manifest]:
    return {d["metadata"]["name"]: d for d in of_kind(manifests, "Deployment")
            if d["metadata"]["labels"].get("app.kubernetes.io/component") == "service"}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) selects these labels."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or ():
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def compose_topic_commands() -> list[list[str]]:
    """The argument lists of every kafka-topics.sh call of the compose topic-creation job."""
    script = "\n".join(compose()["services"]["kafka-topics"]["command"])
    return [shlex.split(line) for line in script.splitlines()
            if line.strip().startswith("/opt/kafka/bin/kafka-topics.sh")]


def option(argv: list[str], name: str) -> list[str]:
    """Every value given to `name` in an argument list (`--x v` or `--x=v`)."""
    values = []
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            values.append(argv[index + 1])
        elif arg.startswith(name + "="):
            values.append(arg.split("=", 1)[1])
    return values


_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253}
_METADATA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": _NAME,
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
_LABEL_SELECTOR = {
    "type": "object",
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {"type": "array"},
    },
    "additionalProperties": False,
}
_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?"
                                          r"(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}

_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
_ALERTING_OR_RECORDING_RULE = {
    "type": "object",
    "required": ["expr"],
    "properties": {
        "alert": {"type": "string"},
        "record": {"type": "string"},
        "expr": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        "for": _DURATION,
        "keep_firing_for": _DURATION,
        "labels": _STRINGS,
        "annotations": _STRINGS,
    },
    "additionalProperties": False,
}
_HPA_BEHAVIOR_RULES = {
    "type": "object",
    "properties": {
        "stabilizationWindowSeconds": {"type": "integer", "minimum": 0, "maximum": 3600},
        "selectPolicy": {"enum": ["Max", "Min", "Disabled"]},
        "policies": {"type": "array", "items": {
            "type": "object",
            "required": ["type", "value", "periodSeconds"],
            "properties": {"type": {"enum": ["Pods", "Percent"]},
                           "value": {"type": "integer", "minimum": 1},
                           "periodSeconds": {"type": "integer", "minimum": 1, "maximum": 1800}},
            "additionalProperties": False,
        }},
    },
    "additionalProperties": False,
}
# KEDA's scalers read trigger metadata as strings only; these are the kafka scaler's keys.
_KAFKA_TRIGGER_METADATA = {
    "type": "object",
    "required": ["bootstrapServers", "consumerGroup", "lagThreshold"],
    "properties": {
        "bootstrapServers": {"type": "string", "pattern": r"^[^,\s]+:[0-9]+(,[^,\s]+:[0-9]+)*$"},
        "consumerGroup": {"type": "string", "minLength": 1},
        "topic": {"type": "string"},
        "lagThreshold": {"type": "string", "pattern": "^[1-9][0-9]*$"},
        "activationLagThreshold": {"type": "string", "pattern": "^[0-9]+$"},
        "offsetResetPolicy": {"enum": ["earliest", "latest"]},
        "allowIdleConsumers": {"enum": ["true", "false"]},
        "excludePersistentLag": {"enum": ["true", "false"]},
        "scaleToZeroOnInvalidOffset": {"enum": ["true", "false"]},
    },
    "additionalProperties": False,
}

def _custom_resource(api_version: str, kind: str, *, spec: dict[str, Any],
                     metadata: dict[str, Any] = _METADATA) -> dict[str, Any]:
    """A custom resource's schema: its apiVersion and kind, metadata and `spec`, nothing else."""
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {"apiVersion": {"const": api_version}, "kind": {"const": kind},
                       "metadata": metadata, "spec": spec},
        "additionalProperties": False,
    }


# Custom resources are not in the Kubernetes schemas. These are the fields we use, checked
# against the CRDs' own rules (Strimzi kafka.strimzi.io/v1beta2 KafkaTopic,
# prometheus-operator monitoring.coreos.com/v1 ServiceMonitor and PrometheusRule, KEDA
# keda.sh/v1alpha1 ScaledObject); unknown fields are refused.
CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): _custom_resource(
        "keda.sh/v1alpha1", "ScaledObject",
        spec={
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"},
                                   "kind": {"type": "string"},
                                   "apiVersion": {"type": "string"},
                                   "envSourceContainerName": {"type": "string"}},
                    "additionalProperties": False,
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "fallback": {
                    "type": "object",
                    "required": ["failureThreshold", "replicas"],
                    "properties": {"failureThreshold": {"type": "integer", "minimum": 1},
                                   "replicas": {"type": "integer", "minimum": 0}},
                    "additionalProperties": False,
                },
                "advanced": {
                    "type": "object",
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "behavior": {
                                    "type": "object",
                                    "properties": {"scaleUp": _HPA_BEHAVIOR_RULES,
                                                   "scaleDown": _HPA_BEHAVIOR_RULES},
                                    "additionalProperties": False,
                                },
                            },
                            "additionalProperties": False,
                        },
                    },
                    "additionalProperties": False,
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metadata": _STRINGS,
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {"name": {"type": "string"},
                                               "kind": {"enum": ["TriggerAuthentication",
                                                                 "ClusterTriggerAuthentication"]}},
                                "additionalProperties": False,
                            },
                        },
                        "additionalProperties": False,
                        "allOf": [{
                            "if": {"properties": {"type": {"const": "kafka"}}},
                            "then": {"properties": {"metadata": _KAFKA_TRIGGER_METADATA}},
                        }, {
                            "if": {"properties": {"type": {"enum": ["cpu", "memory"]}}},
                            "then": {"required": ["metricType"], "properties": {
                                "metricType": {"enum": ["Utilization", "AverageValue"]},
                                "metadata": {"required": ["value"]}}},
                        }],
                    },
                },
            },
            "additionalProperties": False,
        }),
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): _custom_resource(
        "kafka.strimzi.io/v1beta2", "KafkaTopic",
        metadata={**_METADATA, "required": ["name", "labels"], "properties": {
            **_METADATA["properties"],
            "labels": {"type": "object", "required": ["strimzi.io/cluster"],
                       "additionalProperties": {"type": "string"}},
        }},
        spec={
            "type": "object",
            "required": ["partitions", "replicas", "config"],
            "properties": {
                "topicName": {"type": "string", "pattern": r"^[a-zA-Z0-9._-]{1,249}$"},
                "partitions": {"type": "integer", "minimum": 1},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                "config": {"type": "object"},
            },
            "additionalProperties": False,
        }),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _custom_resource(
        "monitoring.coreos.com/v1", "ServiceMonitor",
        spec={
            "type": "object",
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": _LABEL_SELECTOR,
                "namespaceSelector": {"type": "object"},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION,
                            "authorization": {
                                "type": "object",
                                "required": ["credentials"],
                                "properties": {
                                    "type": {"type": "string"},
                                    "credentials": {
                                        "type": "object",
                                        "required": ["key"],
                                        "properties": {"name": {"type": "string"},
                                                       "key": {"type": "string"},
                                                       "optional": {"type": "boolean"}},
                                        "additionalProperties": False,
                                    },
                                },
                                "additionalProperties": False,
                            },
                        },
                        "additionalProperties": False,
                    },
                },
            },
            "additionalProperties": False,
        }),
    ("monitoring.coreos.com/v1", "PrometheusRule"): _custom_resource(
        "monitoring.coreos.com/v1", "PrometheusRule",
        spec={
            "type": "object",
            "properties": {"groups": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "interval": _DURATION,
                        "rules": {"type": "array", "items": _ALERTING_OR_RECORDING_RULE},
                    },
                    "additionalProperties": False,
                },
            }},
            "additionalProperties": False,
        }),
}
