from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Query, Response

from core.db import read, transaction
from features.auth.service import User, current_user
from features.datasets import service as datasets_service
from features.webhooks import service
from features.webhooks.models import (
    DeliveryList,
    TestSent,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookOut,
)

router = APIRouter(prefix="/api/v1", tags=["webhooks"])


@router.post("/datasets/{dataset_id}/webhooks", response_model=WebhookCreated, status_code=201)
def create(
    dataset_id: uuid.UUID, body: WebhookCreate, user: User = Depends(current_user)
) -> WebhookCreated:
    """Register a webhook (admin role); the answer holds its secret, this once."""
    with transaction() as conn:
        datasets_service.require(conn, user, dataset_id, "admin")
        row = service.create(
            conn,
            dataset_id=dataset_id,
            url=body.url,
            events=list(body.events),
            secret=body.secret,
            actor=user,
        )
    return WebhookCreated(**row)


@router.get("/datasets/{dataset_id}/webhooks", response_model=WebhookList)
def list_webhooks(dataset_id: uuid.UUID, user: User = Depends(current_user)) -> WebhookList:
    with read() as conn:
        datasets_service.require(conn, user, dataset_id, "admin")
        return WebhookList(items=[WebhookOut(**r) for r in service.list_of(conn, dataset_id)])


@router.get("/datasets/{dataset_id}/webhooks/{webhook_id}", response_model=WebhookOut)
def get_webhook(
    dataset_id: uuid.UUID, webhook_id: uuid.UUID, user: User = Depends(current_user)
) -> WebhookOut:
    with read() as conn:
        datasets_service.require(conn, user, dataset_id, "admin")
        return WebhookOut(**service.get(conn, dataset_id, webhook_id))


@router.delete("/datasets/{dataset_id}/webhooks/{webhook_id}", status_code=204)
def delete(
    dataset_id: uuid.UUID, webhook_id: uuid.UUID, user: User = Depends(current_user)
) -> Response:
    with transaction() as conn:
        datasets_service.require(conn, user, dataset_id, "admin")
        service.delete(conn, dataset_id, webhook_id, actor=user)
    return Response(status_code=204)


@router.get("/datasets/{dataset_id}/webhooks/{webhook_id}/deliveries", response_model=DeliveryList)
def deliveries(
    dataset_id: uuid.UUID,
    webhook_id: uuid.UUID,
    page: int = Query(1, ge=1, le=10_000),
    per_page: int = Query(50, ge=1, le=500),
    user: User = Depends(current_user),
) -> DeliveryList:
    """The webhook's deliveries, newest first, with each attempt's status code."""
    with read() as conn:
        datasets_service.require(conn, user, dataset_id, "admin")
        out = service.deliveries(conn, dataset_id, webhook_id, page=page, per_page=per_page)
    return DeliveryList(**out)


@router.post(
    "/datasets/{dataset_id}/webhooks/{webhook_id}/test", response_model=TestSent, status_code=202
)
def send_test(
    dataset_id: uuid.UUID, webhook_id: uuid.UUID, user: User = Depends(current_user)
) -> TestSent:
    """Send a ``ping`` event to this webhook (its delivery shows in the log)."""
    with transaction() as conn:
        datasets_service.require(conn, user, dataset_id, "admin")
        return TestSent(delivery_id=service.send_test(conn, dataset_id, webhook_id, by=user.id))
