//! port-filters: asks a port for receive settings through the public API and says, one
//! line each, what the device did with them. On an SR-IOV virtual function every request
//! goes over the mailbox to the physical function's driver, which may refuse it: the
//! refusal is the answer, printed as such.
//!
//! ```text
//! port-filters [EAL options] -- [--port N] [--mtu M] [--mc MAC]... [--vlan ID]...
//!                               [--vlan-remove ID]... [--promisc on|off]
//! port-filters -a 0000:01:10.0 -- --mtu 9000 --mc 01:00:5e:00:00:01 --vlan 100
//! ```
//!
//! Output: `PORT <n> <driver> mac <MAC> link <state>`, then per request `REQUEST <what>
//! OK` or `REQUEST <what> REFUSED <why>`, then the port's xstats as `XSTAT <name>
//! <value>`. Exit code 0 when every request was done, 1 when any was refused, 2 for
//! wrong options.

use clap::{CommandFactory, Parser};
use pmd_core::ethdev::{MacAddr, PortConf, PortId, RxOffloads};
use pmd_core::{Eal, Error, Mempool};
use std::process::ExitCode;

/// Options after `--`.
#[derive(Parser)]
#[command(
    name = "port-filters",
    about = "Requests MTU, multicast, VLAN and promiscuous settings on a port and prints the answers"
)]
struct Opts {
    /// The port to configure.
    #[arg(long, default_value_t = 0)]
    port: PortId,
    /// MTU to set (a VF asks its PF for the frame size).
    #[arg(long)]
    mtu: Option<u16>,
    /// A multicast address to receive (repeat for a list; sent as one list).
    #[arg(long = "mc", value_name = "MAC")]
    mc: Vec<MacAddr>,
    /// A VLAN id to add a filter for (repeatable).
    #[arg(long = "vlan", value_name = "ID")]
    vlan: Vec<u16>,
    /// A VLAN id whose filter to remove (repeatable; after the additions).
    #[arg(long = "vlan-remove", value_name = "ID")]
    vlan_remove: Vec<u16>,
    /// Promiscuous mode to ask for, last.
    #[arg(long, value_parser = ["on", "off"])]
    promisc: Option<String>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let help = || Opts::command().render_help().to_string();
    let parse = |app: &[String]| {
        Opts::try_parse_from(app).map_err(|e| {
            let _ = e.print();
            ExitCode::from(if e.use_stderr() { 2 } else { 0 })
        })
    };
    let (eal, opts) = match Eal::from_args_for_app_checked(&args, pmd_drivers::ALL, help, parse) {
        Ok(v) => v,
        Err(code) => return code,
    };
    match run(eal, &opts) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("port-filters: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// Configures and starts the port, makes the requests; returns how many were refused.
fn run(mut eal: Eal, o: &Opts) -> Result<usize, Error> {
    let n = eal.ports().len();
    if usize::from(o.port) >= n {
        return Err(Error::Config(format!(
            "--port {}: there are {n} ports (give devices with -a or --vdev)",
            o.port
        )));
    }
    let pool = Mempool::create("mbuf_pool", 2047, 64)?;
    let port = eal.port_mut(o.port)?;
    // Scatter where the device has it, so that an MTU above one buffer is possible.
    port.configure(&PortConf {
        rx_offloads: port.info().rx_offload_capa & RxOffloads::SCATTER,
        ..PortConf::default()
    })?;
    let desc = port.info().clamp_desc(256);
    let _rx = port.setup_rx_queue(0, desc, &pool)?;
    let _tx = port.setup_tx_queue(0, desc)?;
    port.start()?;
    println!(
        "PORT {} {} mac {} link {}",
        o.port,
        port.info().driver,
        port.mac_addr(),
        port.link()
    );
    let mut refused = 0;
    let mut report = |what: String, r: Result<(), Error>| match r {
        Ok(()) => println!("REQUEST {what} OK"),
        Err(e) => {
            refused += 1;
            println!("REQUEST {what} REFUSED {e}");
        }
    };
    if let Some(m) = o.mtu {
        report(format!("mtu {m}"), port.set_mtu(m));
    }
    if !o.mc.is_empty() {
        let list: Vec<String> = o.mc.iter().map(ToString::to_string).collect();
        report(
            format!("mc {}", list.join(",")),
            port.set_mc_addr_list(&o.mc),
        );
    }
    for &v in &o.vlan {
        report(format!("vlan-add {v}"), port.vlan_filter(v, true));
    }
    for &v in &o.vlan_remove {
        report(format!("vlan-remove {v}"), port.vlan_filter(v, false));
    }
    if let Some(p) = &o.promisc {
        report(format!("promisc {p}"), port.set_promiscuous(p == "on"));
    }
    for (name, v) in port.xstats() {
        println!("XSTAT {name} {v}");
    }
    port.stop()?;
    Ok(refused)
}
