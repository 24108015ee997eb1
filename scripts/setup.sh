#!/usr/bin/env bash
# Installs what churnwatch's tests, demo and lint need, idempotently:
#   Debian packages: redis-server (tests start real ones), kcat (a second,
#   independent Kafka client), docker-compose (compose file validation only),
#   prometheus (for promtool), a JDK 17 and Maven when missing (real Kafka);
#   Apache Kafka's jars from Maven Central into .tools/kafka/ (scripts/kafka.sh
#   install; the real-Kafka tests start brokers from them);
#   Go tools, pinned, into .tools/bin: buf, protoc-gen-go, protoc-gen-go-grpc,
#   staticcheck, grpcurl;
#   for the console (services/console/web): Debian's chromium (the browser
#   tests drive it headless; Playwright's own browser downloads cannot be
#   reached here) and the app's npm packages (npm ci, skipped when
#   node_modules already matches package-lock.json).
# Usage: scripts/setup.sh [--no-apt] [--no-tools] [--no-kafka] [--no-console]
set -euo pipefail
cd "$(dirname "$0")/.."

apt=1 tools=1 kafka=1 console=1
for a in "$@"; do
	case $a in
	--no-apt) apt=0 ;;
	--no-tools) tools=0 ;;
	--no-kafka) kafka=0 ;;
	--no-console) console=0 ;;
	*) echo "usage: $0 [--no-apt] [--no-tools] [--no-kafka] [--no-console]" >&2; exit 2 ;;
	esac
done

if [ $apt = 1 ]; then
	need=()
	command -v redis-server >/dev/null || need+=(redis-server)
	command -v kcat >/dev/null || need+=(kcat)
	command -v docker-compose >/dev/null || need+=(docker-compose)
	command -v promtool >/dev/null || need+=(prometheus)
	if [ $kafka = 1 ]; then
		command -v java >/dev/null || need+=(openjdk-17-jre-headless)
		command -v mvn >/dev/null || need+=(maven)
		command -v unzip >/dev/null || need+=(unzip)
	fi
	if [ $console = 1 ]; then
		[ -x /usr/bin/chromium ] || need+=(chromium fonts-dejavu-core)
	fi
	if [ ${#need[@]} -gt 0 ]; then
		sudo=""
		[ "$(id -u)" = 0 ] || sudo="sudo"
		echo "setup: installing ${need[*]} with apt" >&2
		$sudo apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
		# The Debian packages start system services; churnwatch starts its own.
		$sudo systemctl disable --now redis-server prometheus >/dev/null 2>&1 || true
	fi
fi

if [ $tools = 1 ]; then
	bin="$PWD/.tools/bin"
	mkdir -p "$bin"
	install_tool() { # name module@version
		local stamp="$bin/.$1.$(echo "$2" | tr '/@' '__')"
		if [ ! -x "$bin/$1" ] || [ ! -f "$stamp" ]; then
			echo "setup: go install $2" >&2
			GOBIN="$bin" GOFLAGS=-mod=mod GOWORK=off go install "$2"
			rm -f "$bin/.$1."* && touch "$stamp"
		fi
	}
	install_tool protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	install_tool protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
	install_tool buf github.com/bufbuild/buf/cmd/buf@v1.75.0
	install_tool staticcheck honnef.co/go/tools/cmd/staticcheck@v0.8.2
	install_tool grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4
fi

if [ $kafka = 1 ]; then
	scripts/kafka.sh install
fi

if [ $console = 1 ]; then
	web=services/console/web
	if ! command -v npm >/dev/null || ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; then
		echo "setup: the console needs Node.js >= 20.19 with npm (found: $(node --version 2>/dev/null || echo none)); install it, then run scripts/setup.sh again" >&2
		exit 1
	fi
	# npm ci wipes node_modules; skip it when the tree installed is the locked one.
	lock=$(sha256sum $web/package-lock.json | cut -d' ' -f1)
	if [ "$(cat $web/node_modules/.churnwatch-lock 2>/dev/null)" != "$lock" ]; then
		echo "setup: npm ci in $web" >&2
		(cd $web && npm ci --no-audit --no-fund --loglevel=error)
		echo "$lock" >$web/node_modules/.churnwatch-lock
	fi
fi
