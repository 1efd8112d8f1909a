#!/usr/bin/env bash
# The demo on embedded defaults: a real Kafka broker and its topics, the models (trained once),
# three exactly-once predictors and the decision service, a replay of real February rides with
# their completions, what was predicted and decided, the online evaluation (table and plot), and
# batch scoring. Processes the demo started are stopped at the end; a broker that already ran is
# left running.
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

step "schemas: every contract and its compatibility"
$rs schemas check

step "models: train on January, validate on February, register and gate @champion (once)"
if $rs models list 2>/dev/null | grep -q "ride-tip .*champion"; then
  echo "champions already registered; retrain any time with: $rs train"
else
  $rs train
fi
$rs models list

step "predictors (one exactly-once process per target) and the decision service (logs in .ridestream/demo/)"
mkdir -p .ridestream/demo
pids=()
for target in duration cost tip; do
  $rs predict --target "$target" --instance-id "demo-$target" >".ridestream/demo/predict-$target.log" 2>&1 &
  pids+=($!)
done
$rs decide --instance-id demo >.ridestream/demo/decide.log 2>&1 &
pids+=($!)
stop_services() { kill -TERM "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; }
on_exit() {
  stop_services
  if [ "$started_here" = 1 ]; then step "stopping the Kafka the demo started"; $rs kafka stop; fi
}
trap on_exit EXIT

run="demo-$(date +%H%M%S)-"
step "replaying $rides February rides at $rate rides/s as $run* (RideStarted, then RideCompleted as each ride ends)"
$rs replay --input data/green_tripdata_2023-02.parquet --rate "$rate" --limit "$rides" --id-prefix "$run"

step "predictions per target for this run (read_committed), as they land"
.venv/bin/python - "$run" "$rides" <<'PY'
import sys, time
from collections import Counter
from confluent_kafka import Consumer
from ridestream.kafka.clients import consumer_config, unique_group_id
from ridestream.schemas import PREDICTION
from ridestream.serde import SingleObjectSerde
from ridestream.settings import get_settings

run, rides = sys.argv[1], int(sys.argv[2])
settings = get_settings()
serde = SingleObjectSerde(PREDICTION)
consumer = Consumer(consumer_config(settings, unique_group_id("demo")))
consumer.subscribe([settings.topics.full("predictions")])
seen: dict[str, set[str]] = {"duration": set(), "cost": set(), "tip": set()}
examples: dict[str, dict] = {}
deadline = time.monotonic() + 180
while time.monotonic() < deadline and min(len(s) for s in seen.values()) < rides:
    for msg in consumer.consume(2000, 0.5):
        if msg.error() or not msg.key().decode().startswith(run):
            continue
        p = serde.decode(msg.value())
        seen[p["target"]].add(p["ride_id"])
        examples.setdefault(p["ride_id"], {})[p["target"]] = (p["value"], p["model_version"])
consumer.close()
for target, ids in seen.items():
    print(f"  {target:<9} {len(ids):>6} of {rides} rides predicted")
complete = [rid for rid, e in examples.items() if len(e) == 3][:5]
for rid in complete:
    e = examples[rid]
    print(f"  {rid}: duration {e['duration'][0]:5.1f} min, cost ${e['cost'][0]:6.2f}, tip ${e['tip'][0]:5.2f}"
          f"  (model versions {e['duration'][1]}/{e['cost'][1]}/{e['tip'][1]})")
PY

step "decisions for this run (decision store), as the last completions arrive"
.venv/bin/python - "$run" "$rides" <<'PY'
import sys, time
from sqlalchemy import func, select
from ridestream.settings import get_settings
from ridestream.store import DecisionStore, actuals, rides as ride_rows

run, rides = sys.argv[1], int(sys.argv[2])
store = DecisionStore(get_settings().decisions.resolved_store_url)
mine = ride_rows.c.ride_id.like(f"{run}%")
deadline = time.monotonic() + 180
while time.monotonic() < deadline:
    with store.engine.connect() as conn:
        decided = conn.scalar(select(func.count()).where(mine, ride_rows.c.status == "decided"))
        partial = conn.scalar(select(func.count()).where(mine, ride_rows.c.partial))
        completed = conn.scalar(select(func.count()).where(actuals.c.ride_id.like(f"{run}%")))
        actions = conn.execute(select(ride_rows.c.actions, func.count()).where(mine).group_by(ride_rows.c.actions)).all()
    if decided >= rides and completed >= rides:
        break
    time.sleep(1)
print(f"  {decided} of {rides} rides decided ({partial} on partial predictions), {completed} completions stored")
for action_list, count in sorted(actions, key=lambda a: -a[1]):
    print(f"  actions {action_list or '[]':<40} {count:>6} rides")
for ride_id in [f"{run}{i:07d}" for i in (0, 1, 2)]:
    result = store.ride(ride_id)
    if result and result.decision:
        d = result.decision
        print(f"  {ride_id}: quote ${d.quote}, ETA {d.eta:%H:%M}, expected tip ${d.expected_tip}, actions {d.actions}"
              + (f"; actual {result.actual['duration']:.1f} min, ${result.actual['cost']:.2f}, tip ${result.actual['tip']:.2f}" if result.actual else ""))
store.close()
PY

step "online evaluation: every model version against the rides' ground truth (all runs in the store)"
$rs evaluate report --plot .ridestream/demo/evaluation.png
stop_services

step "what the topics hold"
$rs topics list

step "three RideStarted events, decoded"
$rs tail started --limit 3 --idle-timeout 5
step "three RideCompleted events, decoded"
$rs tail completed --limit 3 --idle-timeout 5

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
