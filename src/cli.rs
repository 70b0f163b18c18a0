//! Command-line flags, spelled as node_exporter spells them, and their checks.
//!
//! Every flag is documented here once and printed by `--help`. A bad value
//! ends the program at start with one line on stderr and exit code 2.

use crate::policy::allow::{AllowFile, AllowRule};
use crate::policy::ports::{self, PortRange};
use crate::policy::watch::Scope;
use crate::sockets::Backend;
use clap::Parser;
use std::path::PathBuf;

/// Reports sockets listening on port 276 and on every other port IANA never
/// assigned, read from the socket table on each scrape, as Prometheus metrics.
#[derive(Parser, Debug)]
#[command(
    name = "unassigned_port_exporter",
    version,
    about,
    max_term_width = 100
)]
pub struct Flags {
    /// Address to listen on for HTTP requests; repeat for several. ":9276"
    /// means every interface.
    #[arg(
        long = "web.listen-address",
        value_name = "ADDR",
        default_value = ":9276"
    )]
    pub listen_addresses: Vec<String>,

    /// Path under which metrics are served.
    #[arg(long = "web.telemetry-path", value_name = "PATH", default_value = "/metrics", value_parser = parse_telemetry_path)]
    pub telemetry_path: String,

    /// Path to a web config file (exporter-toolkit format, as node_exporter):
    /// TLS, client certificates, basic auth users, response headers. Re-read
    /// when it changes or on SIGHUP.
    #[arg(long = "web.config.file", value_name = "PATH")]
    pub web_config_file: Option<PathBuf>,

    /// Maximum number of requests served at once; more get 503. 0 means no limit.
    #[arg(long = "web.max-requests", value_name = "N", default_value_t = 40)]
    pub max_requests: usize,

    /// Extra ports to watch, as a comma-separated list of PORT or FIRST-LAST,
    /// each optionally followed by /tcp, /udp or /sctp (e.g. "276,8000-8100,53/udp").
    /// Repeatable.
    #[arg(long = "watch.ports", value_name = "LIST", value_parser = ports::parse_port_list)]
    pub watch_ports: Vec<Vec<PortRange>>,

    /// Which IANA-unassigned ports to watch: "well-known" (0-1023) or
    /// "registered" (0-49151).
    #[arg(long = "watch.scope", value_name = "SCOPE", default_value = "well-known", value_parser = Scope::parse)]
    pub watch_scope: Scope,

    /// An expected listener or packet/raw socket, as
    /// PORT[-LAST][/PROTO][:SELECTOR[,SELECTOR...]] or packet|raw[:SELECTOR...],
    /// where a selector is exe=PATH (glob: * ** ?), user=NAME|UID,
    /// unit=NAME, container=ID-PREFIX, comm=NAME, sha256=HEX (the
    /// executable's SHA-256, as sha256sum prints it), or a bare process name
    /// (comm); all selectors of a rule must match (e.g.
    /// "276/tcp:exe=/usr/sbin/sshd,user=root", "packet:exe=/usr/sbin/dhclient").
    /// Matching sockets are still exported, with expected="true", so alerts
    /// can ignore them. Repeatable.
    #[arg(long = "watch.allow", value_name = "RULE", value_parser = AllowRule::parse)]
    pub watch_allow: Vec<AllowRule>,

    /// A file of --watch.allow rules, one a line, # for comments; read at
    /// start (a bad file stops the exporter) and again when it changes or on
    /// SIGHUP (a bad edit keeps the previous rules and is logged).
    /// Repeatable: the shipped default policy and an operator's own file
    /// load side by side, each reloading on its own. None by default (the
    /// Debian package's unit and the DaemonSet pass the shipped one).
    #[arg(long = "watch.allow-file", value_name = "PATH", value_parser = AllowFile::parse_flag)]
    pub watch_allow_files: Vec<AllowFile>,

    /// Print the shipped default allow policy (deploy/allow/default.allow:
    /// the well-known daemons that bind random privileged ports) and exit;
    /// save it and pass it with --watch.allow-file.
    #[arg(long = "watch.print-default-allow")]
    pub print_default_allow: bool,

    /// A newer copy of IANA's service-names-port-numbers.csv to use instead
    /// of the table built into the binary.
    #[arg(long = "iana.registry-file", value_name = "PATH")]
    pub iana_registry_file: Option<PathBuf>,

    /// Where sockets are read from: "auto" (netlink on Linux when the kernel
    /// allows it, else netstat2), "netlink" or "netstat2".
    #[arg(long = "collector.backend", value_name = "BACKEND", default_value = "auto", value_parser = Backend::parse)]
    pub backend: Backend,

    /// Which network namespaces to read: "all" (every namespace found in
    /// /proc/*/ns/net and /run/netns; the default when the exporter may enter
    /// namespaces, which needs CAP_SYS_ADMIN) or "host" (its own only; the
    /// default otherwise). Only the netlink backend reads other namespaces.
    #[arg(long = "collector.netns", value_name = "MODE", value_parser = crate::kernel::netns::Mode::parse)]
    pub netns: Option<crate::kernel::netns::Mode>,

    /// Also sample the socket table in the background at this interval (e.g.
    /// "1s"), counting listeners seen between scrapes in
    /// unassigned_port_listener_sightings_total. Off by default.
    #[arg(long = "collector.sample-interval", value_name = "DURATION", value_parser = parse_sample_interval)]
    pub sample_interval: Option<std::time::Duration>,

    /// procfs mount point: socket owners, process names and users,
    /// namespaces and sysctls are all read from here.
    #[arg(long = "path.procfs", value_name = "PATH", default_value = "/proc")]
    pub procfs: PathBuf,

    /// Folder where named network namespaces are bind-mounted (`ip netns
    /// add` uses /run/netns); with --collector.netns=all they are read too.
    #[arg(long = "path.netns", value_name = "PATH", default_value = "/run/netns")]
    pub netns_path: PathBuf,

    /// Only log messages with the given severity or above: debug, info, warn, error.
    #[arg(long = "log.level", value_name = "LEVEL", default_value = "info", value_parser = parse_log_level)]
    pub log_level: tracing::Level,

    /// Output format of log messages: logfmt (key=value text) or json (one
    /// flat object a line: time, level, msg, then the keys).
    #[arg(long = "log.format", value_name = "FORMAT", default_value = "logfmt", value_parser = ["logfmt", "json"])]
    pub log_format: String,

    /// The event trail: one info line for every listen and close on a
    /// watched port (kernel events) and every packet/raw socket the first
    /// time a collection sees it, with event, port, protocol, address,
    /// netns, pid, ppid, process, exe, exe_deleted, exe_sha256, cmdline,
    /// uid, user, login_uid, login_user, container_id, pod_uid, exposure,
    /// expected and described. "false" turns it off.
    #[arg(long = "log.events", value_name = "BOOL", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub log_events: bool,

    /// At most this many event trail lines a second; beyond it lines are
    /// left out and one line a second (event=lines_suppressed) says how
    /// many. The event counters count every event regardless.
    #[arg(long = "log.events-per-second", value_name = "N", default_value_t = 100, value_parser = parse_events_per_second)]
    pub log_events_per_second: u32,
}

impl Flags {
    /// Every `--watch.ports` range, flattened.
    pub fn extra_ports(&self) -> Vec<PortRange> {
        self.watch_ports.iter().flatten().copied().collect()
    }
}

fn parse_telemetry_path(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err("the path must start with '/'".to_string());
    }
    if text == "/" || text == "/healthz" {
        return Err(format!(
            "{text} is taken by the landing page or health check"
        ));
    }
    Ok(text.to_string())
}

fn parse_sample_interval(text: &str) -> Result<std::time::Duration, String> {
    let interval =
        humantime::parse_duration(text).map_err(|err| format!("{err} (e.g. 1s, 500ms, 1m)"))?;
    if interval < std::time::Duration::from_millis(100) {
        return Err("the interval must be at least 100ms".to_string());
    }
    Ok(interval)
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!("{other:?} is not a boolean: use true or false")),
    }
}

fn parse_events_per_second(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(0) => Err("must be at least 1 (turn the trail off with --log.events=false)".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{text:?} is not a whole number of lines")),
    }
}

fn parse_log_level(text: &str) -> Result<tracing::Level, String> {
    match text {
        "debug" => Ok(tracing::Level::DEBUG),
        "info" => Ok(tracing::Level::INFO),
        "warn" => Ok(tracing::Level::WARN),
        "error" => Ok(tracing::Level::ERROR),
        other => Err(format!(
            "unknown level {other:?}: use debug, info, warn or error"
        )),
    }
}

/// What parsing the command line decided.
pub enum Parsed {
    Run(Box<Flags>),
    /// `--help` or `--version`: print this on stdout and exit 0.
    Print(String),
    /// A bad flag or value: print this one line on stderr and exit 2.
    Refuse(String),
}

/// Parses arguments; never exits or panics.
pub fn parse<I, T>(args: I) -> Parsed
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match Flags::try_parse_from(args) {
        Ok(flags) if flags.print_default_allow => {
            Parsed::Print(crate::policy::allow::shipped::DEFAULT_ALLOW.to_string())
        }
        Ok(flags) => Parsed::Run(Box::new(flags)),
        Err(err) => match err.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                Parsed::Print(err.to_string())
            }
            _ => {
                // clap's first line says what was wrong; the rest is usage.
                let rendered = err.to_string();
                let first = rendered
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("error: bad arguments");
                Parsed::Refuse(format!(
                    "unassigned_port_exporter: {} (see --help)",
                    first.trim()
                ))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(args: &[&str]) -> String {
        let mut full = vec!["unassigned_port_exporter"];
        full.extend_from_slice(args);
        match parse(full) {
            Parsed::Refuse(line) => line,
            _ => panic!("{args:?} was accepted"),
        }
    }

    #[test]
    fn defaults_match_node_exporter_conventions() {
        let Parsed::Run(flags) = parse(["x"]) else {
            panic!()
        };
        assert_eq!(flags.listen_addresses, vec![":9276"]);
        assert_eq!(flags.telemetry_path, "/metrics");
        assert_eq!(flags.max_requests, 40);
        assert_eq!(flags.watch_scope, Scope::WellKnown);
        assert_eq!(flags.backend, Backend::Auto);
        assert!(flags.log_events);
        assert_eq!(flags.log_events_per_second, 100);
        for (args, on) in [
            (&["x", "--log.events=false"][..], false),
            (&["x", "--log.events"], true),
            (&["x", "--log.events", "true"], true),
        ] {
            let Parsed::Run(flags) = parse(args) else {
                panic!("{args:?}")
            };
            assert_eq!(flags.log_events, on, "{args:?}");
        }
    }

    #[test]
    fn bad_values_give_one_line() {
        for (args, expected) in [
            (&["--watch.ports=70000"][..], "out of range"),
            (&["--watch.ports=5-3"], "runs backwards"),
            (&["--watch.ports=abc"], "not a port number"),
            (&["--watch.allow=276:"], "empty process name"),
            (&["--watch.allow=276:color=red"], "unknown selector"),
            (
                &["--watch.allow-file=/nonexistent/allow"],
                "cannot read the allow file",
            ),
            (&["--watch.scope=all"], "unknown scope"),
            (&["--collector.backend=magic"], "unknown backend"),
            (&["--log.level=loud"], "unknown level"),
            (&["--web.telemetry-path=metrics"], "must start with"),
            (&["--no-such-flag"], "unexpected argument"),
            (&["--collector.netns=some"], "unknown namespace mode"),
            (&["--collector.sample-interval=soon"], "e.g. 1s"),
            (&["--collector.sample-interval=1ms"], "at least 100ms"),
            (&["--log.events=maybe"], "not a boolean"),
            (&["--log.events-per-second=0"], "at least 1"),
            (&["--log.events-per-second=lots"], "not a whole number"),
        ] {
            let line = refusal(args);
            assert!(line.contains(expected), "{args:?}: {line}");
            assert_eq!(line.lines().count(), 1, "{line}");
        }
    }

    #[test]
    fn allow_files_repeat_and_the_default_policy_prints() {
        let Parsed::Run(flags) = parse(["x"]) else {
            panic!()
        };
        assert!(flags.watch_allow_files.is_empty(), "no policy by default");
        let dir = std::env::temp_dir().join(format!("cli-allow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::write(&a, "276:exe=/usr/bin/a\n").unwrap();
        std::fs::write(&b, "277:exe=/usr/bin/b\n278:exe=/usr/bin/b\n").unwrap();
        let Parsed::Run(flags) = parse([
            "x".to_string(),
            format!("--watch.allow-file={}", a.display()),
            format!("--watch.allow-file={}", b.display()),
        ]) else {
            panic!()
        };
        let counts: Vec<usize> = flags
            .watch_allow_files
            .iter()
            .map(|f| f.rules.len())
            .collect();
        assert_eq!(counts, [1, 2]);
        let _ = std::fs::remove_dir_all(&dir);
        let Parsed::Print(text) = parse(["x", "--watch.print-default-allow"]) else {
            panic!()
        };
        assert_eq!(text, crate::policy::allow::shipped::DEFAULT_ALLOW);
    }

    #[test]
    fn repeated_port_lists_accumulate() {
        let Parsed::Run(flags) = parse([
            "x",
            "--watch.ports=276,300",
            "--watch.ports",
            "8000-8001/udp",
        ]) else {
            panic!()
        };
        assert_eq!(flags.extra_ports().len(), 3);
    }
}
