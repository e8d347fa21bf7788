//! `strata network create/ls/inspect/rm/connect/disconnect/prune` and `strata port`.

use clap::Subcommand;
use strata_runtime::container;
use strata_runtime::network::{manage, ports, records};
use strata_runtime::store::Store;

type R = strata_runtime::Result<()>;

/// `strata network ...`.
#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Create a bridge network.
    Create {
        /// IPv4 subnet in CIDR form (default: the first free 10.89.N.0/24).
        #[arg(long)]
        subnet: Option<String>,
        /// The bridge's address (default: the subnet's first).
        #[arg(long)]
        gateway: Option<String>,
        /// Network name.
        name: String,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Print names only.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print networks as JSON.
    Inspect {
        /// Networks.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove networks.
    #[command(alias = "remove")]
    Rm {
        /// Networks.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Connect a container to a network.
    Connect {
        /// Its address on the network.
        #[arg(long)]
        ip: Option<String>,
        /// Network.
        network: String,
        /// Container.
        container: String,
    },
    /// Disconnect a container from a network.
    Disconnect {
        /// Network.
        network: String,
        /// Container.
        container: String,
    },
    /// Remove every user network no container is on.
    Prune {
        /// Do not ask (strata never asks; accepted as docker's scripts pass it).
        #[arg(short, long)]
        force: bool,
    },
}

/// `strata port CONTAINER [PORT[/PROTO]]`: its published ports, as docker prints them.
pub fn port(store: &Store, container: &str, port: Option<String>) -> R {
    let id = container::resolve(store, container)?;
    let cfg = container::load_config(store, &id)?;
    let want = port.map(|p| {
        if p.contains('/') {
            p
        } else {
            format!("{p}/tcp")
        }
    });
    let lines: Vec<String> = ports::port_lines(&cfg.ports)
        .into_iter()
        .filter(|l| {
            want.as_ref()
                .is_none_or(|w| l.starts_with(&format!("{w} ")))
        })
        .collect();
    if let (Some(w), true) = (&want, lines.is_empty()) {
        return Err(strata_runtime::Error(format!(
            "no public port '{w}' published for {container}"
        )));
    }
    for l in lines {
        outln!("{l}");
    }
    Ok(())
}

/// Run `strata network ...`.
pub fn run(store: &Store, cmd: NetworkCmd) -> R {
    match cmd {
        NetworkCmd::Create {
            subnet,
            gateway,
            name,
        } => {
            let n = manage::create(store, &name, subnet.as_deref(), gateway.as_deref())?;
            outln!("{}", n.id);
        }
        NetworkCmd::Ls { quiet } => {
            if !quiet {
                outln!(
                    "{:<14} {:<20} {:<10} {:<18} CONTAINERS",
                    "NETWORK ID",
                    "NAME",
                    "DRIVER",
                    "SUBNET"
                );
            }
            for n in records::list(store)? {
                if quiet {
                    outln!("{}", n.name);
                    continue;
                }
                outln!(
                    "{:<14} {:<20} {:<10} {:<18} {}",
                    &n.id[..12],
                    n.name,
                    "bridge",
                    n.subnet,
                    n.members.len()
                );
            }
        }
        NetworkCmd::Inspect { names } => {
            let mut out = Vec::new();
            for name in names {
                let n = records::load(store, &name)?
                    .ok_or_else(|| strata_runtime::Error(format!("network {name} not found")))?;
                let members: serde_json::Map<String, serde_json::Value> = n
                    .members
                    .iter()
                    .map(|(id, ip)| {
                        let cname = container::load_config(store, id)
                            .map(|c| c.name)
                            .unwrap_or_default();
                        (
                            id.clone(),
                            serde_json::json!({"Name": cname, "IPv4Address": format!("{ip}/{}", n.prefix())}),
                        )
                    })
                    .collect();
                out.push(serde_json::json!({
                    "Name": n.name,
                    "Id": n.id,
                    "Created": strata_runtime::util::rfc3339(n.created),
                    "Driver": "bridge",
                    "Bridge": n.bridge,
                    "IPAM": {"Config": [{"Subnet": n.subnet, "Gateway": n.gateway}]},
                    "Containers": members,
                }));
            }
            outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        }
        NetworkCmd::Rm { names } => {
            for n in names {
                manage::remove(store, &n)?;
                outln!("{n}");
            }
        }
        NetworkCmd::Connect {
            ip,
            network,
            container,
        } => {
            manage::connect(store, &network, &container, ip.as_deref())?;
        }
        NetworkCmd::Disconnect { network, container } => {
            manage::disconnect(store, &network, &container)?;
        }
        NetworkCmd::Prune { force: _ } => {
            for n in manage::prune(store)? {
                outln!("{n}");
            }
        }
    }
    Ok(())
}
