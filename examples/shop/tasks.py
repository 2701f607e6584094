"""Celery app, tasks and beat schedule: `celery -A examples.shop.tasks worker` / `... beat`.

`install_celery` is called here, in the module `celery -A` imports, so Sentry is initialised
in the worker's parent process before it forks and in beat. Beat tasks become cron monitors with
ok/error check-ins; a task's error is reported once, when its last retry fails, carrying the
trace of the request that enqueued it.
"""

from __future__ import annotations

from celery import Celery
from celery.schedules import crontab
from sqlalchemy import func, select

import fastapi_sentry

from .external import ExternalServiceError, Provider
from .models import Order, Product, User, sessions
from .settings import ShopSettings

settings = ShopSettings()

celery_app = Celery("shop", broker=settings.redis_url or "memory://")
celery_app.conf.update(
    # without a broker (the demo), tasks run in the calling process, retries included
    task_always_eager=settings.redis_url is None,
    task_eager_propagates=False,
    timezone="UTC",
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    beat_schedule={
        "inventory-snapshot": {
            "task": f"{__name__}.inventory_snapshot",
            "schedule": crontab(*settings.beat_cron.split()),
        },
        "reconcile-payments": {
            "task": f"{__name__}.reconcile_payments",
            "schedule": crontab(*settings.beat_cron.split()),
        },
    },
)

fastapi_sentry.install_celery(celery_app)


class ReceiptNotSentError(Exception):
    pass


@celery_app.task(
    autoretry_for=(ReceiptNotSentError,),
    max_retries=settings.receipt_retries,
    retry_kwargs={"countdown": settings.receipt_retry_delay},
)
def send_receipt(order_id: int) -> None:
    with sessions(settings)() as db:
        order = db.get(Order, order_id)
        if order is None:
            return
        user = db.get(User, order.user_id)
        email = user.email if user else ""
    provider = Provider(settings)
    try:
        provider.send_mail(email, f"Your order #{order_id}")
    except ExternalServiceError as exc:
        raise ReceiptNotSentError(f"receipt for order {order_id} not sent: {exc}") from exc
    finally:
        provider.close()


@celery_app.task
def inventory_snapshot() -> int:
    with sessions(settings)() as db:
        return db.scalar(select(func.coalesce(func.sum(Product.stock), 0))) or 0


@celery_app.task
def reconcile_payments() -> int:
    provider = Provider(settings)
    try:
        report = provider.settlements()
    finally:
        provider.close()
    return int(report["settled"])
