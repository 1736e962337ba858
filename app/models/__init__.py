"""Every table, one module each. Importing this package registers them all on `Base.metadata`."""

from app.models.api_token import ApiToken, TokenScope
from app.models.base import Base
from app.models.branch_head import KnownBranchHead
from app.models.build import ACTIVE_STATUSES, FINAL_STATUSES, Build, BuildStatus
from app.models.build_event import BuildEvent
from app.models.build_log_chunk import BuildLogChunk
from app.models.hook_redelivery import HookRedelivery
from app.models.image import Image
from app.models.image_deletion import DeletionState, ImageDeletion
from app.models.image_replica import ImageReplica, ReplicaState
from app.models.outbox_message import OutboxMessage
from app.models.proxy_host import ProxyHost
from app.models.push import Push, PushDecision, PushSource
from app.models.reconciler_run import ReconcilerRun
from app.models.registry import Registry
from app.models.repository import Repository
from app.models.repository_reconciliation import ReconcileOutcome, RepositoryReconciliation
from app.models.status_post import CommitState, SendState, StatusPost
from app.models.webhook_delivery import DeliveryOutcome, WebhookDelivery

__all__ = [
    "ACTIVE_STATUSES",
    "FINAL_STATUSES",
    "ApiToken",
    "Base",
    "Build",
    "BuildEvent",
    "BuildLogChunk",
    "BuildStatus",
    "CommitState",
    "DeletionState",
    "DeliveryOutcome",
    "HookRedelivery",
    "Image",
    "ImageDeletion",
    "ImageReplica",
    "KnownBranchHead",
    "OutboxMessage",
    "ProxyHost",
    "Push",
    "PushDecision",
    "PushSource",
    "ReconcileOutcome",
    "ReconcilerRun",
    "Registry",
    "ReplicaState",
    "Repository",
    "RepositoryReconciliation",
    "SendState",
    "StatusPost",
    "TokenScope",
    "WebhookDelivery",
]
