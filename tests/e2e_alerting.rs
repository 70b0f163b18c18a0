//! End to end with the real servers: a socket listening on port 276 becomes a
//! page, and closing it resolves the page.
//!
//! The test starts the exporter binary, Debian's `prometheus` (loading the
//! shipped `deploy/prometheus/unassigned-ports.rules.yml`) and
//! `prometheus-alertmanager` (running the shipped
//! `deploy/alertmanager/alertmanager.yml`, its webhook pointed at a tiny HTTP
//! server inside this test), all on loopback ephemeral ports. Then it proves:
//!
//! - a `TcpListener` the test binds on 0.0.0.0:276 is stored in Prometheus as
//!   `unassigned_port_listeners` with this process' name and pid;
//! - `UnassignedPortListener` fires and reaches the webhook with port,
//!   protocol, process and pid labels;
//! - every PromQL expression of the Grafana dashboard and of the rules file
//!   runs against that Prometheus, and the dashboard's listeners table shows
//!   the 276 row;
//! - the background sampler (`--collector.sample-interval`) reports the
//!   listener too, and `UnassignedPortListenerSeenBetweenScrapes` stays
//!   quiet for it, since scrapes saw it;
//! - dropping the listener resolves the alert, and the webhook hears it.
//!
//! Without root the test cannot bind port 276; it then watches a free high
//! port added with `--watch.ports` and says so. Without the Debian packages
//! it prints that it is skipped and passes, except under CI, where it fails
//! (the top-level test script installs them).

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Scrape job name the shipped rules and dashboard expect.
const JOB: &str = "unassigned_port_exporter";
/// The unassigned well-known port the project is named after.
const PORT_276: u16 = 276;
/// How often every wait below looks again.
const POLL: Duration = Duration::from_millis(500);
/// Longest wait for a server to answer after it was started.
const STARTUP: Duration = Duration::from_secs(30);
/// Longest wait for a fact to show up in Prometheus or at the webhook.
const SETTLE: Duration = Duration::from_secs(45);

const ALERT: &str = "UnassignedPortListener";
const RECEIVER: &str = "unassigned-ports-webhook";

#[test]
fn listener_on_276_fires_alert_and_resolves() {
    let started = Instant::now();
    let Some(servers) = ServerBinaries::find() else {
        eprintln!();
        eprintln!(
            "!!! e2e_alerting SKIPPED: `prometheus` and/or `prometheus-alertmanager` not found in PATH."
        );
        eprintln!(
            "!!! Install the Debian packages first: apt-get install -y prometheus prometheus-alertmanager"
        );
        eprintln!();
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test: tests/run-all.sh installs the packages"
        );
        return;
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules_file = repo.join("deploy/prometheus/unassigned-ports.rules.yml");
    let alertmanager_file = repo.join("deploy/alertmanager/alertmanager.yml");
    let dashboard_file = repo.join("dashboards/unassigned-ports.json");

    let target = WatchedPort::choose();
    let mut stack = Stack::new();
    let webhook = Webhook::start();
    let exporter_port = free_port();
    let prometheus_port = free_port();
    let alertmanager_port = free_port();
    let exporter_instance = format!("127.0.0.1:{exporter_port}");

    // Exporter.
    // The background sampler too, so that its dashboard panel and the
    // UnassignedPortListenerSeenBetweenScrapes rule run on real series.
    let mut exporter_args = vec![
        format!("--web.listen-address={exporter_instance}"),
        "--collector.sample-interval=200ms".to_string(),
    ];
    if target.port != PORT_276 {
        exporter_args.push(format!("--watch.ports={}", target.port));
    }
    stack.spawn(
        "exporter",
        Path::new(env!("CARGO_BIN_EXE_unassigned_port_exporter")),
        &exporter_args,
    );

    // Alertmanager, with the shipped config pointed at our webhook.
    let am_config = alertmanager_config_for_test(
        &fs::read_to_string(&alertmanager_file).expect("read the shipped alertmanager.yml"),
        &format!("http://127.0.0.1:{}/", webhook.port),
    );
    let am_config_path = stack.dir.join("alertmanager.yml");
    fs::write(&am_config_path, am_config).expect("write alertmanager.yml");
    let am_data = stack.dir.join("alertmanager-data");
    stack.spawn(
        "alertmanager",
        &servers.alertmanager,
        &[
            format!("--web.listen-address=127.0.0.1:{alertmanager_port}"),
            "--cluster.listen-address=".to_string(),
            format!("--storage.path={}", am_data.display()),
            format!("--config.file={}", am_config_path.display()),
        ],
    );

    // Prometheus, scraping and evaluating every second.
    let prom_config_path = stack.dir.join("prometheus.yml");
    fs::write(
        &prom_config_path,
        prometheus_config(&rules_file, &exporter_instance, alertmanager_port),
    )
    .expect("write prometheus.yml");
    let prom_data = stack.dir.join("prometheus-data");
    stack.spawn(
        "prometheus",
        &servers.prometheus,
        &[
            format!("--web.listen-address=127.0.0.1:{prometheus_port}"),
            format!("--storage.tsdb.path={}", prom_data.display()),
            format!("--config.file={}", prom_config_path.display()),
            "--rules.alert.resend-delay=1s".to_string(),
        ],
    );

    let exporter_url = format!("http://{exporter_instance}/metrics");
    let prometheus = Prometheus::new(prometheus_port);
    stack.wait_http_ok("exporter", &exporter_url);
    stack.wait_http_ok(
        "alertmanager",
        &format!("http://127.0.0.1:{alertmanager_port}/-/ready"),
    );
    stack.wait_http_ok("prometheus", &format!("{}/-/ready", prometheus.base));
    eprintln!(
        "[{:>5.1}s] exporter, Prometheus and Alertmanager are up",
        started.elapsed().as_secs_f64()
    );

    // Prometheus scrapes the exporter; nothing listens on the port yet.
    let up_query = format!("up{{job=\"{JOB}\"}} == 1");
    stack.wait_for("Prometheus to scrape the exporter (up == 1)", || {
        prometheus.vector(&up_query).ok().filter(|v| !v.is_empty())
    });
    let listener_query = format!(
        "unassigned_port_listeners{{port=\"{}\",protocol=\"tcp\"}}",
        target.port
    );
    let before = prometheus
        .vector(&listener_query)
        .unwrap_or_else(|e| stack.fail(&format!("query {listener_query}: {e}")));
    assert!(
        before.is_empty(),
        "something already listens on tcp port {} before the test binds it: {before:?}",
        target.port
    );

    // Listen, and see the listener arrive in Prometheus with our identity.
    let listener = TcpListener::bind(("0.0.0.0", target.port))
        .unwrap_or_else(|e| panic!("bind 0.0.0.0:{}: {e}", target.port));
    eprintln!(
        "[{:>5.1}s] listening on 0.0.0.0:{}/tcp",
        started.elapsed().as_secs_f64(),
        target.port
    );
    let series = stack.wait_for("the listener in Prometheus", || {
        prometheus
            .vector(&listener_query)
            .ok()
            .filter(|v| !v.is_empty())
    });
    eprintln!("stored series: {}", Value::Array(series.clone()));
    let me = Identity::of_this_process();
    let ours = series
        .iter()
        .find(|s| label(s, "pid") == me.pid)
        .unwrap_or_else(|| {
            stack.fail(&format!(
                "no series with pid=\"{}\" among {}",
                me.pid,
                Value::Array(series.clone())
            ))
        });
    me.assert_process_label(label(ours, "process"));
    for (name, want) in [
        ("job", JOB),
        ("instance", exporter_instance.as_str()),
        ("family", "ipv4"),
        ("address", "0.0.0.0"),
        ("expected", "false"),
    ] {
        assert_eq!(label(ours, name), want, "label {name} of {ours}");
    }
    if target.port == PORT_276 {
        assert_eq!(label(ours, "iana"), "unassigned", "label iana of {ours}");
    }
    for name in ["user", "iana"] {
        assert!(
            !label(ours, name).is_empty(),
            "label {name} empty in {ours}"
        );
    }

    // The alert fires and Alertmanager delivers it to the webhook.
    let is_our_alert = |alert: &Value| {
        label(alert, "alertname") == ALERT
            && label(alert, "port") == target.port.to_string()
            && label(alert, "protocol") == "tcp"
            && label(alert, "pid") == me.pid
    };
    let firing = stack.wait_for_webhook(&webhook, "the firing notification", |msg| {
        msg["status"] == "firing" && alerts(msg).any(|a| a["status"] == "firing" && is_our_alert(a))
    });
    eprintln!(
        "[{:>5.1}s] webhook received the firing notification:\n{}",
        started.elapsed().as_secs_f64(),
        pretty(&firing)
    );
    assert_eq!(firing["receiver"], RECEIVER);
    let alert = alerts(&firing)
        .find(|a| is_our_alert(a))
        .expect("our alert");
    me.assert_process_label(label(alert, "process"));
    assert_eq!(label(alert, "severity"), "critical");
    assert_eq!(label(alert, "instance"), exporter_instance);
    let annotations = &alert["annotations"];
    let summary = annotations["summary"].as_str().unwrap_or_default();
    let description = annotations["description"].as_str().unwrap_or_default();
    assert!(
        summary.contains(&target.port.to_string()) && summary.contains(&exporter_instance),
        "summary names port and instance: {summary}"
    );
    assert!(
        description.contains(&me.pid) && description.contains("0.0.0.0"),
        "description names pid and address: {description}"
    );
    assert!(
        annotations["runbook_url"]
            .as_str()
            .unwrap_or_default()
            .ends_with("#runbook-unassignedportlistener"),
        "runbook_url: {annotations}"
    );

    // Every dashboard and rule expression runs; the table shows our row.
    let dashboard: Value =
        serde_json::from_str(&fs::read_to_string(&dashboard_file).expect("read the dashboard"))
            .expect("dashboard is JSON");
    let rules_text = fs::read_to_string(&rules_file).expect("read the rules file");
    let sweep = run_shipped_queries(&prometheus, &dashboard, &rules_text, &exporter_instance);
    assert!(
        sweep.failures.is_empty(),
        "{} of {} queries failed:\n{}",
        sweep.failures.len(),
        sweep.checked,
        sweep.failures.join("\n")
    );
    let checked = sweep.checked;
    let table_rows = sweep.listeners_table;
    let table_rows = table_rows.expect("the dashboard has a table of unassigned_port_listeners");
    let row = table_rows
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| label(r, "port") == target.port.to_string() && label(r, "pid") == me.pid);
    assert!(
        row.is_some(),
        "the listeners table query lacks the port {} row: {table_rows}",
        target.port
    );
    eprintln!(
        "[{:>5.1}s] {checked} dashboard and rule queries succeeded; the table shows port {}",
        started.elapsed().as_secs_f64(),
        target.port
    );

    // The sampler saw the listener too, and since scrapes saw it as well the
    // between-scrapes warning stays quiet.
    let our_process = label(ours, "process").to_string();
    let sighting_query = format!(
        "unassigned_port_listener_sightings_total{{port=\"{}\",protocol=\"tcp\",process=\"{our_process}\"}} > 0",
        target.port
    );
    stack.wait_for("the sampler's sighting in Prometheus", || {
        prometheus
            .vector(&sighting_query)
            .ok()
            .filter(|v| !v.is_empty())
    });
    assert_no_between_scrapes_alert(&prometheus, target.port, &our_process);

    // Close the socket: the series goes, the alert resolves, the webhook hears.
    drop(listener);
    stack.wait_for("the listener to leave Prometheus", || {
        prometheus
            .vector(&listener_query)
            .ok()
            .filter(|v| v.is_empty())
    });
    let resolved = stack.wait_for_webhook(&webhook, "the resolved notification", |msg| {
        msg["status"] == "resolved"
            && alerts(msg).any(|a| a["status"] == "resolved" && is_our_alert(a))
    });
    eprintln!(
        "[{:>5.1}s] webhook received the resolved notification:\n{}",
        started.elapsed().as_secs_f64(),
        pretty(&resolved)
    );
    // A listener that scrapes saw, sampled until it closed, is still not a
    // "seen only between scrapes" listener.
    assert_no_between_scrapes_alert(&prometheus, target.port, &our_process);
    eprintln!(
        "e2e_alerting passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// UnassignedPortListenerSeenBetweenScrapes must not be pending or firing
/// for our listener, which scrapes saw. (Other, short-lived listeners on the
/// machine may rightly fire it, so the query names ours.)
fn assert_no_between_scrapes_alert(prometheus: &Prometheus, port: u16, process: &str) {
    let query = format!(
        "ALERTS{{alertname=\"UnassignedPortListenerSeenBetweenScrapes\",port=\"{port}\",protocol=\"tcp\",process=\"{process}\"}}"
    );
    let alerts = prometheus
        .vector(&query)
        .unwrap_or_else(|e| panic!("query {query}: {e}"));
    assert!(
        alerts.is_empty(),
        "UnassignedPortListenerSeenBetweenScrapes fired for a listener that scrapes saw: {alerts:?}"
    );
}

/// What running every shipped query against Prometheus found.
struct QuerySweep {
    checked: usize,
    failures: Vec<String>,
    /// The result of the dashboard's table query on `unassigned_port_listeners`.
    listeners_table: Option<Value>,
}

/// Runs every dashboard panel query, every rule expression and every
/// `label_values` template variable against Prometheus.
fn run_shipped_queries(
    prometheus: &Prometheus,
    dashboard: &Value,
    rules_text: &str,
    exporter_instance: &str,
) -> QuerySweep {
    let mut sweep = QuerySweep {
        checked: 0,
        failures: Vec::new(),
        listeners_table: None,
    };
    for q in dashboard_queries(dashboard) {
        sweep.checked += 1;
        match prometheus.query(&q.expr) {
            Ok(data) => {
                // The listeners table queries the raw series; other tables
                // (the sampler's) may use the metric inside an expression.
                if q.panel_type == "table"
                    && q.expr
                        .trim_start()
                        .starts_with("unassigned_port_listeners{")
                {
                    sweep.listeners_table = Some(data["result"].clone());
                }
            }
            Err(e) => sweep
                .failures
                .push(format!("dashboard panel {:?}: {}: {e}", q.panel, q.expr)),
        }
    }
    let rule_exprs = rule_expressions(rules_text);
    assert!(
        rule_exprs.len() >= 5,
        "found only {} expr: lines in the rules file",
        rule_exprs.len()
    );
    for expr in &rule_exprs {
        sweep.checked += 1;
        if let Err(e) = prometheus.query(expr) {
            sweep.failures.push(format!("rule expression {expr}: {e}"));
        }
    }
    for (label_name, selector) in dashboard_label_values(dashboard) {
        sweep.checked += 1;
        let want = match label_name.as_str() {
            "job" => Some(JOB),
            "instance" => Some(exporter_instance),
            _ => None,
        };
        match prometheus.label_values(&label_name, &selector) {
            Ok(values) => {
                if let Some(want) = want.filter(|w| !values.iter().any(|v| v == w)) {
                    sweep.failures.push(format!(
                        "dashboard variable label_values({selector}, {label_name}) lacks {want}: {values:?}"
                    ));
                }
            }
            Err(e) => sweep
                .failures
                .push(format!("label_values({selector}, {label_name}): {e}")),
        }
    }
    sweep
}

/// Paths of the Debian-packaged servers.
struct ServerBinaries {
    prometheus: PathBuf,
    alertmanager: PathBuf,
}

impl ServerBinaries {
    fn find() -> Option<Self> {
        Some(Self {
            prometheus: find_in_path("prometheus")?,
            alertmanager: find_in_path("prometheus-alertmanager")
                .or_else(|| find_in_path("alertmanager"))?,
        })
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The port the test listens on: 276 as root, else a free high port that the
/// exporter is told to watch.
struct WatchedPort {
    port: u16,
}

impl WatchedPort {
    fn choose() -> Self {
        match TcpListener::bind(("0.0.0.0", PORT_276)) {
            Ok(probe) => {
                drop(probe);
                Self { port: PORT_276 }
            }
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                let port = TcpListener::bind(("0.0.0.0", 0))
                    .and_then(|l| l.local_addr())
                    .expect("bind an ephemeral port")
                    .port();
                eprintln!();
                eprintln!(
                    "!!! e2e_alerting: cannot bind port 276 ({e}; effective uid {}, not root).",
                    effective_uid().map_or("unknown".to_string(), |u| u.to_string())
                );
                eprintln!(
                    "!!! Using tcp port {port} instead, added to the exporter with --watch.ports={port}."
                );
                eprintln!("!!! Run as root to test port 276 itself.");
                eprintln!();
                Self { port }
            }
            Err(e) => panic!(
                "port 276 is not free ({e}): something else listens there; stop it and rerun"
            ),
        }
    }
}

/// Effective uid from /proc/self/status (second field of the Uid: line).
fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// This test process as the exporter should report it.
struct Identity {
    pid: String,
    comm: String,
}

impl Identity {
    fn of_this_process() -> Self {
        Self {
            pid: std::process::id().to_string(),
            comm: fs::read_to_string("/proc/self/comm")
                .expect("read /proc/self/comm")
                .trim_end()
                .to_string(),
        }
    }

    /// `process` must be our name: the kernel's comm, or the untruncated
    /// executable name when comm was cut at 15 bytes.
    fn assert_process_label(&self, process: &str) {
        if process == self.comm {
            return;
        }
        let exe_name = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        assert!(
            self.comm.len() == 15 && process.starts_with(&self.comm) && process == exe_name,
            "process label {process:?} is not this test's process name {:?} (/proc/self/comm)",
            self.comm
        );
    }
}

/// Everything the test started, stopped when it goes out of scope, even on a
/// failed assertion.
struct Stack {
    dir: PathBuf,
    children: Vec<(&'static str, Child, PathBuf)>,
}

impl Stack {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "unassigned-port-e2e-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&dir).expect("create the temp dir");
        Self {
            dir,
            children: Vec::new(),
        }
    }

    fn spawn(&mut self, name: &'static str, program: &Path, args: &[String]) {
        let log_path = self.dir.join(format!("{name}.log"));
        let log = fs::File::create(&log_path).expect("create a log file");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({}): {e}", program.display()));
        eprintln!(
            "started {name} (pid {}): {} {}",
            child.id(),
            program.display(),
            args.join(" ")
        );
        self.children.push((name, child, log_path));
    }

    /// Fails at once, with the logs, when a child has exited.
    fn check_alive(&mut self) {
        let mut dead = None;
        for (name, child, _) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                dead = Some(format!("{name} exited early with {status}"));
                break;
            }
        }
        if let Some(message) = dead {
            self.fail(&message);
        }
    }

    fn fail(&self, message: &str) -> ! {
        panic!(
            "{message} (logs are printed below, temp dir {})",
            self.dir.display()
        );
    }

    /// Polls `probe` until it yields a value, failing after [`SETTLE`].
    fn wait_for<T>(&mut self, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + SETTLE;
        loop {
            if let Some(value) = probe() {
                return value;
            }
            self.check_alive();
            if Instant::now() >= deadline {
                self.fail(&format!("timed out after {SETTLE:?} waiting for {what}"));
            }
            thread::sleep(POLL);
        }
    }

    fn wait_http_ok(&mut self, name: &str, url: &str) {
        let agent = http_agent();
        let deadline = Instant::now() + STARTUP;
        loop {
            match agent.get(url).call() {
                Ok(response) if response.status() == 200 => return,
                Ok(response) => eprintln!("{name}: {url} answered {}", response.status()),
                Err(_) => {}
            }
            self.check_alive();
            if Instant::now() >= deadline {
                self.fail(&format!("{name} did not answer {url} within {STARTUP:?}"));
            }
            thread::sleep(POLL);
        }
    }

    /// Waits for a webhook notification matching `wanted`, printing the
    /// others it sees on the way.
    fn wait_for_webhook(
        &mut self,
        webhook: &Webhook,
        what: &str,
        wanted: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + SETTLE;
        loop {
            match webhook.bodies.recv_timeout(POLL) {
                Ok(body) => {
                    let message: Value = serde_json::from_str(&body).unwrap_or_else(|e| {
                        self.fail(&format!("webhook body is not JSON ({e}): {body}"))
                    });
                    if wanted(&message) {
                        return message;
                    }
                    eprintln!("webhook (not yet {what}): {body}");
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.fail("the webhook server stopped"),
            }
            self.check_alive();
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "timed out after {SETTLE:?} waiting for {what} at the webhook"
                ));
            }
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for (name, child, _) in self.children.iter_mut().rev() {
            if let Err(e) = child.kill() {
                eprintln!("could not stop {name}: {e}");
            }
            let _ = child.wait();
        }
        if thread::panicking() {
            for (name, _, log_path) in &self.children {
                let log = fs::read_to_string(log_path).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(40)..];
                eprintln!("----- last {} lines of {name}'s log -----", tail.len());
                for line in tail {
                    eprintln!("{line}");
                }
            }
            eprintln!("temp dir kept for inspection: {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The HTTP server the Alertmanager webhook posts to: each request body goes
/// into a channel, and every request gets 200.
struct Webhook {
    port: u16,
    bodies: Receiver<String>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Webhook {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the webhook listener");
        let port = listener.local_addr().expect("webhook address").port();
        listener
            .set_nonblocking(true)
            .expect("make the webhook listener non-blocking");
        let (sender, bodies) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let thread = thread::spawn(move || serve_webhook(&listener, &sender, &stop_flag));
        Self {
            port,
            bodies,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_webhook(listener: &TcpListener, bodies: &Sender<String>, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => match read_http_body(stream) {
                Ok(body) => {
                    if bodies.send(body).is_err() {
                        return;
                    }
                }
                Err(e) => eprintln!("webhook: bad request: {e}"),
            },
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                eprintln!("webhook: accept failed: {e}");
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Reads one HTTP/1.1 request (Content-Length or chunked body), answers 200
/// and closes the connection.
fn read_http_body(mut stream: TcpStream) -> std::io::Result<String> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut content_length = 0usize;
    let mut chunked = false;
    let mut line = String::new();
    reader.read_line(&mut line)?; // request line
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size_field = line.trim().split(';').next().unwrap_or("0");
            let size = usize::from_str_radix(size_field, 16)
                .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))?;
            let mut chunk = vec![0; size + 2]; // data and CRLF
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(content_length, 0);
        reader.read_exact(&mut body)?;
    }
    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    stream.flush()?;
    String::from_utf8(body).map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))
}

/// The shipped Alertmanager config with the webhook URL replaced and the
/// grouping timers shortened so that notifications arrive within seconds.
fn alertmanager_config_for_test(shipped: &str, webhook_url: &str) -> String {
    assert!(
        shipped.contains(&format!("name: {RECEIVER}")),
        "alertmanager.yml has no receiver named {RECEIVER}"
    );
    let mut urls = 0;
    let lines: Vec<String> = shipped
        .lines()
        .map(|line| {
            let indent = &line[..line.len() - line.trim_start().len()];
            let key = line.trim_start().trim_start_matches("- ");
            let prefix = if line.trim_start().starts_with("- ") {
                "- "
            } else {
                ""
            };
            if key.starts_with("url: http") {
                urls += 1;
                format!("{indent}{prefix}url: {webhook_url}")
            } else if key.starts_with("group_wait:") || key.starts_with("group_interval:") {
                let name = key.split(':').next().unwrap_or_default();
                format!("{indent}{prefix}{name}: 1s")
            } else if key.starts_with("repeat_interval:") {
                format!("{indent}{prefix}repeat_interval: 1h")
            } else {
                line.to_string()
            }
        })
        .collect();
    assert_eq!(
        urls, 1,
        "expected exactly one webhook url: line in alertmanager.yml"
    );
    lines.join("\n") + "\n"
}

fn prometheus_config(rules_file: &Path, exporter: &str, alertmanager_port: u16) -> String {
    format!(
        "global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - '{rules}'
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['127.0.0.1:{alertmanager_port}']
scrape_configs:
  - job_name: {JOB}
    static_configs:
      - targets: ['{exporter}']
",
        rules = rules_file.display()
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

fn http_agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build()
}

/// A client for Prometheus' HTTP API.
struct Prometheus {
    base: String,
    agent: ureq::Agent,
}

impl Prometheus {
    fn new(port: u16) -> Self {
        Self {
            base: format!("http://127.0.0.1:{port}"),
            agent: http_agent(),
        }
    }

    /// Runs an instant query; `Err` unless Prometheus says `success`.
    fn query(&self, promql: &str) -> Result<Value, String> {
        let request = self
            .agent
            .get(&format!("{}/api/v1/query", self.base))
            .query("query", promql);
        api_data(request.call())
    }

    /// An instant query expected to return a vector.
    fn vector(&self, promql: &str) -> Result<Vec<Value>, String> {
        let data = self.query(promql)?;
        data["result"]
            .as_array()
            .cloned()
            .ok_or_else(|| format!("not a vector: {data}"))
    }

    fn label_values(&self, label_name: &str, selector: &str) -> Result<Vec<String>, String> {
        let request = self
            .agent
            .get(&format!("{}/api/v1/label/{label_name}/values", self.base))
            .query("match[]", selector);
        let data = api_data(request.call())?;
        Ok(data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect())
    }
}

fn api_data(response: Result<ureq::Response, ureq::Error>) -> Result<Value, String> {
    let body = match response {
        Ok(response) => response.into_string().map_err(|e| e.to_string())?,
        Err(ureq::Error::Status(code, response)) => {
            let body = response.into_string().unwrap_or_default();
            return Err(format!("HTTP {code}: {body}"));
        }
        Err(e) => return Err(e.to_string()),
    };
    let json: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    if json["status"] != "success" {
        return Err(format!("status is not success: {body}"));
    }
    Ok(json["data"].clone())
}

/// One PromQL query of a dashboard panel, variables already substituted.
struct PanelQuery {
    panel: String,
    panel_type: String,
    expr: String,
}

/// Every `targets[].expr` of every panel (rows' nested panels included).
fn dashboard_queries(dashboard: &Value) -> Vec<PanelQuery> {
    fn walk(panels: &Value, out: &mut Vec<PanelQuery>) {
        for panel in panels.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push(PanelQuery {
                        panel: panel["title"].as_str().unwrap_or_default().to_string(),
                        panel_type: panel["type"].as_str().unwrap_or_default().to_string(),
                        expr: substitute_grafana_variables(expr),
                    });
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    assert!(!out.is_empty(), "the dashboard has no queries");
    out
}

/// `(label, selector)` of every `label_values(selector, label)` template
/// variable.
fn dashboard_label_values(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["query"]["query"]
            .as_str()
            .or_else(|| variable["query"].as_str())
            .unwrap_or_default();
        let Some(inner) = query
            .trim()
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
        else {
            continue;
        };
        if let Some((selector, label_name)) = inner.rsplit_once(',') {
            out.push((
                label_name.trim().to_string(),
                substitute_grafana_variables(selector.trim()),
            ));
        }
    }
    out
}

/// Replaces the Grafana variables the dashboard uses with values that select
/// everything, as "All" would.
fn substitute_grafana_variables(expr: &str) -> String {
    // Longer names first, so `$__interval_ms` is not read as `$__interval`.
    let values = [
        ("__rate_interval", "1m"),
        ("__interval_ms", "60000"),
        ("__interval", "1m"),
        ("__range_ms", "3600000"),
        ("__range_s", "3600"),
        ("__range", "1h"),
        ("instance", ".*"),
        ("job", ".*"),
    ];
    let mut out = expr.to_string();
    for (name, value) in values {
        out = out.replace(&format!("${{{name}}}"), value);
        out = out.replace(&format!("${name}"), value);
    }
    assert!(!out.contains('$'), "unknown Grafana variable in {expr}");
    out
}

/// The value of every `expr:` key in a rules file: plain, quoted, or a
/// block scalar (`|`, `>`) whose lines are joined with spaces.
fn rule_expressions(rules_yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = rules_yaml.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let Some(value) = trimmed
            .strip_prefix("- expr:")
            .or_else(|| trimmed.strip_prefix("expr:"))
        else {
            continue;
        };
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            let indent = line.len() - trimmed.len();
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim())
                .filter(|l| !l.is_empty())
                .collect();
            out.push(block.join(" "));
        } else if let Some(quoted) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            out.push(quoted.replace("\\\"", "\"").replace("\\\\", "\\"));
        } else if let Some(quoted) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
            out.push(quoted.replace("''", "'"));
        } else {
            let plain = value.split(" #").next().unwrap_or_default().trim();
            out.push(plain.to_string());
        }
    }
    out
}

fn label<'a>(sample_or_alert: &'a Value, name: &str) -> &'a str {
    let labels = if sample_or_alert.get("metric").is_some() {
        &sample_or_alert["metric"]
    } else if sample_or_alert.get("labels").is_some() {
        &sample_or_alert["labels"]
    } else {
        sample_or_alert
    };
    labels[name].as_str().unwrap_or_default()
}

fn alerts(message: &Value) -> impl Iterator<Item = &Value> {
    message["alerts"].as_array().into_iter().flatten()
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

#[test]
fn rule_expressions_reads_plain_quoted_and_block_values() {
    let yaml = "groups:\n  - name: g\n    rules:\n      - record: a\n        expr: sum(x) # note\n      - alert: B\n        expr: \"up{job=\\\"j\\\"} == 0\"\n      - alert: C\n        expr: |\n          rate(y[5m])\n            > 0\n        for: 1m\n";
    assert_eq!(
        rule_expressions(yaml),
        vec![
            "sum(x)".to_string(),
            "up{job=\"j\"} == 0".to_string(),
            "rate(y[5m]) > 0".to_string()
        ]
    );
}

#[test]
fn grafana_variables_become_select_all_values() {
    assert_eq!(
        substitute_grafana_variables(
            "rate(m{job=~\"$job\", instance=~\"${instance}\"}[$__rate_interval])"
        ),
        "rate(m{job=~\".*\", instance=~\".*\"}[1m])"
    );
}
