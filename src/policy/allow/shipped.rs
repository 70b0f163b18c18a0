//! The shipped default policy (`deploy/allow/default.allow`), built into the
//! binary so that `--watch.print-default-allow` can print it for hosts that
//! did not get it from a package. The file itself stays the one source: the
//! Debian package installs it, the DaemonSet's ConfigMap holds a copy that
//! `tests/check-deploy.sh` compares with it.

/// The text of `deploy/allow/default.allow`.
pub const DEFAULT_ALLOW: &str = include_str!("../../../deploy/allow/default.allow");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Holder;
    use crate::policy::allow::{AllowRule, OwnerFacts, SocketFacts, Subject, parse_rules};
    use crate::policy::exposure::Exposure;
    use crate::policy::registry::Transport;

    fn rules() -> Vec<AllowRule> {
        parse_rules(DEFAULT_ALLOW, "default.allow").expect("the shipped policy parses")
    }

    fn statd(exposure: Exposure, exe: &'static str) -> OwnerFacts<'static> {
        OwnerFacts {
            comm: "rpc.statd",
            exe: Some(exe.as_bytes()),
            user: "statd",
            uid: Some(107),
            socket: SocketFacts {
                exposure: Some(exposure),
                holder: Some(Holder::Process),
                rpc_programs: &[],
            },
            ..OwnerFacts::default()
        }
    }

    fn expected(rules: &[AllowRule], subject: Subject, facts: &OwnerFacts<'_>) -> bool {
        rules.iter().any(|rule| rule.matches(subject, facts))
    }

    #[test]
    fn every_rule_names_more_than_a_port_or_a_name() {
        for rule in rules() {
            assert!(!rule.selectors.is_empty(), "{rule} matches by port alone");
            assert!(!rule.trusts_comm_only(), "{rule} trusts the process name");
        }
    }

    #[test]
    fn port_276_and_its_neighbours_always_alert() {
        let rules = rules();
        let anything = OwnerFacts {
            socket: SocketFacts {
                exposure: Some(Exposure::Loopback),
                holder: Some(Holder::None),
                rpc_programs: &[100021, 100024, 100005, 100011, 100007],
            },
            ..statd(Exposure::Loopback, "/usr/sbin/rpc.statd")
        };
        for port in 0..512 {
            for transport in [Transport::Tcp, Transport::Udp] {
                let subject = Subject::Listener(transport, port);
                assert!(!expected(&rules, subject, &anything), "{port}/{transport}");
            }
        }
    }

    #[test]
    fn statd_is_let_through_only_as_itself_on_loopback() {
        let rules = rules();
        let udp = Subject::Listener(Transport::Udp, 1005);
        assert!(expected(
            &rules,
            udp,
            &statd(Exposure::Loopback, "/usr/sbin/rpc.statd")
        ));
        for (what, facts) in [
            ("a copy", statd(Exposure::Loopback, "/tmp/rpc.statd")),
            (
                "python renamed",
                statd(Exposure::Loopback, "/usr/bin/python3.11"),
            ),
            (
                "a public address",
                statd(Exposure::Public, "/usr/sbin/rpc.statd"),
            ),
            ("every address", statd(Exposure::Any, "/usr/sbin/rpc.statd")),
            (
                "another user",
                OwnerFacts {
                    user: "root",
                    uid: Some(0),
                    ..statd(Exposure::Loopback, "/usr/sbin/rpc.statd")
                },
            ),
        ] {
            assert!(!expected(&rules, udp, &facts), "{what}");
        }
        assert!(
            !expected(
                &rules,
                Subject::Listener(Transport::Tcp, 1005),
                &statd(Exposure::Loopback, "/usr/sbin/rpc.statd")
            ),
            "tcp is not the notify socket"
        );
        let registered = OwnerFacts {
            socket: SocketFacts {
                rpc_programs: &[100024],
                ..statd(Exposure::Any, "").socket
            },
            ..statd(Exposure::Any, "/usr/sbin/rpc.statd")
        };
        assert!(expected(
            &rules,
            Subject::Listener(Transport::Tcp, 40000),
            &registered
        ));
    }

    #[test]
    fn kernel_sockets_need_no_holder_and_their_registration() {
        let rules = rules();
        let lockd = OwnerFacts {
            socket: SocketFacts {
                exposure: Some(Exposure::Any),
                holder: Some(Holder::None),
                rpc_programs: &[100021],
            },
            ..OwnerFacts::default()
        };
        let udp = Subject::Listener(Transport::Udp, 40000);
        assert!(expected(&rules, udp, &lockd));
        let hidden = OwnerFacts {
            socket: SocketFacts {
                holder: Some(Holder::Unknown),
                ..lockd.socket
            },
            ..lockd
        };
        assert!(!expected(&rules, udp, &hidden), "unknown is not none");
        assert!(
            !expected(&rules, Subject::Listener(Transport::Udp, 800), &lockd),
            "the kernel never auto-binds a privileged port"
        );
    }
}
