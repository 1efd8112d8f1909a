"""The ``ridestream`` command (``ridestream.cli.app``).

The core's own commands (the local broker, topics, tail, the dead-letter topic, the registry,
the contracts, settings) live here; each service registers its own (``ridestream predict``,
``ridestream decide``, ``ridestream train``, …) through the ``ridestream.commands`` entry-point
group, so the core never imports a service. Command modules share ``ridestream.cli.common``.
"""
