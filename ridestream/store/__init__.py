"""The decision store."""
