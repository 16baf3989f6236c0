"""What both peers share: the facts they compute from an ActivityEvent — its partner, its
local day in the tenant's time zone, the sales volume in hundredths (orders add, refunds
subtract) and the sponsor it recruits for — and how they measure their CPU time. The
generated protobuf module comes from proto/ at setup."""

import resource
from datetime import datetime, timedelta, timezone

from mentorstream.activity.v1 import activity_pb2

# The bench tenant's zone, Europe/Moscow: UTC+3 all year.
MOSCOW = timezone(timedelta(hours=3))


def hundredths(decimal):
    integer, _, fraction = decimal.value.partition(".")
    sign = -1 if integer.startswith("-") else 1
    return int(integer) * 100 + sign * int((fraction + "00")[:2])


def facts(payload):
    """(partner, day, volume delta, sponsor) of one record."""
    event = activity_pb2.ActivityEvent()
    event.ParseFromString(payload)
    day = datetime.fromtimestamp(event.occurred_at.seconds, MOSCOW).strftime("%Y-%m-%d")
    kind = event.WhichOneof("payload")
    volume = 0
    sponsor = ""
    if kind == "order_placed":
        volume = hundredths(event.order_placed.volume)
    elif kind == "order_refunded":
        volume = -hundredths(event.order_refunded.volume)
    elif kind == "partner_enrolled":
        sponsor = event.partner_enrolled.sponsor_id
    return event.tenant_id, event.partner_id, day, volume, sponsor


def cpu():
    """User + system CPU seconds of this process, librdkafka's threads included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
