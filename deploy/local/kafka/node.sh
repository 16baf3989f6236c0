#!/usr/bin/env bash
# Runs one Apache Kafka node (KRaft) from a directory that holds its server.properties and
# cluster.id: formats its storage on the first start, then becomes the broker (exec, so the
# caller's pid is the JVM's and a SIGKILL reaches it). Its log is DIR/server.log.
# The stack (stack.sh) and the test kit (crates/testkit) start every node through this script.
#
#   deploy/local/kafka/node.sh DIR
#
# MENTORSTREAM_KAFKA_LIBS: the broker's jars (default .stack/kafka/libs, put there by
# `stack.sh up`); MENTORSTREAM_KAFKA_HEAP: -Xmx (default 512m); MENTORSTREAM_KAFKA_JVM_OPTS:
# more JVM options.
set -euo pipefail

dir=$(cd "${1:?usage: node.sh DIR}" && pwd)
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
libs="${MENTORSTREAM_KAFKA_LIBS:-$here/../../../.stack/kafka/libs}"
heap="${MENTORSTREAM_KAFKA_HEAP:-512m}"
[[ -f $libs/.complete ]] || { echo "no Kafka in $libs: run deploy/local/stack.sh up" >&2; exit 1; }
[[ -f $dir/server.properties && -f $dir/cluster.id ]] \
  || { echo "$dir needs server.properties and cluster.id" >&2; exit 1; }

java=(java -Xms64m "-Xmx$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
  "-Dkafka.logs.dir=$dir" "-Dlog4j2.configurationFile=$here/log4j2.properties"
  ${MENTORSTREAM_KAFKA_JVM_OPTS:-} -cp "$libs/*")

# Formatted once: its data (and its topics) survive restarts.
data=$(sed -n 's/^log\.dirs=//p' "$dir/server.properties")
if [[ ! -f $data/meta.properties ]]; then
  "${java[@]}" kafka.tools.StorageTool format --ignore-formatted \
    -t "$(cat "$dir/cluster.id")" -c "$dir/server.properties" >>"$dir/server.log" 2>&1
fi
exec "${java[@]}" kafka.Kafka "$dir/server.properties"
