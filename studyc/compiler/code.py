"""The code a run executes: which files of the workdir count, and a hash of their content.

In a git repository, every file git tracks in the workdir counts, and so do untracked
source files that git does not ignore; outside git, the source files under the workdir,
except what ``.gitignore`` or ``.studycignore`` there names. Source files are code and
configuration by their extension (``.py``, ``.sh``, ``.yaml``, ``.toml``, ... see
``SOURCE_SUFFIXES``): outputs (reports, logs, plots, CSV) and data do not count unless git
tracks them, and hidden directories, ``__pycache__`` and studyc's own output directories
(a store: ``store.db``; a compile: ``plan.json``) are skipped. ``.studycignore`` (git's
pattern syntax) drops more in both cases, and study files (YAML with a top-level
``study:`` key) and docs (``*.md``) never count: editing a threshold or a note must not
re-run anything.

git is run with a clean environment: no system or global config, no fsmonitor, hooks,
pager or external diff, so a repository's config cannot make `studyc plan` execute
anything. Only `git rev-parse` and `git ls-files` run; the file contents are read here.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from studyc.errors import RunError

IGNORE_FILE = ".studycignore"
MAX_FILES = 20_000  # a workdir with more holds data or environments: list them in .studycignore
MAX_BYTES = 1 << 30
_STUDY_LINE = re.compile(rb"^study\s*:", re.M)
_ALWAYS_SKIPPED_DIRS = ("__pycache__", "node_modules")
_OUTPUT_MARKERS = ("store.db", "plan.json")  # a studyc store, a `studyc compile` output
SOURCE_SUFFIXES = frozenset(
    ".py .pyx .pxd .pyi .ipynb .c .cc .cpp .cxx .h .hh .hpp .cu .cuh .jl .r .rs .go .js .mjs .ts .java .kt .scala "
    ".lua .pl .rb .sh .bash .zsh .swift .f .f90 .m .toml .cfg .ini .yaml .yml .lock".split())
SOURCE_NAMES = frozenset(("Makefile", "Dockerfile", "CMakeLists.txt", "Pipfile"))


def is_source(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return (base in SOURCE_NAMES or base.startswith("requirements") and base.endswith(".txt")
            or os.path.splitext(base)[1].lower() in SOURCE_SUFFIXES)

# Settings that would make git run a program, overridden on every call.
_SAFE_CONFIG = ("core.fsmonitor=false", "core.untrackedCache=false", "core.hooksPath=/dev/null",
                "core.pager=cat", "diff.external=", "core.sshCommand=false", "protocol.allow=never")


@dataclass
class CodeFiles:
    """What a run's code is made of, for run ids and `studyc plan --explain`."""

    workdir: str
    source: str  # "git" or "files"
    files: list[str] = field(default_factory=list)  # relative paths, sorted
    skipped: dict[str, str] = field(default_factory=dict)  # relative path -> why it does not count
    head: str | None = None  # the git commit, for people (the hash is what the run id uses)
    digest: str = ""

    @property
    def version(self) -> str:
        """What goes into run ids: the content hash, tagged with its source."""
        return f"{self.source}:{self.digest}"

    def describe(self) -> str:
        """One line for people: where the code comes from and how many files count."""
        where = f"git {self.head[:12]}" if self.head else "no git"
        return f"code {self.digest} ({where}, {len(self.files)} files of {self.workdir})"


def git_env() -> dict[str, str]:
    """An environment in which git reads no system or global config and prompts for nothing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0",
                "GIT_OPTIONAL_LOCKS": "0", "GIT_PAGER": "cat", "PAGER": "cat", "LC_ALL": "C"})
    return env


def git(workdir: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess | None:
    """``git ARGS`` in ``workdir``, safely; None if git is missing or fails to answer."""
    command = ["git", "--no-pager"]
    for setting in _SAFE_CONFIG:
        command += ["-c", setting]
    try:
        return subprocess.run([*command, "-C", workdir, *args], capture_output=True, env=git_env(), timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None


class IgnoreRules:
    """git's ignore-pattern syntax (``*``, ``**``, ``?``, ``[...]``, ``!``, trailing ``/``,
    leading or inner ``/`` anchoring), for files read relative to one directory."""

    def __init__(self, lines: list[str]):
        self.rules: list[tuple[re.Pattern, bool, bool, bool]] = []  # (regex, negated, dir only, anchored)
        for line in lines:
            line = line.rstrip("\n").rstrip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            line = line[1:] if negated else line
            dir_only = line.endswith("/")
            line = line.rstrip("/")
            anchored = "/" in line
            if line:
                self.rules.append((re.compile(_translate(line.lstrip("/")) + r"\Z"), negated, dir_only, anchored))

    @classmethod
    def read(cls, root: Path, names: tuple[str, ...]) -> "IgnoreRules":
        lines: list[str] = []
        for name in names:
            try:
                lines += (root / name).read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
        return cls(lines)

    def ignored(self, rel: str, is_dir: bool) -> bool:
        verdict = False
        name = rel.rsplit("/", 1)[-1]
        for regex, negated, dir_only, anchored in self.rules:
            if dir_only and not is_dir:
                continue
            if regex.match(rel if anchored else name):
                verdict = not negated
        return verdict

    def ignored_path(self, rel: str) -> bool:
        """A file whose own name or any parent directory is ignored."""
        parts = rel.split("/")
        return any(self.ignored("/".join(parts[:i]), True) for i in range(1, len(parts))) or self.ignored(rel, False)


def _translate(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1:end].replace("\\", "\\\\")
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def _skipped_dir(root: Path, rel: str) -> str | None:
    name = rel.rsplit("/", 1)[-1]
    if name.startswith(".") or name in _ALWAYS_SKIPPED_DIRS:
        return "hidden or cache directory"
    if any((root / rel / marker).is_file() for marker in _OUTPUT_MARKERS):
        return "studyc output (a store or a compile)"
    return None


def _walk(root: Path, rules: IgnoreRules, skipped: dict[str, str]) -> list[str]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):  # symlinked directories are not followed
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        prefix = "" if rel_dir == "." else rel_dir + "/"
        keep = []
        for name in sorted(dirnames):
            rel = prefix + name
            why = _skipped_dir(root, rel) or ("ignored" if rules.ignored(rel, True) else None)
            if why:
                skipped[rel + "/"] = why
            else:
                keep.append(name)
        dirnames[:] = keep
        for name in filenames:
            rel = prefix + name
            if not is_source(rel):
                continue  # outputs and data: not code (not listed either, there may be many)
            if rules.ignored(rel, False):
                skipped[rel] = "ignored"
            else:
                files.append(rel)
        if len(files) > MAX_FILES:
            break
    return files


def _untracked_counts(root: Path, rel: str, skipped: dict[str, str], seen: dict[str, str | None]) -> bool:
    """Whether an untracked file git lists counts: source, outside hidden and output directories."""
    if not is_source(rel):
        return False
    parts = rel.split("/")
    for i in range(1, len(parts)):
        folder = "/".join(parts[:i])
        if folder not in seen:
            seen[folder] = _skipped_dir(root, folder)
            if seen[folder]:
                skipped[folder + "/"] = seen[folder]
        if seen[folder]:
            return False
    return True


def _git_files(root: Path) -> tuple[list[str], list[str], str] | None:
    """git's tracked and untracked-not-ignored files of the workdir and HEAD, or None
    outside a work tree."""
    inside = git(str(root), "rev-parse", "--is-inside-work-tree")
    if inside is None or inside.returncode != 0 or inside.stdout.strip() != b"true":
        return None
    lists = []
    for which in ("--cached", "--others"):
        listed = git(str(root), "ls-files", "-z", which, "--exclude-standard", "--", ".")
        if listed is None or listed.returncode != 0:
            return None
        lists.append(sorted({n.decode("utf-8", "surrogateescape") for n in listed.stdout.split(b"\0") if n}))
    head = git(str(root), "rev-parse", "--verify", "-q", "HEAD")
    return lists[0], lists[1], (head.stdout.decode().strip() if head and head.returncode == 0 else "")


def _content(path: Path) -> bytes | None:
    """A file's bytes (a symlink: its target's name); None for what is not a regular file
    (a FIFO would block) or is gone."""
    try:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            return b"link:" + os.readlink(path).encode("utf-8", "surrogateescape")
        if not stat.S_ISREG(info.st_mode):
            return None
        return path.read_bytes()
    except OSError:
        return None


def code_files(workdir: str) -> CodeFiles:
    """The files whose content decides what the runs in ``workdir`` compute, and their hash."""
    root = Path(workdir)
    studyc_rules = IgnoreRules.read(root, (IGNORE_FILE,))
    listed = _git_files(root)
    if listed is not None:
        tracked, untracked, head = listed
        found = CodeFiles(workdir, "git", head=head or None)
        seen: dict[str, str | None] = {}
        untracked = [n for n in untracked if _untracked_counts(root, n, found.skipped, seen)]
        for name in tracked + untracked:
            if studyc_rules.ignored_path(name):
                found.skipped[name] = f"named in {IGNORE_FILE}"
            else:
                found.files.append(name)
    else:
        found = CodeFiles(workdir, "files")
        found.files = _walk(root, IgnoreRules.read(root, (".gitignore", IGNORE_FILE)), found.skipped)
    if len(found.files) > MAX_FILES:
        raise RunError(f"the workdir {workdir} holds more than {MAX_FILES} files, all of which would count as the "
                       "runs' code", f"list data, environments and outputs in {root / IGNORE_FILE} (git's syntax)")
    digest = hashlib.sha256()
    total, kept = 0, []
    for name in sorted(found.files):
        if name.endswith(".md"):
            found.skipped[name] = "documentation"
            continue
        data = _content(root / name)
        if data is not None and name.endswith((".yaml", ".yml")) and _STUDY_LINE.search(data[:65536]):
            found.skipped[name] = "a study file"
            continue
        total += len(data or b"")
        if total > MAX_BYTES:
            raise RunError(f"the files of the workdir {workdir} add up to more than {MAX_BYTES >> 20} MiB of code to "
                           "hash", f"list data and outputs in {root / IGNORE_FILE} (git's syntax)")
        kept.append(name)
        digest.update(name.encode("utf-8", "surrogateescape") + b"\0")
        digest.update(hashlib.sha256(data).digest() if data is not None else b"missing")
    found.files = kept
    found.digest = digest.hexdigest()[:12]
    return found
