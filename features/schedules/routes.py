from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Response

from core.db import read, transaction
from features.auth.service import User, current_user
from features.datasets import service as datasets_service
from features.schedules import service
from features.schedules.models import (
    RunStarted,
    ScheduleCreate,
    ScheduleList,
    ScheduleOut,
    SchedulePatch,
)

router = APIRouter(prefix="/api/v1", tags=["schedules"])


@router.post("/datasets/{dataset_id}/schedules", response_model=ScheduleOut, status_code=201)
def create(
    dataset_id: uuid.UUID, body: ScheduleCreate, user: User = Depends(current_user)
) -> ScheduleOut:
    """A URL import that runs on a cron expression (write role on its branch)."""
    with transaction() as conn:
        ds = datasets_service.require_branch(conn, user, dataset_id, body.branch)
        row = service.create(
            conn,
            dataset_id=dataset_id,
            created_by=user.id,
            body={**body.model_dump(exclude={"url", "urls"}), "urls": body.all_urls()},
            primary_key=ds["primary_key"],
        )
    return ScheduleOut(**row)


@router.get("/datasets/{dataset_id}/schedules", response_model=ScheduleList)
def list_schedules(dataset_id: uuid.UUID, user: User = Depends(current_user)) -> ScheduleList:
    """The dataset's schedules with their latest runs (write role: they name sources)."""
    with read() as conn:
        datasets_service.require(conn, user, dataset_id, "write")
        return ScheduleList(items=[ScheduleOut(**r) for r in service.list_of(conn, dataset_id)])


@router.get("/datasets/{dataset_id}/schedules/{schedule_id}", response_model=ScheduleOut)
def get_schedule(
    dataset_id: uuid.UUID, schedule_id: uuid.UUID, user: User = Depends(current_user)
) -> ScheduleOut:
    with read() as conn:
        datasets_service.require(conn, user, dataset_id, "write")
        return ScheduleOut(**service.get(conn, dataset_id, schedule_id))


@router.patch("/datasets/{dataset_id}/schedules/{schedule_id}", response_model=ScheduleOut)
def patch(
    dataset_id: uuid.UUID,
    schedule_id: uuid.UUID,
    body: SchedulePatch,
    user: User = Depends(current_user),
) -> ScheduleOut:
    """Pause or resume a schedule, or change its cron."""
    with transaction() as conn:
        service.require_change(conn, user, dataset_id, schedule_id)
        row = service.update(conn, dataset_id, schedule_id, paused=body.paused, cron=body.cron)
    return ScheduleOut(**row)


@router.delete("/datasets/{dataset_id}/schedules/{schedule_id}", status_code=204)
def delete(
    dataset_id: uuid.UUID, schedule_id: uuid.UUID, user: User = Depends(current_user)
) -> Response:
    with transaction() as conn:
        service.require_change(conn, user, dataset_id, schedule_id)
        service.delete(conn, dataset_id, schedule_id)
    return Response(status_code=204)


@router.post(
    "/datasets/{dataset_id}/schedules/{schedule_id}/runs",
    response_model=RunStarted,
    status_code=202,
)
def run_now(
    dataset_id: uuid.UUID, schedule_id: uuid.UUID, user: User = Depends(current_user)
) -> RunStarted:
    """Run the schedule now (its next times stay); 409 while a run is going."""
    started = service.run_by(user, dataset_id, schedule_id)
    job = started["job_id"]
    return RunStarted(
        run_id=started["run_id"], job_id=job, links={"job": f"/api/v1/jobs/{job}"} if job else {}
    )
