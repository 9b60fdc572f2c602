"""A pinned `helm`, built once from the Go module proxy and cached like the
Kubernetes binaries.

Helm's release module (`helm.sh/helm/v3`) has no local-path `replace`
directives, so the wrapper module that binaries.py writes comes out with an
empty replace list; we still go through `binaries.build` so helm is fetched,
built, cached (`<cache>/helm/<version>/bin/helm`) and reported exactly like the
control plane. The pin follows the dev cluster's Kubernetes minor: helm
v3.18 is built against the v0.33 client libraries, as the cluster is v1.33.

`KINFLOW_HELM=/path/to/helm` uses a helm you already have instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kinflow_dev.binaries import Target, _Progress, build

HELM_VERSION = "v3.18.6"
# The Kubernetes version helm's linter and `helm template` assume (its Makefile
# derives it from the client-go it is built with: v0.33 -> 1.33).
HELM_KUBE_MAJOR, HELM_KUBE_MINOR = "1", "33"


def _helm_ldflags(version: str) -> str:
    flags = [
        "-s", "-w",
        f"-X helm.sh/helm/v3/internal/version.version={version}",
        "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
    ]
    for pkg in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
        flags += [
            f"-X {pkg}.k8sVersionMajor={HELM_KUBE_MAJOR}",
            f"-X {pkg}.k8sVersionMinor={HELM_KUBE_MINOR}",
        ]
    return " ".join(flags)


def helm_target(version: str = HELM_VERSION) -> Target:
    return Target(
        name="helm",
        module="helm.sh/helm/v3",
        version=version,
        packages=("helm.sh/helm/v3/cmd/helm",),
        binaries=("helm",),
        ldflags=_helm_ldflags(version),
    )


def ensure_helm(verbose: bool = False) -> Path:
    """Return the path of a helm binary, building the pinned release on first use."""
    explicit = os.environ.get("KINFLOW_HELM")
    if explicit:
        path = Path(explicit)
        if not path.exists():
            raise FileNotFoundError(f"KINFLOW_HELM={explicit} does not exist")
        return path
    target = helm_target()
    bin_dir = build(target, log=_Progress(verbose=verbose))
    return bin_dir / "helm"


if __name__ == "__main__":
    print(ensure_helm(verbose="-v" in sys.argv))
