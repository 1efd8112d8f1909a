"""Features, models, the registry, tracking, drift profiles and scoring."""
