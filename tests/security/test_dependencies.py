"""Dependencies: floors past releases with known advisories, and a hashed lock that is what runs."""

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
# The last release of each package with a published advisory that concerns this service.
ADVISORIES = {
    "waitress": "3.0.0",       # CVE-2024-49768 (request smuggling race), CVE-2024-49769 (DoS), fixed in 3.0.1
    "requests": "2.32.3",      # CVE-2024-47081 (.netrc credentials sent to the wrong host), fixed in 2.32.4
    "cryptography": "48.0.0",  # GHSA-537c-gmf6-5ccf (vulnerable OpenSSL in the wheels), fixed in 48.0.1
    "flask": "3.1.0",          # CVE-2025-47278 (wrong key used to sign after rotation), fixed in 3.1.1
}


def requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = project["dependencies"] + project["optional-dependencies"]["test"]
    return {canonicalize_name(Requirement(line).name): Requirement(line) for line in listed}


def locked() -> dict[str, tuple[str, list[str]]]:
    """``{name: (version, hashes)}`` from requirements.lock."""
    text = (ROOT / "requirements.lock").read_text()
    entries = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        pin = re.match(r"([A-Za-z0-9._-]+)==([^\s\\]+)", block)
        if pin:
            entries[canonicalize_name(pin.group(1))] = (pin.group(2), re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return entries


@pytest.mark.parametrize("name", sorted(ADVISORIES))
def test_floors_exclude_releases_with_known_advisories(name):
    requirement = requirements()[name]
    assert not requirement.specifier.contains(ADVISORIES[name]), f"{requirement} still admits {ADVISORIES[name]}"


def test_the_lock_pins_every_dependency_within_its_range_with_hashes():
    lock = locked()
    for name, requirement in requirements().items():
        assert name in lock, f"{name} is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(lock[name][0], prereleases=True), f"lock has {name}=={lock[name][0]}"
    assert all(hashes for _, hashes in lock.values()), "every pin needs --hash entries for --require-hashes"


def test_what_runs_is_what_the_lock_names():
    mismatched = {name: (metadata.version(name), version) for name, (version, _) in locked().items()
                  if _installed(name) and metadata.version(name) != version}
    assert not mismatched, f"installed vs locked: {mismatched}; run `make test` to reinstall from the lock"


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True
