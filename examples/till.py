#!/usr/bin/env python3
"""A till-side client of pos-agent's till API, Python 3 standard library only.

It follows the scan stream (GET /v1/scans, Server-Sent Events), shows the balance of
each scanned card, sells a receipt paying with points, and commits it:

    python3 examples/till.py --agent http://127.0.0.1:7070 --redeem max

Answers are handled as the README's till API section says:
  400/404  the request is wrong: printed, the receipt is dropped;
  409      conflicts with an earlier request (same receipt id, another body): printed,
           the receipt is dropped (a new sale needs a new receipt id);
  422      refused by a rule (insufficient points, offline cap, blocked card): the
           customer pays in money; the sale is opened again without points under a
           new receipt id (the refused one recorded nothing);
  503      nothing was recorded (journal full or busy, agent stopping): the SAME
           request is sent again after a pause. receipt_id is the idempotency key, so a
           retry after a lost answer or a dropped connection never sells twice.
"""

import argparse
import json
import re
import sys
import time
import urllib.error
import urllib.request
import uuid

RETRY_PAUSES = [0.2, 0.5, 1, 2, 5]


def masked(card):
    """Card numbers are shown masked, as the agent's own logs do."""
    return "****" + card[-4:] if card else "-"


def say(text):
    print(text, flush=True)


def shown(path):
    """A path as printed: the card number in /v1/cards/{card} masked."""
    return re.sub(r"(?<=/v1/cards/)\d+", lambda m: masked(m.group()), path)


class TillApiError(Exception):
    def __init__(self, status, code, message):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def call(agent, method, path, body=None, timeout=10):
    """One request; retried, unchanged, on 503 and on connection failures."""
    data = None if body is None else json.dumps(body).encode()
    for attempt, pause in enumerate([0] + RETRY_PAUSES):
        time.sleep(pause)
        request = urllib.request.Request(agent + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as e:
            try:
                error = json.load(e)["error"]
            except (ValueError, KeyError):
                error = {"code": "http_error", "message": e.reason}
            if e.code == 503 and attempt < len(RETRY_PAUSES):
                say(f"  {shown(path)}: 503 {error['code']}, nothing recorded; retrying")
                continue
            raise TillApiError(e.code, error["code"], error["message"]) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            if attempt < len(RETRY_PAUSES):
                say(f"  {shown(path)}: no answer ({e}); retrying the same request")
                continue
            raise
    raise AssertionError("unreachable")


def scans(agent):
    """Yields each scan event of GET /v1/scans (one JSON `data:` line per event)."""
    request = urllib.request.Request(agent + "/v1/scans")
    request.add_header("Accept", "text/event-stream")
    with urllib.request.urlopen(request, timeout=3600) as stream:
        say(f"following scans at {agent}/v1/scans")
        for raw in stream:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("data:"):
                yield json.loads(line[5:])


def sell(agent, card, receipt, lines, redeem):
    """Opens and commits one sale; returns the commit answer, or None."""
    body = {"receipt_id": receipt, "card": card, "redeem_points": redeem, "lines": lines}
    try:
        held = call(agent, "POST", "/v1/sales", body)
    except TillApiError as e:
        if e.status == 422 and redeem > 0:
            say(f"  {receipt}: points refused ({e.code}: {e.message}); paying in money")
            return sell(agent, card, receipt + "-M", lines, 0)
        say(f"  {receipt}: refused, {e}")
        return None
    offline = " (offline)" if held.get("offline") else ""
    say(
        f"  {receipt}: held{offline}, redeem {held['redeem_points']} points, "
        f"discount {held['discount_minor']}, to pay {held['to_pay_minor']}"
    )
    # The customer pays here. Commit is idempotent too: a retry returns the same answer.
    try:
        done = call(agent, "POST", f"/v1/sales/{receipt}/commit")
    except TillApiError as e:
        say(f"  {receipt}: commit refused, {e}")
        return None
    say(
        f"  {receipt}: committed, redeemed {done['redeemed_points']}, "
        f"accrued {done['accrued_points']}, balance now {done['card']['balance']}"
    )
    return done


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", default="http://127.0.0.1:7070")
    parser.add_argument("--amount-minor", type=int, default=20000, help="receipt total")
    parser.add_argument(
        "--redeem",
        default="max",
        help="points to pay with: 'max' (what the quote allows) or a number",
    )
    parser.add_argument("--scans", type=int, default=0, help="stop after N scans (0: never)")
    args = parser.parse_args()
    agent = args.agent.rstrip("/")
    lines = [{"sku": "basket", "category": "grocery", "amount_minor": args.amount_minor, "qty": 1}]
    run = uuid.uuid4().hex[:8]
    seen = 0
    for event in scans(agent):
        seen += 1
        card = event["card"]
        say(f"scan {seen}: card {masked(card)} ({event['symbology']}) at {event['scanner']}")
        try:
            view = call(agent, "GET", f"/v1/cards/{card}")
            quote = call(agent, "POST", "/v1/quote", {"card": card, "lines": lines})
        except TillApiError as e:
            say(f"  refused: {e}")
        else:
            offline = " (offline)" if view["offline"] else ""
            say(
                f"  balance {view['balance']} points, available {view['available']}{offline}; "
                f"may redeem up to {quote['max_redeem_points']} ({quote['limited_by']})"
            )
            redeem = quote["max_redeem_points"] if args.redeem == "max" else int(args.redeem)
            sell(agent, card, f"T-{run}-{seen}", lines, redeem)
        if args.scans and seen >= args.scans:
            return 0
    return 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
