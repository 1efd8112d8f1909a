"""Serialization: single-object and Confluent framing, columnar batch codecs."""
