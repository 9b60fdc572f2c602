"""kinflow_dev.helm: the pinned helm target, the override, and the built binary's version."""

from __future__ import annotations

import subprocess

import pytest

import os

from kinflow_dev import helm as helm_build


def test_target_is_cached_by_version_next_to_the_kubernetes_binaries():
    from kinflow_dev.binaries import cache_dir

    target = helm_build.helm_target()
    assert target.module == "helm.sh/helm/v3" and target.version == helm_build.HELM_VERSION
    assert target.bin_dir == cache_dir() / "helm" / helm_build.HELM_VERSION / "bin"
    assert target.packages == ("helm.sh/helm/v3/cmd/helm",)
    assert f"internal/version.version={helm_build.HELM_VERSION}" in target.ldflags


def test_helm_release_has_no_local_replaces():
    """The wrapper module needs no replace lines for helm (checked against a sample go.mod line set)."""
    from kinflow_dev.binaries import wrapper_replaces

    gomod = "module helm.sh/helm/v3\n\ngo 1.24.0\n\nrequire (\n\tk8s.io/client-go v0.33.3\n)\n"
    assert wrapper_replaces(gomod, helm_build.HELM_VERSION) == {}


def test_kinflow_helm_overrides(tmp_path, monkeypatch):
    fake = tmp_path / "helm"
    fake.write_text("#!/bin/sh\n")
    monkeypatch.setenv("KINFLOW_HELM", str(fake))
    assert helm_build.ensure_helm() == fake
    monkeypatch.setenv("KINFLOW_HELM", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError):
        helm_build.ensure_helm()


def test_built_helm_reports_the_pinned_version(helm):  # the `helm` fixture builds it once if needed
    out = subprocess.run([str(helm), "version", "--short"], capture_output=True, text=True, check=True).stdout
    if "KINFLOW_HELM" not in os.environ:
        assert out.startswith(helm_build.HELM_VERSION), out
