"""The contracts: Avro schemas, the events they carry, validation, compatibility."""
