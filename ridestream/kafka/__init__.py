"""Kafka plumbing shared by every service: client factories, a producer with delivery discipline,
topic administration and the local single-node broker."""
