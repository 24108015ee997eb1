#!/usr/bin/env bash
# Real Apache Kafka on loopback, for tests and `churnwatch dev` (SPEC §7).
#
# The broker comes from Maven Central (the only place this machine and CI can
# fetch it from), not from the release tarball: Maven resolves
# org.apache.kafka:kafka_2.13 and kafka-tools with their runtime dependencies
# plus a log4j backend into .tools/kafka/<version>/, cached in ~/.m2. The
# nodes run in KRaft mode (no ZooKeeper) as `java -cp '.tools/kafka/V/*'
# kafka.Kafka server.properties`, each node broker and controller at once.
#
# Default version 3.9.1 (KAFKA_VERSION overrides): kafka-go v0.4.x speaks
# several fixed, old protocol versions (FindCoordinator v0, SyncGroup v0,
# Heartbeat v0, ListOffsets v1, OffsetFetch v1 ...). Kafka 3.9 serves every
# one of them; 4.0 removed old versions (KIP-896) and 4.0.0 refused
# kafka-go's JoinGroup v1, which 4.0.1/4.1 brought back. 4.1.x passes our
# tests too (--version 4.1.1), but 3.9 is the line with nothing removed.
#
# Usage: see usage() below or scripts/kafka.sh --help.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
version="${KAFKA_VERSION:-3.9.1}"

usage() {
	cat <<'EOF'
scripts/kafka.sh — real Apache Kafka (KRaft, loopback) for churnwatch

  scripts/kafka.sh install [--version V]
      fetch Kafka V and its dependencies from Maven Central into .tools/kafka/V/
      (skipped when already there; Maven caches in ~/.m2)
  scripts/kafka.sh start --dir D [--brokers 1|3] [--base-port P] [--version V] [--sasl-ssl]
      format and start N nodes (broker+controller each) in D/node-N, wait until
      every broker answers, write D/kafka.env and print the bootstrap list.
      Node n listens on P+2(n-1) (clients) and P+2(n-1)+1 (controller);
      P defaults to 19092.
      --sasl-ssl: secured cluster. A CA and broker certificates are made with
      openssl in D/tls; clients connect over SASL_SSL (SCRAM-SHA-512,
      SCRAM-SHA-256 or PLAIN; user churnwatch, password in
      D/tls/churnwatch.password, SCRAM credentials created at format time),
      brokers talk over a separate SASL_SSL listener (user broker), and
      the controllers over SSL. Three ports a node: P+3(n-1) clients,
      +1 controller, +2 inter-broker. D/kafka.env then also sets
      CHURNWATCH_KAFKA_TLS_CA/_CERT/_KEY and _KAFKA_SASL_*.
  scripts/kafka.sh stop --dir D [--now]    stop every node (SIGTERM, SIGKILL after 30 s;
                                           --now: SIGKILL at once, for throw-away test clusters)
  scripts/kafka.sh kill --dir D --node N   SIGKILL node N
  scripts/kafka.sh start-node --dir D --node N
      restart node N on its existing data; wait until it is back in the cluster
  scripts/kafka.sh status --dir D          running nodes and the brokers the cluster lists

Environment: KAFKA_VERSION (default 3.9.1), KAFKA_HEAP (default 512m),
KAFKA_START_TIMEOUT seconds (default 90), KAFKA_WATCH_PID (start: stop the
cluster once that process has exited; the Go test helper sets it).
Needs java (17+), mvn, kcat.
EOF
}

die() { echo "kafka.sh: $*" >&2; exit 1; }

cmd="${1:-}"
[ -n "$cmd" ] || { usage >&2; exit 2; }
shift
dir="" brokers=1 base_port=19092 node="" now=0 secure=0
while [ $# -gt 0 ]; do
	case $1 in
	--dir) dir="$2"; shift 2 ;;
	--brokers) brokers="$2"; shift 2 ;;
	--base-port) base_port="$2"; shift 2 ;;
	--version) version="$2"; shift 2 ;;
	--node) node="$2"; shift 2 ;;
	--now) now=1; shift ;;
	--sasl-ssl) secure=1; shift ;;
	-h|--help) usage; exit 0 ;;
	*) echo "kafka.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
	esac
done

lib="$root/.tools/kafka/$version"

# install resolves the jars with a throw-away pom; the stamp file is written
# last, so an interrupted install is redone.
install() {
	[ -f "$lib/.complete" ] && return 0
	command -v mvn >/dev/null || die "mvn not found: install Maven (apt-get install maven) or run scripts/setup.sh"
	command -v java >/dev/null || die "java not found: install a JDK 17 (apt-get install openjdk-17-jre-headless)"
	local major=${version%%.*} work
	work="$(mktemp -d)"
	trap 'rm -rf "$work"' RETURN
	# Kafka 3.x logs through log4j 1 (reload4j); 4.x through log4j 2 but
	# leaves log4j-core and the binding for slf4j 1.7 (its slf4j-api) to the
	# distribution, so they are named here.
	local logging=""
	if [ "$major" -ge 4 ]; then
		logging='<dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.24.3</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>2.24.3</version></dependency>'
	else
		logging='<dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>1.7.36</version></dependency>'
	fi
	cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>churnwatch</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$version</version></dependency>
    $logging
  </dependencies>
</project>
EOF
	echo "kafka.sh: fetching Apache Kafka $version from Maven Central into $lib" >&2
	rm -rf "$lib"
	mkdir -p "$lib"
	mvn -q -B -f "$work/pom.xml" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$lib" >"$work/mvn.log" 2>&1 ||
		{ cat "$work/mvn.log" >&2; die "maven could not fetch kafka $version (is it on Maven Central? see .library maven list)"; }
	ls "$lib"/kafka_2.13-"$version".jar >/dev/null 2>&1 || die "kafka_2.13-$version.jar missing after install"
	touch "$lib/.complete"
}

# need_dir makes D absolute; only start creates it (a watchdog's late stop
# must not bring back a directory the test already removed).
need_dir() {
	[ -n "$dir" ] || die "--dir D is required"
	if [ "$cmd" = start ]; then mkdir -p "$dir"; fi
	if [ ! -d "$dir" ]; then
		[ "$cmd" = stop ] && exit 0
		die "no cluster in $dir"
	fi
	dir="$(cd "$dir" && pwd)"
}

# The cluster's layout is written at start, so stop/kill/start-node need only --dir.
load_layout() {
	[ -f "$dir/cluster.conf" ] || die "$dir/cluster.conf missing: start the cluster first (scripts/kafka.sh start --dir $dir)"
	# shellcheck disable=SC1091
	. "$dir/cluster.conf"
	lib="$root/.tools/kafka/$version"
}

stride() { if [ "$secure" = 1 ]; then echo 3; else echo 2; fi; }
client_port() { echo $((base_port + $(stride) * ($1 - 1))); }
ctrl_port() { echo $((base_port + $(stride) * ($1 - 1) + 1)); }
internal_port() { echo $((base_port + $(stride) * ($1 - 1) + 2)); }

# make_tls writes D/tls: a CA, one certificate for every broker (loopback
# names), a client certificate (optional for clients: ssl.client.auth is
# "requested"), and random passwords for the users churnwatch and broker.
# Secrets are 0600 files; none is ever printed.
make_tls() {
	local t="$dir/tls"
	command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
	mkdir -p "$t"
	chmod 700 "$t"
	(
		umask 077
		cd "$t"
		openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca.pem -days 30 \
			-subj "/CN=churnwatch dev Kafka CA" >/dev/null 2>&1
		for who in broker client; do
			openssl req -newkey rsa:2048 -nodes -keyout "$who-key.pem" -out "$who.csr" -subj "/CN=churnwatch-$who" >/dev/null 2>&1
			printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >"$who.ext"
			openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out "$who.pem" -days 30 \
				-extfile "$who.ext" >/dev/null 2>&1
			rm -f "$who.csr" "$who.ext"
		done
		# Kafka's PEM key store: the (unencrypted PKCS#8) key, then the chain.
		cat broker-key.pem broker.pem ca.pem >broker-keystore.pem
		openssl rand -hex 24 >churnwatch.password
		openssl rand -hex 24 >broker.password
	) || die "could not make the certificates in $t"
	chmod 644 "$t/ca.pem"
}

# kcat_conf is the client configuration kcat uses on a secured cluster.
kcat_conf() {
	local t="$dir/tls"
	[ -f "$t/kcat.conf" ] && return 0
	(
		umask 077
		printf 'security.protocol=SASL_SSL\nsasl.mechanisms=SCRAM-SHA-512\nsasl.username=churnwatch\nsasl.password=%s\nssl.ca.location=%s\n' \
			"$(cat "$t/churnwatch.password")" "$t/ca.pem" >"$t/kcat.conf"
	)
}

kcat_args() { if [ "$secure" = 1 ]; then kcat_conf; echo "-F $dir/tls/kcat.conf"; fi; }

bootstrap() {
	local n out=""
	for n in $(seq 1 "$brokers"); do out+="${out:+,}127.0.0.1:$(client_port "$n")"; done
	echo "$out"
}

write_properties() {
	local n=$1 nd="$dir/node-$1" voters="" i rf=$((brokers < 3 ? brokers : 3)) isr
	isr=$((rf >= 3 ? 2 : 1))
	for i in $(seq 1 "$brokers"); do voters+="${voters:+,}$i@127.0.0.1:$(ctrl_port "$i")"; done
	mkdir -p "$nd/data"
	(umask 077; : >"$nd/server.properties")
	cat >"$nd/server.properties" <<EOF
# generated by scripts/kafka.sh — node $n of $brokers, Kafka $version
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(client_port "$n"),CONTROLLER://127.0.0.1:$(ctrl_port "$n")
advertised.listeners=PLAINTEXT://127.0.0.1:$(client_port "$n")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$nd/data
num.partitions=3
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.flush.interval.messages=9223372036854775807
log.retention.hours=24
log.segment.bytes=67108864
# A restarted node must rejoin fast; an unclean election would lose acks.
unclean.leader.election.enable=false
controlled.shutdown.enable=true
# Fence a dead node in 4 s, not 9 s, so leaders move quickly in fault tests.
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=500
EOF
	if [ "$secure" = 1 ]; then
		local t="$dir/tls" pw bpw
		pw="$(cat "$t/churnwatch.password")" bpw="$(cat "$t/broker.password")"
		sed -i -e '/^listeners=/d' -e '/^advertised.listeners=/d' -e '/^listener.security.protocol.map=/d' \
			-e '/^inter.broker.listener.name=/d' "$nd/server.properties"
		cat >>"$nd/server.properties" <<EOF
# --sasl-ssl: clients on SASL_SSL, brokers on their own SASL_SSL listener,
# controllers on SSL. No plaintext port.
listeners=CLIENT://127.0.0.1:$(client_port "$n"),INTERNAL://127.0.0.1:$(internal_port "$n"),CONTROLLER://127.0.0.1:$(ctrl_port "$n")
advertised.listeners=CLIENT://127.0.0.1:$(client_port "$n"),INTERNAL://127.0.0.1:$(internal_port "$n")
listener.security.protocol.map=CLIENT:SASL_SSL,INTERNAL:SASL_SSL,CONTROLLER:SSL
inter.broker.listener.name=INTERNAL
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.internal.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.internal.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="$bpw";
listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.client.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.client.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_churnwatch="$pw";
ssl.keystore.type=PEM
ssl.keystore.location=$t/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$t/ca.pem
ssl.client.auth=requested
ssl.endpoint.identification.algorithm=https
ssl.enabled.protocols=TLSv1.3,TLSv1.2
EOF
	fi
	cat >"$nd/log4j.properties" <<EOF
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$nd/server.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.controller=INFO
EOF
	cat >"$nd/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $nd/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = warn
EOF
}

java_opts() {
	local nd="$dir/node-$1"
	echo "-Xms128m -Xmx${KAFKA_HEAP:-512m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:TieredStopAtLevel=1 -Xss512k -Djava.awt.headless=true"
	echo "-Dlog4j.configuration=file:$nd/log4j.properties -Dlog4j2.configurationFile=$nd/log4j2.properties -Dkafka.logs.dir=$nd"
}

# storage_tool names the class that formats KRaft storage: kafka.tools.StorageTool
# in 3.x and 4.0/4.1 core, org.apache.kafka.tools.StorageTool where it moved.
# Read from the jar listings: a JVM start per probe costs seconds here.
storage_tool() {
	local c j
	for c in kafka.tools.StorageTool org.apache.kafka.tools.StorageTool; do
		for j in "$lib"/kafka_2.13-*.jar "$lib"/kafka-tools-*.jar "$lib"/kafka-storage-[0-9]*.jar; do
			if [ -f "$j" ] && unzip -Z1 "$j" "${c//.//}.class" >/dev/null 2>&1; then
				echo "$c"
				return
			fi
		done
	done
	die "no StorageTool class in $lib"
}

# cluster_uuid makes a KRaft cluster id like StorageTool random-uuid does:
# 16 random bytes, URL-safe base64 without padding, not starting with "-".
cluster_uuid() {
	local id
	while :; do
		id="$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
		[ "${id:0:1}" != "-" ] && { echo "$id"; return; }
	done
}

start_node_process() {
	local n=$1 nd="$dir/node-$1" pid
	if [ -f "$nd/pid" ] && kill -0 "$(cat "$nd/pid")" 2>/dev/null; then
		die "node $n already running (pid $(cat "$nd/pid"))"
	fi
	# shellcheck disable=SC2046
	setsid java $(java_opts "$n") -cp "$lib/*" kafka.Kafka "$nd/server.properties" \
		>"$nd/stdout.log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$nd/pid"
}

# brokers_listed prints how many brokers the cluster's metadata lists, asked at addr.
brokers_listed() {
	local md
	# shellcheck disable=SC2046
	md="$(kcat $(kcat_args) -L -b "$1" -m 3 -J 2>/dev/null || true)"
	md="${md#*\"brokers\":}"
	md="${md%%\"topics\":*}"
	grep -o '"id"' <<<"$md" | wc -l || true
}

wait_cluster() { # want_brokers [node]
	local want=$1 only=${2:-} deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-90})) n addr got
	command -v kcat >/dev/null || die "kcat not found: apt-get install kcat (scripts/setup.sh does)"
	while :; do
		local ok=1
		for n in $(seq 1 "$brokers"); do
			[ -n "$only" ] && [ "$n" != "$only" ] && continue
			if ! kill -0 "$(cat "$dir/node-$n/pid" 2>/dev/null || echo 0)" 2>/dev/null; then
				tail -20 "$dir/node-$n/server.log" "$dir/node-$n/stdout.log" >&2 2>/dev/null || true
				die "node $n exited during start; logs in $dir/node-$n/"
			fi
			addr="127.0.0.1:$(client_port "$n")"
			got=$(brokers_listed "$addr")
			[ "${got:-0}" -ge "$want" ] || ok=0
		done
		[ $ok = 1 ] && return 0
		if [ $SECONDS -ge $deadline ]; then
			die "cluster in $dir did not list $want broker(s) within ${KAFKA_START_TIMEOUT:-90}s; logs in $dir/node-*/server.log"
		fi
		sleep 0.5
	done
}

case $cmd in
install)
	install
	;;
start)
	need_dir
	case $brokers in 1|3) ;; *) die "--brokers must be 1 or 3" ;; esac
	install
	if [ -f "$dir/cluster.conf" ]; then
		# A stopped cluster starts again on its data, with its own layout.
		load_layout
		for n in $(seq 1 "$brokers"); do
			p="$(cat "$dir/node-$n/pid" 2>/dev/null || true)"
			{ [ -n "$p" ] && kill -0 "$p" 2>/dev/null; } || start_node_process "$n"
		done
		wait_cluster "$brokers"
		echo "kafka.sh: Kafka $version, $brokers node(s) up again; . $dir/kafka.env" >&2
		bootstrap
		exit 0
	fi
	# Another cluster on these ports would answer the readiness check for us.
	for n in $(seq 1 "$brokers"); do
		for p in $(client_port "$n") $(ctrl_port "$n") $([ "$secure" = 1 ] && internal_port "$n"); do
			if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
				die "port $p is in use (another Kafka?): pass --base-port P with P..P+$(($(stride) * brokers - 1)) free"
			fi
		done
	done
	cluster_id="$(cluster_uuid)"
	tool="$(storage_tool)"
	scram=()
	if [ "$secure" = 1 ]; then
		make_tls
		# KRaft keeps SCRAM credentials in the metadata log: they must exist
		# before the first start, so they are written at format time.
		cpw="$(cat "$dir/tls/churnwatch.password")" bpw="$(cat "$dir/tls/broker.password")"
		scram=(--add-scram "SCRAM-SHA-512=[name=churnwatch,password=$cpw]"
			--add-scram "SCRAM-SHA-256=[name=churnwatch,password=$cpw]"
			--add-scram "SCRAM-SHA-512=[name=broker,password=$bpw]")
	fi
	# Format the nodes in parallel: each is a JVM start.
	fpids=()
	for n in $(seq 1 "$brokers"); do
		write_properties "$n"
		java -cp "$lib/*" -XX:TieredStopAtLevel=1 -Xmx256m \
			-Dlog4j.configuration=file:"$dir/node-$n/log4j.properties" -Dlog4j2.configurationFile="$dir/node-$n/log4j2.properties" \
			"$tool" format -t "$cluster_id" -c "$dir/node-$n/server.properties" --ignore-formatted "${scram[@]}" \
			>"$dir/node-$n/format.log" 2>&1 &
		fpids+=($!)
	done
	for i in "${!fpids[@]}"; do
		wait "${fpids[$i]}" || { cat "$dir/node-$((i + 1))/format.log" >&2; die "format node $((i + 1)) failed"; }
	done
	printf 'version=%s\nbrokers=%s\nbase_port=%s\ncluster_id=%s\nsecure=%s\n' "$version" "$brokers" "$base_port" "$cluster_id" "$secure" >"$dir/cluster.conf"
	for n in $(seq 1 "$brokers"); do start_node_process "$n"; done
	wait_cluster "$brokers"
	if [ -n "${KAFKA_WATCH_PID:-}" ]; then
		# The caller (a test binary) may die without stopping us: stop the
		# cluster when it is gone, so no broker outlives its test run.
		setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; "$2" stop --dir "$3"' \
			_ "$KAFKA_WATCH_PID" "$0" "$dir" >/dev/null 2>&1 </dev/null &
	fi
	echo "export CHURNWATCH_KAFKA_BROKERS=$(bootstrap)" >"$dir/kafka.env"
	if [ "$secure" = 1 ]; then
		cat >>"$dir/kafka.env" <<EOF
export CHURNWATCH_KAFKA_TLS_CA=$dir/tls/ca.pem
export CHURNWATCH_KAFKA_TLS_CERT=$dir/tls/client.pem
export CHURNWATCH_KAFKA_TLS_KEY=$dir/tls/client-key.pem
export CHURNWATCH_KAFKA_SASL_MECHANISM=SCRAM-SHA-512
export CHURNWATCH_KAFKA_SASL_USERNAME=churnwatch
export CHURNWATCH_KAFKA_SASL_PASSWORD_FILE=$dir/tls/churnwatch.password
EOF
	fi
	echo "kafka.sh: Kafka $version, $brokers node(s) up; . $dir/kafka.env" >&2
	bootstrap
	;;
stop)
	need_dir
	[ -f "$dir/cluster.conf" ] || exit 0
	load_layout
	pids=()
	for n in $(seq 1 "$brokers"); do
		p="$(cat "$dir/node-$n/pid" 2>/dev/null || true)"
		sig=TERM
		[ $now = 1 ] && sig=KILL
		[ -n "$p" ] && kill -$sig "$p" 2>/dev/null && pids+=("$p")
	done
	deadline=$((SECONDS + 30))
	for p in "${pids[@]}"; do
		while kill -0 "$p" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
		kill -KILL "$p" 2>/dev/null || true
	done
	rm -f "$dir"/node-*/pid
	;;
kill)
	need_dir
	load_layout
	[ -n "$node" ] || die "--node N is required"
	p="$(cat "$dir/node-$node/pid" 2>/dev/null || true)"
	[ -n "$p" ] || die "node $node is not running"
	kill -KILL "$p" 2>/dev/null || true
	while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
	rm -f "$dir/node-$node/pid"
	;;
start-node)
	need_dir
	load_layout
	[ -n "$node" ] || die "--node N is required"
	[ -f "$dir/node-$node/server.properties" ] || die "no node $node in $dir"
	start_node_process "$node"
	wait_cluster "$brokers" "$node"
	;;
status)
	need_dir
	load_layout
	for n in $(seq 1 "$brokers"); do
		p="$(cat "$dir/node-$n/pid" 2>/dev/null || true)"
		if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then s="running (pid $p)"; else s="stopped"; fi
		echo "node $n 127.0.0.1:$(client_port "$n") $s"
	done
	echo "brokers listed: $(brokers_listed "$(bootstrap)") of $brokers (Kafka $version)"
	;;
-h|--help|help)
	usage
	;;
*)
	echo "kafka.sh: unknown command $cmd" >&2
	usage >&2
	exit 2
	;;
esac
