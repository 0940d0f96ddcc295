"""The lock files agree with pyproject.toml, and every install (make, CI, the image) uses them:
a change to the dependencies without `make lock` fails here, not on a fresh machine."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.deploy.support import ROOT

RUNTIME_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
# One pinned requirement: `name==version [; marker]`, then its `--hash=sha256:` lines.
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+)(?: ; (?P<marker>[^\\]+))?")


def _locked(lock: Path) -> dict[str, tuple[Version, int]]:
    """Each pinned package of a lock file: its version and how many hashes it carries."""
    text = re.sub(r"\\\n\s*", " ", lock.read_text())
    pins: dict[str, tuple[Version, int]] = {}
    for line in text.splitlines():
        match = _PIN.match(line)
        if match:
            pins[canonicalize_name(match["name"])] = (Version(match["version"]),
                                                      line.count("--hash=sha256:"))
    return pins


def _project() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {"runtime": project["dependencies"], "dev": project["optional-dependencies"]["dev"]}


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, DEV_LOCK], ids=lambda path: path.name)
def test_every_locked_package_is_pinned_with_hashes(lock: Path) -> None:
    pins = _locked(lock)
    assert pins
    assert all(hashes for _, hashes in pins.values()), \
        f"{lock.name}: a pin without --hash (pip's --require-hashes refuses the file)"


@pytest.mark.parametrize(("lock", "groups"), [(RUNTIME_LOCK, ("runtime",)),
                                              (DEV_LOCK, ("runtime", "dev"))],
                         ids=["requirements.lock", "requirements-dev.lock"])
def test_every_requirement_of_pyproject_is_locked_within_its_bounds(
        lock: Path, groups: tuple[str, ...]) -> None:
    pins = _locked(lock)
    for group in groups:
        for line in _project()[group]:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate():
                continue
            name = canonicalize_name(requirement.name)
            assert name in pins, f"{requirement} is not in {lock.name}: run `make lock`"
            version = pins[name][0]
            assert requirement.specifier.contains(version, prereleases=True), \
                f"{lock.name} pins {name}=={version}, outside {requirement}: run `make lock`"


def test_the_dev_lock_pins_what_the_image_runs() -> None:
    """Tests run the versions production runs: the dev lock is resolved under the runtime one."""
    runtime, dev = _locked(RUNTIME_LOCK), _locked(DEV_LOCK)
    assert {name: version for name, (version, _) in runtime.items()} == \
           {name: dev[name][0] for name in runtime if name in dev}
    assert set(runtime) <= set(dev)


def test_make_install_installs_from_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    install = makefile.split("$(STAMP): ", 1)[1].split("\n\n", 1)[0]
    assert "requirements-dev.lock" in install.splitlines()[0], "reinstalls when the lock changes"
    pip_installs = [line.strip() for line in install.splitlines() if "pip install" in line]
    assert pip_installs == [
        "$(BIN)/python -m pip install --quiet --upgrade pip",
        "$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock",
        "$(BIN)/python -m pip install --quiet --no-deps -e .",
    ]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "test: $(STAMP)" in makefile, "CI installs through make"
