"""The HEAD precheck: validators, final URL and file name before any byte is written."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from dltui.engine.client import job_request, mapped_errors
from dltui.engine.headers import filename_from_disposition, parse_retry_after, validators_from
from dltui.errors import HTTPStatusError
from dltui.model import RequestOptions, ServerValidators


@dataclass(frozen=True, slots=True)
class Precheck:
    """What HEAD told us. With ``head_ok`` False the first GET's headers are authoritative."""

    url: str
    status: int
    validators: ServerValidators
    disposition_name: str | None
    head_ok: bool
    note: str = ""


def precheck(client: httpx.Client, url: str,
             request: RequestOptions | None = None) -> Precheck:
    """HEAD ``url`` (redirects followed, bounded by the client).

    Retryable statuses (408/429/5xx) raise so the caller's retry policy applies; any other
    refusal (405, 501, 403 from signed URLs, …) falls back to the first GET's headers.
    ``request`` is what the job sends besides the URL.
    """
    with mapped_errors(url, client):
        resp = client.head(url, **job_request(url, request))
    final = str(resp.url)
    status = resp.status_code
    if 200 <= status < 300:
        return Precheck(
            url=final,
            status=status,
            validators=validators_from(resp.headers, status=status),
            disposition_name=filename_from_disposition(resp.headers.get("content-disposition")),
            head_ok=True,
        )
    if status in (408, 429) or 500 <= status <= 599:
        raise HTTPStatusError(status, resp.reason_phrase, url,
                              retry_after=parse_retry_after(resp.headers.get("retry-after"),
                                                            time.time()))
    return Precheck(url=final, status=status, validators=ServerValidators(),
                    disposition_name=None, head_ok=False, note=f"HEAD answered {status}")
