"""Every fenced ```python block of README.md runs here, against FakeCompute.

Blocks are found by their fence alone, so a block added to the README is run without any change
here; ```sh and ```text blocks are not run (CI runs the two main commands). A block is one of:

- a program: it starts its own event loop (``anyio.run``, ``asyncio.run`` or ``trio.run``). It
  runs as written, in this process, against the fake served on a loopback port, after the
  substitutions of SUBSTITUTIONS below; every UUID it names that is not one of the fake's
  images is a server of the fake (so the README can show real-looking ids);
- a pytest file: it defines ``test_*`` functions. It is written to a file and run by pytest in
  a subprocess, as a user's test file would be;
- anything else: a fragment, run (after the same substitutions) with the names of the
  ``context`` fixture below predefined, top-level ``await`` allowed. Each function it defines
  is then called with those names as its arguments.

No block is run while it names an address other than loopback or the in-process fake's.
"""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import attrs
import pytest

from ecs_rebuild_async import AsyncEcsClient, ClientSettings, RebuildRequest, TokenAuth
from ecs_rebuild_async.testing import DEFAULT_IMAGES, IN_PROCESS_BASE, FakeCompute

README = Path(__file__).resolve().parent.parent / "README.md"

#: The README's placeholders, and what a program block gets instead (the fake's values).
SUBSTITUTIONS: dict[str, Callable[[FakeCompute], str]] = {
    "https://ecs.example.com/v2.1/0123456789abcdef": lambda fake: fake.compute_url,
    "your-keystone-token": lambda fake: fake.token,
}

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_LOOP_RUNNERS = {("anyio", "run"), ("asyncio", "run"), ("trio", "run")}
# The fake's clock runs fast: the README's programs use the default settings (a first check
# one second after the request), and their rebuilds finish long before it.
_FAST_CLOCK = 200.0


@attrs.frozen
class Block:
    language: str
    line: int
    heading: str
    source: str

    @property
    def name(self) -> str:
        return f"README.md:{self.line}"


def readme_blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        headings = re.findall(r"^#+ (.+)$", text[: match.start()], re.MULTILINE)
        heading = headings[-1] if headings else ""
        blocks.append(Block(match.group(1), line, heading, match.group(2)))
    return blocks


PYTHON_BLOCKS = [block for block in readme_blocks() if block.language == "python"]


def _block_id(block: Block) -> str:
    return f"{block.heading}@{block.line}"


def kind_of(block: Block) -> str:
    tree = ast.parse(block.source)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
            "test_"
        ):
            return "pytest file"
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and (node.func.value.id, node.func.attr) in _LOOP_RUNNERS
        ):
            return "program"
    return "fragment"


# -- the harness's own checks --------------------------------------------------------------


def test_the_readme_has_python_blocks_of_each_kind() -> None:
    kinds = {kind_of(block) for block in PYTHON_BLOCKS}
    assert kinds == {"program", "pytest file", "fragment"}


def test_blocks_are_found_by_their_fence_only() -> None:
    languages = {block.language for block in readme_blocks()}
    assert {"python", "sh", "text"} <= languages
    # Every fence was paired: no block swallowed the prose after it.
    for block in readme_blocks():
        assert "\n## " not in block.source, block.name


# -- programs --------------------------------------------------------------------------------


@contextmanager
def served_on_loopback(fake: FakeCompute) -> Iterator[None]:
    """The fake on a loopback port, served by an event loop of its own in a thread (the
    program starts its own loop in this one)."""
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(fake.serve_tcp()),
    ):
        yield


def substituted(source: str, fake: FakeCompute) -> str:
    for placeholder, value in SUBSTITUTIONS.items():
        source = source.replace(placeholder, value(fake))
    return source


def assert_no_outside_address(block: Block, source: str) -> None:
    """A block is never run against a real address: each one it shows needs a substitution."""
    for url in re.findall(r"https?://[^\s\"'<>]+", source):
        host = urlsplit(url).hostname or ""
        assert host.startswith("127.") or host == urlsplit(IN_PROCESS_BASE).hostname, (
            f"{block.name} would reach {url}: add it to SUBSTITUTIONS"
        )


@pytest.mark.parametrize(
    "block", [b for b in PYTHON_BLOCKS if kind_of(b) == "program"], ids=_block_id
)
def test_a_program_block_runs_as_written(block: Block, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeCompute(time_scale=_FAST_CLOCK)
    images = set(DEFAULT_IMAGES.values())
    servers = sorted({found for found in _UUID.findall(block.source) if found not in images})
    for server_id in servers:
        fake.add_server(server_id=server_id, name=f"readme-{server_id[:8]}")
    fake.advance(60)  # the servers were last changed a while ago
    with served_on_loopback(fake):
        source = substituted(block.source, fake)
        assert_no_outside_address(block, source)
        code = compile(source, block.name, "exec")
        exec(code, {"__name__": "__main__"})
    printed = capsys.readouterr().out
    # It talked to the fake (not to the placeholder), and its rebuilds really happened.
    assert sum(fake.stats.requests.values()) > 0
    assert all(fake.rebuilds_accepted(server_id) >= 1 for server_id in servers)
    assert all(server_id in printed for server_id in servers)


# -- pytest files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "block", [b for b in PYTHON_BLOCKS if kind_of(b) == "pytest file"], ids=_block_id
)
def test_a_test_block_passes_under_pytest(block: Block, tmp_path: Path) -> None:
    tests = len(re.findall(r"^(?:async )?def test_", block.source, re.MULTILINE))
    path = tmp_path / f"test_readme_{block.line}.py"
    path.write_text(block.source, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Each test ran (once per anyio backend installed), none was skipped.
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed, result.stdout
    assert int(passed.group(1)) >= tests, result.stdout
    assert "skipped" not in result.stdout, result.stdout


# -- fragments -------------------------------------------------------------------------------


@pytest.fixture
async def context() -> AsyncIterator[dict[str, Any]]:
    """The names a fragment may use without defining them."""
    fake = FakeCompute(time_scale=_FAST_CLOCK)
    server_ids = fake.add_servers(3, prefix="readme")
    image_id = DEFAULT_IMAGES["ubuntu-24.04"]
    fake.advance(60)
    fast = ClientSettings(poll_first_delay=0.01, poll_interval=0.02, poll_interval_max=0.05)
    async with AsyncEcsClient(
        fake.compute_url, auth=TokenAuth(fake.token), transport=fake.transport(), settings=fast
    ) as ecs:
        yield {
            "ecs": ecs,  # the Quickstart's client, on the fake
            "fake": fake,  # the fake service of "Testing your code"
            "server_ids": server_ids,
            "server_id": server_ids[0],
            "image_id": image_id,
            "request": RebuildRequest(image_ref=image_id),
        }


@pytest.mark.anyio
@pytest.mark.parametrize(
    "block", [b for b in PYTHON_BLOCKS if kind_of(b) == "fragment"], ids=_block_id
)
async def test_a_fragment_block_runs_with_the_names_it_is_given(
    block: Block, context: dict[str, Any]
) -> None:
    fake: FakeCompute = context["fake"]
    # Server ids a block names for itself are servers of the fake too.
    for server_id in set(_UUID.findall(block.source)) - set(DEFAULT_IMAGES.values()):
        fake.add_server(server_id=server_id, name=f"readme-{server_id[:8]}")
    fake.advance(60)
    source = substituted(block.source, fake)
    assert_no_outside_address(block, source)
    namespace: dict[str, Any] = {"__name__": f"readme_{block.line}", **context}
    code = compile(source, block.name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)  # the README's own code, on purpose
    if inspect.iscoroutine(result):
        await result
    called = 0
    for value in list(namespace.values()):
        if not inspect.isfunction(value) or value.__code__.co_filename != block.name:
            continue
        parameters = inspect.signature(value).parameters
        assert set(parameters) <= set(context), f"{value.__name__} takes unknown names"
        answer = value(**{name: context[name] for name in parameters})
        if inspect.isawaitable(answer):
            answer = await answer
        called += 1
    assert called or not any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.parse(block.source).body
    )


@pytest.mark.anyio
async def test_the_fleet_example_rebuilds_what_it_says() -> None:
    """The Fleets example's own promise: every server from the image, the database from its
    own, each once, in input order."""
    block = next(b for b in PYTHON_BLOCKS if "async def rebuild_fleet" in b.source)
    namespace: dict[str, Any] = {}
    exec(compile(block.source, block.name, "exec"), namespace)
    database = namespace["DATABASE"]
    uuid.UUID(database)  # a well-formed id, so the harness makes it a server of the fake
    fake = FakeCompute(time_scale=_FAST_CLOCK)
    ids = fake.add_servers(2, prefix="fleet")
    fake.add_server(server_id=database, name="db")
    fake.advance(60)
    fast = ClientSettings(poll_first_delay=0.01, poll_interval=0.02)
    async with AsyncEcsClient(
        fake.compute_url, auth=TokenAuth(fake.token), transport=fake.transport(), settings=fast
    ) as ecs:
        outcomes = await namespace["rebuild_fleet"](ecs, ids, DEFAULT_IMAGES["ubuntu-24.04"])
    assert [o.server_id for o in outcomes] == [*ids, database]
    assert all(o.ok for o in outcomes)
    assert all(fake.rebuilds_accepted(sid) == 1 for sid in [*ids, database])
    assert fake.truth(database).image_id == namespace["DATABASE_IMAGE"]
    assert {fake.truth(i).image_id for i in ids} == {DEFAULT_IMAGES["ubuntu-24.04"]}
