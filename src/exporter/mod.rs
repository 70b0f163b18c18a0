//! Wiring: from parsed flags to a running exporter.
//!
//! [`Exporter::from_flags`] builds everything a scrape needs (registry and
//! watch set, socket source, collector, metric registry, scraper) without
//! starting a runtime, so the benchmark and the fixture tests build the same
//! thing the binary serves. [`run`] adds the binary's parts: the async
//! runtime, the listeners, web-config reloads and signals.

// Platform halves, one file each, behind the same functions.
#[cfg_attr(target_os = "linux", path = "events_linux.rs")]
#[cfg_attr(not(target_os = "linux"), path = "events_other.rs")]
mod events;
#[cfg_attr(unix, path = "os_unix.rs")]
#[cfg_attr(not(unix), path = "os_other.rs")]
mod os;

use crate::cli::Flags;
use crate::collect::collector::ListenerCollector;
use crate::collect::sampler;
use crate::collect::scrape::Scraper;
use crate::kernel::procfs::ProcRoot;
use crate::metrics::info as info_metrics;
use crate::metrics::reload::{ConfigFile, ReloadMetrics};
use crate::model::{Judge, NetnsNamer};
use crate::owners::ExeHashes;
use crate::policy::allow::{self, reload as allow_reload};
use crate::policy::registry::{Registry, Transport, csv_loader};
use crate::policy::watch::WatchSet;
use crate::sockets::{self, Opened};
use crate::web::config::{self, ActiveWebConfig};
use crate::web::{reload as web_reload, server as http};
use events::EventSide;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// Exit code for bad flags, files or settings.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code when the listen address cannot be bound or serving fails.
pub const EXIT_CANNOT_LISTEN: u8 = 1;

/// Why the exporter stopped at start: an exit code and one line.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    fn bad_input(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_BAD_INPUT,
            message: message.into(),
        }
    }

    fn cannot_listen(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_CANNOT_LISTEN,
            message: message.into(),
        }
    }
}

/// Extra collectors beside the listener collection.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extras {
    /// The exporter's own `process_*` metrics (Linux).
    pub process_metrics: bool,
    /// `--collector.sample-interval`.
    pub sample_interval: Option<Duration>,
    /// Kernel listen and destroy events (Linux, netlink backend).
    pub kernel_events: bool,
}

/// Everything a scrape needs, built and checked.
pub struct Exporter {
    /// Single-flight collection and rendering; owns the collector.
    pub scraper: Arc<Scraper>,
    /// The registry the scraper renders beside the listeners; the HTTP side
    /// registers its counters here.
    pub metrics: prometheus::Registry,
    /// `--web.config.file` as loaded now; swapped whole on reload.
    pub web_config: Arc<RwLock<Arc<ActiveWebConfig>>>,
    /// The kernel event sources, kept running while the exporter lives.
    _events: Option<EventSide>,
    /// The watch set; its `--watch.allow-file` rules are swapped on reload.
    pub watch: Arc<WatchSet>,
    /// Reload results of the config files in use (none for
    /// [`Exporter::from_parts`]).
    pub reloads: ReloadMetrics,
}

impl Exporter {
    /// Builds the exporter the flags describe; bad input is a [`Failure`]
    /// with exit code 2.
    pub fn from_flags(flags: &Flags) -> Result<Exporter, Failure> {
        let registry = load_registry(flags)?;
        let watch = Arc::new(WatchSet::new(
            registry,
            flags.watch_scope,
            &flags.extra_ports(),
            flags.watch_allow.clone(),
        ));
        allow::warn_about_comm_only(watch.flag_rules(), "--watch.allow");
        for (slot, file) in flags.watch_allow_files.iter().enumerate() {
            allow::warn_about_comm_only(&file.rules, &file.path.display().to_string());
            tracing::info!(file = %file.path.display(), rules = file.rules.len(), "loaded the allow file");
            watch.set_file_rules(slot, file.rules.clone());
        }
        let web_config = load_web_config(flags)?;
        let proc_root = ProcRoot::new(flags.procfs.clone(), flags.netns_path.clone());
        let extras = Extras {
            process_metrics: true,
            sample_interval: flags.sample_interval,
            kernel_events: true,
        };
        // Refuse what opening the sockets would refuse for the flags alone
        // before the event side starts: it may log (a capture that cannot
        // run), and bad input must end with one line.
        if flags.backend == sockets::Backend::Netstat2 {
            crate::kernel::netns::choose_mode(flags.netns, false, "netstat2", &proc_root)
                .map_err(Failure::bad_input)?;
        }
        let naming = Naming::new(&watch, &proc_root);
        // One executable hash cache for collections, events and the trail.
        let hashes = ExeHashes::start();
        // The trail's lines are info lines: above info there is no trail.
        let trail = (flags.log_events && flags.log_level >= tracing::Level::INFO)
            .then_some(flags.log_events_per_second);
        // The event side starts first: it owns what it learns and hands the
        // socket source a read-only view of it.
        let events = EventSide::start(&naming.judge, naming.namer, &proc_root, &hashes, trail);
        let links = events.links();
        let opened = sockets::open(flags.backend, flags.netns, &proc_root, &links)
            .map_err(Failure::bad_input)?;
        let mut exporter = Exporter::assemble(
            watch,
            naming,
            opened,
            proc_root,
            extras,
            links,
            hashes,
            Some(events),
        )?;
        exporter.web_config = Arc::new(RwLock::new(Arc::new(web_config)));
        // The loads at start count as the first reloads (both succeeded, or
        // the exporter would have stopped with exit code 2).
        if flags.web_config_file.is_some() {
            exporter.reloads.record(ConfigFile::Web, 0, true);
        }
        for slot in 0..flags.watch_allow_files.len() {
            exporter.reloads.record(ConfigFile::Allow, slot, true);
        }
        Ok(exporter)
    }

    /// Builds an exporter around a given socket source (tests and
    /// benchmarks pass their own), with plain HTTP, no kernel events and no
    /// event trail.
    pub fn from_parts(
        watch: Arc<WatchSet>,
        opened: Opened,
        proc_root: ProcRoot,
        extras: Extras,
    ) -> Result<Exporter, Failure> {
        let naming = Naming::new(&watch, &proc_root);
        Exporter::assemble(
            watch,
            naming,
            opened,
            proc_root,
            extras,
            sockets::EventLinks::default(),
            ExeHashes::start(),
            None,
        )
    }

    /// Puts the parts together; each is built once and handed down.
    #[allow(clippy::too_many_arguments)]
    fn assemble(
        watch: Arc<WatchSet>,
        naming: Naming,
        opened: Opened,
        proc_root: ProcRoot,
        extras: Extras,
        links: sockets::EventLinks,
        hashes: ExeHashes,
        events: Option<EventSide>,
    ) -> Result<Exporter, Failure> {
        let metrics = prometheus::Registry::new();
        let internal =
            |err: prometheus::Error| Failure::bad_input(format!("metric setup failed: {err}"));
        let events = events.filter(|_| extras.kernel_events);
        if let Some(events) = &events {
            events.register(&metrics).map_err(internal)?;
        }
        let collector =
            ListenerCollector::new(naming.judge, naming.namer, opened, proc_root, links.hints)
                .with_exe_hashes(hashes);
        let collector = Arc::new(match &events {
            Some(events) => events.attach(collector),
            None => collector,
        });
        metrics
            .register(Box::new(collector.errors()))
            .map_err(internal)?;
        info_metrics::register(
            &metrics,
            &watch,
            collector.backend_name(),
            collector.netns_mode(),
        )
        .map_err(internal)?;
        let reloads = ReloadMetrics::register(&metrics).map_err(internal)?;
        if let Some(interval) = extras.sample_interval {
            let sampler = sampler::Sampler::start(Arc::clone(&collector), interval);
            metrics.register(Box::new(sampler)).map_err(internal)?;
        }
        if extras.process_metrics {
            os::register_process_metrics(&metrics).map_err(internal)?;
        }
        Ok(Exporter {
            scraper: Scraper::new(collector, metrics.clone()),
            metrics,
            _events: events,
            web_config: Arc::new(RwLock::new(Arc::new(ActiveWebConfig::plain()))),
            watch,
            reloads,
        })
    }

    fn collector(&self) -> &ListenerCollector {
        self.scraper.collector()
    }
}

/// How things are named, decided once for the collector and the events.
struct Naming {
    judge: Judge,
    namer: NetnsNamer,
}

impl Naming {
    fn new(watch: &Arc<WatchSet>, proc_root: &ProcRoot) -> Naming {
        Naming {
            judge: Judge::new(Arc::clone(watch)),
            namer: NetnsNamer::new(proc_root.own_net_namespace().ok()),
        }
    }
}

fn load_registry(flags: &Flags) -> Result<Registry, Failure> {
    match &flags.iana_registry_file {
        None => Ok(Registry::embedded()),
        Some(path) => {
            csv_loader::load_file(path).map_err(|err| Failure::bad_input(err.to_string()))
        }
    }
}

fn load_web_config(flags: &Flags) -> Result<ActiveWebConfig, Failure> {
    match &flags.web_config_file {
        None => Ok(ActiveWebConfig::plain()),
        Some(path) => config::load(path).map_err(Failure::bad_input),
    }
}

/// The binary's whole life: check the flags, build, serve until a signal.
pub fn run(flags: &Flags) -> Result<(), Failure> {
    run_until(flags, std::future::pending())
}

/// [`run`], stopping also when `stop_request` resolves (a Windows service
/// told to stop by the Service Control Manager).
pub fn run_until(
    flags: &Flags,
    stop_request: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Failure> {
    // Check every listen address before anything logs or opens sockets.
    for address in &flags.listen_addresses {
        resolve(address)?;
    }
    os::raise_open_file_limit();
    crate::allocator::hold_mmap_threshold();
    let exporter = Exporter::from_flags(flags)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .map_err(|err| Failure::cannot_listen(format!("cannot start the async runtime: {err}")))?;
    runtime.block_on(serve(flags, exporter, stop_request))
}

async fn serve(
    flags: &Flags,
    exporter: Exporter,
    stop_request: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Failure> {
    let listeners = bind_all(&flags.listen_addresses).await?;
    // Before the address is logged: whoever reads it may signal at once.
    let shutdown = os::shutdown_signal();
    log_start(flags, &exporter, &listeners);
    let app = http::App::new(
        Arc::clone(&exporter.scraper),
        &exporter.metrics,
        flags.telemetry_path.clone(),
        flags.max_requests,
        Arc::clone(&exporter.web_config),
    )
    .map_err(Failure::bad_input)?;
    let app = Arc::new(app);
    if let Some(path) = flags.web_config_file.clone() {
        tokio::spawn(web_reload::watch(
            path,
            Arc::clone(&exporter.web_config),
            exporter.reloads.clone(),
        ));
    }
    for (slot, file) in flags.watch_allow_files.iter().enumerate() {
        tokio::spawn(allow_reload::watch(
            file.path.clone(),
            slot,
            Arc::clone(&exporter.watch),
            exporter.reloads.clone(),
        ));
    }
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown => {}
            () = stop_request => {}
        }
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    http::serve(listeners, app, stopped).await;
    Ok(())
}

fn log_start(flags: &Flags, exporter: &Exporter, listeners: &[tokio::net::TcpListener]) {
    let collector = exporter.collector();
    let watch = collector.judge().watch();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        backend = collector.backend_name(),
        netns = collector.netns_mode().as_str(),
        watched_tcp = watch.count(Transport::Tcp),
        watched_udp = watch.count(Transport::Udp),
        registry = %watch.registry().source,
        registry_updated = %watch.registry().updated,
        "starting unassigned_port_exporter"
    );
    let config = Arc::clone(
        &exporter
            .web_config
            .read()
            .unwrap_or_else(|p| p.into_inner()),
    );
    // One line per listener with the address really bound (port 0 asks the
    // kernel for a free port: tests start the exporter that way and read the
    // port back from this line), in node_exporter's words.
    for listener in listeners {
        if let Ok(address) = listener.local_addr() {
            tracing::info!(
                address = %address,
                path = %flags.telemetry_path,
                tls = config.tls.is_some(),
                basic_auth = config.requires_auth(),
                "Listening on"
            );
        }
    }
}

/// Binds every `--web.listen-address`. ":PORT" means all interfaces: IPv6
/// and IPv4 on one dual-stack socket, or IPv4 alone where IPv6 is off.
async fn bind_all(addresses: &[String]) -> Result<Vec<tokio::net::TcpListener>, Failure> {
    let mut listeners = Vec::new();
    for text in addresses {
        listeners.push(bind_first(text, &resolve(text)?).await?);
    }
    Ok(listeners)
}

/// Binds the first candidate address that can be bound.
async fn bind_first(
    text: &str,
    candidates: &[SocketAddr],
) -> Result<tokio::net::TcpListener, Failure> {
    let mut last_error = None;
    for candidate in candidates {
        match tokio::net::TcpListener::bind(candidate).await {
            Ok(listener) => return Ok(listener),
            Err(err) => last_error = Some(err),
        }
    }
    let reason = last_error.map_or_else(|| "no address".to_string(), |e| e.to_string());
    Err(Failure::cannot_listen(format!(
        "cannot listen on {text}: {reason}"
    )))
}

fn resolve(text: &str) -> Result<Vec<SocketAddr>, Failure> {
    let bad = || {
        Failure::bad_input(format!(
            "bad --web.listen-address {text:?}: expected HOST:PORT, [IPv6]:PORT or :PORT"
        ))
    };
    if let Some(port) = text.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| bad())?;
        return Ok(vec![
            SocketAddr::from(([0u16; 8], port)),
            SocketAddr::from(([0u8; 4], port)),
        ]);
    }
    let resolved: Vec<SocketAddr> = text.to_socket_addrs().map_err(|_| bad())?.collect();
    if resolved.is_empty() {
        return Err(bad());
    }
    Ok(resolved)
}
