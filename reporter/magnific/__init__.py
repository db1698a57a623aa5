"""Client for the one Magnific endpoint we read: team credit usage over time.

Contract: shared/reference/magnific-team-credit-usage.md. Where it is silent
we follow its own advice: 401/403 mean a rejected key, 400/404/422 a rejected
request, and 429/5xx/network failures are retried with backoff and jitter,
honouring ``Retry-After``. Every third-party error is translated here, once,
into a ``ReporterError`` that names what to do.

The package: ``query`` (the request), ``response`` (the answer, checked), ``probe``
(end_date semantics) and ``client`` (HTTP, retries, limits).
"""

from reporter.magnific.client import MagnificClient, RetryPolicy, parse_retry_after
from reporter.magnific.probe import EndProbe, decide_end, probe_day, usage_days
from reporter.magnific.query import (
    ENDPOINT,
    GRANULARITIES,
    KEY_HEADER,
    UsageQuery,
    end_pad_is_exact,
    names_date_field,
    validate_query_fields,
)
from reporter.magnific.response import (
    MAX_PLAUSIBLE,
    USER_COLUMNS,
    UsageResponse,
    parse_usage_response,
)

__all__ = [
    "ENDPOINT",
    "GRANULARITIES",
    "KEY_HEADER",
    "MAX_PLAUSIBLE",
    "USER_COLUMNS",
    "EndProbe",
    "MagnificClient",
    "RetryPolicy",
    "UsageQuery",
    "UsageResponse",
    "decide_end",
    "end_pad_is_exact",
    "names_date_field",
    "parse_retry_after",
    "parse_usage_response",
    "probe_day",
    "usage_days",
    "validate_query_fields",
]
