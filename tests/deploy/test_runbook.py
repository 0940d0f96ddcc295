"""Every command of the operators' runbook (docs/operations.md) exists: `cyberclaims ...` in
the operator CLI (with its options), `kubectl ...` as a kubectl command and subcommand."""

from __future__ import annotations

import re
import shlex
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from cyberclaims.cli import app
from tests.deploy.support import ROOT, Manifest, kubectl, option, render, selects

RUNBOOK = ROOT / "docs" / "operations.md"
SHELL_BLOCK = re.compile(r"^\s*```(?:bash|sh|shell|console)\n(.*?)^\s*```", re.DOTALL | re.MULTILINE)
KUBECTL_GLOBAL_FLAGS_WITH_VALUE = {"-n", "--namespace", "--context", "--kubeconfig", "--cluster",
                                   "--user", "-s", "--server"}


def runbook_commands() -> list[list[str]]:
    """Every simple command in the runbook's shell blocks, as argument lists."""
    commands = []
    for block in SHELL_BLOCK.findall(RUNBOOK.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if not line or line.startswith("#"):
                continue
            for part in re.split(r"\s(?:\|\|?|&&|;)\s", line):
                argv = shlex.split(part, comments=True)
                while argv and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0]):
                    argv.pop(0)
                if argv:
                    commands.append(argv)
    return commands


def cyberclaims_invocations() -> list[list[str]]:
    """`cyberclaims` argument lists, direct or run in a pod (`kubectl exec ... -- cyberclaims`)."""
    found = []
    for argv in runbook_commands():
        if argv[0] == "cyberclaims":
            found.append(argv[1:])
        elif argv[0] == "kubectl" and "--" in argv:
            rest = argv[argv.index("--") + 1:]
            if rest and rest[0] == "cyberclaims":
                found.append(rest[1:])
    return found


def test_the_runbook_only_uses_kubectl_and_cyberclaims() -> None:
    programs = {argv[0] for argv in runbook_commands()}
    assert programs <= {"kubectl", "cyberclaims"}, programs
    assert cyberclaims_invocations()


def _resolve(args: list[str]) -> tuple[list[str], Any, list[str]]:
    """Split cyberclaims arguments into the command path, the (click) command and the rest."""
    command = typer.main.get_command(app)
    path: list[str] = []
    rest = list(args)
    while hasattr(command, "commands") and rest and rest[0] in command.commands:
        path.append(rest.pop(0))
        command = command.commands[path[-1]]
    assert not hasattr(command, "commands"), f"`cyberclaims {' '.join(args)}`: no such command"
    return path, command, rest


@pytest.mark.parametrize("args", cyberclaims_invocations(), ids=" ".join)
def test_cyberclaims_commands_exist(args: list[str]) -> None:
    path, command, rest = _resolve(args)
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for arg in rest:
        if arg.startswith("-"):
            assert arg.split("=", 1)[0] in options, f"cyberclaims {' '.join(path)}: no option {arg}"


@cache
def kubectl_help(path: tuple[str, ...]) -> tuple[int, str]:
    result = subprocess.run([kubectl(), *path, "--help"], capture_output=True, text=True,
                            timeout=30, check=False)
    return result.returncode, result.stdout


def _runs_without_subcommand(path: tuple[str, ...], help_text: str, subcommands: set[str]) -> bool:
    """`kubectl apply -f x` runs; `kubectl rollout x` or `kubectl create secret x` need one."""
    usage = help_text.split("Usage:", 1)[1].strip().splitlines()[0]
    after = usage.removeprefix("kubectl " + " ".join(path)).split()
    first = after[0] if after else ""
    return not (first in ("SUBCOMMAND", "[flags]") or first.lstrip("(") in subcommands)


def _subcommands(help_text: str) -> set[str]:
    section = help_text.split("Available Commands:", 1)
    if len(section) == 1:
        return set()
    names = set()
    for line in section[1].splitlines()[1:]:
        if not line.startswith("  "):
            break
        names.add(line.split()[0])
    return names


def kubectl_invocations() -> list[list[str]]:
    return [argv[1:] for argv in runbook_commands() if argv[0] == "kubectl"]


def kubectl_command_path(args: list[str]) -> tuple[str, ...]:
    """The verb and subcommands of a kubectl argument list (global flags skipped)."""
    words: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            break
        if arg.startswith("-"):
            index += 2 if arg in KUBECTL_GLOBAL_FLAGS_WITH_VALUE else 1
            continue
        words.append(arg)
        index += 1
    assert words, f"kubectl {' '.join(args)}: no verb"
    path: tuple[str, ...] = (words[0],)
    code, text = kubectl_help(path)
    assert code == 0, f"kubectl {words[0]}: not a kubectl command"
    for word in words[1:]:
        subcommands = _subcommands(text)
        if word not in subcommands and (not subcommands
                                        or _runs_without_subcommand(path, text, subcommands)):
            break
        assert word in subcommands, f"kubectl {' '.join(path)}: no subcommand {word}"
        path = (*path, word)
        code, text = kubectl_help(path)
        assert code == 0
    return path


@pytest.mark.parametrize("args", kubectl_invocations(), ids=" ".join)
def test_kubectl_commands_exist(args: list[str]) -> None:
    kubectl_command_path(args)


def test_the_kubectl_check_refuses_made_up_commands() -> None:
    with pytest.raises(AssertionError):
        kubectl_command_path(["-n", "x", "rollout", "rewind", "deployment/intake"])
    with pytest.raises(AssertionError):
        kubectl_command_path(["deploy", "everything"])
    with pytest.raises(AssertionError):
        kubectl_command_path(["create", "secret", "opaque", "x"])
    assert kubectl_command_path(["create", "secret", "generic", "x"]) == \
        ("create", "secret", "generic")
    assert kubectl_command_path(["apply", "-k", "deploy/k8s/overlays/prod"]) == ("apply",)
    assert kubectl_command_path(["rollout", "undo", "deployment/payout"]) == ("rollout", "undo")


def test_the_cyberclaims_check_refuses_made_up_commands() -> None:
    with pytest.raises(AssertionError):
        _resolve(["dlq"])
    with pytest.raises(AssertionError):
        _resolve(["deploy", "--all"])
    assert _resolve(["dlq", "replay", "--all"])[0] == ["dlq", "replay"]


KIND_OF_RESOURCE = {"job": "Job", "deployment": "Deployment", "pods": "Pod",
                    "configmap": "ConfigMap", "kafkatopic": "KafkaTopic"}


def _labels_of_kind(manifests: list[Manifest], kind: str) -> list[dict[str, str]]:
    if kind == "Pod":
        return [m["spec"]["template"]["metadata"]["labels"] for m in manifests
                if m["kind"] in ("Deployment", "Job")]
    return [m["metadata"].get("labels", {}) for m in manifests if m["kind"] == kind]


def _selector(args: list[str]) -> dict[str, Any]:
    (value,) = option(args, "-l")
    key, _, wanted = value.partition("=")
    return {"matchLabels": {key: wanted}}


def test_label_selectors_in_the_runbook_select_something() -> None:
    """`kubectl ... -l key=value` must match objects the overlays actually render."""
    manifests = render("prod")
    checked = 0
    for args in kubectl_invocations():
        if "-l" not in args:
            continue
        selector = _selector(args)
        if "apply" in args:
            (directory,) = option(args, "-k")
            labels = [m["metadata"].get("labels", {}) for m in render(Path(directory).name)]
        else:
            (kind,) = [KIND_OF_RESOURCE[a] for a in args if a in KIND_OF_RESOURCE]
            labels = _labels_of_kind(manifests, kind)
        assert any(selects(selector, item) for item in labels), " ".join(args)
        checked += 1
    assert checked
