"""The wheel carries the whole package and the migrations: an installed copy has no checkout.

Builds the wheel (``pip wheel --no-deps``) from a copy of the files the build reads and reads
its file list; nothing is installed here (``.ci/wheel-check`` installs one and runs it).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from trustmess.runtime.migrate import alembic_dir

ROOT = Path(__file__).resolve().parent.parent
# What the build reads (as in .ci/wheel-check). A copy, so that a stale build/ in the checkout
# cannot leak into the wheel.
BUILD_INPUTS = (
    "pyproject.toml",
    "setup.py",
    "MANIFEST.in",
    "README.md",
    "alembic.ini",
    "protocol/openapi.yaml",
)
BUILD_INPUT_DIRS = ("migrations", "trustmess")
# Where setup.py puts alembic.ini and migrations/ inside the package, and migrate.py finds them.
PACKAGED = "trustmess/_alembic"

# Building fetches setuptools into an isolated environment: allow for a slow index.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    src = tmp_path_factory.mktemp("src")
    for name in BUILD_INPUTS:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    for name in BUILD_INPUT_DIRS:
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(src)],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr
    (built,) = dist.glob("trustmess-*.whl")
    with zipfile.ZipFile(built) as archive:
        assert archive.testzip() is None
        yield archive


def names(wheel: zipfile.ZipFile) -> set[str]:
    return set(wheel.namelist())


def source_files(directory: Path, pattern: str) -> list[str]:
    return sorted(
        path.relative_to(directory).as_posix()
        for path in directory.glob(pattern)
        if path.is_file() and "__pycache__" not in path.parts
    )


def test_every_trustmess_module_is_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    modules = source_files(ROOT, "trustmess/**/*.py")
    subpackages = {Path(m).parent.as_posix() for m in modules if m.endswith("/__init__.py")}
    # The layer folders and the load tester at least: a sanity check on the glob itself.
    assert {"trustmess/wire", "trustmess/store", "trustmess/runtime"} <= subpackages
    missing = set(modules) - names(wheel)
    assert not missing, f"not in the wheel: {sorted(missing)}"


def test_migrations_and_alembic_ini_are_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    versions = source_files(ROOT, "migrations/versions/*.py")
    assert versions, "no migration found in the checkout"
    expected = {
        f"{PACKAGED}/alembic.ini",
        f"{PACKAGED}/migrations/env.py",
        f"{PACKAGED}/migrations/script.py.mako",
        *(f"{PACKAGED}/{name}" for name in versions),
    }
    missing = expected - names(wheel)
    assert not missing, f"not in the wheel: {sorted(missing)}"
    # The same files, not stale copies.
    for name in expected:
        packaged = wheel.read(name)
        assert packaged == (ROOT / name.removeprefix(PACKAGED + "/")).read_bytes(), name


def test_the_openapi_document_is_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    # Where trustmess/http/openapi.py looks first; the same file, not a stale copy.
    assert (
        wheel.read("trustmess/http/openapi.yaml") == (ROOT / "protocol/openapi.yaml").read_bytes()
    )


def test_the_wheel_holds_only_the_package(wheel: zipfile.ZipFile) -> None:
    # No top-level `migrations` or `tests` package to clash with other distributions.
    tops = {name.split("/")[0] for name in names(wheel)}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"trustmess"}, tops


def test_a_checkout_uses_its_top_level_migrations() -> None:
    # This test run imports trustmess from the checkout (an editable install).
    assert alembic_dir() == ROOT


def test_the_web_client_is_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    # Package data that trustmess/http/webclient.py serves; the same files, not stale copies.
    files = source_files(ROOT, "trustmess/web/**/*")
    assert "trustmess/web/sdk/trustmess.js" in files and "trustmess/web/index.html" in files
    for name in files:
        assert wheel.read(name) == (ROOT / name).read_bytes(), name
