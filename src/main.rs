//! The binary: parse flags, wire the pieces together, serve until a signal.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use tokio::sync::watch;
use unassigned_port_exporter::cli::{self, Flags, Parsed};
use unassigned_port_exporter::collector::{self, ListenerCollector, stage};
use unassigned_port_exporter::registry::{Registry, csv_loader};
use unassigned_port_exporter::watch::WatchSet;
use unassigned_port_exporter::{
    http, info_metrics, netns, sampler, sockets, web_config, web_reload,
};

/// Exit code for bad flags, files or settings.
const EXIT_BAD_INPUT: u8 = 2;
/// Exit code when the listen address cannot be bound.
const EXIT_CANNOT_LISTEN: u8 = 1;

fn main() -> ExitCode {
    let flags = match cli::parse(std::env::args_os()) {
        Parsed::Run(flags) => flags,
        Parsed::Print(text) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Parsed::Refuse(line) => {
            eprintln!("{line}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    init_logging(&flags);
    match run(&flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("unassigned_port_exporter: {message}");
            ExitCode::from(code)
        }
    }
}

fn init_logging(flags: &Flags) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(flags.log_level);
    if flags.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

type Failure = (u8, String);

fn run(flags: &Flags) -> Result<(), Failure> {
    let bad = |message: String| (EXIT_BAD_INPUT, message);
    // Check every listen address before anything logs or opens sockets.
    for address in &flags.listen_addresses {
        resolve(address)?;
    }
    let registry = match &flags.iana_registry_file {
        None => Registry::embedded(),
        Some(path) => csv_loader::load_file(path).map_err(|err| bad(err.to_string()))?,
    };
    let watch = Arc::new(WatchSet::new(
        registry,
        flags.watch_scope,
        &flags.extra_ports(),
        flags.watch_allow.clone(),
    ));
    let web_config = match &flags.web_config_file {
        None => web_config::ActiveWebConfig::plain(),
        Some(path) => web_config::load(path).map_err(bad)?,
    };
    let web_config = Arc::new(RwLock::new(Arc::new(web_config)));
    let netns_mode = choose_netns_mode(flags)?;
    let scope = sockets::NetnsScope {
        mode: netns_mode,
        procfs: flags.procfs.clone(),
    };
    let opened = sockets::open(flags.backend, scope)
        .map_err(|err| bad(format!("{err} (try --collector.backend=netstat2 or auto)")))?;
    let errors = collector::errors_counter();
    if let Some(reason) = &opened.fallback_reason {
        tracing::warn!(reason = %reason, "netlink sock_diag is not available; using the slower netstat2 backend");
        errors.with_label_values(&[stage::BACKEND]).inc();
    }
    let collector = Arc::new(ListenerCollector::new(
        Arc::clone(&watch),
        opened.source,
        flags.procfs.clone(),
        errors,
    ));

    let metrics = prometheus::Registry::new();
    let internal = |err: prometheus::Error| (EXIT_BAD_INPUT, format!("metric setup failed: {err}"));
    metrics
        .register(Box::new(ArcCollector(Arc::clone(&collector))))
        .map_err(internal)?;
    let netns_name = match netns_mode {
        netns::Mode::All if collector.backend_name() == "netlink" => "all",
        _ => "host",
    };
    info_metrics::register(&metrics, &watch, collector.backend_name(), netns_name)
        .map_err(internal)?;
    if let Some(interval) = flags.sample_interval {
        let sampler = sampler::Sampler::start(Arc::clone(&collector), interval);
        metrics.register(Box::new(sampler)).map_err(internal)?;
    }
    #[cfg(target_os = "linux")]
    metrics
        .register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .map_err(internal)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .map_err(|err| {
            (
                EXIT_CANNOT_LISTEN,
                format!("cannot start the async runtime: {err}"),
            )
        })?;
    runtime.block_on(async {
        let listeners = bind_all(&flags.listen_addresses).await?;
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            backend = collector.backend_name(),
            netns = netns_name,
            watched_tcp = watch.count(unassigned_port_exporter::registry::Transport::Tcp),
            watched_udp = watch.count(unassigned_port_exporter::registry::Transport::Udp),
            registry = %watch.registry().source,
            registry_updated = %watch.registry().updated,
            "starting unassigned_port_exporter"
        );
        for listener in &listeners {
            if let Ok(address) = listener.local_addr() {
                tracing::info!(
                    address = %address,
                    path = %flags.telemetry_path,
                    tls = web_config.read().map(|c| c.tls.is_some()).unwrap_or(false),
                    basic_auth = web_config.read().map(|c| c.requires_auth()).unwrap_or(false),
                    "listening"
                );
            }
        }
        let app = http::App::new(
            metrics,
            collector,
            flags.telemetry_path.clone(),
            flags.max_requests,
            Arc::clone(&web_config),
        )
        .map_err(|message| (EXIT_BAD_INPUT, message))?;
        let app = Arc::new(app);
        if let Some(path) = flags.web_config_file.clone() {
            tokio::spawn(web_reload::watch(path, web_config));
        }
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            let _ = stop.send(true);
        });
        http::serve(listeners, app, stopped).await;
        Ok(())
    })
}

/// `--collector.netns`: "all" unless namespaces cannot be entered; asking
/// for "all" explicitly when they cannot is an error.
fn choose_netns_mode(flags: &Flags) -> Result<netns::Mode, Failure> {
    match flags.netns {
        Some(netns::Mode::Host) => Ok(netns::Mode::Host),
        requested => match netns::can_enter(&flags.procfs) {
            Ok(()) => Ok(netns::Mode::All),
            Err(reason) if requested.is_none() => {
                tracing::info!(reason = %reason, "reading the host network namespace only (--collector.netns=host)");
                Ok(netns::Mode::Host)
            }
            Err(reason) => Err((EXIT_BAD_INPUT, format!("--collector.netns=all: {reason}"))),
        },
    }
}

/// Lets the registry hold the collector while the HTTP side keeps a handle.
struct ArcCollector(Arc<ListenerCollector>);

impl prometheus::core::Collector for ArcCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.0.desc()
    }
    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.0.collect()
    }
}

async fn wait_for_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let sigterm = async {
        match terminate.as_mut() {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = sigterm => {}
    }
}

/// Binds every `--web.listen-address`. ":PORT" means all interfaces: IPv6
/// and IPv4 on one dual-stack socket, or IPv4 alone where IPv6 is off.
async fn bind_all(addresses: &[String]) -> Result<Vec<tokio::net::TcpListener>, Failure> {
    let mut listeners = Vec::new();
    for text in addresses {
        let candidates = resolve(text)?;
        let mut last_error = None;
        let mut bound = None;
        for candidate in &candidates {
            match tokio::net::TcpListener::bind(candidate).await {
                Ok(listener) => {
                    bound = Some(listener);
                    break;
                }
                Err(err) => last_error = Some(err),
            }
        }
        match bound {
            Some(listener) => listeners.push(listener),
            None => {
                let reason = last_error.map_or_else(|| "no address".to_string(), |e| e.to_string());
                return Err((
                    EXIT_CANNOT_LISTEN,
                    format!("cannot listen on {text}: {reason}"),
                ));
            }
        }
    }
    Ok(listeners)
}

fn resolve(text: &str) -> Result<Vec<SocketAddr>, Failure> {
    let bad = || {
        (
            EXIT_BAD_INPUT,
            format!("bad --web.listen-address {text:?}: expected HOST:PORT, [IPv6]:PORT or :PORT"),
        )
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
