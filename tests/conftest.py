"""Fixtures for cross-package tests: built wheels and fresh virtual environments to install them.

Building is done once per test session: ``wheelhouse`` builds the wheels of repo directories (or
any source folder) on request, ``make_venv`` creates fresh virtual environments (no system
site-packages) with torch, pytest, the ``ood-core`` wheel and the wheels a test asks for, and
``wheel_venv`` is one such environment shared by tests that install (and afterwards remove)
further wheels.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TORCH_SPEC = f"torch=={os.environ.get('OODX_TORCH_VERSION', '2.13.0')}"


def run(
    cmd: Sequence[str | os.PathLike], *, timeout: float = 600, **kw
) -> subprocess.CompletedProcess:
    """Run a command, raising with its output on failure."""
    proc = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
        )
    return proc


@dataclass
class Wheelhouse:
    """Builds wheels of source directories into one folder (each directory once)."""

    path: Path
    built: dict[Path, Path] = field(default_factory=dict)

    def build(self, source: str | os.PathLike) -> Path:
        src = Path(source)
        if not src.is_absolute():
            src = REPO / src
        src = src.resolve()
        if src not in self.built:
            out = self.path / f"{len(self.built)}-{src.name}"  # same-named folders apart
            out.mkdir(parents=True, exist_ok=True)
            run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "wheel",
                    "--no-deps",
                    "--no-build-isolation",
                    "--quiet",
                    "-w",
                    out,
                    src,
                ]
            )
            wheels = sorted(out.glob("*.whl"))
            assert len(wheels) == 1, f"expected one wheel for {src}, got {wheels}"
            self.built[src] = wheels[0]
        return self.built[src]


@dataclass
class Venv:
    """A virtual environment created for the tests."""

    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def bin(self, name: str) -> Path:
        return self.path / "bin" / name

    def pip(self, *args: str | os.PathLike, timeout: float = 900) -> subprocess.CompletedProcess:
        return run(
            [self.python, "-m", "pip", "--disable-pip-version-check", "--quiet", *args],
            timeout=timeout,
        )

    def install(self, *wheels: str | os.PathLike) -> None:
        """Install wheels without their dependencies (oodx's own come from the wheels given)."""
        self.pip("install", "--force-reinstall", "--no-deps", *wheels)

    def run(
        self,
        *args: str | os.PathLike,
        cwd: str | os.PathLike | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess:
        """Run a program of this venv (``"oodx"``, ``"python"``...) with arguments; must succeed.

        The environment is the test's without ``PYTHON*``/``OODX_*`` variables, plus ``env``.
        """
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "OODX_"))}
        full_env["PATH"] = f"{self.path / 'bin'}{os.pathsep}{full_env.get('PATH', '')}"
        full_env["VIRTUAL_ENV"] = str(self.path)
        full_env.update(env or {})
        return run(
            [self.bin(str(args[0])), *args[1:]], cwd=cwd or self.path, env=full_env, timeout=timeout
        )

    def uninstall(self, *names: str) -> None:
        self.pip("uninstall", "-y", *names)

    def run_python(
        self,
        code: str,
        *,
        env: dict | None = None,
        cwd: str | os.PathLike | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "OODX_"))}
        full_env.update(env or {})
        cmd = [self.python, "-c", code]
        if check:
            return run(cmd, env=full_env, cwd=cwd or self.path)
        return subprocess.run(
            [str(c) for c in cmd],
            capture_output=True,
            text=True,
            env=full_env,
            cwd=cwd or self.path,
            timeout=600,
        )


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Wheelhouse:
    return Wheelhouse(tmp_path_factory.mktemp("wheelhouse"))


VenvFactory = Callable[..., Venv]


@pytest.fixture(scope="session")
def make_venv(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Wheelhouse) -> VenvFactory:
    """Factory of fresh venvs (no system site-packages): ``make_venv(*sources, requirements=())``.

    Each call creates a new environment with torch (``TORCH_SPEC``), pytest, numpy and the
    ``ood-core`` wheel (its dependencies from the index), then installs the wheels of
    ``sources`` (repo-relative or absolute source folders, or ``.whl`` files) without their
    dependencies, and ``requirements`` from the index (for example ``"click"``).
    """

    def factory(
        *sources: str | os.PathLike, requirements: Sequence[str] = (), name: str = "venv"
    ) -> Venv:
        path = tmp_path_factory.mktemp(name) / "env"
        venv.EnvBuilder(with_pip=True, system_site_packages=False).create(path)
        env = Venv(path)
        env.pip("install", TORCH_SPEC, "pytest", "numpy", *requirements)
        env.pip("install", wheelhouse.build(REPO))  # brings pluggy; torch is already satisfied
        wheels = [Path(s) if str(s).endswith(".whl") else wheelhouse.build(s) for s in sources]
        if wheels:
            env.install(*wheels)
        return env

    return factory


@pytest.fixture(scope="session")
def wheel_venv(make_venv: VenvFactory) -> Iterator[Venv]:
    """A fresh venv (no system site-packages) with torch, ood-core's wheel and its dependencies."""
    yield make_venv(name="venv")
