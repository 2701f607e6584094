"""The client for the outside provider: payments, receipt mail and exchange rates.

A failed call is reported with `track_external_api_error` (grouped by service, endpoint and
status) and then raised as `ExternalServiceError`, which the caller turns into a response.
The httpx integration adds an `http.client` span with the status to the trace by itself.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

import fastapi_sentry

from .settings import ShopSettings


class ExternalServiceError(Exception):
    def __init__(self, service: str, status_code: int) -> None:
        super().__init__(f"{service} answered {status_code}")
        self.service = service
        self.status_code = status_code


class Provider:
    def __init__(self, settings: ShopSettings, client: httpx.Client | None = None) -> None:
        self.base_url = settings.external_api_url.rstrip("/")
        key = settings.external_api_key.get_secret_value()
        self.client = client or httpx.Client(
            timeout=settings.external_timeout,
            headers={"Authorization": f"Bearer {key}"} if key else {},
        )

    def close(self) -> None:
        self.client.close()

    def _call(self, service: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        start = time.perf_counter()
        try:
            response = self.client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            elapsed = (time.perf_counter() - start) * 1000
            fastapi_sentry.track_external_api_error(service, url, 599, elapsed)
            raise ExternalServiceError(service, 599) from exc
        elapsed = (time.perf_counter() - start) * 1000
        if response.status_code >= 400:
            fastapi_sentry.track_external_api_error(service, url, response.status_code, elapsed)
            raise ExternalServiceError(service, response.status_code)
        data: dict[str, Any] = response.json()
        return data

    def charge(self, amount_cents: int, card_token: str) -> dict[str, Any]:
        return self._call(
            "payments", "POST", "/charges", json={"amount": amount_cents, "card": card_token}
        )

    def send_mail(self, to: str, subject: str) -> dict[str, Any]:
        return self._call("mail", "POST", "/mail", json={"to": to, "subject": subject})

    def exchange_rate(self, currency: str) -> float:
        return float(self._call("rates", "GET", f"/rates/{currency}")["rate"])

    def settlements(self) -> dict[str, Any]:
        return self._call("payments", "GET", "/settlements")
