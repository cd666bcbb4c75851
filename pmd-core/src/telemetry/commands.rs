//! The commands and their replies, with DPDK 22.11's keys: what the socket's thread
//! answers itself, and the ethdev commands the main lcore answers from its ports.

use super::{Shared, MAX_CMD_LEN};
use crate::ethdev::{Port, PortState};
use serde_json::{json, Map, Value};

/// The built-in commands and their help (the ethdev ones answered by the main lcore).
pub(super) const BUILTIN: &[(&str, &str)] = &[
    (
        "/",
        "Returns list of available commands, Takes no parameters",
    ),
    (
        "/info",
        "Returns DPDK Telemetry information. Takes no parameters",
    ),
    (
        "/help",
        "Returns help text for a command. Parameters: string command",
    ),
    (
        "/eal/params",
        "Returns EAL commandline parameters used. Takes no parameters",
    ),
    (
        "/eal/app_params",
        "Returns app commandline parameters used. Takes no parameters",
    ),
    (
        "/eal/lcore/list",
        "Returns the list of lcore ids. Takes no parameters",
    ),
    (
        "/mempool/list",
        "Returns list of available mempool. Takes no parameters",
    ),
    (
        "/mempool/info",
        "Returns mempool info. Parameters: pool_name",
    ),
    (
        "/ethdev/list",
        "Returns list of available ethdev ports. Takes no parameters",
    ),
    (
        "/ethdev/stats",
        "Returns the common stats for a port. Parameters: int port_id",
    ),
    (
        "/ethdev/xstats",
        "Returns the extended stats for a port. Parameters: int port_id",
    ),
    (
        "/ethdev/info",
        "Returns the device info for a port. Parameters: int port_id",
    ),
    (
        "/ethdev/link_status",
        "Returns the link status for a port. Parameters: int port_id",
    ),
];

/// Per-queue counters DPDK reports in `/ethdev/stats` (`RTE_ETHDEV_QUEUE_STAT_CNTRS`).
const QUEUE_STAT_CNTRS: usize = 16;

/// Whether `cmd` is a command path: `/`, then letters, digits, `_` and `/`, at most
/// [`MAX_CMD_LEN`] bytes.
pub(super) fn valid_cmd(cmd: &str) -> bool {
    cmd.starts_with('/')
        && cmd.len() <= MAX_CMD_LEN
        && cmd
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'/')
}

/// Who answers a command.
pub(super) enum Answer {
    /// The socket's thread did.
    Now(Option<Value>),
    /// The main lcore must (ethdev and application commands).
    Main,
}

/// The socket thread's answer to `cmd` with `param`.
pub(super) fn answer(sh: &Shared, cmd: &str, param: Option<&str>) -> Answer {
    let none_expected = |v: Value| Answer::Now(param.is_none().then_some(v));
    match cmd {
        "/" => none_expected(json!(super::lock(&sh.commands)
            .keys()
            .cloned()
            .collect::<Vec<_>>())),
        "/info" => none_expected(sh.info.clone()),
        "/help" => Answer::Now(match param {
            None => super::lock(&sh.commands).get("/help").map(|h| json!(h)),
            Some(c) => super::lock(&sh.commands).get(c).map(|h| json!({ c: h })),
        }),
        "/eal/params" => none_expected(json!(sh.eal_params)),
        "/eal/app_params" => none_expected(json!(sh.app_params)),
        "/eal/lcore/list" => none_expected(json!(sh.lcores)),
        "/mempool/list" => none_expected(json!(crate::Mempool::list()
            .iter()
            .map(|p| p.name().to_string())
            .collect::<Vec<_>>())),
        "/mempool/info" => Answer::Now(param.and_then(mempool_info)),
        c if c.starts_with("/ethdev/") => Answer::Main,
        // Only the metrics thread asks for the page.
        super::metrics::SCRAPE_CMD => Answer::Now(None),
        c if super::lock(&sh.app_commands).iter().any(|a| a == c) => Answer::Main,
        _ => Answer::Now(None),
    }
}

/// `/mempool/info,NAME`: DPDK's keys; what has no meaning here (memzones, ops) is 0.
fn mempool_info(name: &str) -> Option<Value> {
    let p = crate::Mempool::list()
        .into_iter()
        .find(|p| p.name() == name)?;
    let st = p.stats();
    let elt = p.element_size();
    Some(json!({
        "name": p.name(),
        "pool_id": 0,
        "flags": 0,
        "socket_id": 0,
        "size": p.size(),
        "cache_size": p.cache_size(),
        "elt_size": elt,
        "header_size": 0,
        "trailer_size": 0,
        "private_data_size": 0,
        "ops_index": 0,
        "populated_size": p.size(),
        "mz_name": format!("MP_{}", p.name()),
        "mz_len": elt * p.size() as usize,
        "mz_hugepage_sz": p.segment().page_size(),
        "mz_socket_id": 0,
        "mz_flags": 0,
        "in_use": st.in_use,
        "available": st.available,
        "alloc_failures": st.alloc_failures,
    }))
}

/// The main lcore's answer to an ethdev command: `None` if `cmd` is not one, else the
/// reply (`Some(None)`: `null`, a missing or wrong port id).
pub fn ethdev_reply(ports: &[Port], cmd: &str, param: Option<&str>) -> Option<Option<Value>> {
    if cmd == super::metrics::SCRAPE_CMD {
        return Some(Some(Value::String(super::metrics::page(ports))));
    }
    if cmd == "/ethdev/list" {
        return Some(
            param
                .is_none()
                .then(|| json!((0..ports.len()).collect::<Vec<_>>())),
        );
    }
    let f: fn(&Port) -> Value = match cmd {
        "/ethdev/stats" => stats,
        "/ethdev/xstats" => xstats,
        "/ethdev/info" => info,
        "/ethdev/link_status" => link_status,
        _ => return None,
    };
    let port = param
        .and_then(|p| p.trim().parse::<usize>().ok())
        .and_then(|id| ports.get(id));
    Some(port.map(f))
}

fn stats(p: &Port) -> Value {
    let s = p.stats();
    let (rx, tx) = p.queue_counters();
    let q = |v: &[crate::ethdev::QueueCounters], f: fn(&crate::ethdev::QueueCounters) -> u64| {
        let mut out = vec![0u64; QUEUE_STAT_CNTRS];
        for (o, c) in out.iter_mut().zip(v) {
            *o = f(c);
        }
        out
    };
    json!({
        "ipackets": s.ipackets,
        "opackets": s.opackets,
        "ibytes": s.ibytes,
        "obytes": s.obytes,
        "imissed": s.imissed,
        "ierrors": s.ierrors,
        "oerrors": s.oerrors,
        "rx_nombuf": s.rx_nombuf,
        "q_ipackets": q(&rx, |c| c.packets),
        "q_opackets": q(&tx, |c| c.packets),
        "q_ibytes": q(&rx, |c| c.bytes),
        "q_obytes": q(&tx, |c| c.bytes),
        "q_errors": q(&rx, |c| c.errors),
    })
}

fn xstats(p: &Port) -> Value {
    Value::Object(
        p.xstats()
            .into_iter()
            .map(|(k, v)| (k, json!(v)))
            .collect::<Map<_, _>>(),
    )
}

fn info(p: &Port) -> Value {
    let (rx, tx) = p.queue_counters();
    let started = p.state() == PortState::Started;
    let configured = !matches!(p.state(), PortState::Probed | PortState::Closed);
    let m = p.mac_addr().0;
    json!({
        "name": p.name(),
        // RTE_ETH_DEV_ATTACHED
        "state": 1,
        "nb_rx_queues": rx.len(),
        "nb_tx_queues": tx.len(),
        "port_id": p.id(),
        "mtu": p.mtu(),
        "rx_mbuf_size_min": p.rx_buf_size_min(),
        "mac_addr": format!(
            "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        ),
        "promiscuous": u8::from(p.promiscuous()),
        "scattered_rx": u8::from(p.rx_offloads().contains(crate::ethdev::RxOffloads::SCATTER)),
        "all_multicast": 1,
        "dev_started": u8::from(started),
        "lro": 0,
        "dev_configured": u8::from(configured),
        "rxq_state": vec![u8::from(started); rx.len()],
        "txq_state": vec![u8::from(started); tx.len()],
        "numa_node": 0,
        "dev_flags": 0,
        "rx_offloads": p.rx_offloads().0,
        "tx_offloads": p.tx_offloads().0,
        "ethdev_rss_hf": 0,
        "driver": p.info().driver,
    })
}

fn link_status(p: &Port) -> Value {
    let l = p.link();
    if !l.up {
        return json!({ "status": "DOWN" });
    }
    json!({
        "status": "UP",
        "speed": l.speed_mbps,
        "duplex": if l.full_duplex { "full-duplex" } else { "half-duplex" },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_paths() {
        for ok in ["/", "/ethdev/stats", "/l2fwd/port_stats", "/a_b/c9"] {
            assert!(valid_cmd(ok), "{ok}");
        }
        let long = format!("/{}", "x".repeat(MAX_CMD_LEN));
        for bad in [
            "",
            "ethdev",
            "/eth dev",
            "/ethdev/stats,0",
            "/é",
            long.as_str(),
        ] {
            assert!(!valid_cmd(bad), "{bad}");
        }
    }

    #[test]
    fn ethdev_commands_without_a_port_are_null() {
        assert_eq!(
            ethdev_reply(&[], "/ethdev/list", None),
            Some(Some(json!([])))
        );
        assert_eq!(ethdev_reply(&[], "/ethdev/stats", Some("0")), Some(None));
        assert_eq!(ethdev_reply(&[], "/ethdev/stats", None), Some(None));
        assert_eq!(ethdev_reply(&[], "/ethdev/stats", Some("x")), Some(None));
        assert_eq!(ethdev_reply(&[], "/ethdev/nothing", Some("0")), None);
    }
}
