"""The Slurm executor against a real one-node Slurm cluster (scripts/slurm-up): no mocks.

Toy stages are bash lines that log start/end times and touch a done-marker; the markers are the only
truth of completion, exactly as for real study stages.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from slurm import ToyStage, ToyStudy, python_line, scancel, slurm_cluster, wait_until  # noqa: F401

from growmerge.cluster import ClusterSpec, load_cluster
from growmerge.cluster.slurm import study_status, submit_study
from growmerge.errors import GrowmergeError

CLUSTER = ClusterSpec(cpus_per_task=1, time=5)


@pytest.fixture
def study_factory(tmp_path, slurm_cluster):
    made: list[ToyStudy] = []

    def make(stages, name="study"):
        made.append(ToyStudy(tmp_path / name, stages))
        return made[-1]

    yield make
    # Leave no job behind for the next test (2 cores: a stray sleeper would delay everything).
    for st in made:
        jobs = st.state / "jobs.json"
        if jobs.exists():
            scancel(*(r["job_id"] for r in json.loads(jobs.read_text())["stages"].values()))


def submit(st: ToyStudy, cluster: ClusterSpec = CLUSTER) -> dict[str, str]:
    return submit_study(st.stages, st.is_done, st.command, cluster, st.state, say=lambda _: None)


def states(st: ToyStudy) -> dict[str, str]:
    return {s.id: s.state for s in study_status(st.stages, st.is_done, st.state)}


def test_dag_runs_in_dependency_order(study_factory):
    rdv = ("from growmerge.cluster.slurm import torchrun_rendezvous_env as f; "
           "print(*f(), file=open('{out}', 'w'))")
    st = study_factory([ToyStage("a"), ToyStage("b", ["a"]), ToyStage("c", ["a"]),
                        ToyStage("d", ["b", "c"], kind="report")])
    st.stage("d").extra = python_line(rdv.format(out=st.root / "rdv.txt"))
    jobs = submit(st)
    assert sorted(jobs) == ["a", "b", "c", "d"] and len(set(jobs.values())) == 4
    record = json.loads((st.state / "jobs.json").read_text())["stages"]
    assert record["d"]["after"] == [jobs["b"], jobs["c"]] and record["a"]["after"] == []
    wait_until(st.all_done, 60, "all four stages done")
    for child, parent in [("b", "a"), ("c", "a"), ("d", "b"), ("d", "c")]:
        assert st.time_of(child, "start") >= st.time_of(parent, "end"), (child, parent)
    # Inside a real job: one node, rank 0, this host as master, a port derived from the job id.
    nnodes, rank, master, port = (st.root / "rdv.txt").read_text().split()
    host = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
    assert (nnodes, rank, master) == ("1", "0", host)
    assert int(port) == 20000 + int(jobs["d"]) % 20000
    # Everything done: nothing to submit.
    assert submit(st) == {}


def test_scancel_half_way_then_resubmit_finishes_without_rerunning(study_factory):
    st = study_factory([ToyStage("a"), ToyStage("b", ["a"], sleep=30), ToyStage("c", ["b"])])
    first = submit(st)
    wait_until(lambda: st.starts("b") == 1, 30, "b to start")
    scancel(first["b"])
    # kill_invalid_depend: c, waiting on the cancelled b, is cancelled by Slurm itself.
    wait_until(lambda: states(st) == {"a": "done", "b": "cancelled", "c": "cancelled"}, 30,
               "b and c cancelled")
    st.stage("b").sleep = 0
    second = submit(st)
    assert sorted(second) == ["b", "c"] and second["b"] != first["b"] and second["c"] != first["c"]
    wait_until(st.all_done, 60, "all stages done after the resubmit")
    assert (st.starts("a"), st.starts("b"), st.starts("c")) == (1, 2, 1)
    assert st.time_of("c", "start") >= st.time_of("b", "end")
    previous = json.loads((st.state / "jobs.json").read_text())["stages"]["b"]["previous"]
    assert previous == [first["b"]]


def test_second_submit_while_live_submits_nothing_and_status_tracks_it(study_factory):
    st = study_factory([ToyStage("x", sleep=4), ToyStage("y", ["x"]),
                        ToyStage("f", fail=True), ToyStage("g", ["f"])])
    assert states(st) == dict.fromkeys("xyfg", "not submitted")
    first = submit(st)
    record = (st.state / "jobs.json").read_text()
    # Right away, while every job is pending or running: nothing new, the live jobs are reused.
    assert submit(st) == first
    assert (st.state / "jobs.json").read_text() == record
    wait_until(lambda: states(st)["x"] == "running", 30, "x running")
    status = {s.id: s for s in study_status(st.stages, st.is_done, st.state)}
    assert status["y"].state == "queued" and status["y"].job_id == first["y"]
    # The failing stage: FAILED; its child is cancelled by Slurm (kill_invalid_depend).
    wait_until(lambda: [states(st)[i] for i in "fg"] == ["failed", "cancelled"], 30, "f failed")
    status = {s.id: s for s in study_status(st.stages, st.is_done, st.state)}
    assert status["f"].log.name == f"{first['f']}_0_log.out" and status["f"].log.exists()
    assert "CalledProcessError" in status["f"].log.with_suffix(".err").read_text()
    # Fixed and resubmitted: only f and g get new jobs (x and y are still live or done).
    st.stage("f").fail = False
    again = submit(st)
    assert again["f"] != first["f"] and again["g"] != first["g"]
    assert all(again[i] == first[i] for i in "xy" if i in again)
    wait_until(st.all_done, 60, "all stages done")
    status = study_status(st.stages, st.is_done, st.state)
    assert [s.state for s in status] == ["done"] * 4
    assert [s.job_id for s in status] == [first["x"], first["y"], again["f"], again["g"]]
    assert all(s.log.exists() for s in status)
    assert [st.starts(i) for i in "xyfg"] == [1, 1, 2, 1]


def test_multi_node_job_and_refusal_are_reported(study_factory):
    """This cluster has one node: a 2-node train job is refused by sbatch, as one line naming the stage."""
    st = study_factory([ToyStage("t", kind="train")])
    spec = ClusterSpec(time=5, setup=["echo set-up"], kinds={"train": {"nodes": 2}})
    with pytest.raises(GrowmergeError) as err:
        submit(st, spec)
    assert "sbatch refused stage 't' (train)" in str(err.value) and "\n" not in str(err.value)
    script = next((st.state / "slurm").rglob("*.sh")).read_text()
    assert "--nodes=2" in script and "--ntasks-per-node=1" in script and "echo set-up" in script
    assert "srun" in script and states(st) == {"t": "not submitted"}


def test_cluster_spec_validation_and_kind_overrides():
    spec = load_cluster({"partition": "gpu", "time": "04:00:00", "gpus_per_node": 1,
                         "setup": ["module load cuda"],
                         "kinds": {"train": {"nodes": 2, "time": "1-00:00:00", "mem": "200G"},
                                   "report": {"gpus_per_node": 0, "setup": []}}})
    train, report, ev = spec.resources("train"), spec.resources("report"), spec.resources("eval")
    assert (train.partition, train.nodes, train.time, train.mem, train.gpus_per_node) == ("gpu", 2, 1440, "200G", 1)
    assert train.setup == ["module load cuda"]
    assert (report.gpus_per_node, report.setup, report.time) == (0, [], 240)
    assert (ev.nodes, ev.time, ev.mem) == (1, 240, None)
    assert load_cluster({"time": 90}).resources("data").time == 90
    assert load_cluster({"time": "30:30"}).resources("data").time == 31
    for bad, words in [({"partiton": "gpu"}, "partiton"), ({"kinds": {"trian": {}}}, "trian"),
                       ({"kinds": {"train": {"gpus": 2}}}, "kinds.train.gpus"), ({"time": "4h"}, "time"),
                       ({"mem": "lots"}, "mem"), ({"nodes": 0}, "nodes"), ({"partition": "a b"}, "partition"),
                       ({"setup": ["a\nb"]}, "setup")]:
        with pytest.raises(GrowmergeError) as err:
            load_cluster(bad)
        assert words in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(GrowmergeError, match="unknown stage kind"):
        spec.resources("training")


def test_bad_dags_are_one_line_errors(tmp_path):
    st = ToyStudy(tmp_path, [ToyStage("a", ["zz"])])
    for stages, words in [([ToyStage("a", ["zz"])], "not a stage"),
                          ([ToyStage("a", ["b"]), ToyStage("b", ["a"])], "cycle"),
                          ([ToyStage("a"), ToyStage("a")], "twice")]:
        with pytest.raises(GrowmergeError, match=words):
            submit_study(stages, st.is_done, st.command, CLUSTER, tmp_path / "state")
