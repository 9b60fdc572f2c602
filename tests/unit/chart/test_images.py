"""The Dockerfiles, checked without a Docker engine (none here to build them):
every COPY source exists in the repository (the build context is the root), and
each ENTRYPOINT/CMD names a console script or module the project defines. The
chart's operator command is checked the same way."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.unit.chart.conftest import CHART, ROOT

IMAGES = ROOT / "images"
DOCKERFILES = sorted(IMAGES.glob("*.Dockerfile"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def exec_form(args: str) -> list[str]:
    args = args.strip()
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def package_dirs() -> dict[str, Path]:
    """Top-level import name -> its folder, from pyproject's package search roots."""
    found = {}
    for where in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["where"]:
        for init in (ROOT / where).glob("*/__init__.py"):
            found[init.parent.name] = init.parent
    return found


def module_exists(module: str) -> bool:
    top, *rest = module.split(".")
    folder = package_dirs().get(top)
    if folder is None:
        return False
    target = folder.joinpath(*rest)
    if not rest:
        return (target / "__main__.py").exists()
    return target.with_suffix(".py").exists() or (target / "__main__.py").exists()


def console_scripts() -> dict[str, str]:
    return PYPROJECT["project"]["scripts"]


def check_command(argv: list[str]) -> None:
    """The command a container runs resolves to something the project ships."""
    assert argv, "empty command"
    if argv[0] in ("python", "python3"):
        assert argv[1] == "-m", f"{argv}: only `python -m <module>` is checked"
        assert module_exists(argv[2]), f"{argv}: module {argv[2]} is not defined by the project"
        return
    scripts = console_scripts()
    assert argv[0] in scripts, f"{argv}: {argv[0]!r} is not a console script of the project ({sorted(scripts)})"
    module, _, _func = scripts[argv[0]].partition(":")
    assert module_exists(module) or (package_dirs()[module.split('.')[0]]
                                     .joinpath(*module.split(".")[1:]).with_suffix(".py").exists()), module
    if argv[0] == "kinflow" and len(argv) > 1 and not argv[1].startswith("-"):
        from kinflow_cli.main import build_parser

        subcommands = next(a for a in build_parser()._actions if a.dest == "command").choices
        assert argv[1] in subcommands, f"{argv}: `kinflow {argv[1]}` is not a subcommand ({sorted(subcommands)})"


def test_there_are_two_images():
    assert [p.name for p in DOCKERFILES] == ["operator.Dockerfile", "task.Dockerfile"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copy_sources_exist(dockerfile):
    for word, args in instructions(dockerfile):
        if word not in ("COPY", "ADD"):
            continue
        parts = [a for a in exec_form(args) if not a.startswith("--")]
        if re.search(r"--from[= ]", args):
            continue  # from another stage, not from the context
        *sources, _dest = parts
        for src in sources:
            matches = list(ROOT.glob(src.rstrip("/"))) if any(c in src for c in "*?[") else [ROOT / src]
            assert matches and all(m.exists() for m in matches), f"{dockerfile.name}: COPY source {src} is missing"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_entry_command_resolves(dockerfile):
    found = dict(instructions(dockerfile)[::-1])  # the last of each instruction wins
    entrypoint = exec_form(found["ENTRYPOINT"]) if "ENTRYPOINT" in found else []
    cmd = exec_form(found["CMD"]) if "CMD" in found else []
    check_command(entrypoint + cmd)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_runs_as_numeric_non_root_user(dockerfile):
    users = [args for word, args in instructions(dockerfile) if word == "USER"]
    assert users, f"{dockerfile.name} never sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{dockerfile.name}: runAsNonRoot needs a numeric non-root USER"


def test_chart_operator_command_resolves():
    template = (CHART / "templates" / "operator-deployment.yaml").read_text()
    command = re.search(r"command: (\[.*\])", template).group(1)
    check_command(yaml.safe_load(command))


def test_task_pods_command_resolves():
    """The command the operator gives task containers (docs/design.md, the pod contract)."""
    check_command(["python", "-m", "kinflow.runner"])
