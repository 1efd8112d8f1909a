"""The thin FastAPI gateway (issue "Gateway"). Not built yet; the package exists so the layout of
DESIGN.md is in place."""
