"""Deterministic names: a child's name is a pure function of where it was spawned.

That is what makes spawning idempotent: a retried or resumed parent computes the
same names and finds the children it already made.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re

_INVALID = re.compile(r"[^a-z0-9-]+")
_DASHES = re.compile(r"-{2,}")


def _short_hash(text: str, length: int = 10) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return base64.b32encode(digest).decode().lower().rstrip("=")[:length]


def dns_label(text: str) -> str:
    """Lower-case text squeezed into DNS-1123 characters (may be empty)."""
    return _DASHES.sub("-", _INVALID.sub("-", text.lower())).strip("-")


def _join(prefix: str, digest: str, limit: int) -> str:
    room = limit - len(digest) - 1
    prefix = prefix[:room].rstrip("-")
    return f"{prefix}-{digest}" if prefix else f"k{digest}"


def child_run_name(parent: str, task: str, key: str) -> str:
    """Name of the child spawned by `parent`'s `task` under spawn `key`: at most 63 chars."""
    digest = _short_hash(f"{parent}\x00{task}\x00{key}")
    return _join(dns_label(f"{parent}-{key}"), digest, 63)


def job_name(run: str, task: str, attempt: int, resume: int = 0) -> str:
    """Name of the Job for one attempt (and durable resumption) of a task: at most 52 chars.

    52 leaves room for the five random characters the Job controller appends to pod names.
    """
    digest = _short_hash(f"{run}\x00{task}\x00{attempt}\x00{resume}", 6)
    suffix = f"{attempt}" if not resume else f"{attempt}r{resume}"
    return _join(dns_label(f"{run}-{task}-{suffix}"), digest, 52)


def canonical_json(value: object) -> str:
    """The one JSON spelling of a value, for hashing."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def input_hash(value: object) -> str:
    """Hex sha256 of the canonical JSON of a run's input (the adoption check)."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()
