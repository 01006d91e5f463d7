"""The suite leaves the machine alone: every test runs with its own HOME, XDG directories,
TMPDIR and stack directory, and no child process escapes them.

``isolated_env`` (autouse, in conftest.py) points HOME, XDG_STATE_HOME, XDG_CONFIG_HOME,
XDG_CACHE_HOME, XDG_DATA_HOME, XDG_RUNTIME_DIR and TMPDIR at directories of the test's own
(so ``~/.local/state/jobreport``, ``~/.config/jobreport``, the default stack directory
``$TMPDIR/jobreport-stack-$UID`` and stack.sh's registry under ``$XDG_RUNTIME_DIR`` are the
test's), and drops the settings a user may have exported (``JOBREPORT_*``, the stack's
ports, proxies). A session-wide layer does the same for fixtures that outlive one test.

A child started with an ``env=`` that drops those variables would fall back to the user's
directories (a missing HOME means the passwd entry's home, a missing TMPDIR means /tmp): an
audit hook makes such a start fail loudly, naming the variable, whatever module starts it.
Build a child's environment on ``os.environ`` (or :func:`child_env`).

:func:`snapshot` and :class:`SentinelUser` are for the tests that prove all this: a
"user" with a filled state and config directory, whose tree must not change by a byte.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import pwd
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

#: What the test process inherited: the user's environment, before any isolation.
USER_ENV: dict[str, str] = dict(os.environ)
_PASSWD_HOME = pwd.getpwuid(os.getuid()).pw_dir

#: Settings of the user's that no test may read: jobreport's own, the stack launcher's,
#: the proxies (a test that wants a proxy sets its own), and the sign of a Kubernetes pod.
_DROPPED_PREFIXES = ("JOBREPORT_",)
_DROPPED = frozenset({
    # (a suite run inside a Kubernetes pod: the instance would default to none)
    "KUBERNETES_SERVICE_HOST",
    "PUSHGATEWAY_URL", "PUSHGATEWAY_PORT", "PROMETHEUS_PORT", "ALERTMANAGER_PORT",
    "WEBHOOK_PORT", "http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY",
    "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
})


def effective_dirs(env: Mapping[str, str]) -> dict[str, str]:
    """Where a child with environment ``env`` keeps each kind of file (the XDG fallbacks,
    the passwd home when HOME is missing, /tmp when TMPDIR is): what jobreport, stack.sh,
    pip and the rest would use."""
    home = env.get("HOME") or _PASSWD_HOME
    tmp = env.get("TMPDIR") or "/tmp"  # noqa: S108 - the fallback every program uses
    dirs = {
        "HOME": home,
        "XDG_STATE_HOME": env.get("XDG_STATE_HOME") or os.path.join(home, ".local", "state"),
        "XDG_CONFIG_HOME": env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config"),
        "XDG_CACHE_HOME": env.get("XDG_CACHE_HOME") or os.path.join(home, ".cache"),
        "XDG_DATA_HOME": env.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share"),
        "XDG_RUNTIME_DIR": env.get("XDG_RUNTIME_DIR") or tmp,
        "TMPDIR": tmp,
    }
    return {k: os.path.normpath(v) for k, v in dirs.items()}


_USER_DIRS = effective_dirs(USER_ENV)


class IsolationError(RuntimeError):
    """A test started a child that would use the user's own directories."""


def check_child_env(env: Mapping[str, str]) -> None:
    """Raise :class:`IsolationError` when a child with ``env`` would read or write one of the
    user's directories (HOME, state, config, cache, data, runtime, temporary files)."""
    if not env.get("HOME"):
        raise IsolationError(
            f"a child started without HOME would use {_PASSWD_HOME} (the user's home): "
            "build its env= on os.environ or tests.isolation.child_env()")
    child = effective_dirs(env)
    for name, where in child.items():
        if where == _USER_DIRS[name]:
            raise IsolationError(
                f"a child would use the user's {name} ({where}): its env= drops or replaces "
                f"the test's own; build it on os.environ or tests.isolation.child_env()")


#: The variables that name a per-user directory.
DIR_VARIABLES = ("HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME",
                 "XDG_RUNTIME_DIR", "TMPDIR")


def child_env(**extra: str) -> dict[str, str]:
    """The test's isolated environment with ``extra`` on top: the base for any ``env=``."""
    return {**os.environ, **extra}


def own_dirs(**extra: str) -> dict[str, str]:
    """Only the test's own directories (HOME, XDG_*, TMPDIR) plus ``extra``: the base of a
    deliberately small environment."""
    return {**{k: os.environ[k] for k in DIR_VARIABLES if k in os.environ}, **extra}


class _Guard:
    on = False  # from the session's isolation on


def _audit(event: str, args: tuple[object, ...]) -> None:
    if not _Guard.on:
        return
    if event == "subprocess.Popen":
        env = args[3]
    elif event == "os.posix_spawn":
        env = args[2]
    else:
        return
    check_child_env(os.environ if env is None else env)  # type: ignore[arg-type]


sys.addaudithook(_audit)  # for good: audit hooks cannot be removed; _Guard.on switches it


def _isolate(mp: pytest.MonkeyPatch, root: Path) -> None:
    """Point every per-user directory of this process (and so of its children) into
    ``root`` and drop the user's settings."""
    for key in list(os.environ):
        if key.startswith(_DROPPED_PREFIXES) or key in _DROPPED:
            mp.delenv(key)
    for name, sub in (("HOME", "home"), ("XDG_STATE_HOME", "state"),
                      ("XDG_CONFIG_HOME", "config"), ("XDG_CACHE_HOME", "cache"),
                      ("XDG_DATA_HOME", "data"), ("XDG_RUNTIME_DIR", "run"), ("TMPDIR", "tmp")):
        mp.setenv(name, str(root / sub))
    # must exist: mktemp and the wrapper's metrics file need TMPDIR, and XDG_RUNTIME_DIR is
    # owner-only by the spec
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    (root / "run").mkdir(mode=0o700, parents=True, exist_ok=True)


@pytest.fixture(scope="session", autouse=True)
def _session_isolation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The isolation for the whole session (module- and session-scoped fixtures start
    servers before any test's own isolation applies), and the guard switched on."""
    with pytest.MonkeyPatch.context() as mp:
        _isolate(mp, tmp_path_factory.mktemp("session-env"))
        _Guard.on = True
        try:
            yield
        finally:
            _Guard.on = False


_numbers = itertools.count()


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                 monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test sees the developer's jobreport settings or directories: HOME, TMPDIR, the
    XDG directories (so the store, locks, markers, peer memory, config and stack registry)
    are the test's own. Returns the state directory (``XDG_STATE_HOME``, in tmp_path)."""
    # HOME, TMPDIR and the rest live beside tmp_path, not in it (tests list tmp_path)
    root = tmp_path_factory.getbasetemp() / "env" / str(next(_numbers))
    _isolate(monkeypatch, root)
    # this process's own temporary files too (tempfile read TMPDIR once, at its first use);
    # module fixtures keep the session's (the PostgreSQL cluster must be outside basetemp)
    monkeypatch.setattr(tempfile, "tempdir", str(root / "tmp"))
    state = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    report = sys.modules.get("jobreport.runs.shared")
    if report is not None:
        report.SHARED.reset()  # per process: the "no gateway" notice, stores, sinks
    return state


# --- proving it -----------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every directory, file and link under ``root`` (``root`` included) with its type,
    permission bits and content digest (a link: its target): equal snapshots mean the
    tree is unchanged byte for byte."""
    tree: dict[str, tuple[object, ...]] = {}
    for path in [root, *sorted(root.rglob("*"))]:
        info = path.lstat()
        rel = str(path.relative_to(root))
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISLNK(info.st_mode):
            tree[rel] = ("link", os.readlink(path))
        elif stat.S_ISDIR(info.st_mode):
            tree[rel] = ("dir", oct(mode))
        elif stat.S_ISREG(info.st_mode):
            tree[rel] = ("file", oct(mode), hashlib.sha256(path.read_bytes()).hexdigest())
        else:
            tree[rel] = ("other", stat.S_IFMT(info.st_mode))
    return tree


def tree_changes(before: Mapping[str, tuple[object, ...]],
                 after: Mapping[str, tuple[object, ...]]) -> list[str]:
    """What differs between two snapshots, one line per path (empty: unchanged)."""
    changes = [f"added {p}" for p in sorted(set(after) - set(before))]
    changes += [f"removed {p}" for p in sorted(set(before) - set(after))]
    changes += [f"changed {p}: {before[p]} -> {after[p]}"
                for p in sorted(set(before) & set(after)) if before[p] != after[p]]
    return changes


@dataclass
class SentinelUser:
    """A stand-in for the person whose machine runs the suite: their own HOME (with a
    jobreport state and config directory in it), TMPDIR and XDG_RUNTIME_DIR under
    ``root``. ``env`` is the environment of a shell of theirs: no XDG_STATE_HOME or
    XDG_CONFIG_HOME, so jobreport and stack.sh take the defaults under HOME and TMPDIR."""

    root: Path
    home: Path = field(init=False)
    tmp: Path = field(init=False)
    run: Path = field(init=False)

    def __post_init__(self) -> None:
        self.home, self.tmp, self.run = self.root / "home", self.root / "tmp", self.root / "run"
        for d in (self.home, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        self.run.mkdir(mode=0o700, parents=True, exist_ok=True)

    @property
    def state_dir(self) -> Path:
        return self.home / ".local" / "state" / "jobreport"

    @property
    def config_dir(self) -> Path:
        return self.home / ".config" / "jobreport"

    @property
    def stack_dir(self) -> Path:
        """scripts/stack.sh's default directory for this user."""
        return self.tmp / f"jobreport-stack-{os.getuid()}"

    @property
    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("XDG_", *_DROPPED_PREFIXES)) and k not in _DROPPED}
        return {**base, "HOME": str(self.home), "TMPDIR": str(self.tmp),
                "XDG_RUNTIME_DIR": str(self.run)}

    def fill(self, gateway: str, dead_gateway: str) -> None:
        """What a user of jobreport has: a config file naming their ``gateway``, and a
        state directory with a store, a lock file, a run still pending for
        ``dead_gateway`` and the memory that it was unreachable (jobreport's own CLI makes
        them, as in real use)."""
        self.config_dir.mkdir(parents=True)
        (self.config_dir / "jobreport.toml").write_text(
            f'gateway = "{gateway}"\n\n[jobs.nightly]\nexpect_every = "24h"\n')
        for extra in ([], ["--gateway", dead_gateway]):
            ran = subprocess.run(
                [sys.executable, "-m", "jobreport", "run", "--job", "nightly", "--lock",
                 *extra, "--", "true"], env={**self.env, "JOBREPORT_BUDGET": "2s"},
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                check=False)
            assert ran.returncode == 0, ran.stderr
        made = {p.name for p in self.state_dir.iterdir()}
        assert {"jobreport.db", "locks"} <= made, made
        assert any(n.startswith("unreachable-") for n in made), made

    def watched(self) -> dict[str, dict[str, tuple[object, ...]]]:
        """Snapshots of what no test may touch: the user's HOME and runtime directory."""
        return {"HOME": snapshot(self.home), "XDG_RUNTIME_DIR": snapshot(self.run)}

    def changes_since(self, before: Mapping[str, Mapping[str, tuple[object, ...]]]) -> list[str]:
        after = self.watched()
        return [f"{name}: {line}" for name in before
                for line in tree_changes(before[name], after[name])]
