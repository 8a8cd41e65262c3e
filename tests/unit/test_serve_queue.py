"""The service's queue (SQLite) and option checks, without a server: claim order, leases and take-over, a job
finished by one worker only, retries, cancel; job options checked as the CLI checks them."""

import time

import pytest

from swifti2v.errors import UserError
from swifti2v.serve import options
from swifti2v.serve.queue import JobQueue, database_url


@pytest.fixture
def queue(tmp_path):
    return JobQueue(database_url(None, tmp_path))


def test_jobs_are_claimed_oldest_first_once_each_and_finished_by_their_holder_only(queue):
    a, b = queue.submit("me", "generate", {"prompt": "a"}), queue.submit("me", "generate", {"prompt": "b"})
    assert (queue.get(a)["position"], queue.get(b)["position"]) == (1, 2)
    first, second = queue.claim("w1", 30), queue.claim("w2", 30)
    assert (first.id, second.id, first.attempt) == (a, b, 1)
    assert queue.claim("w3", 30) is None
    assert queue.heartbeat(a, "w1", 30, {"stage1": [2, 4]}) == "ok"
    assert queue.heartbeat(a, "w2", 30, None) == "lost"
    assert not queue.finish(a, "w2", "done")
    assert queue.finish(a, "w1", "done", seconds={"stage1": 1.5})
    assert not queue.finish(a, "w1", "done")  # once
    job = queue.get(a)
    assert (job["state"], job["progress"], job["seconds"], job["position"]) == ("done", {"stage1": [2, 4]},
                                                                                {"stage1": 1.5}, None)
    assert queue.counts()["done"] == 1 and queue.stage_seconds() == {"stage1": (1.5, 1)}
    assert queue.get(a, owner="someone else") is None and queue.list("someone else") == []


def test_an_expired_lease_is_taken_over_and_the_old_holder_can_write_nothing(queue):
    job = queue.submit("me", "generate", {})
    assert queue.claim("dead", 0.2).id == job
    assert queue.claim("alive", 30) is None  # the lease holds
    time.sleep(0.3)
    taken = queue.claim("alive", 30)
    assert (taken.id, taken.attempt) == (job, 2)
    assert queue.heartbeat(job, "dead", 30, None) == "lost" and not queue.finish(job, "dead", "done")
    assert queue.finish(job, "alive", "done")
    assert [a["outcome"] for a in queue.attempts_of(job)] == ["lost: its lease ran out", "done"]


def test_a_failed_attempt_is_retried_then_failed_and_cancel_drops_or_flags(queue):
    job = queue.submit("me", "generate", {})
    assert queue.claim("w", 30) and queue.release(job, "w", "boom", retries=1) == "queued"
    assert queue.claim("w", 30) and queue.release(job, "w", "boom again", retries=1) == "failed"
    assert queue.get(job)["error"] == "boom again" and queue.release(job, "w", "x", 1) is None
    queued = queue.submit("me", "generate", {})
    assert queue.cancel(queued, "me") == "cancelled" and queue.get(queued)["state"] == "cancelled"
    running = queue.submit("me", "generate", {})
    queue.claim("w", 30)
    assert queue.cancel(running, "someone else") is None
    assert queue.cancel(running, "me") == "running" and queue.heartbeat(running, "w", 30, None) == "cancel"
    assert queue.requeue_running("restart", retries=5) == [running]
    assert queue.get(running)["state"] == "cancelled"  # a cancelled job is not run again


def test_job_options_are_the_clis_names_and_checks():
    assert options.check("generate", {"prompt": "the camera pans left", "frames": 9, "segment-blocks": 2,
                                      "no_csg": False}) == {"frames": 9, "no_csg": False, "prompt":
                                                            "the camera pans left", "segment_blocks": 2}
    assert options.check("refine", {"frames": 13}) == {"frames": 13}
    for kind, given, message in [
        ("generate", {"seed": 1}, "options.prompt is missing"),
        ("generate", {"prompt": "x", "frames": 10}, "not 4k\\+1"),
        ("generate", {"prompt": "x", "frames": 9.5}, "invalid int value"),
        ("generate", {"prompt": "x", "no_csg": "yes"}, "must be true or false"),
        ("generate", {"prompt": "x", "seed": [1]}, "must be a number or a string"),
        ("generate", {"prompt": "x", "colour": "red"}, "'colour' is unknown"),
        ("generate", {"prompt": "x", "work_dir": "/tmp"}, "set by the server"),
        ("generate", {"prompt": "x", "lora": "/etc/passwd"}, "set by the server"),
        ("generate", {"prompt": "x", "preset": "huge"}, "'huge' is unknown"),
        ("generate", ["prompt"], "must be a JSON object"),
    ]:
        with pytest.raises(UserError, match=message):
            options.check(kind, given)
