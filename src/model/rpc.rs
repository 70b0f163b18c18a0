//! What ONC RPC programs are called: the `name` label of
//! `unassigned_port_rpc_program_info` and the names the allow selector
//! `rpc=NAME` accepts.
//!
//! A small fixed table (the names `rpcinfo -p` prints, from the `rpc(5)`
//! database every Linux distribution ships) rather than a read of
//! `/etc/rpc`: a label must not change with a host's files, and a rule must
//! mean the same on every host of a fleet. A program outside the table is
//! named by its number (`rpc=NUMBER` always works).

/// (number, name), the usual users of random ports first.
pub const PROGRAMS: &[(u32, &str)] = &[
    (100000, "portmapper"),
    (100003, "nfs"),
    (100005, "mountd"),
    (100021, "nlockmgr"),
    (100024, "status"),
    (100011, "rquotad"),
    (100007, "ypbind"),
    (100004, "ypserv"),
    (100009, "yppasswdd"),
    (100069, "ypxfrd"),
    (100227, "nfs_acl"),
    (100001, "rstatd"),
    (100002, "rusersd"),
    (100008, "walld"),
    (100012, "sprayd"),
    (100026, "bootparam"),
    (100029, "keyserv"),
    (150001, "pcnfsd"),
    (300019, "amd"),
];

/// The name of a program number, if the table has it.
pub fn name_of(program: u32) -> Option<&'static str> {
    PROGRAMS
        .iter()
        .find(|(number, _)| *number == program)
        .map(|(_, name)| *name)
}

/// The number of a program name, if the table has it.
pub fn number_of(name: &str) -> Option<u32> {
    PROGRAMS
        .iter()
        .find(|(_, known)| *known == name)
        .map(|(number, _)| *number)
}

/// The `name` label: the table's name, or the number as text.
pub fn label(program: u32) -> String {
    name_of(program).map_or_else(|| program.to_string(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_map_both_ways() {
        assert_eq!(name_of(100024), Some("status"));
        assert_eq!(number_of("nlockmgr"), Some(100021));
        assert_eq!(label(100024), "status");
        assert_eq!(label(400123), "400123");
        for (number, name) in PROGRAMS {
            assert_eq!(number_of(name), Some(*number));
            assert_eq!(name_of(*number), Some(*name));
        }
    }
}
