"""The task-name registry: every name the service enqueues is a task the worker runs, and back."""

from __future__ import annotations

from integrations.whatsapp.simulator import ACK_TASK, ROTATE_TASK
from services.platform.jobs import Job


def test_every_job_name_is_a_registered_task_and_every_task_has_a_name(app):
    celery_app = app.extensions["celery"]
    celery_app.loader.import_default_modules()  # what a worker imports at start (celeryconfig "imports")
    ours = {name for name in celery_app.tasks if not name.startswith("celery.")}
    assert ours == {job.value for job in Job}


def test_the_beat_schedule_and_the_simulator_use_registered_names(app):
    schedule = app.extensions["celery"].conf.beat_schedule
    assert all(Job(entry["task"]) for entry in schedule.values())
    assert Job(ROTATE_TASK) is Job.WHATSAPP_SIMULATOR_ROTATE_QR
    assert Job(ACK_TASK) is Job.WHATSAPP_SIMULATOR_ACK


def test_beat_sends_only_tasks_that_store_no_result(app):
    """Nothing waits for a scheduled task's result; storing one is Redis work around the clock, idle or not."""
    celery_app = app.extensions["celery"]
    celery_app.loader.import_default_modules()
    schedule = celery_app.conf.beat_schedule
    assert [name for name, entry in schedule.items() if not celery_app.tasks[entry["task"]].ignore_result] == []


def test_the_tasks_run_for_every_message_store_no_result(app):
    """Dispatch, delivery and each gateway receipt run for every message sent: nothing reads their results, and
    storing them (and their STARTED state) was a fifth of the worker's CPU per message (bench/messaging.py)."""
    celery_app = app.extensions["celery"]
    celery_app.loader.import_default_modules()
    per_message = (Job.MESSAGING_DISPATCH, Job.MESSAGING_DELIVER, Job.WHATSAPP_APPLY_RECEIPTS,
                   Job.WHATSAPP_SIMULATOR_ACK)
    assert [name for name in per_message if not celery_app.tasks[name].ignore_result] == []


def test_the_one_backoff_curve_doubles_caps_and_jitters():
    from services.platform.backoff import backoff

    for attempt, step in ((1, 2.0), (2, 4.0), (3, 8.0), (10, 300.0), (10_000, 300.0)):
        delays = [backoff(attempt, 2.0, 300.0) for _ in range(200)]
        assert all(step / 2 <= d <= step for d in delays)
        assert len(set(delays)) > 1  # jittered
