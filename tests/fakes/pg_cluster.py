"""A throwaway PostgreSQL cluster of a test's own: initdb in a temporary folder, its own port, started
and stopped with pg_ctl. A test may restart it, stop it, or freeze it (SIGSTOP: connections hang, as
behind a network that drops packets) without touching the shared server other suites use.

The server binaries come from /usr/lib/postgresql/<version>/bin (Debian, Ubuntu) or the PATH. PostgreSQL
refuses to run as root: under root the cluster belongs to, and runs as, the `postgres` user.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path


def server_bin() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres (the newest installed version), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class Cluster:
    """One PostgreSQL cluster on 127.0.0.1:`port`, trust authentication, user postgres."""

    def __init__(self, port: int, bindir: Path | None = None):
        bindir = bindir or server_bin()
        if bindir is None:
            raise FileNotFoundError("no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or on the PATH")
        self.bin = bindir
        self.port = port
        self.as_postgres = os.geteuid() == 0
        # Not under pytest's tmp_path: as root, that folder is closed to the postgres user.
        self.root = Path(tempfile.mkdtemp(prefix="cccd-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 120) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, cwd=self.root)
        if done.returncode:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}): {done.stdout.decode(errors='replace')[-2000:]}\n{tail}")

    async def init(self) -> Cluster:
        await asyncio.to_thread(
            self._run, "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"
        )
        return self

    async def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off -c full_page_writes=off"
        await asyncio.to_thread(self._run, "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    async def stop(self, mode: str = "fast") -> None:
        """`fast`: connections are ended (as in a restart); `immediate`: the server dies (as in a crash)."""
        await asyncio.to_thread(self._run, "pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def _pids(self) -> list[int]:
        """The postmaster first, then its children (backends and auxiliary processes)."""
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return []
        master = int(pid_file.read_text().split()[0])
        children = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces, so split after its closing parenthesis.
            if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                children.append(int(entry))
        return [master, *children]

    def freeze(self) -> None:
        """Stop every process of the cluster: it answers nothing (connections and new connects hang)."""
        for pid in self._pids():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in reversed(self._pids()):
            os.kill(pid, signal.SIGCONT)

    async def destroy(self) -> None:
        try:
            self.thaw()
            if (self.data / "postmaster.pid").exists():
                await self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
