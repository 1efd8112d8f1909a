#!/usr/bin/env bash
# The demo on embedded defaults: a real Kafka broker, the topics, a replay of real February rides,
# and what arrived. A broker the demo started is stopped at the end; one that already ran is left.
set -euo pipefail
cd "$(dirname "$0")/.."
rides=${1:-5000}
rate=${2:-1000}
rs=.venv/bin/ridestream

step() { printf '\n== %s\n' "$*"; }

started_here=0
if ! $rs kafka status >/dev/null 2>&1; then
  started_here=1
fi
step "Kafka (KRaft, one node, 127.0.0.1)"
$rs kafka start
if [ "$started_here" = 1 ]; then
  trap 'step "stopping the Kafka the demo started"; $rs kafka stop' EXIT
fi

step "topics"
$rs topics create

step "replaying $rides February rides at $rate rides/s (RideStarted, then RideCompleted as each ride ends)"
$rs replay --input data/green_tripdata_2023-02.parquet --rate "$rate" --limit "$rides"

step "what the topics hold"
$rs topics list

step "three RideStarted events, decoded"
$rs tail started --limit 3 --idle-timeout 5
step "three RideCompleted events, decoded"
$rs tail completed --limit 3 --idle-timeout 5

step "schemas: every contract and its compatibility"
$rs schemas check

step "models: train on January, validate on February, register and gate @champion (once)"
if $rs models list 2>/dev/null | grep -q "ride-tip .*champion"; then
  echo "champions already registered; retrain any time with: $rs train"
else
  $rs train
fi
$rs models list

step "batch: score all of February offline with the champion models"
mkdir -p .ridestream/demo
$rs batch score --input data/green_tripdata_2023-02.parquet --output .ridestream/demo/scored-2023-02.parquet
.venv/bin/python - <<'PY'
import pandas as pd
scored = pd.read_parquet(".ridestream/demo/scored-2023-02.parquet")
columns = ["lpep_pickup_datetime", "PULocationID", "DOLocationID", "trip_distance", "predicted_duration", "predicted_cost", "predicted_tip"]
print(scored[columns].head(5).round(2).to_string(index=False))
PY
echo "MLflow UI over the same store: $rs mlflow ui   (http://127.0.0.1:5000)"
