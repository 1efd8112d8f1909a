"""The per-target predictor process (issue "Predictors"): one generic exactly-once loop, started
once per target. Not built yet; the package exists so the layout of DESIGN.md is in place."""
