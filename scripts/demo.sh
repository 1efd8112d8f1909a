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
