#!/usr/bin/env bash
# Sourced by .ci/run: fetches Apache Kafka's jars from Maven Central (once;
# cached), starts a single-node KRaft broker on 127.0.0.1 in the background
# and exports where it is:
#
#   SLUICE_KAFKA_BROKERS     host:port of the running broker
#   SLUICE_KAFKA_LIBS        the cached jars (for tests that run a broker of their own)
#   SLUICE_KAFKA_BROKER_CMD  .ci/kafka-broker.sh, which runs such a broker
#
# SLUICE_KAFKA_VERSION picks the Kafka version (default 3.9.1; 4.1.x works
# with kafka-go too). Idempotent: a cached version is not fetched again, and
# a broker that already answers at SLUICE_KAFKA_BROKERS is reused.

sluice_kafka_version=${SLUICE_KAFKA_VERSION:-3.9.1}
sluice_kafka_cache=${SLUICE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}/kafka-$sluice_kafka_version
sluice_kafka_root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

sluice_kafka_fetch() {
  local dir=$1 version=$2 logging
  case $version in
  3.*)
    logging='<dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>1.7.36</version></dependency>'
    ;;
  *)
    logging='<dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>2.0.17</version></dependency>
      <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>2.24.3</version></dependency>
      <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.24.3</version></dependency>'
    ;;
  esac
  rm -rf "$dir.tmp"
  mkdir -p "$dir.tmp"
  cat >"$dir.tmp/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>sluice.ci</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$version</version></dependency>
    $logging
  </dependencies>
</project>
POM
  echo "fetching Apache Kafka $version jars from Maven Central into $dir"
  (cd "$dir.tmp" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dir.tmp/libs") || return 1
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
}

sluice_kafka_answers() { # host:port
  (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null
}

sluice_kafka_start() {
  if [ -n "${SLUICE_KAFKA_BROKERS:-}" ] && sluice_kafka_answers "$SLUICE_KAFKA_BROKERS"; then
    echo "kafka: reusing the broker at $SLUICE_KAFKA_BROKERS"
    return 0
  fi
  if [ ! -d "$sluice_kafka_cache/libs" ]; then
    sluice_kafka_fetch "$sluice_kafka_cache" "$sluice_kafka_version" || {
      echo "kafka: could not fetch the jars" >&2
      return 1
    }
  fi
  export SLUICE_KAFKA_LIBS=$sluice_kafka_cache/libs
  export SLUICE_KAFKA_BROKER_CMD=$sluice_kafka_root/kafka-broker.sh
  local port data log i
  port=$(python3 -c 'import socket
s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]
t=socket.socket(); t.bind(("127.0.0.1",p+1)); print(p)' 2>/dev/null || echo 39092)
  data=$(mktemp -d "${TMPDIR:-/tmp}/sluice-kafka.XXXXXX")
  log=$data/broker.log
  bash "$SLUICE_KAFKA_BROKER_CMD" "$data" "$port" >"$log" 2>&1 &
  CI_PIDS+=("$!")
  local pid=$!
  for i in $(seq 1 240); do
    if grep -q "Kafka Server started" "$log" 2>/dev/null && sluice_kafka_answers "127.0.0.1:$port"; then
      export SLUICE_KAFKA_BROKERS=127.0.0.1:$port
      echo "kafka $sluice_kafka_version: broker pid $pid at $SLUICE_KAFKA_BROKERS (data and log in $data)"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.5
  done
  echo "kafka: the broker did not start; its log:" >&2
  tail -n 50 "$log" >&2
  return 1
}

sluice_kafka_start
