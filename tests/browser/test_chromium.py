"""How the browser tests get Debian's Chromium: used where present, else installed with apt-get, else a loud failure."""

from __future__ import annotations

import subprocess

import pytest

from tests import debian
from tests.browser import chromium


@pytest.fixture
def missing(monkeypatch, tmp_path):
    path = tmp_path / "chromium"
    monkeypatch.setattr(chromium, "CHROMIUM", path)
    monkeypatch.setattr(debian.shutil, "which", lambda name: "/usr/bin/apt-get")
    monkeypatch.setattr(debian.os, "geteuid", lambda: 0)
    return path


def test_an_installed_chromium_is_used_as_it_is(monkeypatch, tmp_path):
    path = tmp_path / "chromium"
    path.touch()
    monkeypatch.setattr(chromium, "CHROMIUM", path)
    monkeypatch.setattr(debian.subprocess, "run", lambda *a, **k: pytest.fail("apt-get must not run"))
    assert chromium.ensure_chromium() == path


def test_a_missing_chromium_is_installed_with_apt_get(monkeypatch, missing):
    commands = []

    def apt_get(command, **kwargs):
        commands.append(command)
        if "install" in command:
            missing.touch()
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(debian.subprocess, "run", apt_get)
    assert chromium.ensure_chromium() == missing
    assert [command[-1] for command in commands] == ["update", "chromium"]
    assert commands[1][0] == "apt-get" and commands[1][-3:] == ["install", "-y", "chromium"]


def test_a_failed_install_says_why(monkeypatch, missing):
    monkeypatch.setattr(debian.subprocess, "run", lambda command, **kwargs: subprocess.CompletedProcess(
        command, 100, "", "E: Unable to locate package chromium"))
    with pytest.raises(chromium.ChromiumUnavailable, match="Unable to locate package chromium"):
        chromium.ensure_chromium()


def test_without_root_or_apt_get_it_fails_with_the_command_to_run(monkeypatch, missing):
    monkeypatch.setattr(debian.os, "geteuid", lambda: 1000)
    with pytest.raises(chromium.ChromiumUnavailable, match="needs root.*apt-get install -y chromium"):
        chromium.ensure_chromium()
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    with pytest.raises(chromium.ChromiumUnavailable, match="no apt-get"):
        chromium.ensure_chromium()
