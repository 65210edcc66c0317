#!/usr/bin/env bash
# The live lab: three network namespaces, client -- nva -- server, joined by
# two veth pairs on ONE layer-2 segment (the appliance is a transparent bump
# in the wire). The middle namespace has no addresses and no forwarding, so
# client and server reach each other only through whatever is attached to
# both middle interfaces: nsgd, a plain Linux bridge, or a bridge with
# br_netfilter and the nftables ruleset scripts/lab-nft.nft.
#
#   $LAB-client  c0 10.20.1.10/16 fd00:20:0:1::10/48
#        |
#   $LAB-nva     n0 ... n1        (no addresses, no IPv6, no forwarding)
#        |
#   $LAB-server  s0 10.20.2.20/16 fd00:20:0:2::20/48
#
# Usage (as root, from anywhere; relative paths are taken from the repository):
#   scripts/lab.sh up nsgd [--start]   topology only; --start also runs
#                                      `nsgd run configs/live-lab.yaml --port n0 --port n1`
#                                      in $LAB-nva, pinned to CPU 1
#   scripts/lab.sh up bridge           Linux bridge br0 in the middle, no filtering
#   scripts/lab.sh up bridge-nft       the bridge + br_netfilter + scripts/lab-nft.nft
#   scripts/lab.sh down                remove the lab (idempotent)
#   scripts/lab.sh status              namespaces and interface counters
#   scripts/lab.sh bench               measure every mode, print a Markdown table
#
# Environment: LAB (name prefix, default nsgdlab), NSGD, LAB_LOAD (binaries),
# NSGD_ARGS (more options for `nsgd run`),
# BENCH_SECONDS (per measurement, default 10), BENCH_MODES (default
# "nsgd bridge-nft bridge"), NSGD_START_TIMEOUT (seconds),
# NVA_RPS (default 1: steer the middle's receive processing to the
# appliance's CPU with RPS) and ENDS_RPS (default 1: steer the client's and
# server's receive processing to their own CPU); see steer_rps. NVA_GRO=1
# instead runs the middle's receive in threaded NAPI with GRO, pinned to
# the appliance's CPU; see middle_gro. ENDS_NAPI=1 does the same for the
# client's and server's ports, pinned to their CPU; see ends_napi.
# VETH_NAPI=1 gives all four ports threaded NAPI without GRO (an XDP_PASS
# program, built with llc); see veth_napi.
set -euo pipefail
shopt -s inherit_errexit

cd "$(dirname "${BASH_SOURCE[0]}")/.."

LAB=${LAB:-nsgdlab}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
# Binaries given by the caller are used as they are; the defaults are
# rebuilt before a bench, so it never measures a stale build.
BINARIES_GIVEN=${NSGD:+1}${LAB_LOAD:+1}
NSGD=${NSGD:-$TARGET_DIR/release/nsgd}
LAB_LOAD=${LAB_LOAD:-$TARGET_DIR/release/examples/lab_load}
NSGD_CONFIG=${NSGD_CONFIG:-configs/live-lab.yaml}
NSGD_START_TIMEOUT=${NSGD_START_TIMEOUT:-20}
BENCH_SECONDS=${BENCH_SECONDS:-10}
NVA_RPS=${NVA_RPS:-1}
ENDS_RPS=${ENDS_RPS:-1}
NVA_GRO=${NVA_GRO:-0}
ENDS_NAPI=${ENDS_NAPI:-0}
VETH_NAPI=${VETH_NAPI:-0}
XDP_PASS_SOURCE=scripts/xdp-pass.ll
XDP_PASS_OBJECT=${TMPDIR:-/tmp}/$LAB-xdp-pass.o
NFT_RULESET=scripts/lab-nft.nft

NS_CLIENT=$LAB-client
NS_NVA=$LAB-nva
NS_SERVER=$LAB-server
NSGD_PID_FILE=/run/$LAB-nsgd.pid
NSGD_LOG=/tmp/$LAB-nsgd.log

CLIENT4=10.20.1.10/16
CLIENT6=fd00:20:0:1::10/48
SERVER_IP=10.20.2.20
SERVER4=$SERVER_IP/16
SERVER6=fd00:20:0:2::20/48

# The traffic ends share CPU 0; the appliance gets CPU 1.
ENDS_CPU=0
APPLIANCE_CPU=1

log() { printf 'lab: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}
in_ns() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}
ns_exists() { ip netns list | awk '{print $1}' | grep -qxF -- "$1"; }
need() {
	local tool
	for tool in "$@"; do
		command -v "$tool" >/dev/null || die "$tool is not installed"
	done
}

# ---------------------------------------------------------------- down

# Stops the nsgd started by `up nsgd --start`, if it is still that process.
stop_nsgd() {
	[ -f "$NSGD_PID_FILE" ] || return 0
	local pid
	pid=$(cat "$NSGD_PID_FILE" 2>/dev/null || true)
	if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = nsgd ]; then
		kill "$pid" 2>/dev/null || true
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			[ -d "/proc/$pid" ] || break
			sleep 0.2
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$NSGD_PID_FILE"
}

# Kills whatever still runs inside one of the lab's namespaces (servers left
# by an interrupted bench), then deletes the namespace; never fails.
remove_ns() {
	local ns=$1 pids
	ns_exists "$ns" || return 0
	pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ' || true)
	if [ -n "${pids// /}" ]; then
		# shellcheck disable=SC2086 # a list of pids
		kill $pids 2>/dev/null || true
		sleep 0.3
		# shellcheck disable=SC2086
		kill -KILL $pids 2>/dev/null || true
	fi
	ip netns del "$ns" 2>/dev/null || true
}

lab_down() {
	stop_nsgd
	remove_ns "$NS_CLIENT"
	remove_ns "$NS_NVA"
	remove_ns "$NS_SERVER"
	# The XDP_PASS programs went with the veths; the object file stays no
	# longer than the lab.
	rm -f "$XDP_PASS_OBJECT"
}

# ---------------------------------------------------------------- up

offloads_off() {
	# Checksum offload off: frames forwarded byte for byte carry valid
	# checksums. TSO/GSO/GRO off: nothing bigger than the MTU reaches the
	# appliance.
	in_ns "$1" ethtool -K "$2" tso off gso off gro off tx off rx off >/dev/null
}

make_topology() {
	local ns
	for ns in "$NS_CLIENT" "$NS_NVA" "$NS_SERVER"; do
		ip netns add "$ns"
		ip -n "$ns" link set lo up
	done
	# The ends: no DAD delays, no router solicitations (nothing answers).
	for ns in "$NS_CLIENT" "$NS_SERVER"; do
		in_ns "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
			net.ipv6.conf.default.router_solicitations=0
	done
	# The middle: no addresses of its own (IPv6 off, so no link-local
	# address, RS or MLD either) and no kernel forwarding.
	in_ns "$NS_NVA" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 \
		net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0

	ip -n "$NS_CLIENT" link add c0 mtu 1500 type veth peer name n0 mtu 1500 netns "$NS_NVA"
	ip -n "$NS_SERVER" link add s0 mtu 1500 type veth peer name n1 mtu 1500 netns "$NS_NVA"
	offloads_off "$NS_CLIENT" c0
	offloads_off "$NS_NVA" n0
	offloads_off "$NS_NVA" n1
	offloads_off "$NS_SERVER" s0

	ip -n "$NS_CLIENT" addr add "$CLIENT4" dev c0
	ip -n "$NS_CLIENT" addr add "$CLIENT6" dev c0 nodad
	ip -n "$NS_SERVER" addr add "$SERVER4" dev s0
	ip -n "$NS_SERVER" addr add "$SERVER6" dev s0 nodad
}

links_up() {
	ip -n "$NS_NVA" link set n0 up
	ip -n "$NS_NVA" link set n1 up
	ip -n "$NS_CLIENT" link set c0 up
	ip -n "$NS_SERVER" link set s0 up
}

# NVA_GRO=1: GRO on the middle's two ports. A veth with GRO on receives in
# its own NAPI context instead of the sender's backlog; threaded NAPI runs
# that context as a kernel thread, pinned here to the appliance's CPU, so
# the middle's receive work (and its GRO merging) lands there without RPS.
# The wire still carries frames of at most 1514 bytes: the ends keep their
# offloads off, and whatever forwards in the middle must cut aggregates
# back into frames (the kernel bridge does; so does nsgd).
middle_gro() {
	[ "$NVA_GRO" = 1 ] || return 0
	local port
	for port in n0 n1; do
		in_ns "$NS_NVA" ethtool -K "$port" gro on >/dev/null
		in_ns "$NS_NVA" sh -c "echo 1 > /sys/class/net/$port/threaded"
	done
	pin_napi_threads '^napi/n[01]-' "$APPLIANCE_CPU"
}

# ENDS_NAPI=1: the same for the client's and the server's ports (c0, s0),
# pinned to their CPU instead of RPS: frames sent to an end queue on its
# veth and a NAPI thread takes them in polls of up to 64, woken only when
# it has gone idle, where RPS needs an interrupt whenever the end's
# backlog has just been emptied.
ends_napi() {
	[ "$ENDS_NAPI" = 1 ] || return 0
	in_ns "$NS_CLIENT" ethtool -K c0 gro on >/dev/null
	in_ns "$NS_CLIENT" sh -c "echo 1 > /sys/class/net/c0/threaded"
	in_ns "$NS_SERVER" ethtool -K s0 gro on >/dev/null
	in_ns "$NS_SERVER" sh -c "echo 1 > /sys/class/net/s0/threaded"
	pin_napi_threads '^napi/[cs]0-' "$ENDS_CPU"
}

# VETH_NAPI=1: threaded NAPI on every port, with offloads left off. A veth
# receives in NAPI only with GRO on or an XDP program attached; an XDP
# program that passes every frame gives NAPI without merging, so every hop
# carries the frames as sent, as on a NIC whose driver polls its ring.
# The ends' threads run on their CPU, the middle's on the appliance's.
# `nsgd run --rx xdp` brings its own program to n0 and n1 (a second one
# would be refused), so there the middle's threads are set up once nsgd
# has attached: see veth_napi_middle.
veth_napi() {
	[ "$VETH_NAPI" = 1 ] || return 0
	need llc
	[ "$NVA_GRO$ENDS_NAPI" = 00 ] || die "VETH_NAPI=1 replaces NVA_GRO and ENDS_NAPI: set one of them"
	llc -march=bpf -filetype=obj "$XDP_PASS_SOURCE" -o "$XDP_PASS_OBJECT"
	in_ns "$NS_CLIENT" ip link set dev c0 xdpdrv obj "$XDP_PASS_OBJECT" sec xdp
	in_ns "$NS_SERVER" ip link set dev s0 xdpdrv obj "$XDP_PASS_OBJECT" sec xdp
	in_ns "$NS_CLIENT" sh -c "echo 1 > /sys/class/net/c0/threaded"
	in_ns "$NS_SERVER" sh -c "echo 1 > /sys/class/net/s0/threaded"
	pin_napi_threads '^napi/[cs]0-' "$ENDS_CPU"
	if [ "$1" != nsgd ] || ! nsgd_attaches_xdp; then
		in_ns "$NS_NVA" ip link set dev n0 xdpdrv obj "$XDP_PASS_OBJECT" sec xdp
		in_ns "$NS_NVA" ip link set dev n1 xdpdrv obj "$XDP_PASS_OBJECT" sec xdp
		veth_napi_middle
	fi
}

veth_napi_middle() {
	[ "$VETH_NAPI" = 1 ] || return 0
	in_ns "$NS_NVA" sh -c "echo 1 > /sys/class/net/n0/threaded; echo 1 > /sys/class/net/n1/threaded"
	pin_napi_threads '^napi/n[01]-' "$APPLIANCE_CPU"
}

nsgd_attaches_xdp() {
	[[ " ${NSGD_ARGS:-} " =~ [[:space:]]--rx(=|[[:space:]]+)xdp[[:space:]] ]]
}

# Kernel threads are named napi/DEVICE-ID; every lab pins its own the same
# way, so pinning them all is safe.
pin_napi_threads() {
	local pattern=$1 cpu=$2 pid
	for pid in $(pgrep "$pattern" || true); do
		taskset -pc "$cpu" "$pid" >/dev/null
	done
}

make_bridge() {
	ip -n "$NS_NVA" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
	ip -n "$NS_NVA" link set n0 master br0
	ip -n "$NS_NVA" link set n1 master br0
	ip -n "$NS_NVA" link set br0 up
}

# Kernel forwarding on veth runs in softirq on the core that raised it: with
# no NAPI, a veth transmit queues the frame to the peer on the SENDING core's
# backlog, so by default the bridge and nftables work of the kernel modes
# lands on CPU 0 with the traffic ends, and taskset cannot move it. RPS on the
# middle's two ports moves that receive processing (bridge, br_netfilter,
# nftables, conntrack; and AF_PACKET delivery in nsgd mode) to the
# appliance's core instead, which is the fairer comparison with a pinned nsgd.
# The same holds at the ends: whatever transmits into c0 or s0 (the bridge,
# or nsgd's send) would run the client's or server's whole receive path
# (TCP included) on its own core. RPS on c0 and s0 keeps that work on the
# ends' core, as a real NIC's interrupt on the ends' machine would.
steer_rps() {
	local mask port
	if [ "$NVA_RPS" = 1 ] && [ "$NVA_GRO" != 1 ] && [ "$VETH_NAPI" != 1 ]; then
		mask=$(printf '%x' $((1 << APPLIANCE_CPU)))
		for port in n0 n1; do
			in_ns "$NS_NVA" sh -c "echo $mask > /sys/class/net/$port/queues/rx-0/rps_cpus"
		done
	fi
	if [ "$ENDS_RPS" = 1 ] && [ "$ENDS_NAPI" != 1 ] && [ "$VETH_NAPI" != 1 ]; then
		mask=$(printf '%x' $((1 << ENDS_CPU)))
		in_ns "$NS_CLIENT" sh -c "echo $mask > /sys/class/net/c0/queues/rx-0/rps_cpus"
		in_ns "$NS_SERVER" sh -c "echo $mask > /sys/class/net/s0/queues/rx-0/rps_cpus"
	fi
}

start_nsgd() {
	[ -x "$NSGD" ] || die "no nsgd binary at $NSGD (cargo build --release --bin nsgd, or set NSGD)"
	: >"$NSGD_LOG"
	# A simple command (no function) in the background: ip netns exec and
	# taskset exec in turn, so $! is nsgd's own pid.
	# shellcheck disable=SC2086 # NSGD_ARGS is a list of options
	ip netns exec "$NS_NVA" taskset -c "$APPLIANCE_CPU" "$NSGD" run "$NSGD_CONFIG" --port n0 --port n1 \
		${NSGD_ARGS:-} >"$NSGD_LOG" 2>&1 &
	echo "$!" >"$NSGD_PID_FILE"
	local pid=$! waited=0
	until grep -qw forwarding "$NSGD_LOG"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 20 "$NSGD_LOG" >&2 || true
			die "nsgd exited before forwarding (log: $NSGD_LOG)"
		fi
		if [ "$waited" -ge $((NSGD_START_TIMEOUT * 10)) ]; then
			tail -n 20 "$NSGD_LOG" >&2 || true
			die "nsgd did not report forwarding within ${NSGD_START_TIMEOUT}s (log: $NSGD_LOG)"
		fi
		sleep 0.1
		waited=$((waited + 1))
	done
	log "nsgd forwarding (pid $pid, CPU $APPLIANCE_CPU, log $NSGD_LOG)"
}

# lab_up MODE [--start]; starts from a clean slate, so running it twice is fine.
lab_up() {
	local mode=${1:-} start=${2:-}
	case "$mode" in
	nsgd | bridge | bridge-nft) ;;
	*) die "up: MODE must be nsgd, bridge or bridge-nft" ;;
	esac
	if [ -n "$start" ] && { [ "$start" != --start ] || [ "$mode" != nsgd ]; }; then
		die "up: only 'up nsgd' takes --start"
	fi
	need ip ethtool taskset
	if [ "$mode" = bridge-nft ]; then need nft; fi
	lab_down
	make_topology
	case "$mode" in
	nsgd) ;;
	bridge) make_bridge ;;
	bridge-nft)
		# br_netfilter hands bridged IPv4/IPv6 to the inet hooks. Load the
		# ruleset first so there is no unfiltered moment.
		[ -d /proc/sys/net/bridge ] || die "br_netfilter is not loaded (no /proc/sys/net/bridge)"
		in_ns "$NS_NVA" nft -f "$NFT_RULESET"
		in_ns "$NS_NVA" sysctl -qw net.bridge.bridge-nf-call-iptables=1 \
			net.bridge.bridge-nf-call-ip6tables=1
		make_bridge
		;;
	esac
	steer_rps
	links_up
	middle_gro
	ends_napi
	veth_napi "$mode"
	if [ "$start" = --start ]; then
		start_nsgd
		if nsgd_attaches_xdp; then veth_napi_middle; fi
	fi
	log "up ($mode): $NS_CLIENT -- $NS_NVA -- $NS_SERVER"
}

# ---------------------------------------------------------------- status

lab_status() {
	local ns found=0
	for ns in "$NS_CLIENT" "$NS_NVA" "$NS_SERVER"; do
		if ns_exists "$ns"; then
			found=1
			echo "== $ns (pids: $(ip netns pids "$ns" | tr '\n' ' '))"
			ip -n "$ns" -s link show
		else
			echo "== $ns: absent"
		fi
	done
	if [ -f "$NSGD_PID_FILE" ]; then
		echo "== nsgd pid $(cat "$NSGD_PID_FILE") (log $NSGD_LOG)"
	fi
	[ "$found" = 1 ] || echo "lab $LAB is down"
}

# ---------------------------------------------------------------- bench

BG_PIDS=()

# Starts a server on the ends' CPU inside a namespace, in the background.
serve() {
	local ns=$1
	shift
	# Not through in_ns: a function would fork a subshell and $! would be
	# that shell's pid, not the server's.
	ip netns exec "$ns" taskset -c "$ENDS_CPU" "$@" >/dev/null 2>&1 &
	BG_PIDS+=("$!")
}

stop_servers() {
	local pid
	for pid in "${BG_PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	BG_PIDS=()
}

wait_listening() { # NS PROTO(t|u) PORT
	local _
	for _ in $(seq 50); do
		if [ -n "$(in_ns "$1" ss -Hln"$2" "sport = :$3")" ]; then
			return 0
		fi
		sleep 0.1
	done
	die "nothing listens on $2 port $3 in $1"
}

# Waits until the client resolves and reaches the server (TCP 8080 is
# allowed in every mode; a refused connection still proves the path).
wait_path() {
	local _
	for _ in $(seq 30); do
		if in_ns "$NS_CLIENT" ping -c 1 -W 1 "$SERVER_IP" >/dev/null 2>&1; then
			return 0
		fi
	done
	die "client cannot ping the server"
}

# Runs a client on the ends' CPU in the client namespace, bounded in time:
# iperf3 waits forever for its control messages if the path dies mid-test.
client() {
	in_ns "$NS_CLIENT" timeout -k 5 $((BENCH_SECONDS + 30)) taskset -c "$ENDS_CPU" "$@"
}

cpu_ticks() { # PID -> utime+stime in clock ticks
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}

tx_packets() { # sum of tx_packets on n0 and n1
	in_ns "$NS_NVA" cat /sys/class/net/n0/statistics/tx_packets /sys/class/net/n1/statistics/tx_packets |
		awk '{ s += $1 } END { print s }'
}

softirq_ticks() { # "cpu0 cpu1" softirq jiffies from /proc/stat
	awk '$1 == "cpu0" || $1 == "cpu1" { printf "%s ", $8 }' /proc/stat
}

# Reads iperf3 -J output on stdin; prints bits per second and bits received.
iperf_tcp_figure() {
	python3 -c '
import json, sys
r = json.load(sys.stdin)["end"]["sum_received"]
print(r["bits_per_second"], r["bytes"] * 8)
'
}

# UDP datagrams that reached the server's UDP layer, delivered or not:
# InDatagrams + NoPorts + InErrors (which counts RcvbufErrors).
udp_arrived() {
	# shellcheck disable=SC2016 # awk's own fields, not shell variables
	in_ns "$NS_SERVER" awk '/^Udp:/ && $2 ~ /^[0-9]/ { print $2 + $3 + $4 }' /proc/net/snmp
}

# Measures the lab that is up; sets ROW to its Markdown table row.
ROW=
measure() {
	local mode=$1 pid=${2:-} json tcp_gbps="fail" udp_kpps="fail" conns="fail" cpu="n/a"
	local t0 t1 p0 p1 si0 si1 bps bits received secs tcp_cpu_s="" udp_ns=""
	local hz
	hz=$(getconf CLK_TCK)
	serve "$NS_SERVER" iperf3 -s -p 5201
	serve "$NS_SERVER" "$LAB_LOAD" accept 0.0.0.0:9100
	serve "$NS_SERVER" "$LAB_LOAD" udp-sink 0.0.0.0:9000
	wait_listening "$NS_SERVER" t 5201
	wait_listening "$NS_SERVER" t 9100
	wait_listening "$NS_SERVER" u 9000
	wait_path

	# TCP throughput, one stream.
	if [ -n "$pid" ]; then t0=$(cpu_ticks "$pid"); fi
	if json=$(client iperf3 -c "$SERVER_IP" -t "$BENCH_SECONDS" -J); then
		read -r bps bits < <(iperf_tcp_figure <<<"$json")
		tcp_gbps=$(awk -v b="$bps" 'BEGIN { printf "%.2f", b / 1e9 }')
		if [ -n "$pid" ]; then
			t1=$(cpu_ticks "$pid")
			tcp_cpu_s=$(awk -v t="$((t1 - t0))" -v hz="$hz" -v bits="$bits" \
				'BEGIN { printf "%.2f", (t / hz) / (bits / 1e9) }')
		fi
	else
		log "$mode: TCP iperf3 failed"
	fi

	# 64-byte frames: 18 bytes of UDP payload + 8 UDP + 20 IPv4 + 14 Ethernet
	# = 60, + 4 FCS = 64, flooded by lab_load (iperf3's one write per
	# datagram tops out near 130 kpps here). Counted where they arrive: the
	# server's UDP layer.
	if [ -n "$pid" ]; then
		t0=$(cpu_ticks "$pid")
		p0=$(tx_packets)
	fi
	si0=$(softirq_ticks)
	local arrived0 arrived1 flood sent
	arrived0=$(udp_arrived)
	if flood=$(client "$LAB_LOAD" udp-flood "$SERVER_IP:9000" "$BENCH_SECONDS" 18); then
		si1=$(softirq_ticks)
		arrived1=$(udp_arrived)
		received=$((arrived1 - arrived0))
		secs=$(sed -n 's/.* seconds=\([0-9.]*\) .*/\1/p' <<<"$flood")
		sent=$(sed -n 's/^sent=\([0-9]*\) .*/\1/p' <<<"$flood")
		log "$mode: $flood arrived=$received"
		udp_kpps=$(awk -v n="$received" -v s="$secs" -v t="$sent" \
			'BEGIN { printf "%.0f (of %.0f sent)", n / s / 1e3, t / s / 1e3 }')
		if [ -n "$pid" ]; then
			t1=$(cpu_ticks "$pid")
			p1=$(tx_packets)
			udp_ns=$(awk -v t="$((t1 - t0))" -v hz="$hz" -v p="$((p1 - p0))" \
				'BEGIN { if (p > 0) printf "%.0f", t / hz * 1e9 / p; else print "n/a" }')
		fi
	else
		log "$mode: UDP flood failed"
	fi

	# New TCP connections per second.
	local out
	if out=$(client "$LAB_LOAD" connect "$SERVER_IP:9100" "$BENCH_SECONDS"); then
		log "$mode: $out"
		conns=$(sed -n 's/.* rate=\([0-9]*\)\/s.*/\1/p' <<<"$out")
	else
		log "$mode: lab_load connect failed"
	fi
	stop_servers

	if [ -n "$pid" ]; then
		cpu="${tcp_cpu_s:-?} CPU-s/Gbit; ${udp_ns:-?} ns/forwarded pkt"
	elif [ -n "${si1:-}" ]; then
		# Kernel forwarding runs in softirq, which taskset cannot pin (see
		# steer_rps): show where it landed during the UDP flood.
		cpu=$(awk -v a="$si0" -v b="$si1" -v s="$BENCH_SECONDS" -v hz="$hz" 'BEGIN {
			split(a, x, " "); split(b, y, " ")
			printf "softirq during UDP flood: cpu0 %.0f%%, cpu1 %.0f%%",
				100 * (y[1] - x[1]) / hz / s, 100 * (y[2] - x[2]) / hz / s }')
	fi
	ROW="| $mode | $tcp_gbps | $udp_kpps | $conns | $cpu |"
}

lab_bench() {
	need ip ethtool taskset iperf3 python3 nft ss ping
	if [ -z "$BINARIES_GIVEN" ]; then
		if command -v cargo >/dev/null; then
			log "building nsgd and lab_load (release; quick when up to date)"
			cargo build --release --bin nsgd --example lab_load
		elif [ -x "$NSGD" ] && [ -x "$LAB_LOAD" ]; then
			log "no cargo on PATH: measuring the existing $NSGD, which may be older than the sources"
		else
			die "no cargo on PATH to build $NSGD and $LAB_LOAD (or set NSGD and LAB_LOAD)"
		fi
	fi
	local rows=() mode
	for mode in ${BENCH_MODES:-nsgd bridge-nft bridge}; do
		log "bench: $mode (${BENCH_SECONDS}s per measurement)"
		if [ "$mode" = nsgd ]; then
			if ! "$NSGD" run --help >/dev/null 2>&1; then
				log "bench: '$NSGD run' is not available; nsgd row is n/a"
				rows+=("| nsgd | n/a | n/a | n/a | n/a |")
				continue
			fi
			lab_up nsgd --start
			measure nsgd "$(cat "$NSGD_PID_FILE")"
		else
			lab_up "$mode"
			measure "$mode"
		fi
		rows+=("$ROW")
		lab_down
	done
	echo
	local where="kernel forwarding runs in softirq on the sending core, CPU $ENDS_CPU"
	if [ "$NVA_GRO" = 1 ]; then
		where="the middle's receive (with GRO) runs in threaded NAPI pinned to CPU $APPLIANCE_CPU"
	elif [ "$NVA_RPS" = 1 ]; then
		where="RPS steers the middle's receive processing to CPU $APPLIANCE_CPU"
	fi
	if [ "$ENDS_NAPI" = 1 ]; then
		where="$where; the ends' receive (with GRO) runs in threaded NAPI pinned to CPU $ENDS_CPU"
	fi
	if [ "$VETH_NAPI" = 1 ]; then
		where="every port receives in threaded NAPI without GRO (XDP_PASS), the middle's pinned to CPU $APPLIANCE_CPU and the ends' to CPU $ENDS_CPU"
	fi
	echo "Single run per cell, ${BENCH_SECONDS}s each; client and server on CPU $ENDS_CPU," \
		"nsgd pinned to CPU $APPLIANCE_CPU; $where (NVA_GRO=$NVA_GRO, NVA_RPS=$NVA_RPS, ENDS_RPS=$ENDS_RPS, ENDS_NAPI=$ENDS_NAPI, VETH_NAPI=$VETH_NAPI)."
	echo
	echo "| path | TCP Gbit/s | 64-B UDP kpps received (sent) | new TCP conn/s | appliance CPU |"
	echo "| --- | --- | --- | --- | --- |"
	printf '%s\n' "${rows[@]}"
}

# ---------------------------------------------------------------- main

on_exit() {
	local status=$?
	# Tear down before saying so: if stderr is a pipe whose reader is gone
	# (Ctrl-C on `lab.sh bench | tee`), a message would end the script first.
	trap '' PIPE
	stop_servers
	if [ "$status" -ne 0 ]; then
		lab_down
		log "failed (exit $status): lab torn down" 2>/dev/null || true
	fi
}

main() {
	[ "$(id -u)" = 0 ] || die "run as root (network namespaces)"
	local command=${1:-}
	shift || true
	trap 'exit 130' INT
	trap 'exit 143' TERM
	case "$command" in
	up)
		trap on_exit EXIT
		lab_up "$@"
		;;
	down) lab_down ;;
	status) lab_status ;;
	bench)
		trap 'on_exit; lab_down' EXIT
		lab_bench
		;;
	*)
		sed -n '/^# Usage/,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$0" >&2
		exit 2
		;;
	esac
}

main "$@"
