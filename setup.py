"""Ship the top-level ``alembic.ini`` and ``migrations/`` inside the wheel.

The repository keeps them at its top, where ``alembic upgrade head`` finds them. The wheel
carries the same layout under ``trustmess/_alembic/`` (``alembic.ini`` beside ``migrations/``),
where ``trustmess.runtime.migrate`` finds them when the package is installed. Everything else
about the package is declared in pyproject.toml.
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


class BuildPyWithMigrations(build_py):
    """``build_py`` that also copies the Alembic files into the package."""

    def _ship_alembic(self) -> bool:
        # An editable install runs from the checkout, which has them at the top.
        return not getattr(self, "editable_mode", False)

    def run(self) -> None:
        super().run()
        if not self._ship_alembic():
            return
        for name in alembic_files():
            target = Path(self.build_lib, PACKAGED, name)
            self.mkpath(str(target.parent))
            self.copy_file(str(HERE / name), str(target), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs: list[str] = super().get_outputs(include_bytecode)
        if self._ship_alembic():
            outputs += [str(Path(self.build_lib, PACKAGED, name)) for name in alembic_files()]
        return outputs


setup(cmdclass={"build_py": BuildPyWithMigrations})
