"""ridestream: streaming inference for a ride-hailing backend.

The shared core lives here (settings, Avro serde, Kafka clients, the local broker runner, the CLI);
the services around it (producers, consumers, decision_service, gateway) import it, never the
other way round.
"""

__version__ = "0.1.0"
