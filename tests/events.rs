//! Kernel events with real sockets: listen events from the
//! `sock:inet_sock_set_state` tracepoint and close events from sock_diag's
//! destroy groups, on the host and in fresh network namespaces.
//!
//! Needs root, the listen tracepoint and the destroy groups (CI has all
//! three): without them a test skips with one line, or fails in CI (see
//! `common::capability`).
//!
//! Port 276 is shared with other tests on this machine, so each test counts
//! only its own sockets: listen events by this thread's tid, destroy events
//! by the socket cookies it recorded. A bind that finds 276 taken retries.

mod common;

use common::capability::{Capability, gate, require};
use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use unassigned_port_exporter::events::{
    DestroyEvent, DestroyGroups, DestroyReader, DestroySubscription, DestroyedProtocol,
    ListenCapture, ListenEvent, PortFilter, StreamProtocol, Transition,
};
use unassigned_port_exporter::kernel::netns::ids::NamespaceIds;

const PORT: u16 = 276;
const MAX_PORT: u16 = 1023;
/// How long events may take to arrive before a test gives up.
const ARRIVAL_DEADLINE: Duration = Duration::from_secs(10);

fn tid() -> u32 {
    rustix::thread::gettid().as_raw_nonzero().get() as u32
}

fn own_comm() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .unwrap()
        .trim_end()
        .to_string()
}

fn thread_netns() -> u64 {
    std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino()
}

/// Retries `bind` while the port is taken (other agents use 276 too).
fn bind_retrying<T>(mut bind: impl FnMut() -> io::Result<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match bind() {
            Ok(socket) => return socket,
            Err(err) if err.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(err) => panic!("bind on port {PORT} failed: {err}"),
        }
    }
}

/// Starts a capture that keeps this process's events; `None` when the
/// test skips.
fn capture() -> Option<(ListenCapture, Arc<Mutex<Vec<ListenEvent>>>)> {
    capture_of(PortFilter::from(MAX_PORT))
}

/// [`capture`] of the ports `ports` wants.
fn capture_of(ports: PortFilter) -> Option<(ListenCapture, Arc<Mutex<Vec<ListenEvent>>>)> {
    if !require(Capability::Root) {
        return None;
    }
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let own_pid = std::process::id();
    let started = ListenCapture::start(ports, Path::new("/proc"), move |event| {
        if event.pid == own_pid {
            sink.lock().unwrap().push(event);
        }
    });
    match started {
        Ok(capture) => Some((capture, events)),
        Err(reason) => {
            gate(Capability::ListenTracepoint, Err(reason.to_string()));
            None
        }
    }
}

/// Waits until `done` holds for the collected items, or the deadline.
fn wait_for<T: Clone>(items: &Mutex<Vec<T>>, done: impl Fn(&[T]) -> bool) -> Vec<T> {
    let deadline = Instant::now() + ARRIVAL_DEADLINE;
    loop {
        let snapshot = items.lock().unwrap().clone();
        if done(&snapshot) || Instant::now() > deadline {
            return snapshot;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn twenty_tcp_listeners_alive_5ms_give_twenty_opened_events_with_pid_and_name() {
    let Some((capture, events)) = capture() else {
        return;
    };
    let me = tid();
    for _ in 0..20 {
        let listener = bind_retrying(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, PORT)));
        std::thread::sleep(Duration::from_millis(5));
        drop(listener);
    }
    let mine = |events: &[ListenEvent], transition: Transition| {
        events
            .iter()
            .filter(|e| e.tid == me && e.port == PORT && e.transition == transition)
            .count()
    };
    let seen = wait_for(&events, |events| {
        mine(events, Transition::Opened) >= 20 && mine(events, Transition::Closed) >= 20
    });
    assert_eq!(mine(&seen, Transition::Opened), 20, "{seen:#?}");
    assert_eq!(mine(&seen, Transition::Closed), 20);
    let comm = own_comm();
    for event in seen.iter().filter(|e| e.tid == me) {
        assert_eq!(event.pid, std::process::id());
        assert_eq!(event.protocol, StreamProtocol::Tcp);
        assert_eq!(event.address, Ipv4Addr::UNSPECIFIED);
        assert_eq!(event.process.as_deref(), Some(comm.as_str()));
        assert_eq!(event.netns, Some(thread_netns()));
        assert!(event.kernel_time > Duration::ZERO);
    }
    assert_eq!(capture.lost_samples(), 0);
}

#[test]
fn ports_above_the_bound_and_connections_never_reach_the_callback() {
    let Some((_capture, events)) = capture() else {
        return;
    };
    // Above MAX_PORT: filtered in the kernel.
    let high = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let high_port = high.local_addr().unwrap().port();
    assert!(high_port > MAX_PORT);
    // A connection to it, both ends on high ports: never LISTEN.
    let client = std::net::TcpStream::connect(high.local_addr().unwrap()).unwrap();
    let (server, _) = high.accept().unwrap();
    drop((client, server, high));
    // Then one watched listener, so we know the ring has been read past them.
    only_a_marker_was_seen(&events);
}

/// Listens once on [`PORT`] and waits for its close; then this thread's
/// events must be that listen and close and nothing else.
fn only_a_marker_was_seen(events: &Mutex<Vec<ListenEvent>>) {
    let me = tid();
    let marker = bind_retrying(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, PORT)));
    drop(marker);
    let seen = wait_for(events, |events| {
        events
            .iter()
            .any(|e| e.tid == me && e.port == PORT && e.transition == Transition::Closed)
    });
    let mine: Vec<&ListenEvent> = seen.iter().filter(|e| e.tid == me).collect();
    assert_eq!(mine.len(), 2, "{mine:#?}");
    assert!(mine.iter().all(|e| e.port == PORT));
}

#[test]
fn a_port_below_the_bound_that_nobody_wants_is_dropped_before_describing() {
    let wanted = |_: StreamProtocol, port: u16| port == PORT;
    let Some((capture, events)) = capture_of(PortFilter::only(MAX_PORT, wanted)) else {
        return;
    };
    // Below MAX_PORT, so the kernel passes it; not wanted, so the draining
    // thread drops it. A privileged port this test can bind (as root).
    let unwanted = (900..MAX_PORT)
        .find_map(|port| TcpListener::bind((Ipv4Addr::LOCALHOST, port)).ok())
        .expect("a free port in 900-1022");
    drop(unwanted);
    only_a_marker_was_seen(&events);
    // Its listen and close reached the draining thread and went no further.
    let dropped = capture
        .stats()
        .unwanted
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(dropped >= 2, "unwanted samples: {dropped}");
}

/// The scheduling policy of one of this process's threads, as procfs shows
/// it (field 41 of its `stat`).
fn policy_of_thread(tid: u32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 1..];
    let field = after_name.split_whitespace().nth(41 - 3).unwrap();
    field.parse().unwrap()
}

#[test]
fn the_describing_thread_counts_at_a_normal_priority() {
    let Some((capture, _events)) = capture() else {
        return;
    };
    let stats = capture.stats();
    let deadline = Instant::now() + ARRIVAL_DEADLINE;
    let describer = loop {
        let tid = stats
            .describe_thread_id
            .load(std::sync::atomic::Ordering::Relaxed);
        if tid != 0 || Instant::now() > deadline {
            break tid;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_ne!(describer, 0, "the describing thread never started");
    // Under SCHED_IDLE it got no CPU while the exporter's core was busy,
    // and the kernel ring dropped what it could not count.
    assert_eq!(policy_of_thread(describer), libc::SCHED_OTHER);
}

/// A reader of `groups`, subscribed in the test's namespace, with the
/// destroy events it heard.
fn destroy_reader(groups: DestroyGroups) -> (DestroyReader, Arc<Mutex<Vec<DestroyEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let subscription = DestroySubscription::open(MAX_PORT, groups).unwrap();
    let reader = DestroyReader::start(thread_netns(), subscription, move |event| {
        sink.lock().unwrap().push(event)
    })
    .unwrap();
    (reader, events)
}

fn cookie(socket: &impl std::os::fd::AsFd) -> u64 {
    socket2::SockRef::from(socket).cookie().unwrap()
}

#[test]
fn twenty_udp_sockets_alive_5ms_give_twenty_udp_destroy_events() {
    if !require(Capability::Root) || !require(Capability::DestroyGroups) {
        return;
    }
    let (reader, events) = destroy_reader(DestroyGroups::Udp);
    // Filtered out in the kernel: a port above the bound, a connected socket.
    let mut unwanted = HashSet::new();
    let high = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    unwanted.insert(cookie(&high));
    drop(high);
    let connected = bind_retrying(|| UdpSocket::bind((Ipv4Addr::LOCALHOST, PORT)));
    connected.connect((Ipv4Addr::LOCALHOST, 9)).unwrap();
    unwanted.insert(cookie(&connected));
    drop(connected);

    let mut wanted = HashSet::new();
    for _ in 0..20 {
        let socket = bind_retrying(|| UdpSocket::bind((Ipv4Addr::LOCALHOST, PORT)));
        wanted.insert(cookie(&socket));
        std::thread::sleep(Duration::from_millis(5));
        drop(socket);
    }
    let seen = wait_for(&events, |events| {
        events
            .iter()
            .filter(|e| wanted.contains(&e.socket.cookie))
            .count()
            >= 20
    });
    // The unwanted sockets were destroyed before the wanted ones, and one
    // subscription delivers in order: had the filter let them through, they
    // would be in `seen` already.
    let mine: Vec<&DestroyEvent> = seen
        .iter()
        .filter(|e| wanted.contains(&e.socket.cookie))
        .collect();
    assert_eq!(mine.len(), 20, "{seen:#?}");
    for event in mine {
        assert_eq!(event.socket.protocol, DestroyedProtocol::Udp);
        assert_eq!(event.socket.port, PORT);
        assert_eq!(event.socket.peer_port, 0);
        assert_eq!(event.socket.address, Ipv4Addr::LOCALHOST);
        assert_eq!(event.netns, thread_netns());
    }
    assert!(
        !seen.iter().any(|e| unwanted.contains(&e.socket.cookie)),
        "the filter let through a connected or high-port socket: {seen:#?}"
    );
    assert_eq!(
        reader
            .stats()
            .overruns
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

/// What one namespace thread did.
struct NamespaceRun {
    tid: u32,
    netns: u64,
    udp_cookie: u64,
}

#[test]
fn listeners_in_ten_fresh_namespaces_are_seen_with_pid_thread_and_namespace() {
    let Some((_capture, events)) = capture() else {
        return;
    };
    if !require(Capability::DestroyGroups) {
        return;
    }
    let (reader, destroyed) = destroy_reader(DestroyGroups::TcpAndUdp);
    let reader = Arc::new(reader);
    // Ids are given by our namespace: the socket is opened on this thread.
    let ids = Arc::new(NamespaceIds::open().unwrap());
    let host_netns = thread_netns();
    let mut runs = Vec::new();
    for _ in 0..10 {
        let (subscribed_tx, subscribed_rx) = mpsc::channel::<()>();
        let reader = Arc::clone(&reader);
        let ids = Arc::clone(&ids);
        let thread = std::thread::spawn(move || -> NamespaceRun {
            // Only this thread moves: the test's other threads stay put.
            rustix::thread::unshare(rustix::thread::UnshareFlags::NEWNET).unwrap();
            let netns = thread_netns();
            // The one subscription hears this namespace by its id.
            let namespace = std::fs::File::open("/proc/thread-self/ns/net").unwrap();
            let nsid = ids.assign(&namespace).unwrap();
            reader.hear_namespace(nsid, netns).unwrap();
            drop(subscribed_tx);
            // A fresh namespace: 276 is free, and lo is down, so bind ANY.
            let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, PORT)).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            drop(listener);
            let udp = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT))).unwrap();
            let udp_cookie = cookie(&udp);
            std::thread::sleep(Duration::from_millis(20));
            drop(udp);
            NamespaceRun {
                tid: tid(),
                netns,
                udp_cookie,
            }
        });
        let _ = subscribed_rx.recv();
        runs.push(thread.join().unwrap());
    }
    let tids: HashSet<u32> = runs.iter().map(|run| run.tid).collect();
    let opened = |events: &[ListenEvent]| -> Vec<ListenEvent> {
        events
            .iter()
            .filter(|e| tids.contains(&e.tid) && e.transition == Transition::Opened)
            .cloned()
            .collect()
    };
    let seen = opened(&wait_for(&events, |events| opened(events).len() >= 10));
    assert_eq!(seen.len(), 10, "{seen:#?}");
    for run in &runs {
        let event = seen.iter().find(|e| e.tid == run.tid).unwrap();
        assert_eq!(event.pid, std::process::id());
        assert_eq!(event.port, PORT);
        assert_eq!(
            event.netns,
            Some(run.netns),
            "namespace of thread {}",
            run.tid
        );
        assert_ne!(run.netns, host_netns);
    }
    let cookies: HashSet<u64> = runs.iter().map(|run| run.udp_cookie).collect();
    let udp_seen = wait_for(&destroyed, |events| {
        events
            .iter()
            .filter(|e| cookies.contains(&e.socket.cookie))
            .count()
            >= 10
    });
    for run in &runs {
        let event = udp_seen
            .iter()
            .find(|e| e.socket.cookie == run.udp_cookie)
            .unwrap_or_else(|| {
                panic!("no UDP destroy from namespace {}: {udp_seen:#?}", run.netns)
            });
        assert_eq!(event.netns, run.netns);
        assert_eq!(event.socket.protocol, DestroyedProtocol::Udp);
        assert_eq!(event.socket.port, PORT);
    }
    // The TCP listener of each namespace was destroyed there too.
    for run in &runs {
        assert!(
            udp_seen.iter().any(|e| e.netns == run.netns
                && e.socket.protocol == DestroyedProtocol::Tcp
                && e.socket.port == PORT),
            "no TCP destroy from namespace {}",
            run.netns
        );
    }
    let heard = reader.namespaces();
    assert_eq!(heard.len(), 11, "ours and the ten: {heard:?}");
    assert_eq!(heard[0], host_netns);
    for run in &runs {
        assert!(reader.forget_namespace(run.netns));
    }
    assert_eq!(reader.namespaces(), vec![host_netns]);
}

#[test]
fn real_events_raise_the_opened_and_closed_counters() {
    use unassigned_port_exporter::events::EventCounters;
    use unassigned_port_exporter::model::{ClosedLabels, OpenedLabels, Protocol};
    if !require(Capability::Root) || !require(Capability::DestroyGroups) {
        return;
    }
    let counters = EventCounters::new();
    let me = tid();
    let on_listen = counters.listen_handler(move |event| {
        (event.tid == me && event.port == PORT).then(|| OpenedLabels {
            port: event.port,
            protocol: Protocol::of_ip_protocol(event.protocol.number()).unwrap(),
            process: event.process.clone().unwrap_or_default(),
            netns: "host".to_string(),
            expected: false,
        })
    });
    let capture = match ListenCapture::start(MAX_PORT, Path::new("/proc"), on_listen) {
        Ok(capture) => capture,
        Err(reason) => {
            gate(Capability::ListenTracepoint, Err(reason.to_string()));
            return;
        }
    };
    let ours = Arc::new(Mutex::new(HashSet::new()));
    let ours_in_reader = Arc::clone(&ours);
    let subscription = DestroySubscription::open(MAX_PORT, DestroyGroups::Udp).unwrap();
    let handler = counters.destroy_handler(move |event: &DestroyEvent| {
        ours_in_reader
            .lock()
            .unwrap()
            .contains(&event.socket.cookie)
            .then(|| ClosedLabels {
                port: event.socket.port,
                protocol: Protocol::of_ip_protocol(event.socket.protocol.number()).unwrap(),
                user: String::new(),
                netns: "host".to_string(),
                expected: false,
            })
    });
    let reader = DestroyReader::start(thread_netns(), subscription, handler).unwrap();
    for _ in 0..5 {
        let listener = bind_retrying(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, PORT)));
        let udp = bind_retrying(|| UdpSocket::bind((Ipv4Addr::LOCALHOST, PORT)));
        ours.lock().unwrap().insert(cookie(&udp));
        std::thread::sleep(Duration::from_millis(5));
        drop((listener, udp));
    }
    let registry = prometheus::Registry::new();
    registry.register(Box::new(counters.clone())).unwrap();
    let opened = format!(
        "unassigned_port_listener_opened_total{{expected=\"false\",netns=\"host\",port=\"{PORT}\",process=\"{}\",protocol=\"tcp\"}} 5",
        own_comm()
    );
    let closed = format!(
        "unassigned_port_listener_closed_total{{expected=\"false\",netns=\"host\",port=\"{PORT}\",protocol=\"udp\",user=\"\"}} 5"
    );
    let deadline = Instant::now() + ARRIVAL_DEADLINE;
    let mut text = String::new();
    while Instant::now() < deadline {
        let mut out = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut out,
        )
        .unwrap();
        text = String::from_utf8(out).unwrap();
        if text.contains(&opened) && text.contains(&closed) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(text.contains(&opened), "{text}");
    assert!(text.contains(&closed), "{text}");
    drop((capture, reader));
}
