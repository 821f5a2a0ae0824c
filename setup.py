"""Ship the top-level ``alembic.ini``, ``migrations/`` and ``protocol/openapi.yaml`` in the wheel.

The repository keeps them at its top, where ``alembic upgrade head`` finds the migrations and
client authors find the protocol. The wheel carries the Alembic files under
``trustmess/_alembic/`` (``alembic.ini`` beside ``migrations/``), where
``trustmess.runtime.migrate`` finds them when the package is installed, and the OpenAPI
document as ``trustmess/http/openapi.yaml``, where ``trustmess.http.openapi`` finds it.
Everything else about the package is declared in pyproject.toml.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# Where they go inside the package: keep in step with trustmess/runtime/migrate.py.
PACKAGED = Path("trustmess", "_alembic")
# Keep in step with MANIFEST.in (which puts them in the sdist).
PATTERNS = ("alembic.ini", "migrations/*.py", "migrations/*.mako", "migrations/versions/*.py")
# Source and place in the wheel: keep in step with trustmess/http/openapi.py and MANIFEST.in.
OPENAPI = ("protocol/openapi.yaml", Path("trustmess", "http", "openapi.yaml"))


def shipped_files() -> list[tuple[str, Path]]:
    """(source relative to the project directory, target relative to the build directory)."""
    return [(name, PACKAGED / name) for name in alembic_files()] + [OPENAPI]


def alembic_files() -> list[str]:
    """``alembic.ini`` and the migrations, relative to the project directory."""
    return sorted(
        {
            path.relative_to(HERE).as_posix()
            for pattern in PATTERNS
            for path in HERE.glob(pattern)
            if path.is_file()
        }
    )


class BuildPyWithTopLevelFiles(build_py):
    """``build_py`` that also copies the Alembic files and the OpenAPI document into the package."""

    def _ship(self) -> bool:
        # An editable install runs from the checkout, which has them at the top.
        return not getattr(self, "editable_mode", False)

    def run(self) -> None:
        super().run()
        if not self._ship():
            return
        for source, target in shipped_files():
            built = Path(self.build_lib, target)
            self.mkpath(str(built.parent))
            self.copy_file(str(HERE / source), str(built), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs: list[str] = super().get_outputs(include_bytecode)
        if self._ship():
            outputs += [str(Path(self.build_lib, target)) for _, target in shipped_files()]
        return outputs


setup(cmdclass={"build_py": BuildPyWithTopLevelFiles})
