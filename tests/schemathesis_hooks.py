"""schemathesis hooks of tests/openapi.rs (load with SCHEMATHESIS_HOOKS=<this file>).

HQ refuses a reservation's `hold_expires_at` and an app token's `expires_at` more
than a day ahead of its clock (400): holds last minutes and tokens 300 s, and a later
date would pin its row for nothing. The bound moves with the clock, which no schema can
state, so a date generated beyond it is brought back to an hour from now. Only dates
that parse are touched: a malformed one (a negative case) goes out as generated.
"""

from datetime import datetime, timedelta, timezone

import schemathesis

DATES = {
    ("POST", "/v1/reservations"): "hold_expires_at",
    ("POST", "/v1/tokens/use"): "expires_at",
}


@schemathesis.hook
def map_body(context, body):
    operation = context.operation
    field = DATES.get((operation.method.upper(), operation.path)) if operation else None
    if field is None or not isinstance(body, dict) or not isinstance(body.get(field), str):
        return body
    try:
        at = datetime.fromisoformat(body[field].replace("Z", "+00:00"))
    except ValueError:
        return body
    now = datetime.now(timezone.utc)
    if at.tzinfo is not None and at > now + timedelta(hours=23):
        body = dict(body)
        body[field] = (now + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    return body
