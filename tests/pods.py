"""Runs of ``jobreport`` as a Kubernetes pod (or a container) would make them, for the
tests of runs that start from nothing (no tests here): a new, empty HOME (so a new store)
for every run, a host name of its own (``unshare --uts``, as a pod has), and
``KUBERNETES_SERVICE_HOST`` set as in every container Kubernetes starts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.faults import JOBREPORT, cli_env

__all__ = ["Pods", "UNSHARE"]

UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"


class Pods:
    """Makes pods under ``root``: each ``run`` is a new pod (new HOME, new host name)."""

    def __init__(self, root: Path, *, kubernetes: bool = True, **settings: str) -> None:
        self.root = root
        self.kubernetes = kubernetes
        self.settings = dict(settings)
        self.made = 0

    def env(self, home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """A pod's environment: the settings, its own HOME, XDG and temporary directories,
        and KUBERNETES_SERVICE_HOST (unless ``kubernetes`` is off)."""
        env = cli_env(**self.settings, **(extra or {}))
        env["HOME"] = str(home)
        env["XDG_STATE_HOME"] = str(home / ".local" / "state")
        env["XDG_CONFIG_HOME"] = str(home / ".config")
        # (the directories a pod has of its own, as the manifest's emptyDir, win over any
        # path the settings name)
        (home / "tmp").mkdir(exist_ok=True)
        env["TMPDIR"] = str(home / "tmp")
        env.pop("KUBERNETES_SERVICE_HOST", None)
        if self.kubernetes:
            env["KUBERNETES_SERVICE_HOST"] = "10.96.0.1"
            env["KUBERNETES_SERVICE_PORT"] = "443"
        return env

    def new(self, name: str | None = None) -> tuple[str, Path]:
        """A new pod's host name and (empty) HOME."""
        self.made += 1
        host = name or f"backup-2904{self.made:04d}-x{os.urandom(3).hex()}"
        home = self.root / f"pod-{self.made}-{host}"
        home.mkdir(parents=True)
        return host, home

    def command(self, args: Sequence[str], host: str) -> list[str]:
        """``jobreport ARGS`` in a UTS namespace of its own named ``host``."""
        return [UNSHARE, "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', host,
                JOBREPORT, *args]

    def run(self, args: Sequence[str], *, extra: Mapping[str, str] | None = None,
            host: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``jobreport ARGS`` in a new pod and wait for it (no terminal, as in a pod)."""
        host, home = self.new(host)
        return subprocess.run(self.command(args, host), env=self.env(home, extra),
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)

    def start(self, args: Sequence[str], *, extra: Mapping[str, str] | None = None,
              host: str | None = None) -> subprocess.Popen[str]:
        """Start ``jobreport ARGS`` in a new pod (not waited for)."""
        host, home = self.new(host)
        return subprocess.Popen(self.command(args, host), env=self.env(home, extra),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)
