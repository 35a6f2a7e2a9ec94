#!/usr/bin/env bash
# Runs one single-node Apache Kafka broker (KRaft, broker and controller in
# one process) on 127.0.0.1 in the foreground, from the jars that
# setup-kafka.sh cached: formats DATA_DIR on first use, then execs the JVM,
# so the caller's pid is the broker's. Tests use it to start a broker of
# their own and to restart it on the same port and data directory.
#
#   SLUICE_KAFKA_LIBS=DIR kafka-broker.sh DATA_DIR PORT [CONTROLLER_PORT]
#
# CONTROLLER_PORT defaults to PORT+1. The broker creates no topics by
# itself (auto.create.topics.enable=false): tests create theirs.
#
# With SLUICE_KAFKA_SASL_PORT set, the broker also listens there with
# SASL_PLAINTEXT, mechanisms PLAIN and SCRAM-SHA-512, for the user
# SLUICE_KAFKA_SASL_USER (default sluice) with the password
# SLUICE_KAFKA_SASL_PASSWORD (required then). Brokers talk to each other on
# the plaintext listener.
set -euo pipefail
if [ $# -lt 2 ] || [ -z "${SLUICE_KAFKA_LIBS:-}" ]; then
  echo "usage: SLUICE_KAFKA_LIBS=DIR $0 DATA_DIR PORT [CONTROLLER_PORT]" >&2
  exit 2
fi
data=$1
port=$2
cport=${3:-$((port + 1))}
mkdir -p "$data/logs"
cp_libs="$SLUICE_KAFKA_LIBS/*"

listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
advertised="PLAINTEXT://127.0.0.1:$port"
protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
sasl_props=""
scram_args=()
if [ -n "${SLUICE_KAFKA_SASL_PORT:-}" ]; then
  : "${SLUICE_KAFKA_SASL_PASSWORD:?SLUICE_KAFKA_SASL_PORT needs SLUICE_KAFKA_SASL_PASSWORD}"
  sasl_user=${SLUICE_KAFKA_SASL_USER:-sluice}
  listeners="$listeners,SASL_PLAINTEXT://127.0.0.1:$SLUICE_KAFKA_SASL_PORT"
  advertised="$advertised,SASL_PLAINTEXT://127.0.0.1:$SLUICE_KAFKA_SASL_PORT"
  protocols="$protocols,SASL_PLAINTEXT:SASL_PLAINTEXT"
  sasl_props="sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512
listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_${sasl_user}=\"${SLUICE_KAFKA_SASL_PASSWORD}\";
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
  scram_args=(--add-scram "SCRAM-SHA-512=[name=${sasl_user},password=${SLUICE_KAFKA_SASL_PASSWORD}]")
fi

cat >"$data/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$data/logs
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
auto.create.topics.enable=false
delete.topic.enable=true
log.segment.bytes=16777216
log.retention.ms=3600000
log.retention.check.interval.ms=60000
message.max.bytes=2097152
num.network.threads=2
num.io.threads=4
$sasl_props
PROPS

cat >"$data/log4j.properties" <<'PROPS'
log4j.rootLogger=WARN, stdout
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
PROPS
cat >"$data/log4j2.properties" <<'PROPS'
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = STDOUT
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = info
logger.broker.name = kafka.server.BrokerServer
logger.broker.level = info
PROPS

jvm=(-Xms256m -Xmx768m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
  "-Dlog4j.configuration=file:$data/log4j.properties"
  "-Dlog4j2.configurationFile=$data/log4j2.properties"
  "-Dkafka.logs.dir=$data")

if [ ! -f "$data/logs/meta.properties" ]; then
  # A cluster id is 16 random bytes in base64url; one that starts with '-'
  # would read as an option, so draw again.
  cluster_id=-
  while [ "${cluster_id#-}" != "$cluster_id" ]; do
    cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
  done
  java "${jvm[@]}" -cp "$cp_libs" kafka.tools.StorageTool format \
    -t "$cluster_id" \
    -c "$data/server.properties" "${scram_args[@]}" >"$data/format.log" 2>&1 || {
    cat "$data/format.log" >&2
    exit 1
  }
fi
exec java "${jvm[@]}" -cp "$cp_libs" kafka.Kafka "$data/server.properties"
