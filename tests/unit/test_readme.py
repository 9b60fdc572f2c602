"""The README is the front door: what it shows must be true. Its commands are run
by CI (.ci/run runs the two front-door commands and the cluster commands after
them) or by the tests named here."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_the_sdk_snippet_is_the_quickstart_example_verbatim():
    # examples/quickstart.py is run end to end by tests/e2e/test_cli.py.
    assert (ROOT / "examples" / "quickstart.py").read_text() in _blocks("python")


def test_the_two_front_door_commands_are_what_ci_runs():
    first = _blocks("sh")[0]
    commands = [line.split("#")[0].strip() for line in first.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make demo" in ci and "make test" in ci
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_every_kinflow_command_in_the_table_exists():
    from kinflow_cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    named = set(re.findall(r"^\| `kinflow (\w+)", README, flags=re.M))
    assert named and named <= set(sub.choices), named - set(sub.choices)


def test_the_helm_install_command_renders(tmp_path):
    from kinflow_dev.helm import ensure_helm

    helm_block = next(b for b in _blocks("sh") if "helm install" in b)
    line = " ".join(l.rstrip("\\").strip() for l in helm_block.splitlines() if l.strip())
    install = line.split("kubectl")[0]
    args = shlex.split(install.replace("REGISTRY", "registry.example"))
    assert args[:2] == ["helm", "install"]
    helm = str(ensure_helm())
    out = subprocess.run([helm, "template", *args[2:]], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert 'image: "registry.example/kinflow-operator:' in out.stdout
