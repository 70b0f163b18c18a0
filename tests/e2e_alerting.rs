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
//! A second test gives the listener Kubernetes names: a child process in a
//! cgroup laid out as the kubelet lays out a containerd container (so the
//! exporter labels it with pod_uid and container_id from its own cgroup
//! parser), and two loopback HTTP targets serving kube-state-metrics'
//! kube_pod_info and kube_pod_container_info for that pod (two replicas, so
//! Prometheus holds every series twice). The recorded
//! `unassigned_port_listeners:pod_names` series and the alert must carry
//! pod_namespace, pod_name and container_name, once; a host listener beside
//! it must come through the same record without names. It needs root to
//! make the cgroup.
//!
//! Without root the test cannot bind port 276; it then watches a free high
//! port added with `--watch.ports` and says so. Without the Debian packages
//! (or, for the second test, a writable cgroup2 hierarchy) a test skips
//! with one line, or fails in CI (see `common::capability`; the top-level
//! test script installs the packages).

use std::ffi::{CStr, CString};
use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

mod common;

use common::capability::{Capability, gate};
use common::{Exporter, free_port, is_root, listen_before_exec};

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
    let Some(servers) = ServerBinaries::find_or_skip() else {
        return;
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules_file = repo.join("deploy/prometheus/unassigned-ports.rules.yml");
    let alertmanager_file = repo.join("deploy/alertmanager/alertmanager.yml");
    let dashboard_file = repo.join("dashboards/unassigned-ports.json");

    let target = WatchedPort::choose();
    let mut stack = Stack::new();
    let webhook = HttpStub::start("");
    let prometheus_port = free_port();
    let alertmanager_port = free_port();

    // Exporter, on a port it binds itself (see tests/common).
    // The background sampler too, so that its dashboard panel and the
    // UnassignedPortListenerSeenBetweenScrapes rule run on real series.
    let mut exporter_args = vec!["--collector.sample-interval=200ms".to_string()];
    if target.port != PORT_276 {
        exporter_args.push(format!("--watch.ports={}", target.port));
    }
    let exporter_args: Vec<&str> = exporter_args.iter().map(String::as_str).collect();
    let exporter = Exporter::start(&exporter_args);
    let exporter_instance = format!("127.0.0.1:{}", exporter.port);

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
        prometheus_config(
            &rules_file,
            Some(alertmanager_port),
            &exporter_scrape_config(&exporter_instance, ""),
        ),
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
    // Severity follows exposure: a wildcard is as exposed as the addresses
    // the host has (only lo in a namespace of its own: loopback, warning).
    let exposure = label(alert, "exposure");
    assert_eq!(exposure, common::host_wildcard_exposure(true, false));
    let severity = if exposure == "loopback" {
        "warning"
    } else {
        "critical"
    };
    assert_eq!(label(alert, "severity"), severity, "exposure {exposure}");
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

/// Namespace, pod and container names the stand-in kube-state-metrics gives
/// the fake pod.
const POD_NAMESPACE: &str = "shop";
const POD_NAME: &str = "web-7d9f8c6b5-x2k4p";
const CONTAINER_NAME: &str = "app";

#[test]
fn kube_state_metrics_names_reach_recorded_series() {
    let started = Instant::now();
    let Some(servers) = ServerBinaries::find_or_skip() else {
        return;
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules_file = repo.join("deploy/prometheus/unassigned-ports.rules.yml");

    // Two watched high ports: one for the pod's process, one for a host
    // listener of this test process (no pod, so no names).
    let pod_port = free_wildcard_port();
    let host_listener = TcpListener::bind(("0.0.0.0", 0)).expect("bind a host listener");
    let host_port = host_listener
        .local_addr()
        .expect("host listener address")
        .port();
    let ids = PodIds::new();

    // Two kube-state-metrics replicas serving the same pods.
    let exposition = kube_state_metrics_exposition(&ids);
    let ksm = [HttpStub::start(&exposition), HttpStub::start(&exposition)];

    let mut stack = Stack::new();
    let watch_flag = format!("--watch.ports={pod_port},{host_port}");
    let exporter = Exporter::start(&[watch_flag.as_str()]);
    let exporter_instance = format!("127.0.0.1:{}", exporter.port);
    let prometheus_port = free_port();
    // The exporter's job gets the target labels prometheus-operator gives
    // it in a cluster: its own pod's namespace, pod and container. The
    // names must not land there. kube-state-metrics is scraped with
    // honor_labels, as kube-prometheus-stack does.
    let scrape_configs = exporter_scrape_config(
        &exporter_instance,
        "namespace: monitoring, pod: unassigned-port-exporter-e2e, container: exporter",
    ) + &format!(
        "  - job_name: kube-state-metrics
    honor_labels: true
    static_configs:
      - targets: ['127.0.0.1:{}', '127.0.0.1:{}']
",
        ksm[0].port, ksm[1].port
    );
    let prom_config_path = stack.dir.join("prometheus.yml");
    fs::write(
        &prom_config_path,
        prometheus_config(&rules_file, None, &scrape_configs),
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
        ],
    );
    let prometheus = Prometheus::new(prometheus_port);
    stack.wait_http_ok("exporter", &format!("http://{exporter_instance}/metrics"));
    stack.wait_http_ok("prometheus", &format!("{}/-/ready", prometheus.base));

    // Both replicas scraped before the pod's process listens, so its
    // listener has names from its first evaluation and the alert one label
    // set (a listener that beats kube-state-metrics would fire once without).
    stack.wait_for(
        "Prometheus to scrape both kube-state-metrics replicas",
        || {
            let up = prometheus
                .vector("up{job=\"kube-state-metrics\"} == 1")
                .ok()?;
            (up.len() == 2).then_some(())
        },
    );
    let _pod = match FakePodProcess::start(pod_port, &ids) {
        Ok(pod) => pod,
        Err(why) => {
            gate(Capability::Cgroups, Err(why));
            return;
        }
    };
    eprintln!(
        "[{:>5.1}s] a process in cgroup pod{}/{} listens on 0.0.0.0:{pod_port}/tcp",
        started.elapsed().as_secs_f64(),
        ids.pod_uid,
        ids.container_id
    );

    // The exporter attributes it by its cgroup (else the names cannot come).
    let raw_query = format!("unassigned_port_listeners{{port=\"{pod_port}\"}}");
    stack.wait_for("the pod's listener with its ids in Prometheus", || {
        let series = prometheus.vector(&raw_query).ok()?;
        series
            .iter()
            .any(|s| {
                label(s, "container_id") == ids.container_id && label(s, "pod_uid") == ids.pod_uid
            })
            .then_some(())
    });

    // The record carries the names, once, beside the exporter's own target
    // labels, although every kube-state-metrics series is there twice.
    let record_query = format!("unassigned_port_listeners:pod_names{{port=\"{pod_port}\"}}");
    let named = stack.wait_for("the named record of the pod's listener", || {
        prometheus
            .vector(&record_query)
            .ok()
            .filter(|v| v.iter().any(|s| !label(s, "pod_name").is_empty()))
    });
    eprintln!("recorded: {}", Value::Array(named.clone()));
    assert_eq!(named.len(), 1, "one record series per listener: {named:?}");
    let record = &named[0];
    for (name, want) in [
        ("pod_namespace", POD_NAMESPACE),
        ("pod_name", POD_NAME),
        ("container_name", CONTAINER_NAME),
        ("pod_uid", ids.pod_uid.as_str()),
        ("container_id", ids.container_id.as_str()),
        ("namespace", "monitoring"),
        ("pod", "unassigned-port-exporter-e2e"),
        ("container", "exporter"),
        ("job", JOB),
        ("instance", exporter_instance.as_str()),
        ("process", "sleep"),
    ] {
        assert_eq!(label(record, name), want, "label {name} of {record}");
    }

    // The host listener comes through the same record, without names.
    let host_query = format!("unassigned_port_listeners:pod_names{{port=\"{host_port}\"}}");
    let host = stack.wait_for("the host listener's record", || {
        prometheus
            .vector(&host_query)
            .ok()
            .filter(|v| !v.is_empty())
    });
    for series in &host {
        for name in ["pod_namespace", "pod_name", "container_name"] {
            assert_eq!(label(series, name), "", "label {name} of {series}");
        }
    }

    // The alert reads the record: one alert, with the names, and a summary
    // naming the pod.
    let alert = stack.wait_for("UnassignedPortListener for the pod's listener", || {
        prometheus.alerts().ok()?.into_iter().find(|a| {
            label(a, "alertname") == ALERT
                && label(a, "port") == pod_port.to_string()
                && a["state"] == "firing"
        })
    });
    eprintln!("alert: {}", pretty(&alert));
    assert_eq!(label(&alert, "pod_name"), POD_NAME, "alert {alert}");
    assert_eq!(
        label(&alert, "container_name"),
        CONTAINER_NAME,
        "alert {alert}"
    );
    let summary = alert["annotations"]["summary"].as_str().unwrap_or_default();
    assert!(
        summary.ends_with(&format!(
            " in pod {POD_NAMESPACE}/{POD_NAME} (container {CONTAINER_NAME})"
        )),
        "summary: {summary}"
    );
    let series_query = format!("ALERTS{{alertname=\"{ALERT}\",port=\"{pod_port}\"}}");
    let active = prometheus
        .vector(&series_query)
        .unwrap_or_else(|e| stack.fail(&format!("query {series_query}: {e}")));
    assert_eq!(active.len(), 1, "one alert for the listener: {active:?}");
    drop(host_listener);
    eprintln!(
        "kube_state_metrics_names_reach_recorded_series passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// A free TCP port on every address (the pod's process binds 0.0.0.0).
fn free_wildcard_port() -> u16 {
    TcpListener::bind(("0.0.0.0", 0))
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Made-up ids of the fake pod, new for each run so that no leftover cgroup
/// of an earlier run is in the way.
struct PodIds {
    /// As the kubelet writes it (and kube-state-metrics' `uid`).
    pod_uid: String,
    /// 64 hex digits, bare as in the cgroup; kube-state-metrics writes
    /// `containerd://` before it.
    container_id: String,
}

impl PodIds {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let pid = u64::from(std::process::id());
        let hex = format!(
            "{nanos:016x}{pid:016x}{:016x}{:016x}",
            nanos.rotate_left(23) ^ pid,
            !nanos
        );
        Self {
            pod_uid: format!(
                "{}-{}-{}-{}-{}",
                &hex[0..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..32]
            ),
            container_id: hex,
        }
    }
}

/// kube-state-metrics' text for a namespace with the fake pod (its `app`
/// container, a sidecar, and a container still waiting, so without an id)
/// and one other pod, in kube-state-metrics' label formats.
fn kube_state_metrics_exposition(ids: &PodIds) -> String {
    let uid = &ids.pod_uid;
    let id = &ids.container_id;
    let sidecar = id.chars().rev().collect::<String>();
    format!(
        r#"# HELP kube_pod_info [STABLE] Information about pod.
# TYPE kube_pod_info gauge
kube_pod_info{{namespace="{POD_NAMESPACE}",pod="{POD_NAME}",uid="{uid}",host_ip="10.0.3.7",pod_ip="10.244.3.18",node="node3",created_by_kind="ReplicaSet",created_by_name="web-7d9f8c6b5",priority_class="",host_network="false"}} 1
kube_pod_info{{namespace="kube-system",pod="coredns-5d78c9869d-6xw7z",uid="7a0c9e1b-2d3f-4a5b-8c6d-9e0f1a2b3c4d",host_ip="10.0.3.5",pod_ip="10.244.1.2",node="node1",created_by_kind="ReplicaSet",created_by_name="coredns-5d78c9869d",priority_class="system-cluster-critical",host_network="false"}} 1
# HELP kube_pod_container_info [STABLE] Information about a container in a pod.
# TYPE kube_pod_container_info gauge
kube_pod_container_info{{namespace="{POD_NAMESPACE}",pod="{POD_NAME}",uid="{uid}",container="{CONTAINER_NAME}",image_spec="registry.example/shop/web:1.4",image="registry.example/shop/web:1.4",image_id="registry.example/shop/web@sha256:0b1c",container_id="containerd://{id}"}} 1
kube_pod_container_info{{namespace="{POD_NAMESPACE}",pod="{POD_NAME}",uid="{uid}",container="istio-proxy",image_spec="docker.io/istio/proxyv2:1.22.0",image="docker.io/istio/proxyv2:1.22.0",image_id="docker.io/istio/proxyv2@sha256:9f8e",container_id="containerd://{sidecar}"}} 1
kube_pod_container_info{{namespace="{POD_NAMESPACE}",pod="{POD_NAME}",uid="{uid}",container="migrate",image_spec="registry.example/shop/migrate:1.4",image="registry.example/shop/migrate:1.4",image_id="",container_id=""}} 1
kube_pod_container_info{{namespace="kube-system",pod="coredns-5d78c9869d-6xw7z",uid="7a0c9e1b-2d3f-4a5b-8c6d-9e0f1a2b3c4d",container="coredns",image_spec="registry.k8s.io/coredns/coredns:v1.10.1",image="registry.k8s.io/coredns/coredns:v1.10.1",image_id="registry.k8s.io/coredns/coredns@sha256:a0ea",container_id="containerd://0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"}} 1
"#
    )
}

/// A `sleep` that listens on a TCP port from inside a cgroup named as the
/// kubelet's cgroupfs driver names a container
/// (`.../kubepods/besteffort/pod<UID>/<container id>`): what the exporter
/// sees of a process in a pod, without a cluster. Killed, and its cgroups
/// removed, when dropped.
struct FakePodProcess {
    child: Child,
    /// Directories made under the cgroup2 mount, innermost first.
    cgroups: Vec<PathBuf>,
}

impl FakePodProcess {
    /// `Err` says why this machine cannot do it (not root, no writable
    /// cgroup2 hierarchy).
    fn start(port: u16, ids: &PodIds) -> Result<Self, String> {
        if !is_root() {
            return Err("not root, cannot make cgroups".to_string());
        }
        let mount = cgroup2_mount().ok_or("no cgroup2 hierarchy in /proc/self/mounts")?;
        let top = mount.join(format!("unassigned-port-e2e-{}", std::process::id()));
        let leaf = top
            .join("kubepods/besteffort")
            .join(format!("pod{}", ids.pod_uid))
            .join(&ids.container_id);
        fs::create_dir_all(&leaf).map_err(|e| format!("mkdir {}: {e}", leaf.display()))?;
        let cgroups: Vec<PathBuf> = leaf
            .ancestors()
            .take_while(|dir| dir.starts_with(&top))
            .map(Path::to_path_buf)
            .collect();
        let procs = CString::new(
            leaf.join("cgroup.procs")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .expect("no NUL in a cgroup path");
        let mut command = Command::new("sleep");
        command
            .arg("600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: the closure makes only async-signal-safe syscalls on data
        // prepared before the fork. The cgroup comes first, so the listener
        // is never seen outside it.
        unsafe {
            command.pre_exec(move || {
                join_cgroup_before_exec(&procs)?;
                listen_before_exec(port, true)
            });
        }
        match command.spawn() {
            Ok(child) => Ok(Self { child, cgroups }),
            Err(e) => {
                remove_cgroups(&cgroups);
                Err(format!("start a listener in {}: {e}", leaf.display()))
            }
        }
    }
}

impl Drop for FakePodProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        remove_cgroups(&self.cgroups);
    }
}

/// Removes cgroup directories, innermost first. A cgroup whose last process
/// was just reaped may be busy for a moment, hence the short retry.
fn remove_cgroups(dirs: &[PathBuf]) {
    for dir in dirs {
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Err(e) = fs::remove_dir(dir) {
            if e.kind() == ErrorKind::NotFound {
                break;
            }
            if Instant::now() >= deadline {
                eprintln!("could not remove cgroup {}: {e}", dir.display());
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Where the cgroup2 (unified) hierarchy is mounted: /sys/fs/cgroup on
/// current systems, /sys/fs/cgroup/unified in hybrid mode.
fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(fields[1]))
    })
}

/// Runs between fork and exec: moves the calling process into the cgroup
/// whose `cgroup.procs` is `procs` (writing "0" means "me").
fn join_cgroup_before_exec(procs: &CStr) -> std::io::Result<()> {
    // SAFETY: open, write and close on a path built before the fork; no
    // allocation, as the post-fork child requires.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let written = libc::write(fd, b"0".as_ptr().cast(), 1);
        let error = std::io::Error::last_os_error();
        libc::close(fd);
        if written != 1 {
            return Err(error);
        }
    }
    Ok(())
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
                // The listeners table queries the Kubernetes-names record
                // (falling back to the raw series); other tables (the
                // sampler's) may use the metric inside an expression.
                let expr = q.expr.trim_start();
                if q.panel_type == "table"
                    && (expr.starts_with("unassigned_port_listeners{")
                        || expr.starts_with("unassigned_port_listeners:pod_names{"))
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

    /// The servers, or `None` after saying the test is skipped (a failure
    /// under CI, where tests/run-all.sh installs them).
    fn find_or_skip() -> Option<Self> {
        let found = Self::find();
        let why = "`prometheus` and/or `prometheus-alertmanager` not found in PATH; \
                   install the Debian packages first: apt-get install -y prometheus prometheus-alertmanager";
        if found.is_none() {
            gate(Capability::PrometheusStack, Err(why.to_string()));
        }
        found
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
        webhook: &HttpStub,
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

/// A tiny HTTP server on a loopback ephemeral port: each request body goes
/// into a channel, and every request gets 200 with the same response body.
/// The Alertmanager webhook (empty response) and the stand-in
/// kube-state-metrics targets (a fixed exposition) are both one of these.
struct HttpStub {
    port: u16,
    bodies: Receiver<String>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpStub {
    fn start(response: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stub listener");
        let port = listener.local_addr().expect("stub address").port();
        listener
            .set_nonblocking(true)
            .expect("make the stub listener non-blocking");
        let (sender, bodies) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let response = response.to_string();
        let thread = thread::spawn(move || serve_stub(&listener, &sender, &stop_flag, &response));
        Self {
            port,
            bodies,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HttpStub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_stub(listener: &TcpListener, bodies: &Sender<String>, stop: &AtomicBool, response: &str) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => match read_http_body(stream, response) {
                Ok(body) => {
                    if bodies.send(body).is_err() {
                        return;
                    }
                }
                Err(e) => eprintln!("http stub: bad request: {e}"),
            },
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                eprintln!("http stub: accept failed: {e}");
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Reads one HTTP/1.1 request (Content-Length or chunked body), answers 200
/// with `response` (Prometheus' text format when it is not empty) and closes
/// the connection.
fn read_http_body(mut stream: TcpStream, response: &str) -> std::io::Result<String> {
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
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{response}",
        response.len()
    )?;
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

/// Prometheus scraping and evaluating every second, sending alerts to the
/// Alertmanager on `alertmanager_port` if there is one.
fn prometheus_config(
    rules_file: &Path,
    alertmanager_port: Option<u16>,
    scrape_configs: &str,
) -> String {
    let alerting = alertmanager_port.map_or(String::new(), |port| {
        format!(
            "alerting:
  alertmanagers:
    - static_configs:
        - targets: ['127.0.0.1:{port}']
"
        )
    });
    format!(
        "global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - '{rules}'
{alerting}scrape_configs:
{scrape_configs}",
        rules = rules_file.display()
    )
}

/// The exporter's scrape job; `target_labels` (YAML flow-mapping entries)
/// are added to its series as a service discovery would.
fn exporter_scrape_config(exporter: &str, target_labels: &str) -> String {
    format!(
        "  - job_name: {JOB}
    static_configs:
      - targets: ['{exporter}']
        labels: {{{target_labels}}}
"
    )
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

    /// Every active alert (`/api/v1/alerts`), annotations included.
    fn alerts(&self) -> Result<Vec<Value>, String> {
        let request = self.agent.get(&format!("{}/api/v1/alerts", self.base));
        let data = api_data(request.call())?;
        data["alerts"]
            .as_array()
            .cloned()
            .ok_or_else(|| format!("no alerts array: {data}"))
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
