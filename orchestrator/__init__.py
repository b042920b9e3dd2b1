"""orchestrator: a Redis-backed, persistent, priority job queue for Python.

The public API is what ``__all__`` lists (a test pins it); everything else is internal.
See ARCHITECTURE.md for the layers.
"""

from .client import Orchestrator, TaskFunction, TaskOptions, TaskRequest
from .config import SchedulerSettings, Settings, WorkerSettings
from .context import TaskContext, current_task
from .errors import (
    ConfigurationError,
    FailNow,
    InvalidPayload,
    InvalidPriority,
    InvalidQueueName,
    InvalidSchedule,
    InvalidTransition,
    LeaseLost,
    MalformedRecord,
    NotReplicated,
    NotSerializable,
    OrchestratorError,
    OutOfMemory,
    PartiallyEnqueued,
    PayloadTooLarge,
    QueueNotFound,
    RedisCommandError,
    RedisUnavailable,
    ResultTimeout,
    ScheduleNotFound,
    ShardingRefused,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
    UnknownTask,
    ValidationError,
)
from .handle import TaskHandle
from .models import Progress, RetryPolicy, Task, TaskError, TaskState
from .queues import Queue
from .records import Attempt, Event, QueueStats, TaskInfo, TaskPage, WorkerInfo
from .version import __version__

__all__ = [
    "Attempt",
    "ConfigurationError",
    "Event",
    "FailNow",
    "InvalidPayload",
    "InvalidPriority",
    "InvalidQueueName",
    "InvalidSchedule",
    "InvalidTransition",
    "LeaseLost",
    "MalformedRecord",
    "NotReplicated",
    "NotSerializable",
    "Orchestrator",
    "OrchestratorError",
    "OutOfMemory",
    "PartiallyEnqueued",
    "PayloadTooLarge",
    "Progress",
    "Queue",
    "QueueNotFound",
    "QueueStats",
    "RedisCommandError",
    "RedisUnavailable",
    "ResultTimeout",
    "RetryPolicy",
    "ScheduleNotFound",
    "SchedulerSettings",
    "Settings",
    "ShardingRefused",
    "Task",
    "TaskCancelled",
    "TaskContext",
    "TaskError",
    "TaskFailed",
    "TaskFunction",
    "TaskHandle",
    "TaskInfo",
    "TaskNotFound",
    "TaskOptions",
    "TaskPage",
    "TaskRequest",
    "TaskState",
    "UnknownTask",
    "ValidationError",
    "WorkerInfo",
    "WorkerSettings",
    "__version__",
    "current_task",
]
