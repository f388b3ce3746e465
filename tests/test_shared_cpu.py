"""A shared CPU: thread counts from the CPUs this process may use, the OpenMP settings
left to the user, `bench --load N` (busy processes always reaped, loaded/idle ratios), and the
CPU time that tells a stage waiting for a CPU from a stage doing more work."""

from __future__ import annotations

import contextlib

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vidllie.errors import InputError
from vidllie.pipeline import environment
from vidllie.jobs.bench import format_report, run_bench
from vidllie.pipeline.environment import available_cpus, cgroup_cpu_quota
from vidllie.jobs.load import busy_processes
from vidllie.pipeline.timing import StageTimer


# ---------------------------------------------------------------- CPUs: affinity and cgroup quota
def _cgroup(tmp_path: Path, lines: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text(lines)
    return root, proc


def test_cpus_follow_the_affinity_mask_without_a_quota(tmp_path):
    root, proc = _cgroup(tmp_path, "0::/job\n", {"cpu.max": "max 100000\n", "job/cpu.max": "max 100000\n"})
    assert available_cpus(affinity={0, 2, 5}, cgroup_root=root, proc_cgroup=proc) == 3
    assert cgroup_cpu_quota(root, proc) is None
    # no cgroup file system at all (another OS, a sandbox)
    assert available_cpus(affinity={0, 1}, cgroup_root=tmp_path / "none", proc_cgroup=tmp_path / "none") == 2


def test_cgroup_v2_quota_caps_the_affinity_and_rounds_up(tmp_path):
    # the container's limit (1.5 CPUs) sits on a parent of this process's own cgroup
    root, proc = _cgroup(tmp_path, "0::/box/app\n", {
        "cpu.max": "max 100000\n", "box/cpu.max": "150000 100000\n", "box/app/cpu.max": "max 100000\n",
    })
    assert cgroup_cpu_quota(root, proc) == 2
    assert available_cpus(affinity=set(range(8)), cgroup_root=root, proc_cgroup=proc) == 2
    assert available_cpus(affinity={3}, cgroup_root=root, proc_cgroup=proc) == 1  # the mask is tighter


def test_cgroup_v1_cfs_quota(tmp_path):
    lines = "4:memory:/x\n3:cpu,cpuacct:/docker/abc\n0::/\n"
    root, proc = _cgroup(tmp_path, lines, {
        "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "100000\n", "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
    })
    assert available_cpus(affinity={0, 1, 2, 3}, cgroup_root=root, proc_cgroup=proc) == 1
    (root / "cpu,cpuacct/docker/abc/cpu.cfs_quota_us").write_text("-1\n")  # unlimited
    assert available_cpus(affinity={0, 1, 2, 3}, cgroup_root=root, proc_cgroup=proc) == 4


def test_enhancer_threads_come_from_the_usable_cpus_and_threads_overrides(micro_path, monkeypatch):
    from vidllie import Enhancer

    monkeypatch.setattr(environment, "available_cpus", lambda **_: 1)
    assert environment.default_cpu_threads() == 1
    assert Enhancer(micro_path, device="cpu", runtime="torch").threads == 1
    assert Enhancer(micro_path, device="cpu", runtime="torch", threads=3).threads == 3


def test_openmp_settings_are_left_to_the_user():
    # vidllie sets no OpenMP variable (measured: OMP_WAIT_POLICY=PASSIVE costs 1.3-1.75x idle on the
    # torch runtime); a user's own values reach torch unchanged.
    code = ("import os, vidllie, vidllie.cli, vidllie.pipeline.enhancer, torch; "
            "print([os.environ.get(k) for k in ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT', 'KMP_BLOCKTIME')])")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    env.update(OMP_WAIT_POLICY="PASSIVE", GOMP_SPINCOUNT="1000")  # the user's; KMP_BLOCKTIME unset
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['PASSIVE', '1000', None]"


# ---------------------------------------------------------------- bench --load
def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _busy_children() -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmd = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and b"getppid" in cmd:
            pids.append(int(stat.parent.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_busy_processes_run_and_are_always_reaped():
    with busy_processes(2) as procs:
        time.sleep(0.3)
        assert len(procs) == 2 and all(p.poll() is None for p in procs)
        pids = [p.pid for p in procs]
        assert sorted(_busy_children()) == sorted(pids)
    assert all(p.returncode is not None for p in procs) and not _busy_children()
    for exc in (RuntimeError, KeyboardInterrupt):  # an error, Ctrl-C
        with pytest.raises(exc):
            with busy_processes(1) as procs:
                raise exc()
        assert procs[0].returncode is not None and not _alive(procs[0].pid)
    with busy_processes(0) as procs:
        assert procs == []


def _session_members(sid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid and fields[0] != "Z":  # session id; zombies do not run
                pids.append(int(stat.parent.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_busy_processes_in_one_session_or_a_session_each():
    with busy_processes(3, "one") as procs:
        time.sleep(0.5)
        assert len(procs) == 1 and len(_session_members(procs[0].pid)) == 3  # the leader and two forks
    deadline = time.monotonic() + 10
    while _session_members(procs[0].pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _session_members(procs[0].pid)  # all killed
    with busy_processes(2, "each") as procs:
        time.sleep(0.3)
        assert [len(_session_members(p.pid)) for p in procs] == [1, 1]
    with pytest.raises(ValueError, match="sessions"):
        with busy_processes(1, "two"):
            pass


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_busy_processes_end_when_vidllie_is_killed(tmp_path):
    # SIGKILL leaves no chance to clean up: each loop notices its parent is gone and stops.
    code = ("import sys, time; from vidllie.jobs.load import busy_processes\n"
            "with busy_processes(1) as p:\n    print(p[0].pid, flush=True); time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_bench_load_reports_idle_loaded_and_ratios(micro_path, tmp_path):
    r = run_bench(synthetic="64x48", model=micro_path, frames=6, batch_size=2, device="cpu",
                  preset="ultrafast", load=1, workdir=tmp_path)
    assert not _busy_children()  # reaped
    load = r["load"]
    assert load["processes"] == 1
    loaded, ratios = load["loaded"], load["ratios"]
    assert loaded["end_to_end"]["fps"] > 0 and loaded["model_only"]["fps"] > 0
    assert ratios["end_to_end"] == pytest.approx(loaded["end_to_end"]["fps"] / r["end_to_end"]["fps"], abs=1e-3)
    assert ratios["model_only"] == pytest.approx(loaded["model_only"]["fps"] / r["model_only"]["fps"], abs=1e-3)
    for stage in ("decode", "model", "smoothing", "encode"):
        idle_ms, loaded_ms = r["stages"][stage]["ms_per_frame"], loaded["stages"][stage]["ms_per_frame"]
        assert loaded["stages"][stage]["frames"] == 6
        assert ratios["stages"][stage] == pytest.approx(loaded_ms / idle_ms, rel=1e-2, abs=1e-3)
    assert r["settings"]["available_cpus"] >= 1
    for report in (r, loaded):  # this process's CPU time over the end-to-end run
        cpu = report["cpu"]
        assert cpu["seconds"] > 0 and 0 < cpu["cores_used"] <= os.cpu_count() + 0.5
        assert cpu["ms_per_frame"] == pytest.approx(1000 * cpu["seconds"] / 6, abs=0.02)  # report rounding
        smoothing = report["stages"]["smoothing"]  # one thread: its CPU time is at most its wall time
        assert 0 < smoothing["cpu_ms_per_frame"] <= smoothing["ms_per_frame"] * 1.05 + 0.05
        assert "cpu_ms_per_frame" not in report["stages"]["model"]  # worker threads: not on one thread
    assert ratios["cpu"]["cores_used"] == pytest.approx(loaded["cpu"]["cores_used"] / r["cpu"]["cores_used"], abs=2e-3)
    text = format_report(r)
    assert "loaded" in text and "x idle" in text and "1 busy processes" in text and "CPUs busy" in text
    json.dumps(r)  # the --json report
    with pytest.raises(InputError, match="--load"):
        run_bench(synthetic="64x48", model=micro_path, load=-1)


def test_stage_cpu_time_tells_work_from_waiting():
    """A stage timed ``on_thread`` records its thread's CPU time: spinning counts, waiting (here a
    sleep, as when the scheduler runs something else) does not; other stages record none."""
    timer = StageTimer("cpu")
    with timer.stage("smoothing", 1, on_thread=True):
        end = time.thread_time() + 0.05
        while time.thread_time() < end:
            pass
    with timer.stage("exposure", 1, on_thread=True):
        time.sleep(0.05)
    with timer.stage("model", 1):
        time.sleep(0.01)
    s = timer.summary()
    assert s["smoothing"]["cpu_ms_per_frame"] >= 50 and s["smoothing"]["ms_per_frame"] >= 50
    assert s["exposure"]["cpu_ms_per_frame"] < 10 <= 50 <= s["exposure"]["ms_per_frame"]
    assert "cpu_ms_per_frame" not in s["model"]
