"""Joins a ride's predictions, decides, stores and evaluates (issue "Decision service").
Not built yet; the package exists so the layout of DESIGN.md is in place."""
