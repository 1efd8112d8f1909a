"""Training on real TLC data: features → LightGBM per target → MLflow tracking and registry, with
champion/challenger gating; the Kestra flow that runs it on a schedule lives in ``kestra/``."""
