"""Debian packages as a data source: `apt-get download` + `dpkg-deb -x` into the cache, never installed.

Extracted trees live in ``$GROWMERGE_CACHE/debian/<package>/`` and are marked complete by a stamp,
so the second run does not touch the network or the disk.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from growmerge.errors import GrowmergeError

APT_LISTS = Path("/var/lib/apt/lists")


def cache_dir() -> Path:
    return Path(os.environ.get("GROWMERGE_CACHE", "~/.cache/growmerge")).expanduser()


def apt_lists_present() -> bool:
    return APT_LISTS.is_dir() and any(p.name.endswith(("_Packages", "_Packages.lz4", "_Packages.gz",
                                                        "_Packages.xz")) for p in APT_LISTS.iterdir())


def ensure_apt_lists() -> None:
    """Package lists are needed to download; only root may refresh them."""
    if apt_lists_present():
        return
    if shutil.which("apt-get") is None:
        raise GrowmergeError("apt-get not found: the builtin Debian sources need Debian/Ubuntu "
                             "(use `files` or `hf_dataset` sources instead)")
    if os.geteuid() != 0:
        raise GrowmergeError("no apt package lists: run `sudo apt-get update` once, then retry")
    run(["apt-get", "update", "-q"], "apt-get update failed")


def run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise GrowmergeError(f"{what}: {last}")


def package_root(package: str) -> Path:
    """The extracted file tree of a Debian package (downloaded and unpacked once)."""
    root = cache_dir() / "debian" / package
    stamp = root / ".complete"
    if stamp.is_file():
        return root
    ensure_apt_lists()
    work = root.with_name(f"{package}.tmp-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        # Download as root works only into a directory `_apt` may not read; apt warns and proceeds.
        proc = subprocess.run(["apt-get", "download", "-q", package], cwd=work, capture_output=True, text=True)
        if proc.returncode != 0:
            raise GrowmergeError(f"Debian package {package} could not be downloaded "
                                 f"({(proc.stderr.strip().splitlines() or ['?'])[-1]}); check the name with "
                                 f"`apt-cache policy {package}` or run `sudo apt-get update`")
        debs = list(work.glob("*.deb"))
        tree = work / "tree"
        run(["dpkg-deb", "-x", str(debs[0]), str(tree)], f"dpkg-deb could not unpack {debs[0].name}")
        (tree / ".complete").write_text(debs[0].name + "\n")
        shutil.rmtree(root, ignore_errors=True)
        os.replace(tree, root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return root
