"""The ride backend's side of the stream: the publisher library it imports, and the replayer
that turns a TLC month into live ride events."""

from producers.publisher import AsyncRidePublisher, DeliveryReceipt, RidePublisher

__all__ = ["AsyncRidePublisher", "DeliveryReceipt", "RidePublisher"]
