"""The HTTP session: urllib3 retries of connection errors, 429 and 5xx, with a capped Retry-After."""
from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from .records import NetOptions

RETRY_STATUSES = (429, *range(500, 600))  # 429 Too Many Requests and every 5xx
RETRY_AFTER_MAX = 60.0  # seconds


class _Retry(Retry):
    """urllib3 Retry whose honoured ``Retry-After`` is capped, so a hostile server cannot stall us for hours."""

    def get_retry_after(self, response):
        after = super().get_retry_after(response)
        return None if after is None else min(after, RETRY_AFTER_MAX)


def make_session(net: NetOptions = NetOptions()) -> requests.Session:
    """A Session retrying connection errors, read errors before the body, 429 and 5xx (not 404)."""
    retry = _Retry(total=net.retries, connect=net.retries, read=net.retries, status=net.retries,
                  status_forcelist=RETRY_STATUSES, allowed_methods=frozenset({"GET", "HEAD"}),
                  backoff_factor=net.backoff_factor, backoff_max=30, respect_retry_after_header=True,
                  raise_on_status=False)  # the last 5xx response comes back; we turn it into DownloadError
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "mobilenet-v2-convert (+python-requests)"
    session.headers["Accept-Encoding"] = "identity"  # byte ranges must address the stored file
    return session
