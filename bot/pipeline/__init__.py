"""How a message travels: received once, handled in one transaction, delivered in order by the sender.

See docs/pipeline.md for the design; `receiving` takes deliveries in, `sending` takes replies out.
"""

from bot.pipeline.errors import is_unavailable
from bot.pipeline.receiving import Pipeline, Unavailable, Work
from bot.pipeline.sending import Moved, Pacer, Refused, Result, Retry, Sender, Sent, Transport

__all__ = [
    "Moved",
    "Pacer",
    "Pipeline",
    "Refused",
    "Result",
    "Retry",
    "Sender",
    "Sent",
    "Transport",
    "Unavailable",
    "Work",
    "is_unavailable",
]
