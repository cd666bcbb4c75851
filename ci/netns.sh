#!/usr/bin/env bash
# Shared helpers for scripts that build private network namespaces (sourced, not run).
# Everything they create is named with a per-run prefix and removed by ns_cleanup.

NS_CREATED=()

# ns_add NAME: a new namespace with loopback up and IPv6 off (so the kernel stays quiet).
ns_add() {
  ip netns add "$1"
  NS_CREATED+=("$1")
  ip -n "$1" link set lo up
  ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

# ns_veth NS_A IF_A NS_B IF_B [MAC_B]: a veth pair between two namespaces, both ends up.
ns_veth() {
  ip link add "$2" netns "$1" type veth peer name "$4" netns "$3"
  [ -n "${5:-}" ] && ip -n "$3" link set "$4" address "$5"
  ip -n "$1" link set "$2" up
  ip -n "$3" link set "$4" up
}

ns_cleanup() {
  local ns
  for ns in "${NS_CREATED[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  NS_CREATED=()
}
