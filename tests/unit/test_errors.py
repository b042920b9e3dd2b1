"""Exceptions carry fields (code, task_id, queue, state, field) besides their message."""

from __future__ import annotations

import json
import re

import pytest

from orchestrator import errors
from orchestrator.models import TaskState


def test_fields_are_set_and_the_message_stays_the_text():
    exc = errors.InvalidTransition("task t1 is RUNNING", task_id="t1", queue="emails", state=TaskState.RUNNING)
    assert str(exc) == exc.message == "task t1 is RUNNING"
    assert (exc.code, exc.task_id, exc.queue, exc.state, exc.field) == ("BAD_STATE", "t1", "emails", "RUNNING", None)
    assert exc.to_dict() == {
        "error": "InvalidTransition",
        "message": "task t1 is RUNNING",
        "code": "BAD_STATE",
        "task_id": "t1",
        "queue": "emails",
        "state": "RUNNING",
    }
    json.dumps(exc.to_dict())  # plain strings only


def test_message_stays_first_positional_and_fields_default_to_none():
    exc = errors.ConfigurationError("bad")
    assert exc.args == ("bad",)
    assert (exc.task_id, exc.queue, exc.state, exc.field) == (None, None, None, None)
    assert exc.fields() == {"code": "CONFIGURATION_ERROR"}


@pytest.mark.parametrize(
    ("exc_type", "code"),
    [
        (errors.OrchestratorError, "ORCHESTRATOR_ERROR"),
        (errors.TaskNotFound, "NOT_FOUND"),
        (errors.LeaseLost, "LEASE_LOST"),
        (errors.InvalidTransition, "BAD_STATE"),
        (errors.ValidationError, "INVALID"),
        (errors.PayloadTooLarge, "TOO_LARGE"),
        (errors.InvalidQueueName, "INVALID_QUEUE_NAME"),
        (errors.RedisUnavailable, "REDIS_UNAVAILABLE"),
    ],
)
def test_every_class_has_a_stable_code(exc_type, code):
    assert exc_type.code == code
    assert exc_type("x").code == code


def test_a_new_subclass_gets_its_code_from_its_name():
    class QueuePaused(errors.OrchestratorError):
        pass

    assert QueuePaused("x").code == "QUEUE_PAUSED"


def test_an_instance_code_does_not_change_its_class():
    exc = errors.ValidationError("x", code="INVALID_TASK_NAME", field="name")
    assert (exc.code, exc.field) == ("INVALID_TASK_NAME", "name")
    assert errors.ValidationError.code == "INVALID"


@pytest.mark.parametrize(
    ("reply", "exc_type", "task_id", "state"),
    [
        ("NOT_FOUND ghost", errors.TaskNotFound, "ghost", None),
        ("LEASE_LOST t1", errors.LeaseLost, "t1", None),
        ("BAD_STATE CANCELLED", errors.InvalidTransition, None, "CANCELLED"),
        ("BAD_STATE t1 PENDING", errors.InvalidTransition, "t1", "PENDING"),
        ("INVALID limit", errors.ValidationError, None, None),
    ],
)
def test_script_errors_fill_the_fields(reply, exc_type, task_id, state):
    exc = errors.from_script_error(reply, queue="q")
    assert type(exc) is exc_type
    assert (exc.code, exc.task_id, exc.state, exc.queue) == (reply.split()[0], task_id, state, "q")


def test_task_failed_keeps_its_constructor():
    exc = errors.TaskFailed("t1", {"type": "KeyError", "message": "'x'"})
    assert (exc.task_id, exc.state, exc.code) == ("t1", "FAILED", "TASK_FAILED")
    assert str(exc) == "task t1 failed: KeyError: 'x'"


def _package_modules() -> list[str]:
    import pkgutil

    import orchestrator

    found = pkgutil.walk_packages(orchestrator.__path__, "orchestrator.")
    return [m.name for m in found if m.name != "orchestrator.__main__"]


def test_every_exception_class_of_the_package_is_in_errors():
    import importlib
    import inspect

    import click

    strays = []
    for name in _package_modules():
        module = importlib.import_module(name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if value.__module__ != name or name == "orchestrator.errors" or not issubclass(value, BaseException):
                continue
            if issubclass(value, click.ClickException):  # how click prints a command's failure
                continue
            strays.append(f"{name}.{value.__name__}")
    assert strays == []


def test_the_docstring_tree_names_every_class():
    documented = set(re.findall(r"(?m)^\s+(?:[│ ]\s+)*[├└]── (\w+)", errors.__doc__ or ""))
    defined = {
        name for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.OrchestratorError)
    } - {"OrchestratorError"}
    assert defined == documented
