"""The ride backend's side of the stream: the libraries it imports — the publisher of ride events
and the subscriber to decisions — and the replayer that turns a TLC month into live ride events."""

from producers.publisher import AsyncRidePublisher, DeliveryReceipt, RidePublisher
from producers.subscriber import AsyncDecisionSubscriber, DecisionSubscriber

__all__ = [
    "AsyncDecisionSubscriber",
    "AsyncRidePublisher",
    "DecisionSubscriber",
    "DeliveryReceipt",
    "RidePublisher",
]
