"""The README's tables say what the code does: each table is parsed and compared with the code,
so a setting, an outcome kind or an environment variable added on either side is checked."""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import attrs
import pytest

from ecs_rebuild_async import AsyncEcsClient, ClientSettings, EcsError, OutcomeKind

README = Path(__file__).resolve().parent.parent / "README.md"


def table(header: str) -> list[list[str]]:
    """The rows (cells stripped) of the README's table whose first header cell is ``header``."""
    lines = README.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        cells = _cells(line)
        if cells and cells[0] == header and index + 1 < len(lines):
            assert set(lines[index + 1].replace("|", "").strip()) <= set("-: "), line
            rows = []
            for row in lines[index + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append(_cells(row))
            return rows
    raise AssertionError(f"README has no table headed {header!r}")


def _cells(line: str) -> list[str]:
    if not line.startswith("|"):
        return []
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def names(cell: str) -> list[str]:
    """The `code` names in a cell, in order."""
    return re.findall(r"`([^`]+)`", cell)


# -- settings ----------------------------------------------------------------------------------


def _number(text: str) -> object:
    """A default as the table writes it: a number, None, True or False."""
    constants: dict[str, object] = {"None": None, "True": True, "False": False}
    if text in constants:
        return constants[text]
    return float(text)


def documented_settings() -> dict[str, object]:
    documented: dict[str, object] = {}
    for row in table("setting"):
        settings = names(row[0])
        defaults = [value.strip() for value in row[1].split(",")]
        assert len(settings) == len(defaults), f"one default per setting: {row}"
        assert row[2], f"no meaning given: {row}"
        for name, default in zip(settings, defaults, strict=True):
            assert name not in documented, f"{name} documented twice"
            documented[name] = _number(default)
    return documented


def test_the_settings_table_lists_every_setting_with_its_default() -> None:
    defaults = ClientSettings()
    in_code = {field.name: getattr(defaults, field.name) for field in attrs.fields(ClientSettings)}
    documented = documented_settings()
    assert sorted(documented) == sorted(in_code)
    for name, value in in_code.items():
        assert documented[name] == value, f"{name}: README says {documented[name]}, code {value}"


def test_the_settings_table_is_read_as_numbers() -> None:
    documented = documented_settings()
    assert documented["poll_growth"] == pytest.approx(1.2)
    assert documented["max_requests_per_second"] is None


# -- outcome kinds -------------------------------------------------------------------------------


def test_the_outcome_kinds_table_lists_every_kind() -> None:
    rows = table("kind")
    documented = [name for row in rows for name in names(row[0])]
    assert all(row[1] for row in rows), "every kind says when"
    assert sorted(documented) == sorted(kind.value for kind in OutcomeKind)


# -- environment variables ---------------------------------------------------------------------


class RecordingEnviron(Mapping[str, str]):
    """An environment that remembers every variable asked of it."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return self._values[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("the whole environment was read: list what it reads instead")

    def __len__(self) -> int:
        return len(self._values)


def _environments(directory: Path) -> list[dict[str, str]]:
    """One environment per way ``from_env`` configures a client, each complete enough that
    every variable of that way is looked up."""
    clouds = directory / "clouds.yaml"
    clouds.write_text(
        "clouds:\n  mine:\n    auth_type: token\n    auth:\n"
        "      auth_url: http://127.0.0.1:1/identity/v3\n      token: t\n"
        "    compute_endpoint_override: http://127.0.0.1:1/v2.1/p\n"
    )
    keystone = "http://127.0.0.1:1/identity/v3"
    return [
        {},
        {"OS_AUTH_URL": keystone, "OS_TOKEN": "t", "OS_COMPUTE_ENDPOINT": "http://127.0.0.1:1"},
        {
            "OS_AUTH_URL": keystone,
            "OS_USERNAME": "u",
            "OS_PASSWORD": "p",
            "OS_USER_DOMAIN_NAME": "Default",
            "OS_PROJECT_NAME": "p",
            "OS_PROJECT_DOMAIN_NAME": "Default",
        },
        {"HUAWEICLOUD_SDK_AK": "ak", "HUAWEICLOUD_SDK_SK": "sk"},
        {
            "HUAWEICLOUD_SDK_AK": "ak",
            "HUAWEICLOUD_SDK_SK": "sk",
            "HUAWEICLOUD_SDK_PROJECT_ID": "p",
            "HUAWEICLOUD_SDK_ECS_ENDPOINT": "http://127.0.0.1:1/v2.1/p",
        },
        {"OS_CLOUD": "mine", "OS_CLIENT_CONFIG_FILE": str(clouds)},
        {"OS_CLOUD": "mine", "HOME": str(directory)},
    ]


def variables_read_by_from_env() -> set[str]:
    asked: set[str] = set()
    with tempfile.TemporaryDirectory() as directory:
        for values in _environments(Path(directory)):
            environ = RecordingEnviron(values)
            # An incomplete environment is refused; what it asked for is recorded all the same.
            with contextlib.suppress(EcsError):
                AsyncEcsClient.from_env(environ)
            asked |= environ.asked
    return asked


def test_the_environment_table_lists_every_variable_from_env_reads() -> None:
    documented = [name for row in table("variable") for name in names(row[0])]
    assert len(documented) == len(set(documented)), "a variable documented twice"
    read = variables_read_by_from_env()
    assert {"HUAWEICLOUD_SDK_ECS_ENDPOINT", "OS_COMPUTE_ENDPOINT", "OS_CLOUD"} <= read
    assert sorted(documented) == sorted(read)
