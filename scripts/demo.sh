#!/usr/bin/env bash
# The whole system on its embedded defaults: a real Kafka broker and its topics, the models
# (trained once), three exactly-once predictors, the decision service and the gateway (and
# Prometheus, where Debian's is installed); a replay of real February rides with their completions
# while gateway clients send rides (some opted in); then a report of throughput, latencies,
# decisions, online error per model version and dead letters, written with its plot to
# .ridestream/demo/; then batch scoring. Processes the demo started are stopped at the end; a broker that already ran is
# left running.
set -euo pipefail
cd "$(dirname "$0")/.."
rides=${1:-5000}
rate=${2:-1000}
gateway_requests=${3:-1000}
gateway_port=${DEMO_GATEWAY_PORT:-8000}
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

step "models: train on January, score every labelled February ride, register and gate @champion (once)"
# The demo replays February, so the models that serve it must not have seen February: no
# --refit here (the monthly flow refits; see docs/models.md).
if $rs models check >/dev/null 2>&1; then
  echo "champions on today's feature set already registered; retrain any time with: $rs train"
else
  $rs train --no-progress
fi
$rs models list

step "services: three exactly-once predictors, the decision service, the gateway (logs in .ridestream/demo/)"
mkdir -p .ridestream/demo
pids=()
port=9101
for target in duration cost tip; do
  $rs predict --target "$target" --instance-id "demo-$target" --metrics-port "$port" >".ridestream/demo/predict-$target.log" 2>&1 &
  pids+=($!)
  port=$((port + 1))
done
$rs decide --instance-id demo --metrics-port 9104 >.ridestream/demo/decide.log 2>&1 &
pids+=($!)
$rs gateway --port "$gateway_port" >.ridestream/demo/gateway.log 2>&1 &
pids+=($!)
stop_services() { kill -TERM "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; pids=(); }
on_exit() {
  stop_services
  if [ "$started_here" = 1 ]; then step "stopping the Kafka the demo started"; $rs kafka stop; fi
}
trap on_exit EXIT
.venv/bin/python - "$gateway_port" <<'PY'
# Every service's /readyz: the predictors and the decision service are ready once they hold
# their partitions, the gateway once its model is loaded. Rides sent before would measure start-up.
import sys, time, httpx
services = {f"predictor {t}": f"http://127.0.0.1:{p}/readyz" for t, p in zip(("duration", "cost", "tip"), (9101, 9102, 9103))}
services |= {"decision service": "http://127.0.0.1:9104/readyz", "gateway": f"http://127.0.0.1:{sys.argv[1]}/readyz"}
started = time.monotonic()
deadline = started + 180
for name, url in services.items():
    while True:
        try:
            answer = httpx.get(url, timeout=5)
            if answer.status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"the {name} did not become ready; see its log in .ridestream/demo/")
        time.sleep(0.2)
print(f"  ready in {time.monotonic() - started:.1f} s: {', '.join(services)}")
print(f"  gateway: {answer.json()}")
PY
echo "  metrics: predictors 127.0.0.1:9101-9103, decisions :9104, gateway :$gateway_port/metrics; API docs http://127.0.0.1:$gateway_port/docs"
if command -v prometheus >/dev/null; then
  prometheus --config.file=deploy/prometheus.yml --web.listen-address=127.0.0.1:9090 \
    --storage.tsdb.path=.ridestream/demo/prometheus >.ridestream/demo/prometheus.log 2>&1 &
  pids+=($!)
  echo "  Prometheus on http://127.0.0.1:9090 (deploy/prometheus.yml; Grafana dashboard: deploy/grafana/ridestream.json)"
else
  echo "  (Debian's prometheus is not installed: scrape config in deploy/prometheus.yml, dashboard in deploy/grafana/)"
fi

run="demo-$(date +%H%M%S)-"
step "replaying $rides February rides at $rate rides/s as $run* (with completions) while $gateway_requests gateway requests come in, 20% opted in"
$rs replay --input data/green_tripdata_2023-02.parquet --rate "$rate" --limit "$rides" --id-prefix "$run" --no-progress &
replay_pid=$!
.venv/bin/python scripts/demo_load.py --url "http://127.0.0.1:$gateway_port" --prefix "$run" \
  --requests "$gateway_requests" --output .ridestream/demo/load.json >/dev/null
wait "$replay_pid"

step "predictions per target for this run (read_committed), as they land"
.venv/bin/python - "$run" "$rides" <<'PY'
import sys, time
from collections import Counter
from confluent_kafka import Consumer
from ridestream.kafka.clients import consumer_config, unique_group_id
from ridestream.contracts.schemas import PREDICTION
from ridestream.serde.codecs import SingleObjectSerde
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
        if msg.error() or not msg.key().decode().startswith(run + "0"):  # replayed, not gateway rides
            continue
        p = serde.decode(msg.value())
        if p["role"] != "champion":  # challengers shadow the champions: counted once, shown never
            continue
        seen[p["target"]].add(p["ride_id"])
        examples.setdefault(p["ride_id"], {})[p["target"]] = (p["value"], p["model_version"])
consumer.close()
for target, ids in seen.items():
    print(f"  {target:<9} {len(ids):>6} of {rides} rides predicted")
complete = [rid for rid, e in examples.items() if len(e) == 3][:5]
for rid in complete:
    e = examples[rid]
    print(f"  {rid}: duration {e['duration'][0]:5.1f} min, cost ${e['cost'][0]:6.2f}, tip ${e['tip'][0]:5.2f}"
          f"  (champion versions {e['duration'][1]}/{e['cost'][1]}/{e['tip'][1]})")
PY

step "waiting for every replayed ride's decision and ground truth"
.venv/bin/python - "$run" "$rides" <<'PY'
import sys, time
import numpy as np
from sqlalchemy import func, select
from ridestream.ml.scoring import labelled
from ridestream.settings import get_settings
from ridestream.store.decisions import DecisionStore
from ridestream.store.tables import actuals, rides as ride_rows

run, rides = sys.argv[1], int(sys.argv[2])
store = DecisionStore(get_settings().decisions.resolved_store_url)
deadline = time.monotonic() + 180
while time.monotonic() < deadline:
    with store.engine.connect() as conn:
        mine = ride_rows.c.ride_id.like(f"{run}0%")  # the replayed rides, not the gateway's
        decided = conn.scalar(select(func.count()).where(mine, ride_rows.c.status == "decided"))
        completed = conn.scalar(select(func.count()).where(actuals.c.ride_id.like(f"{run}0%")))
    if decided >= rides and completed >= rides:
        break
    time.sleep(1)
print(f"  {decided} decisions and {completed} completions stored for the {rides} replayed rides")
for ride_id in [f"{run}{i:07d}" for i in (0, 1, 2)]:
    result = store.ride(ride_id)
    if result and result.decision and result.actual:
        d, a = result.decision, result.actual
        scored = labelled(np.array([a["duration"]]), np.array([a["cost"]]))[0]
        print(f"  {ride_id}: quote ${d.quote}, ETA {d.eta:%H:%M}, expected tip ${d.expected_tip}, actions {d.actions}; "
              f"actual {a['duration']:.1f} min, ${a['cost']:.2f}, tip ${a['tip']:.2f}"
              + ("" if scored else " (outside the label convention: predicted, not scored)"))
store.close()
PY

step "report: throughput, latencies, decisions, online error per target and model version, dead letters"
sleep 3  # the gateway rides' completions were published last
.venv/bin/python scripts/demo_report.py --run "$run" --rides "$rides" --load .ridestream/demo/load.json \
  --output-dir .ridestream/demo

step "stopping the services (SIGTERM: each finishes its batch)"
stop_services

step "what the topics hold"
$rs topics list

step "three RideStarted events, decoded"
$rs tail started --limit 3 --idle-timeout 5
step "three RideCompleted events, decoded"
$rs tail completed --limit 3 --idle-timeout 5

step "batch: score every February ride offline with the champion models, and their error"
$rs batch score --input data/green_tripdata_2023-02.parquet --output .ridestream/demo/scored-2023-02.parquet
.venv/bin/python - <<'PY'
import numpy as np
import pandas as pd
from ridestream.ml.tlc import labelled_mask, rides_from_raw, with_labels

scored = pd.read_parquet(".ridestream/demo/scored-2023-02.parquet")
columns = ["lpep_pickup_datetime", "PULocationID", "DOLocationID", "trip_distance", "predicted_duration", "predicted_cost", "predicted_tip"]
print(scored[columns].head(5).to_string(index=False, float_format=lambda v: f'{v:.2f}'))
rides = with_labels(rides_from_raw(scored))
scored_rows = labelled_mask(rides)
print(f"  {len(scored):,} rides scored; against ground truth on the {scored_rows.sum():,} of the label convention (1-60 min, cost > 0):")
for name, mask in (("every labelled ride", scored_rows), ("  of them without a usable distance", scored_rows & ~(rides["trip_distance"].to_numpy() > 0))):
    error = {t: scored[f"predicted_{t}"].to_numpy()[mask] - rides[c].to_numpy()[mask] for t, c in (("duration", "duration_minutes"), ("cost", "cost"), ("tip", "tip_amount"))}
    print(f"  {name:<36} {mask.sum():>6,} rides: duration RMSE {np.sqrt(np.mean(error['duration'] ** 2)):.2f} min, "
          f"cost RMSE ${np.sqrt(np.mean(error['cost'] ** 2)):.2f}, tip MAE ${np.mean(np.abs(error['tip'])):.3f}")
PY
echo "MLflow UI over the same store: $rs mlflow ui   (http://127.0.0.1:5000)"
