"""Offline scoring of a whole file with the stream's features and models (issue "Models").
Not built yet; the package exists so the layout of DESIGN.md is in place."""
