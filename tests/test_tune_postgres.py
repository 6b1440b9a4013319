"""``himari tune`` on a real PostgreSQL server: two worker processes share one study, one is
killed mid-trial, and the study still finishes with the killed trial marked failed.

The test starts its own server from Debian's PostgreSQL server binaries (``initdb`` into a
temporary folder, owned by and run as an unprivileged user when the test runs as root,
listening on 127.0.0.1 on a free port only) and always stops it and removes the folder.
It skips, saying why, only when no server binaries can be found (``.ci/run`` installs them).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from experiments import tuning
from experiments.ledger import ledger_path, read_ledger
from tests.test_tune import write_tiny_study

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVER_USER = "nobody"  # initdb and postgres refuse to run as root


def _server_bindir() -> Path | None:
    candidates = []
    if shutil.which("pg_config"):
        result = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(result.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    if shutil.which("initdb"):
        candidates.append(str(Path(shutil.which("initdb") or "").parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file() \
                and (Path(candidate) / "postgres").is_file():
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL server on 127.0.0.1; yields its URL (database ``himari``)."""
    bindir = _server_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: install Debian's "
                    "'postgresql' package (.ci/run does) to run this test")
    run_as: dict = {}
    if os.geteuid() == 0:
        user = pwd.getpwnam(SERVER_USER)
        run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    folder = Path(tempfile.mkdtemp(prefix="himari-pg-"))
    data = folder / "data"
    port = _free_port()
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "LC_ALL": "C", "HOME": str(folder)}
    started = False
    try:
        if run_as:
            os.chown(folder, run_as["user"], run_as["group"])
        subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", "himari", "--auth=trust", "-E", "UTF8",
                        "--locale=C"], check=True, capture_output=True, env=env, **run_as)
        options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={folder} -c fsync=off"
        subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "server.log"),
                        "-w", "-t", "60", "start"], check=True, capture_output=True, env=env, **run_as)
        started = True
        subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "himari", "himari"],
                       check=True, capture_output=True, env=env)
        yield f"postgresql://himari@127.0.0.1:{port}/himari"
    except subprocess.CalledProcessError as error:
        log = (folder / "server.log").read_text() if (folder / "server.log").is_file() else ""
        pytest.fail(f"could not start PostgreSQL from {bindir}: {error.stderr!r} {log[-2000:]}")
    finally:
        if started:
            stopped = subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                                     capture_output=True, env=env, check=False, **run_as)
            pid_file = data / "postmaster.pid"
            if stopped.returncode != 0 and pid_file.is_file():
                os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)


def _worker(config: Path, space: Path, url: str, run_dir: Path, log: Path) -> subprocess.Popen:
    """One ``himari tune`` worker (as another machine would run it), in its own session."""
    command = [sys.executable, "-m", "experiments.cli", "tune", "--config", str(config), "--space", str(space),
               "--trials", "2", "--study", "shared", "--storage", url, "--run-dir", str(run_dir),
               "--heartbeat", "1"]
    return subprocess.Popen(command, cwd=REPO_ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_two_workers_on_postgres_survive_a_killed_worker(tmp_path: Path, postgres_url: str) -> None:
    config_path, space_path = write_tiny_study(tmp_path)
    victim = _worker(config_path, space_path, postgres_url, tmp_path / "machine-a", tmp_path / "a.log")
    survivor = _worker(config_path, space_path, postgres_url, tmp_path / "machine-b", tmp_path / "b.log")
    try:
        # Wait until the victim is training a trial, then kill it (and anything it started).
        storage = tuning.open_storage(postgres_url, heartbeat_interval=None)
        deadline = time.monotonic() + 120
        killed_number = None
        while killed_number is None and time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                study = optuna.load_study(study_name="shared", storage=storage)
            except KeyError:
                continue  # not created yet
            for trial in study.get_trials(deepcopy=False):
                if (trial.state == optuna.trial.TrialState.RUNNING and trial.user_attrs.get("pid") == victim.pid
                        and (Path(trial.user_attrs["run_dir"]) / "config.json").is_file()):
                    # Mid-trial: training has started (train() writes config.json first); the
                    # pipeline, 512 steps and two validation passes still lie ahead.
                    os.killpg(victim.pid, signal.SIGKILL)
                    killed_number = trial.number
                    break
            assert victim.poll() is None or killed_number is not None, (tmp_path / "a.log").read_text()[-3000:]
        assert killed_number is not None, "the victim worker never started a trial"
        victim.wait(timeout=30)
        assert survivor.wait(timeout=240) == 0, (tmp_path / "b.log").read_text()[-3000:]
    finally:
        for process in (victim, survivor):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    study = optuna.load_study(study_name="shared", storage=storage)
    states = {trial.number: trial.state for trial in study.get_trials()}
    assert states[killed_number] == optuna.trial.TrialState.FAIL  # by heartbeat, not "running" forever
    finished = [n for n, s in states.items() if s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(finished) >= 2  # the study reached --trials 2 without the killed worker
    assert optuna.trial.TrialState.RUNNING not in states.values()
    # Every finished trial is a run folder on the survivor's "machine" and a ledger line.
    tagged = {e["run_dir"] for e in read_ledger(ledger_path()) if e.get("tag") == "tune:shared"}
    for trial in study.get_trials():
        if trial.number in finished:
            assert trial.user_attrs["pid"] == survivor.pid and trial.user_attrs["run_dir"] in tagged
    report = tuning.study_report(postgres_url, "shared", out_dir=tmp_path / "report")
    assert report["counts"]["FAIL"] == 1 and (tmp_path / "report" / "shared_history.png").is_file()
