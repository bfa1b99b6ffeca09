"""A real, throw-away SLURM cluster on loopback for tests (Debian ``slurm-wlm`` + ``munge``).

Usage in a test module (the import is what makes pytest see the fixture; every module that
imports it shares the one cluster of the session)::

    from slurm_harness import slurm_cluster  # noqa: F401

    def test_something(slurm_cluster, tmp_path):
        r = slurm_cluster.sbatch_test_only(script, ["--nodes=2"])
        assert r.returncode == 0, r.stderr
        job = slurm_cluster.submit(script, cwd=tmp_path)
        assert slurm_cluster.wait(job, timeout=60) == "COMPLETED"

What the session-scoped ``slurm_cluster`` fixture starts, all in one fresh temp dir and all
as the user running pytest (root here and in CI):

* ``munged -F`` with its own key, socket, pid, log and seed files;
* ``slurmctld -D`` and two ``slurmd -D -N <node>`` (nodes ``n1`` and ``n2``, both on this host,
  address 127.0.0.1, each on its own free port), each declaring ``Gres=gpu:8`` and the CPU
  layout that ``slurmd -C`` reports. The GPUs are fake: ``gres.conf`` points ``File=`` at
  character-device nodes that the harness ``mknod``s in the temp dir (major 195, like
  ``/dev/nvidia*``, never opened), so Slurm sets ``CUDA_VISIBLE_DEVICES`` as on a real node.
* partitions ``gpu`` (default) and ``a40``, both over all nodes.

Both nodes are real, running slurmd's: ``sbatch --test-only --nodes=2`` is rejected
("Requested node configuration is not available") when the second node is only declared and
DOWN, so a second daemon is needed. Debian's build accepts several slurmd's on one host when
each is started with ``-N <name>`` and has its own ``Port=``.

Skips: when ``slurmctld``/``slurmd``/``munged`` (or the client commands) are not installed the
fixture skips, but under ``CI=true`` it fails (nothing may skip in CI). If the binaries are
there but the daemons do not come up, it always fails, with the daemons' logs in the message.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest


def in_ci() -> bool:
    """CI=true (or 1/yes), as tests/conftest.py reads it: then nothing may skip."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "scontrol", "sinfo", "squeue", "scancel", "srun")

# Job states after which a job will not change any more (see squeue(1) "JOB STATE CODES").
TERMINAL_STATES = frozenset({
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
    "OUT_OF_MEMORY", "PREEMPTED", "REVOKED", "SPECIAL_EXIT", "TIMEOUT",
})

# Variables that would point client commands at another cluster or another job.
_SCRUB_PREFIXES = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_", "SINFO_", "SCANCEL_",
                   "SACCT_", "SCONTROL_", "SLURMD_", "SLURMCTLD_", "MUNGE_")

# AF_UNIX socket paths must stay under 108 bytes; Slurm also puts sockets in SlurmdSpoolDir.
_MAX_BASE_LEN = 60


class SlurmHarnessError(RuntimeError):
    """The test cluster could not be started (the message carries the daemons' logs)."""


def _sbin_which(name: str) -> str | None:
    """shutil.which, also looking in the sbin dirs a non-root PATH may lack."""
    extra = os.pathsep.join(("/usr/sbin", "/sbin", "/usr/local/sbin"))
    return shutil.which(name) or shutil.which(name, path=extra)


def missing_binaries() -> list[str]:
    """The daemons and client commands the harness needs that are not on this machine."""
    return [b for b in (*DAEMONS, *CLIENTS) if _sbin_which(b) is None]


def skip_or_fail(reason: str) -> None:
    """pytest.skip(reason), but pytest.fail under CI=true (nothing may skip in CI)."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def _free_ports(n: int) -> list[int]:
    """n distinct TCP ports that are free on every interface (slurmd binds INADDR_ANY).

    Each is bound (never listened on or connected to) while the others are picked, so they
    differ; another process could still take one before the daemons start (unlikely)."""
    holders: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            holders.append(s)
            s.bind(("0.0.0.0", 0))
        return [s.getsockname()[1] for s in holders]
    finally:
        for s in holders:
            s.close()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        return f"<{path}: {e}>"
    return "\n".join(text.splitlines()[-lines:])


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Have the kernel SIGTERM a daemon if the test process dies without tearing down."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _machine_layout(slurmd: str) -> dict[str, int]:
    """CPU/memory layout as `slurmd -C` reports it (what slurmd will register with)."""
    layout: dict[str, int] = {}
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES)}
        out = subprocess.run([slurmd, "-C"], capture_output=True, text=True, timeout=30,
                             env=env).stdout
        for key in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore",
                    "RealMemory"):
            m = re.search(rf"\b{key}=(\d+)", out)
            if m:
                layout[key] = int(m.group(1))
    except (OSError, subprocess.SubprocessError):
        pass
    if "CPUs" not in layout:  # fall back to a flat layout; SlurmdParameters=config_overrides
        cpus = os.cpu_count() or 1
        layout = {"CPUs": cpus, "Boards": 1, "SocketsPerBoard": 1, "CoresPerSocket": cpus,
                  "ThreadsPerCore": 1}
    if "RealMemory" not in layout:
        layout["RealMemory"] = 1024
    return layout


def parse_scontrol_oneliner(line: str) -> dict[str, str]:
    """`scontrol show job -o` output (Key=Value Key=Value ...) -> dict.

    Values may contain spaces only for a few keys (e.g. Command with arguments is not split);
    a token without "=" is appended to the previous value.
    """
    info: dict[str, str] = {}
    last = None
    for tok in line.strip().split(" "):
        if "=" in tok:
            key, _, val = tok.partition("=")
            info[key] = val
            last = key
        elif last is not None and tok:
            info[last] += " " + tok
    return info


class SlurmCluster:
    """A slurmctld + N slurmd's + munged, configured in and confined to one directory.

    Attributes: ``conf_dir`` (holds slurm.conf, gres.conf, plugstack.conf, logs and state),
    ``slurm_conf`` (path), ``env`` (environment for subprocesses: the caller's, minus SLURM_*
    and friends, plus SLURM_CONF), ``nodes`` (node names), ``partitions``, ``gpus_per_node``,
    ``hostname``, ``ports``.
    """

    def __init__(self, base_dir: str | os.PathLike[str], *, node_names: Sequence[str] = ("n1", "n2"),
                 gpus_per_node: int = 8, partitions: Sequence[str] = ("gpu", "a40"),
                 startup_timeout: float = 60.0) -> None:
        self.conf_dir = Path(base_dir)
        self.nodes = list(node_names)
        self.gpus_per_node = gpus_per_node
        self.partitions = list(partitions)
        self.startup_timeout = startup_timeout
        self.hostname = socket.gethostname().split(".")[0] or "localhost"
        self.slurm_conf = self.conf_dir / "slurm.conf"
        self.munge_dir = self.conf_dir / "munge"
        self.munge_socket = self.munge_dir / "munge.socket"
        self.log_dir = self.conf_dir / "log"
        self.ports: dict[str, int] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._out_files: list = []
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES)}
        path = base_env.get("PATH", os.defpath)
        for d in ("/usr/sbin", "/sbin"):
            if d not in path.split(os.pathsep):
                path += os.pathsep + d
        base_env["PATH"] = path
        base_env["SLURM_CONF"] = str(self.slurm_conf)
        self.env: dict[str, str] = base_env

    # ---------------------------------------------------------------- setup
    def _write_munge_key(self) -> Path:
        key_dir = self.munge_dir / "key"
        key_dir.mkdir(parents=True, exist_ok=True)
        key_dir.chmod(0o700)
        key = key_dir / "munge.key"
        with contextlib.suppress(FileNotFoundError):
            key.unlink()
        mungekey = _sbin_which("mungekey")
        if mungekey:
            subprocess.run([mungekey, "--create", "--keyfile", str(key)], check=False,
                           capture_output=True, timeout=30)
        if not key.exists() or key.stat().st_size < 32:
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(1024))
        key.chmod(0o400)  # owned by us: we are who runs munged
        return key

    def _make_fake_gpus(self, node: str) -> str:
        """Device files for gres.conf File=; returns the File= value (a bracketed range)."""
        d = self.conf_dir / "dev" / node
        d.mkdir(parents=True, exist_ok=True)
        for i in range(self.gpus_per_node):
            p = d / f"nvidia{i}"
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
            try:  # a character device like the real /dev/nvidiaN (never opened)
                os.mknod(p, 0o666 | 0o020000, os.makedev(195, i))
            except (OSError, AttributeError):
                # unprivileged: a symlink to a character device still passes slurmd's stat()
                p.symlink_to("/dev/null")
        last = self.gpus_per_node - 1
        return f"{d}/nvidia[0-{last}]" if last > 0 else f"{d}/nvidia0"

    def write_config(self) -> None:
        c = self.conf_dir
        for sub in ("state", "log", "run", "spool"):
            (c / sub).mkdir(parents=True, exist_ok=True)
        for n in self.nodes:
            (c / "spool" / n).mkdir(parents=True, exist_ok=True)
        ports = _free_ports(1 + len(self.nodes))
        self.ports = {"slurmctld": ports[0], **{n: p for n, p in zip(self.nodes, ports[1:])}}
        layout = _machine_layout(_sbin_which("slurmd") or "slurmd")
        # Declare the CPUs of a typical 2-socket GPU server (2 x 32 cores), not this
        # 2-core machine, so one MPI task per GPU (TensorRT-LLM) fits; SlurmdParameters=
        # config_overrides makes slurmd register with the configured layout.
        layout.update(CPUs=64, Boards=1, SocketsPerBoard=2, CoresPerSocket=32, ThreadsPerCore=1)
        hw = " ".join(f"{k}={v}" for k, v in layout.items())
        user = _current_user()
        nodelist = ",".join(self.nodes)
        node_lines = "\n".join(
            f"NodeName={n} NodeHostname={self.hostname} NodeAddr=127.0.0.1 Port={self.ports[n]} "
            f"{hw} Gres=gpu:{self.gpus_per_node} State=UNKNOWN" for n in self.nodes)
        part_lines = "\n".join(
            f"PartitionName={p} Nodes={nodelist} Default={'YES' if i == 0 else 'NO'} "
            f"MaxTime=INFINITE State=UP" for i, p in enumerate(self.partitions))
        (c / "plugstack.conf").write_text("# empty: no SPANK plugins\n")
        self.slurm_conf.write_text(f"""\
# Generated by tests/slurm_harness.py: a throw-away cluster on loopback.
ClusterName=parctest
SlurmctldHost={self.hostname}(127.0.0.1)
SlurmctldPort={self.ports['slurmctld']}
SlurmdPort={self.ports[self.nodes[0]]}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={c}/state
SlurmdSpoolDir={c}/spool/%n
SlurmctldPidFile={c}/run/slurmctld.pid
SlurmdPidFile={c}/run/slurmd-%n.pid
SlurmctldLogFile={c}/log/slurmctld.log
SlurmdLogFile={c}/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig={c}/plugstack.conf
CommunicationParameters=NoCtldInAddrAny
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
GresTypes=gpu
MpiDefault=none
SwitchType=switch/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
{node_lines}
{part_lines}
""")
        gres_lines = "\n".join(
            f"NodeName={n} Name=gpu File={self._make_fake_gpus(n)}" for n in self.nodes)
        (c / "gres.conf").write_text(f"AutoDetect=off\n{gres_lines}\n")

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        out = open(self.log_dir / f"{name}.out", "wb")  # noqa: SIM115 - closed in stop()
        self._out_files.append(out)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=self.env, cwd=self.conf_dir,
                                start_new_session=True, preexec_fn=_set_pdeathsig)
        self._procs[name] = proc
        return proc

    def _check_alive(self) -> None:
        for name, p in self._procs.items():
            if p.poll() is not None:
                raise SlurmHarnessError(f"{name} exited with {p.returncode} during startup\n"
                                        + self.logs())

    def _wait_for(self, what: str, ok, deadline: float) -> None:
        while time.monotonic() < deadline:
            self._check_alive()
            if ok():
                return
            time.sleep(0.2)
        raise SlurmHarnessError(f"timed out waiting for {what}\n" + self.logs())

    def start(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.conf_dir.chmod(0o755)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.munge_dir.mkdir(parents=True, exist_ok=True)
        self.munge_dir.chmod(0o755)  # the socket must be reachable by job steps
        key = self._write_munge_key()
        self.write_config()

        m = self.munge_dir
        self._spawn("munged", [_sbin_which("munged") or "munged", "--foreground", "--force",
                               f"--socket={self.munge_socket}", f"--key-file={key}",
                               f"--pid-file={m}/munged.pid", f"--log-file={m}/munged.log",
                               f"--seed-file={m}/munged.seed"])
        self._wait_for("munged's socket", self._munge_ok, deadline)

        self._spawn("slurmctld", [_sbin_which("slurmctld") or "slurmctld", "-D",
                                  "-f", str(self.slurm_conf)])
        self._wait_for("slurmctld to answer `scontrol ping`", self._ctld_up, deadline)

        slurmd = _sbin_which("slurmd") or "slurmd"
        for n in self.nodes:
            self._spawn(f"slurmd-{n}", [slurmd, "-D", "-N", n, "-f", str(self.slurm_conf)])
        self._wait_for(f"nodes {self.nodes} to be idle in sinfo", self._nodes_idle, deadline)

    def _munge_ok(self) -> bool:
        if not self.munge_socket.exists():
            return False
        munge, unmunge = _sbin_which("munge"), _sbin_which("unmunge")
        if not (munge and unmunge):
            return True
        try:
            cred = subprocess.run([munge, "-n", "-S", str(self.munge_socket)],
                                  capture_output=True, timeout=10)
            if cred.returncode != 0:
                return False
            dec = subprocess.run([unmunge, "-S", str(self.munge_socket)], input=cred.stdout,
                                 capture_output=True, timeout=10)
            return dec.returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def _ctld_up(self) -> bool:
        r = self.run("scontrol", "ping", timeout=15)
        return r.returncode == 0 and "UP" in r.stdout

    def node_states(self) -> dict[str, str]:
        """{node: compact state} from sinfo, e.g. {"n1": "idle", "n2": "alloc"}."""
        r = self.run("sinfo", "-h", "-N", "-o", "%N %t", timeout=15)
        states: dict[str, str] = {}
        for line in r.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2:
                states[parts[0]] = parts[1]
        return states

    def _nodes_idle(self) -> bool:
        states = self.node_states()
        return all(states.get(n) == "idle" for n in self.nodes)

    # ---------------------------------------------------------------- API
    def run(self, *argv: str, env: Mapping[str, str] | None = None,
            cwd: str | os.PathLike[str] | None = None, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command (e.g. "squeue", "-h") against this cluster; never raises on exit code."""
        full_env = {**self.env, **(env or {}), "SLURM_CONF": str(self.slurm_conf)}
        exe = _sbin_which(argv[0]) or argv[0]
        return subprocess.run([exe, *argv[1:]], capture_output=True, text=True, env=full_env,
                              cwd=cwd, timeout=timeout, input=input)

    def sbatch_test_only(self, script_path: str | os.PathLike[str],
                         extra_args: Sequence[str] = (),
                         cwd: str | os.PathLike[str] | None = None
                         ) -> subprocess.CompletedProcess[str]:
        """`sbatch --test-only [extra_args] script`. Slurm prints its verdict on stderr:
        "sbatch: Job N to start at ... using 4 processors on nodes n[1-2] in partition gpu"
        (exit 0) or
        "allocation failure: ..." (exit 1). Nothing is queued."""
        script = Path(script_path)
        return self.run("sbatch", "--test-only", *extra_args, str(script),
                        cwd=cwd or script.parent)

    def submit(self, script_path: str | os.PathLike[str], env: Mapping[str, str] | None = None,
               cwd: str | os.PathLike[str] | None = None, extra_args: Sequence[str] = ()) -> str:
        """sbatch the script; returns the job id. ``env`` is laid over ``self.env`` (the job
        inherits it: sbatch exports the submitter's environment); ``cwd`` (default: the script's
        directory) is the job's working dir, where a relative --output lands."""
        script = Path(script_path)
        r = self.run("sbatch", "--parsable", *extra_args, str(script), env=env,
                     cwd=cwd or script.parent)
        if r.returncode != 0:
            raise RuntimeError(f"sbatch {script} failed ({r.returncode}):\n{r.stderr}{r.stdout}")
        job_id = r.stdout.strip().splitlines()[-1].split(";")[0]
        if not job_id.isdigit():
            raise RuntimeError(f"sbatch {script}: unexpected output {r.stdout!r}")
        return job_id

    def job_infos(self, job_id: str | int) -> list[dict[str, str]]:
        """`scontrol show job -o ID` as dicts: one for a plain job, one per task of an array
        job ([] once the job is purged: MinJobAge=300 s after it ends)."""
        r = self.run("scontrol", "show", "job", "-o", str(job_id), timeout=15)
        if r.returncode != 0:
            return []
        return [parse_scontrol_oneliner(ln) for ln in r.stdout.splitlines() if ln.strip()]

    def job_info(self, job_id: str | int) -> dict[str, str]:
        """The first record of `scontrol show job -o ID` ({} if unknown)."""
        infos = self.job_infos(job_id)
        return infos[0] if infos else {}

    def state(self, job_id: str | int) -> str:
        """The job's state, e.g. "PENDING", "RUNNING", "COMPLETED" ("" if unknown); for an
        array job, that of its first record."""
        return self.job_info(job_id).get("JobState", "")

    def wait(self, job_id: str | int, timeout: float = 120) -> str:
        """Poll until the job (every task, for an array job) reaches a terminal state; return
        it: "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", ... (for an array, "COMPLETED" only
        if every task completed, else the first other state). Raises TimeoutError (with the
        job record and the daemons' logs) after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        states: list[str] = []
        while time.monotonic() < deadline:
            states = [i.get("JobState", "") for i in self.job_infos(job_id)]
            if states and all(st in TERMINAL_STATES for st in states):
                return next((st for st in states if st != "COMPLETED"), "COMPLETED")
            time.sleep(0.25)
        raise TimeoutError(f"job {job_id} still {states or 'unknown'} after {timeout}s\n"
                           f"{self.job_infos(job_id)}\n{self.logs()}")

    def cancel(self, job_id: str | int) -> None:
        self.run("scancel", str(job_id), timeout=30)

    def logs(self, lines: int = 40) -> str:
        """Tails of every daemon log (for failure messages)."""
        files = sorted(self.log_dir.glob("*")) + [self.munge_dir / "munged.log"]
        return "\n".join(f"===== {f} =====\n{_tail(f, lines)}" for f in files if f.exists())

    # ---------------------------------------------------------------- teardown
    def _cancel_all(self) -> None:
        if "slurmctld" not in self._procs or self._procs["slurmctld"].poll() is not None:
            return
        try:
            r = self.run("squeue", "-h", "-o", "%i", timeout=15)
            ids = r.stdout.split()
            if ids:
                self.run("scancel", *ids, timeout=15)
                end = time.monotonic() + 15
                while time.monotonic() < end and self.run(
                        "squeue", "-h", "-o", "%i", timeout=15).stdout.split():
                    time.sleep(0.3)
        except (OSError, subprocess.SubprocessError):
            pass

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
        """SIGTERM, wait, SIGKILL: the daemon, then whatever it left in its session (each
        daemon is started as a session leader; slurmctld forks slurmscriptd, which outlives a
        slurmctld that died of a fatal error)."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
        leftovers = _session_members(proc.pid)
        for sig, pause in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
            if not leftovers:
                return
            for pid in leftovers:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            end = time.monotonic() + pause
            while time.monotonic() < end:
                leftovers = [p for p in leftovers if _alive_in_session(p, proc.pid)]
                if not leftovers:
                    return
                time.sleep(0.1)

    def stop(self) -> None:
        """Cancel leftover jobs, then SIGTERM (then SIGKILL) slurmd's, slurmctld, munged by PID.
        The temp dir (logs, job output) is left in place."""
        self._cancel_all()
        order = [n for n in self._procs if n.startswith("slurmd-")] + ["slurmctld", "munged"]
        for name in order:
            proc = self._procs.get(name)
            if proc is not None:
                try:
                    self._terminate(proc)
                except Exception:  # noqa: BLE001 - keep stopping the others
                    pass
        self._procs.clear()
        for f in self._out_files:
            with contextlib.suppress(OSError):
                f.close()
        self._out_files.clear()


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat fields after the command name: [state, ppid, pgrp, session, ...]."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2:].split()


def _alive_in_session(pid: int, sid: int) -> bool:
    f = _stat_fields(pid)
    return f is not None and f[0] != "Z" and int(f[3]) == sid


def _session_members(sid: int) -> list[int]:
    """PIDs (other than sid itself) still running in session sid."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != sid and _alive_in_session(int(entry), sid):
            members.append(int(entry))
    return members


def _current_user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return os.environ.get("USER", "root")


def _base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh dir: pytest's basetemp (kept for post-mortems) unless that path is too long
    for the AF_UNIX sockets munged and slurmd create in it."""
    d = tmp_path_factory.mktemp("slurm")
    if len(str(d)) <= _MAX_BASE_LEN:
        return d
    return Path(tempfile.mkdtemp(prefix="parc-slurm-", dir="/tmp"))


@contextlib.contextmanager
def running_cluster(base_dir: str | os.PathLike[str], **kwargs) -> Iterator[SlurmCluster]:
    """Start a SlurmCluster in base_dir, yield it, stop it. Raises SlurmHarnessError."""
    cluster = SlurmCluster(base_dir, **kwargs)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


# One cluster per test session, even when several test modules import the fixture (pytest
# then holds one session-scoped fixture per importing module; they all share this cluster).
_shared: SlurmCluster | None = None
_shared_users = 0
_start_error: str | None = None


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A running 2-node SLURM cluster for the whole session (see the module docstring)."""
    global _shared, _shared_users, _start_error
    missing = missing_binaries()
    if missing:
        skip_or_fail("SLURM/munge are not installed (missing: " + ", ".join(missing)
                     + "; see .ci/apt-packages.txt)")
    if _start_error is not None:
        pytest.fail(_start_error, pytrace=False)
    if _shared is None:
        cluster = SlurmCluster(_base_dir(tmp_path_factory))
        try:
            cluster.start()
        except Exception as e:  # noqa: BLE001 - any startup problem is a failure, with logs
            cluster.stop()
            msg = str(e) if isinstance(e, SlurmHarnessError) else f"{e!r}\n{cluster.logs()}"
            _start_error = f"the SLURM test cluster did not start: {msg}"
            pytest.fail(_start_error, pytrace=False)
        _shared = cluster
    _shared_users += 1
    try:
        yield _shared
    finally:
        _shared_users -= 1
        if _shared_users == 0 and _shared is not None:
            _shared.stop()
            _shared = None
