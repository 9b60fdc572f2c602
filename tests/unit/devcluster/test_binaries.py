"""The binary builder's pure parts: the wrapper module and the missing-Go message."""

import pytest

from kinflow_dev import binaries

KUBE_GOMOD = """module k8s.io/kubernetes

go 1.24.0

require (
	github.com/foo/bar v1.2.3
	k8s.io/api v0.0.0
	k8s.io/client-go v0.0.0
	k8s.io/kubelet v0.0.0 // indirect
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/client-go => ./staging/src/k8s.io/client-go
	k8s.io/kubelet => ./staging/src/k8s.io/kubelet
	k8s.io/sample-controller => ./staging/src/k8s.io/sample-controller
)
"""

ETCD_GOMOD = """module go.etcd.io/etcd/server/v3

require (
	go.etcd.io/etcd/api/v3 v3.5.35
	go.etcd.io/etcd/client/v2 v2.305.35
)

replace (
	go.etcd.io/etcd/api/v3 => ../api
	go.etcd.io/etcd/client/v2 => ../client/v2
)

replace go.etcd.io/etcd => ./FORBIDDEN_DEPENDENCY
"""


def test_staging_modules_are_replaced_by_their_published_tags():
    replaces = binaries.wrapper_replaces(KUBE_GOMOD, "v1.33.13")
    # sample-controller is replaced but never required: it is not in the build graph.
    assert replaces == {"k8s.io/api": "v0.33.13", "k8s.io/client-go": "v0.33.13", "k8s.io/kubelet": "v0.33.13"}


def test_etcd_modules_keep_their_own_versions():
    assert binaries.wrapper_replaces(ETCD_GOMOD, "v3.5.35") == {
        "go.etcd.io/etcd/api/v3": "v3.5.35", "go.etcd.io/etcd/client/v2": "v2.305.35"}


def test_the_wrapper_requires_the_release_and_replaces_each_module():
    target = binaries.kubernetes_target("v1.33.13")
    gomod = binaries.wrapper_gomod(target, {"k8s.io/api": "v0.33.13"})
    assert "require k8s.io/kubernetes v1.33.13" in gomod
    assert "\tk8s.io/api => k8s.io/api v0.33.13" in gomod


def test_version_is_stamped_into_the_kube_binaries():
    flags = binaries.kubernetes_target("v1.33.13").ldflags
    assert "-X k8s.io/component-base/version.gitVersion=v1.33.13" in flags
    assert "-X k8s.io/component-base/version.gitMinor=33" in flags


def test_cache_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KINFLOW_CACHE_DIR", str(tmp_path))
    assert binaries.kubernetes_target().bin_dir == tmp_path / "kubernetes" / binaries.KUBERNETES_VERSION / "bin"


def test_missing_go_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("KINFLOW_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))  # no go here
    with pytest.raises(binaries.BuildError, match="Go is not installed or not on PATH"):
        binaries.build(binaries.etcd_target())
