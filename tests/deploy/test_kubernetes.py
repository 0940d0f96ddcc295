"""The kustomize overlays render, every object meets the Kubernetes schemas (offline, strict),
and the deployment rules of the platform hold in every overlay."""

from __future__ import annotations

from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from bench.system import millicores
from shared.topics import CATALOG
from tests.deploy.support import (
    CRD_SCHEMAS,
    KUBERNETES_VERSION,
    LISTEN_ALL,
    OVERLAYS,
    SERVICES,
    Manifest,
    named,
    of_kind,
    render,
    selects,
    service_deployments,
)

pytestmark = pytest.mark.parametrize("overlay", OVERLAYS)


def test_every_object_validates(overlay: str) -> None:
    manifests = render(overlay)
    assert manifests
    for manifest in manifests:
        crd_schema = CRD_SCHEMAS.get((manifest["apiVersion"], manifest["kind"]))
        if crd_schema is not None:
            jsonschema.validate(manifest, crd_schema)
            continue
        # Raises SchemaNotFoundError for a kind the schemas lack: every other kind must be core.
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_the_validator_refuses_an_unknown_field(overlay: str) -> None:
    deployment = service_deployments(render(overlay))["intake"]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_per_service_objects_exist(overlay: str) -> None:
    manifests = render(overlay)
    assert set(service_deployments(manifests)) == set(SERVICES)
    for name in SERVICES:
        named(manifests, "Service", name)
        named(manifests, "HorizontalPodAutoscaler", name)
        named(manifests, "PodDisruptionBudget", name)
        named(manifests, "NetworkPolicy", name)
        named(manifests, "Job", f"{name}-migrate")
        assert any(c["metadata"]["name"].startswith(f"{name}-config-")
                   for c in of_kind(manifests, "ConfigMap"))


def _containers(manifest: Manifest) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = manifest["spec"]["template"]["spec"]["containers"]
    return containers


def _locked_down(pod: dict[str, Any], container: dict[str, Any]) -> None:
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), kind


def test_every_workload_is_locked_down_and_sized(overlay: str) -> None:
    manifests = render(overlay)
    for workload in of_kind(manifests, "Deployment") + of_kind(manifests, "Job"):
        for container in _containers(workload):
            _locked_down(workload["spec"]["template"]["spec"], container)


def test_every_deployment_has_probes_and_topology_spread(overlay: str) -> None:
    for deployment in of_kind(render(overlay), "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["topologySpreadConstraints"]
        for container in pod["containers"]:
            assert "livenessProbe" in container and "readinessProbe" in container


def test_services_probe_healthz_and_readyz_on_their_port(overlay: str) -> None:
    manifests = render(overlay)
    for name, deployment in service_deployments(manifests).items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"] == ["serve", name]
        assert container["ports"] == [{"name": "http", "containerPort": SERVICES[name],
                                       "protocol": "TCP"}]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        keys = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
        for constraint in pod["topologySpreadConstraints"]:
            assert selects(constraint["labelSelector"], pod_labels(deployment))
        service = named(manifests, "Service", name)
        assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(deployment))
        assert service["spec"]["ports"][0]["port"] == SERVICES[name]


def pod_labels(workload: Manifest) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", ())}


def _config(manifests: list[Manifest], container: dict[str, Any]) -> dict[str, str]:
    """The variables a container gets from its ConfigMaps."""
    values: dict[str, str] = {}
    for source in container.get("envFrom", ()):
        values.update(named(manifests, "ConfigMap", source["configMapRef"]["name"])["data"])
    return values


def test_services_are_configured_for_production_kafka(overlay: str) -> None:
    manifests = render(overlay)
    for name, deployment in service_deployments(manifests).items():
        (container,) = _containers(deployment)
        config = _config(manifests, container)
        prefix = name.upper()
        assert config["CYBERCLAIMS_ENV"] == "production"
        assert config["CYBERCLAIMS_KAFKA_IDEMPOTENT_PRODUCER"] == "true"
        assert config["CYBERCLAIMS_KAFKA_CREATE_TOPICS"] == "false"
        assert config["CYBERCLAIMS_KAFKA_BOOTSTRAP"]
        assert config[f"{prefix}_HOST"] == LISTEN_ALL
        assert config[f"{prefix}_PORT"] == str(SERVICES[name])
        env = _env(container)
        assert env["CYBERCLAIMS_JWT_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "cyberclaims-jwt"
        assert env[f"{prefix}_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == f"{name}-database"
        assert "CYBERCLAIMS_JWT_SECRET" not in config and f"{prefix}_DATABASE_URL" not in config


def test_migration_jobs_run_migrate_with_only_the_database_secret(overlay: str) -> None:
    manifests = render(overlay)
    for name in SERVICES:
        job = named(manifests, "Job", f"{name}-migrate")
        (container,) = _containers(job)
        assert container["args"] == ["migrate", name]
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
        assert set(_env(container)) == {f"{name.upper()}_DATABASE_URL"}
        assert pod_labels(job)["app.kubernetes.io/component"] == "migration"


def test_no_secret_values_are_rendered(overlay: str) -> None:
    manifests = render(overlay)
    for secret in of_kind(manifests, "Secret"):
        assert not secret.get("data") and not secret.get("stringData"), secret["metadata"]["name"]
    for config_map in of_kind(manifests, "ConfigMap"):
        for key in config_map.get("data", {}):
            assert not any(word in key for word in ("SECRET", "PASSWORD", "DATABASE_URL")), key


def test_one_image_pinned_by_the_overlay(overlay: str) -> None:
    images = {container["image"]
              for workload in of_kind(render(overlay), "Deployment") + of_kind(render(overlay), "Job")
              for container in _containers(workload)}
    assert len(images) == 1
    (image,) = images
    name, _, tag = image.rpartition(":")
    assert name and "/" in name and tag and tag != "latest"
    if overlay == "prod":
        assert tag[0].isdigit(), "production runs a released version"


def test_consumers_never_outnumber_partitions(overlay: str) -> None:
    """One consumer group per service: replicas beyond the partitions would sit idle."""
    manifests = render(overlay)
    partitions = min(topic.partitions for topic in CATALOG)
    for name, deployment in service_deployments(manifests).items():
        hpa = named(manifests, "HorizontalPodAutoscaler", name)
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"] <= partitions
        assert deployment["spec"].get("replicas", 1) <= partitions
    topics = {t["spec"]["topicName"]: t for t in of_kind(manifests, "KafkaTopic")}
    for topic in CATALOG:
        assert topics[topic.name]["spec"]["partitions"] >= max(
            h["spec"]["maxReplicas"] for h in of_kind(manifests, "HorizontalPodAutoscaler"))


def test_replica_counts_per_overlay(overlay: str) -> None:
    for hpa in of_kind(render(overlay), "HorizontalPodAutoscaler"):
        bounds = (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"])
        assert bounds == {"dev": (1, 1), "prod": (3, 6)}[overlay]


def test_disruption_budgets_select_their_service(overlay: str) -> None:
    manifests = render(overlay)
    for name, deployment in service_deployments(manifests).items():
        pdb = named(manifests, "PodDisruptionBudget", name)
        assert selects(pdb["spec"]["selector"], pod_labels(deployment))
        assert pdb["spec"]["maxUnavailable"] == 1


def _policies(manifests: list[Manifest], labels: dict[str, str]) -> list[Manifest]:
    return [p for p in of_kind(manifests, "NetworkPolicy")
            if selects(p["spec"]["podSelector"], labels)]


def _egress_ports(policies: list[Manifest]) -> set[int]:
    return {port["port"] for policy in policies for rule in policy["spec"].get("egress", ())
            for port in rule.get("ports", ())}


def _internet_ports(policies: list[Manifest]) -> set[int]:
    """Ports open to addresses outside the cluster (an ipBlock peer)."""
    return {port["port"] for policy in policies for rule in policy["spec"].get("egress", ())
            if any("ipBlock" in peer for peer in rule.get("to", ()))
            for port in rule.get("ports", ())}


def test_network_policies_deny_by_default(overlay: str) -> None:
    manifests = render(overlay)
    deny = named(manifests, "NetworkPolicy", "default-deny")
    assert deny["spec"]["podSelector"] == {}
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    for policy in of_kind(manifests, "NetworkPolicy"):
        for rule in [*policy["spec"].get("egress", ()), *policy["spec"].get("ingress", ())]:
            assert rule.get("ports") and (rule.get("to") or rule.get("from")), \
                f"{policy['metadata']['name']}: an egress or ingress rule open to everything"


def test_each_service_reaches_only_what_it_must(overlay: str) -> None:
    manifests = render(overlay)
    for name, deployment in service_deployments(manifests).items():
        policies = _policies(manifests, pod_labels(deployment))
        ports = _egress_ports(policies)
        assert {53, 5432, 9092} <= ports, name
        internet = _internet_ports(policies)
        expected_internet = {"payout": {443}, "notify": {443, 587}}.get(name, set())
        assert internet == expected_internet, name
        expected = {53, 5432, 9092} | expected_internet
        if overlay == "dev":
            expected |= {"payout": {8010}, "notify": {1025}}.get(name, set())
        assert ports == expected, name
        for policy in policies:
            for rule in policy["spec"].get("egress", ()):
                for peer in rule.get("to", ()):
                    if "ipBlock" in peer:
                        assert {"10.0.0.0/8", "169.254.0.0/16"} <= set(peer["ipBlock"]["except"])
        ingress = [rule for p in policies for rule in p["spec"].get("ingress", ())]
        assert ingress, name
        sources = {peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                   for rule in ingress for peer in rule["from"]}
        assert sources == {"ingress-nginx", "monitoring"}
        assert {port["port"] for rule in ingress for port in rule["ports"]} == {SERVICES[name]}


def test_migrations_reach_dns_and_postgres_only(overlay: str) -> None:
    manifests = render(overlay)
    for name in SERVICES:
        policies = _policies(manifests, pod_labels(named(manifests, "Job", f"{name}-migrate")))
        assert _egress_ports(policies) == {53, 5432}


def test_the_service_monitor_scrapes_every_service(overlay: str) -> None:
    manifests = render(overlay)
    (monitor,) = of_kind(manifests, "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    # /metrics answers operators only: Prometheus sends an operator token from a secret.
    assert endpoint["authorization"] == {
        "type": "Bearer", "credentials": {"name": "cyberclaims-metrics", "key": "token"}}
    scraped = {s["metadata"]["name"] for s in of_kind(manifests, "Service")
               if selects(monitor["spec"]["selector"], s["metadata"]["labels"])}
    assert scraped == set(SERVICES)
    for name in SERVICES:
        assert named(manifests, "Service", name)["spec"]["ports"][0]["name"] == "http"


def test_everything_lands_in_one_restricted_namespace(overlay: str) -> None:
    manifests = render(overlay)
    (namespace,) = of_kind(manifests, "Namespace")
    name = namespace["metadata"]["name"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for manifest in manifests:
        if manifest["kind"] != "Namespace":
            assert manifest["metadata"]["namespace"] == name, manifest["metadata"]["name"]


def test_the_dispatch_path_weighs_five_times_the_rest(overlay: str) -> None:
    """Intake and triage request five times the CPU of payout and notify: the CPU weight under
    contention that `bench/` gives the services too (`bench.system.niceness_as_deployed`)."""
    requests = {name: millicores(_containers(deployment)[0]["resources"]["requests"]["cpu"])
                for name, deployment in service_deployments(render(overlay)).items()}
    assert set(requests) == {"intake", "triage", "payout", "notify", "insights"}
    assert requests["intake"] == requests["triage"]
    assert requests["payout"] == requests["notify"] == requests["insights"]
    assert requests["intake"] == 5 * requests["notify"]
