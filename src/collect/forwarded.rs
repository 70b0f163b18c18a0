//! Forwarded ports: every watched port that the kernel sends elsewhere, so
//! that something answers on it although nothing (or only a stand-in)
//! listens there. Joins what the kernel readers returned with the labelled
//! listeners and the watch set into `unassigned_port_forwarded_ports`
//! series.
//!
//! Two mechanisms:
//!
//! - NAT rules (`mechanism="redirect"` or `"dnat"`), per namespace
//!   (`crate::kernel::nftables`). A redirect goes to the same namespace; a
//!   DNAT's `to_netns` is the namespace whose interfaces hold `to_address`
//!   (found among the namespaces read; "" when none or several do, e.g. an
//!   address on another host), and its `container_id` that namespace's
//!   container, as its listeners' and processes' owners say.
//! - Port holders of container runtimes (`mechanism="holder"`): a process
//!   that listens on the host port for a container so nothing else takes
//!   it, while the kernel's NAT rule or the holder itself carries the
//!   traffic:
//!   - podman's `conmon` names the container (`-c ID`) and nothing else;
//!     the DNAT rule the runtime wrote for the same port in the same
//!     namespace gives the address, port and namespace;
//!   - `docker-proxy` names everything in its arguments (`-container-ip`,
//!     `-container-port`), the container comes from the namespace;
//!   - rootless podman's `rootlessport` receives its configuration through
//!     a pipe and forwards into the rootless network namespace by itself
//!     (no NAT rule): only the port, its user, and the container its own
//!     cgroup names (if any) can be known.

use crate::kernel::nftables::{Mechanism, NatRule};
use crate::model::judge::Judged;
use crate::model::{
    ForwardedSeries, HOST_NETNS, Judge, ListenerSeries, NetnsNamer, ProcessInfoSeries, Protocol,
};
use crate::policy::allow::OwnerFacts;
use crate::policy::registry::Transport;
use crate::sockets::NamespaceFacts;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// Process names of container runtimes' port holders.
pub const HOLDERS: [&str; 3] = ["conmon", "docker-proxy", "rootlessport"];

/// Everything the join reads.
pub struct Inputs<'a> {
    pub judge: &'a Judge,
    pub namer: &'a NetnsNamer,
    pub namespaces: &'a [NamespaceFacts],
    pub listeners: &'a [ListenerSeries],
    pub processes: &'a [ProcessInfoSeries],
    /// A process's arguments, by pid.
    pub cmdline: &'a dyn Fn(u32) -> Vec<String>,
}

/// The forwarded-port series, sorted, each counted once per rule or holder.
pub fn series(inputs: &Inputs<'_>) -> Vec<ForwardedSeries> {
    let places = Places::new(inputs);
    let mut found: BTreeMap<ForwardedSeries, u64> = BTreeMap::new();
    for facts in inputs.namespaces {
        let Ok(rules) = &facts.nat_rules else {
            continue;
        };
        let netns = inputs.namer.label(facts.netns);
        for rule in rules {
            let transports = match &rule.transport {
                Some(transport) => std::slice::from_ref(transport),
                None => &[Transport::Tcp, Transport::Udp][..],
            };
            for transport in transports {
                for port in rule.first..=rule.last {
                    if inputs
                        .judge
                        .is_watched(Protocol::of_transport(*transport), port)
                    {
                        let series = places.nat_series(inputs, &netns, rule, *transport, port);
                        *found.entry(series).or_default() += 1;
                    }
                }
            }
        }
    }
    for listener in inputs.listeners {
        if HOLDERS.contains(&listener.process.as_str())
            && let Ok(pid) = listener.pid.parse::<u32>()
        {
            let series = places.holder_series(inputs, listener, &(inputs.cmdline)(pid));
            *found.entry(series).or_default() += listener.sockets;
        }
    }
    // A holder that names its container (conmon) also names the container
    // of the NAT rule written for the same destination.
    let named: HashMap<String, String> = found
        .keys()
        .filter(|s| s.mechanism == "holder" && !s.to_netns.is_empty() && !s.container_id.is_empty())
        .map(|s| (s.to_netns.clone(), s.container_id.clone()))
        .collect();
    let found: BTreeMap<ForwardedSeries, u64> = found
        .into_iter()
        .map(|(mut series, count)| {
            if series.container_id.is_empty()
                && let Some(container) = named.get(&series.to_netns)
            {
                series.container_id = container.clone();
                series = finish(inputs, series);
            }
            (series, count)
        })
        .collect();
    found
        .into_iter()
        .map(|(mut series, count)| {
            series.count = count;
            series
        })
        .collect()
}

/// Where addresses and containers are.
struct Places<'a> {
    /// Address -> netns label of the one namespace that has it; `None`
    /// when several do.
    address_owner: HashMap<IpAddr, Option<String>>,
    /// netns label -> container id, from the owners seen there.
    container_of: HashMap<&'a str, &'a str>,
}

impl<'a> Places<'a> {
    fn new(inputs: &Inputs<'a>) -> Places<'a> {
        let mut address_owner: HashMap<IpAddr, Option<String>> = HashMap::new();
        for facts in inputs.namespaces {
            let Ok(addresses) = &facts.addresses else {
                continue;
            };
            let label = inputs.namer.label(facts.netns);
            for address in addresses.iter().filter(|a| !a.is_loopback()) {
                address_owner
                    .entry(*address)
                    .and_modify(|owner| {
                        if owner.as_deref() != Some(label.as_str()) {
                            *owner = None;
                        }
                    })
                    .or_insert_with(|| Some(label.clone()));
            }
        }
        let mut container_of = HashMap::new();
        let places = inputs
            .listeners
            .iter()
            .map(|l| (l.netns.as_str(), l.container_id.as_str()))
            .chain(
                inputs
                    .processes
                    .iter()
                    .map(|p| (p.netns.as_str(), p.container_id.as_str())),
            );
        for (netns, container) in places {
            if !container.is_empty() && netns != HOST_NETNS {
                container_of.entry(netns).or_insert(container);
            }
        }
        Places {
            address_owner,
            container_of,
        }
    }

    fn netns_of(&self, address: Option<IpAddr>) -> String {
        address
            .and_then(|a| self.address_owner.get(&a).cloned().flatten())
            .unwrap_or_default()
    }

    fn container_in(&self, netns: &str) -> String {
        self.container_of
            .get(netns)
            .map(|c| c.to_string())
            .unwrap_or_default()
    }

    fn nat_series(
        &self,
        inputs: &Inputs<'_>,
        netns: &str,
        rule: &NatRule,
        transport: Transport,
        port: u16,
    ) -> ForwardedSeries {
        let to_netns = match rule.mechanism {
            Mechanism::Redirect => netns.to_string(),
            Mechanism::Dnat => self.netns_of(rule.to_address),
        };
        let container_id = self.container_in(&to_netns);
        finish(
            inputs,
            ForwardedSeries {
                protocol: Protocol::of_transport(transport),
                port,
                netns: netns.to_string(),
                mechanism: rule.mechanism.as_str(),
                to_address: rule.to_address.map(|a| a.to_string()).unwrap_or_default(),
                to_port: rule.destination_port(port),
                to_netns,
                container_id,
                expected: false,
                count: 0,
            },
        )
    }

    fn holder_series(
        &self,
        inputs: &Inputs<'_>,
        listener: &ListenerSeries,
        args: &[String],
    ) -> ForwardedSeries {
        let mut series = ForwardedSeries {
            protocol: listener.protocol,
            port: listener.port,
            netns: listener.netns.clone(),
            mechanism: "holder",
            to_address: String::new(),
            to_port: String::new(),
            to_netns: String::new(),
            container_id: listener.container_id.clone(),
            expected: false,
            count: 0,
        };
        match listener.process.as_str() {
            "conmon" => {
                if let Some(id) = argument(args, &["-c", "--cid"]) {
                    series.container_id = id.to_string();
                }
                let rule = inputs
                    .namespaces
                    .iter()
                    .filter(|facts| inputs.namer.label(facts.netns) == listener.netns)
                    .filter_map(|facts| facts.nat_rules.as_ref().ok())
                    .flatten()
                    .find(|rule| {
                        rule.mechanism == Mechanism::Dnat
                            && rule.covers(listener.protocol.judged_as(), listener.port)
                    });
                if let Some(rule) = rule {
                    series.to_address = rule.to_address.map(|a| a.to_string()).unwrap_or_default();
                    series.to_port = rule.destination_port(listener.port);
                    series.to_netns = self.netns_of(rule.to_address);
                }
            }
            "docker-proxy" => {
                let address = argument(args, &["-container-ip"]).and_then(|a| a.parse().ok());
                series.to_address = address.map(|a: IpAddr| a.to_string()).unwrap_or_default();
                series.to_port = argument(args, &["-container-port"])
                    .unwrap_or_default()
                    .to_string();
                series.to_netns = self.netns_of(address);
                series.container_id = self.container_in(&series.to_netns);
            }
            _ => {} // rootlessport: see the module doc
        }
        finish(inputs, series)
    }
}

/// Decides `expected` (allow rules' `forward:` target).
fn finish(inputs: &Inputs<'_>, mut series: ForwardedSeries) -> ForwardedSeries {
    let facts = OwnerFacts {
        container_id: &series.container_id,
        ..OwnerFacts::default()
    };
    series.expected = inputs
        .judge
        .is_expected(Judged::Forward(series.protocol, series.port), &facts);
    series
}

/// The value after the first of `flags` (`-c ID`, `-c=ID` is not used by
/// these programs).
fn argument<'a>(args: &'a [String], flags: &[&str]) -> Option<&'a str> {
    args.iter()
        .position(|arg| flags.contains(&arg.as_str()))
        .and_then(|at| args.get(at + 1))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::allow::AllowRule;
    use crate::policy::registry::Registry;
    use crate::policy::watch::{Scope, WatchSet};
    use std::sync::Arc;

    fn listener(
        process: &str,
        pid: &str,
        netns: &str,
        port: u16,
        container: &str,
    ) -> ListenerSeries {
        ListenerSeries {
            protocol: Protocol::Tcp,
            port,
            family: "ipv4",
            address: "0.0.0.0".into(),
            process: process.into(),
            pid: pid.into(),
            user: "root".into(),
            iana: "unassigned",
            expected: false,
            netns: netns.into(),
            container_id: container.into(),
            pod_uid: String::new(),
            exposure: "public",
            dual_stack: "false",
            interface: String::new(),
            holder: crate::model::Holder::Process,
            sockets: 1,
        }
    }

    fn rule(mechanism: Mechanism, port: u16, to: Option<&str>, to_port: Option<u16>) -> NatRule {
        NatRule {
            family: 2,
            table: "nat".into(),
            chain: "X".into(),
            transport: Some(Transport::Tcp),
            first: port,
            last: port,
            mechanism,
            to_address: to.map(|a| a.parse().unwrap()),
            to_ports: to_port.map(|p| (p, p)),
        }
    }

    #[test]
    fn joins_rules_and_holders_with_namespaces_and_containers() {
        let allow = vec![AllowRule::parse("forward:278:container=cafe").unwrap()];
        let judge = Judge::new(Arc::new(WatchSet::new(
            Registry::embedded(),
            Scope::WellKnown,
            &[],
            allow,
        )));
        let namespaces = vec![
            NamespaceFacts {
                netns: None,
                addresses: Ok(vec![
                    "192.0.2.2".parse().unwrap(),
                    "10.88.0.1".parse().unwrap(),
                ]),
                nat_rules: Ok(vec![
                    rule(Mechanism::Dnat, 277, Some("10.88.0.10"), Some(8080)),
                    rule(Mechanism::Dnat, 278, Some("172.17.0.2"), Some(80)),
                    // Not a watched port: left out.
                    rule(Mechanism::Dnat, 8443, Some("10.88.0.10"), Some(443)),
                ]),
            },
            NamespaceFacts {
                netns: Some(4026532000),
                addresses: Ok(vec![
                    "127.0.0.1".parse().unwrap(),
                    "10.88.0.10".parse().unwrap(),
                ]),
                nat_rules: Ok(vec![rule(Mechanism::Redirect, 276, None, Some(31337))]),
            },
            NamespaceFacts {
                netns: Some(4026532111),
                addresses: Ok(vec!["172.17.0.2".parse().unwrap()]),
                nat_rules: Err(crate::kernel::nftables::Unread::Failed("refused".into())),
            },
        ];
        let listeners = vec![
            listener("conmon", "10", "host", 277, ""),
            listener("docker-proxy", "11", "host", 278, ""),
            listener("nc", "12", "4026532111", 279, "cafe01"),
        ];
        let cmdline = |pid: u32| -> Vec<String> {
            let args: &[&str] = match pid {
                10 => &[
                    "/usr/bin/conmon",
                    "--api-version",
                    "1",
                    "-c",
                    "a2d3",
                    "-u",
                    "a2d3",
                ],
                11 => &[
                    "docker-proxy",
                    "-proto",
                    "tcp",
                    "-host-port",
                    "278",
                    "-container-ip",
                    "172.17.0.2",
                    "-container-port",
                    "80",
                ],
                _ => &[],
            };
            args.iter().map(|a| a.to_string()).collect()
        };
        let found = series(&Inputs {
            judge: &judge,
            namer: &NetnsNamer::new(None),
            namespaces: &namespaces,
            listeners: &listeners,
            processes: &[],
            cmdline: &cmdline,
        });
        let brief: Vec<String> = found
            .iter()
            .map(|s| {
                format!(
                    "{}/{} {} {} -> {}:{} in {} container={} expected={} x{}",
                    s.port,
                    s.protocol,
                    s.netns,
                    s.mechanism,
                    s.to_address,
                    s.to_port,
                    s.to_netns,
                    s.container_id,
                    s.expected,
                    s.count
                )
            })
            .collect();
        assert_eq!(
            brief,
            [
                "276/tcp 4026532000 redirect -> :31337 in 4026532000 container=a2d3 expected=false x1",
                "277/tcp host dnat -> 10.88.0.10:8080 in 4026532000 container=a2d3 expected=false x1",
                "277/tcp host holder -> 10.88.0.10:8080 in 4026532000 container=a2d3 expected=false x1",
                "278/tcp host dnat -> 172.17.0.2:80 in 4026532111 container=cafe01 expected=true x1",
                "278/tcp host holder -> 172.17.0.2:80 in 4026532111 container=cafe01 expected=true x1",
            ]
        );
    }
}
