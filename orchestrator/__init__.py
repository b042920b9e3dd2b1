"""orchestrator: a Redis-backed, persistent, priority job queue for Python.

The public API is what ``__all__`` lists (a test pins it); everything else is internal.
"""

from .client import Orchestrator, TaskFunction, TaskHandle, TaskOptions, TaskRequest
from .config import SchedulerSettings, Settings, WorkerSettings
from .errors import (
    ConfigurationError,
    InvalidPriority,
    InvalidQueueName,
    InvalidTransition,
    LeaseLost,
    NotSerializable,
    OrchestratorError,
    PayloadTooLarge,
    ResultTimeout,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
    UnknownTask,
    ValidationError,
)
from .models import RetryPolicy, Task, TaskError, TaskState

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "InvalidPriority",
    "InvalidQueueName",
    "InvalidTransition",
    "LeaseLost",
    "NotSerializable",
    "Orchestrator",
    "OrchestratorError",
    "PayloadTooLarge",
    "ResultTimeout",
    "RetryPolicy",
    "SchedulerSettings",
    "Settings",
    "Task",
    "TaskCancelled",
    "TaskError",
    "TaskFailed",
    "TaskFunction",
    "TaskHandle",
    "TaskNotFound",
    "TaskOptions",
    "TaskRequest",
    "TaskState",
    "UnknownTask",
    "ValidationError",
    "WorkerSettings",
    "__version__",
]
