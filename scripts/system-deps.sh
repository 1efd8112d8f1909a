#!/usr/bin/env bash
# Java 17+ runs Kafka; Maven fetches Kafka's jars from Maven Central once; PostgreSQL's server
# binaries let the tests run the decision store on a real PostgreSQL (SQLite is the default);
# wrk is the load generator of bench/gateway.py.
# Install them from Debian when they are missing (as root); otherwise say what is needed.
set -euo pipefail

java_major() {
  java -version 2>&1 | sed -nE 's/.*version "(1\.)?([0-9]+).*/\2/p' | head -n 1
}

need=()
if ! command -v java >/dev/null || [ "$(java_major)" -lt 17 ]; then need+=(openjdk-17-jre-headless); fi
if ! command -v mvn >/dev/null; then need+=(maven); fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  need+=(postgresql)
fi
if ! command -v wrk >/dev/null; then need+=(wrk); fi
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${need[*]} from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "ridestream needs: ${need[*]} (Java 17+, Maven, PostgreSQL, wrk). Install them, e.g. sudo apt-get install ${need[*]}" >&2
  exit 1
fi
