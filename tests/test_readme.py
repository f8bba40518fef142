"""The README documents every setting and the two quick-start commands."""

import re
import subprocess
import sys
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


# Paths the README names that are Microsoft's, not the service's: Graph resources and Entra endpoints.
MICROSOFT_PATHS = {"/users/{id}/messages", "/attachments/{id}/$value", "/adminconsent"}
ROUTE = re.compile(r"`(?:(GET|POST|PATCH|PUT|DELETE) )?(/[^`\s]*)`")
VARIABLE = re.compile(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)(?:=[^`]*)?`")
COMMAND = re.compile(r"flask --app wsgi ((?:[a-z][a-z-]*)(?: [a-z][a-z-]*)?)")
SOURCES = [Path(__file__).resolve().parents[1] / name for name in ("app", "handlers", "subscriptions", "tests")]


def _shape(path: str) -> str:
    """A path with every parameter, Flask's ``<id:x>`` or the README's ``{x}``, as ``{}``."""
    return re.sub(r"<[^>]+>|\{[^}]*\}", "{}", path)


@pytest.fixture(scope="module")
def routes() -> dict[str, set[str]]:
    """Every path the service answers (its shape) and the methods it takes there."""
    from cryptography.fernet import Fernet

    from app import create_app
    from app.web.receiver import ENDPOINTS

    app = create_app({"DATABASE_PATH": ":memory:", "AZURE_CLIENT_ID": "readme", "AZURE_CLIENT_SECRET": "readme",
                      "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(), "SECRET_KEY": "s", "API_TOKEN": "t"})
    found: dict[str, set[str]] = {path: {"POST"} for path in ENDPOINTS}
    for rule in app.url_map.iter_rules():
        found.setdefault(_shape(rule.rule), set()).update(rule.methods or ())
    return found


def test_every_path_the_readme_names_is_one_the_service_answers_with_that_method(routes):
    wrong = []
    for method, named in ROUTE.findall(README):
        path = named.split("?", 1)[0]
        if path in MICROSOFT_PATHS or path == "/":
            continue
        if path.endswith(("*", "…")) or (not method and _shape(path) not in routes):  # a family of paths
            prefix = _shape(path.rstrip("*…"))
            if not any(shape.startswith(prefix.rstrip("/") + "/") or shape == prefix for shape in routes):
                wrong.append(named)
        elif _shape(path) not in routes or (method and method not in routes[_shape(path)]):
            wrong.append(f"{method} {named}".strip())
    assert not wrong, f"the README names paths the service does not answer: {wrong}"


def test_every_variable_the_readme_names_is_a_setting_or_read_by_the_code():
    from app.core.config import SETTINGS_BY_NAME

    code = "\n".join(p.read_text() for root in SOURCES for p in root.rglob("*.py"))
    code += (Path(__file__).resolve().parents[1] / "gunicorn.conf.py").read_text()
    unknown = sorted({name for name in VARIABLE.findall(README)
                      if name not in SETTINGS_BY_NAME and not re.search(rf"\b{name}\b", code)})
    assert not unknown, f"the README names variables nothing reads: {unknown}"


def test_every_command_the_readme_names_exists(app):
    runner = app.test_cli_runner()
    missing = []
    for command in sorted(set(COMMAND.findall(README))):
        result = runner.invoke(args=[*command.split(), "--help"])
        if result.exit_code != 0 or "Usage:" not in result.output:
            missing.append(command)
    assert not missing, f"the README names commands that do not exist: {missing}"


def test_the_emulators_own_example_runs():
    """The example of "The emulator on its own" signs in with msal and reads the delivered email through Graph."""
    section = README.split("## The emulator on its own", 1)[1].split("\n## ", 1)[0]
    [example] = re.findall(r"```python\n(.*?)```", section, re.S)
    root = Path(__file__).resolve().parents[1]

    done = subprocess.run([sys.executable, "-c", example], cwd=root, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello from the emulator\n"
