"""The README documents every setting and the two quick-start commands."""

import re
from pathlib import Path

import pytest

from app.core.config import SETTINGS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_setting_is_in_the_configuration_table(setting):
    assert re.search(rf"^\| `{setting.name}` \|", README, re.MULTILINE), setting.name


def test_quick_start_is_make_run_then_make_test():
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "make run" in quick_start and "make test" in quick_start
