//! Turns one collection into exposition text, one collection at a time.
//!
//! Scrapes that arrive while a collection is running wait for it and share
//! its result instead of starting their own, so ten Prometheus replicas
//! scraping at once cost one look at the socket table. The collection runs on
//! one long-lived thread of its own (it reads /proc and netlink
//! synchronously): not tokio's blocking pool, whose back-to-back scrapes can
//! land on a fresh thread, and so in a fresh malloc arena, each time; at
//! 34,000 listeners that took the peak RSS from 52 to 93 MB.
//!
//! The flow is one way: the [`ListenerCollector`] returns a snapshot, the
//! snapshot's families are written (`crate::metrics::snapshot`) beside the
//! other registered collectors (collection errors, info gauges, events,
//! sampler, process metrics), all in name order into one buffer, and the result carries both the text and
//! the snapshot, so the landing page shows exactly what `/metrics` said.
//!
//! Memory: a scrape holds the snapshot (one value per series, shared by
//! `Arc` with the landing page) and the text; nothing per series outlives
//! the scrape. The text buffer is the previous scrape's, handed back when
//! its last response is done and reserved to that scrape's length, so a big
//! exposition is neither grown nor written into fresh pages each time.

use crate::collect::collector::ListenerCollector;
use crate::metrics::snapshot::SnapshotFamilies;
use crate::metrics::text::{Gathered, write_sorted};
use crate::model::Snapshot;
use prometheus::Registry;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use tokio::sync::watch;

/// One finished scrape.
#[derive(Debug)]
pub struct Scrape {
    /// The exposition text.
    pub text: Vec<u8>,
    /// What the listener collection found.
    pub snapshot: Arc<Snapshot>,
    /// Where the text's buffer goes when the last response is done with it.
    spare: Arc<Mutex<Vec<u8>>>,
}

impl Drop for Scrape {
    /// Hands the text buffer to the next scrape: a big exposition is
    /// written into memory already mapped, not into megabytes of fresh
    /// pages each time.
    fn drop(&mut self) {
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        if self.text.capacity() > spare.capacity() {
            *spare = std::mem::take(&mut self.text);
        }
    }
}

/// A scrape, or why it failed.
pub type Rendered = Result<Arc<Scrape>, String>;

/// The single-flight front of the collector and the registry.
pub struct Scraper {
    /// Listeners: collected first, on every scrape.
    collector: Arc<ListenerCollector>,
    /// Everything else that is exported (info gauges, sampler, process).
    registry: Registry,
    /// Receiver of the collection under way, if one is.
    in_flight: Mutex<Option<watch::Receiver<Option<Rendered>>>>,
    /// Length of the last exposition: the next one's buffer capacity.
    last_len: AtomicUsize,
    /// The buffer of a finished scrape's text, for the next one.
    spare: Arc<Mutex<Vec<u8>>>,
    /// The collection thread's queue, started at the first scrape.
    jobs: OnceLock<Mutex<mpsc::Sender<Job>>>,
}

/// Work for the collection thread.
type Job = Box<dyn FnOnce() + Send>;

/// Starts the thread every collection runs on; it ends when the sender goes.
fn collection_thread() -> mpsc::Sender<Job> {
    let (sender, jobs) = mpsc::channel::<Job>();
    let started = std::thread::Builder::new()
        .name("collection".into())
        .spawn(move || {
            for job in jobs {
                // A panicking collection drops its result sender, which the
                // waiting scrapes report; the thread lives on for the next.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
        });
    if let Err(err) = started {
        tracing::error!(error = %err, "cannot start the collection thread");
    }
    sender
}

impl Scraper {
    pub fn new(collector: Arc<ListenerCollector>, registry: Registry) -> Arc<Scraper> {
        Arc::new(Scraper {
            collector,
            registry,
            in_flight: Mutex::new(None),
            last_len: AtomicUsize::new(16 * 1024),
            spare: Arc::default(),
            jobs: OnceLock::new(),
        })
    }

    pub fn collector(&self) -> &ListenerCollector {
        &self.collector
    }

    /// A shared handle on the collector (the sampler and benchmarks hold one).
    pub fn collector_arc(&self) -> Arc<ListenerCollector> {
        Arc::clone(&self.collector)
    }

    /// Joins the collection under way, or starts one.
    pub async fn scrape(self: &Arc<Self>) -> Rendered {
        let mut receiver = {
            let mut slot = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            match slot.as_ref() {
                Some(receiver) => receiver.clone(),
                None => {
                    let (sender, receiver) = watch::channel(None);
                    *slot = Some(receiver.clone());
                    let scraper = Arc::clone(self);
                    let job: Job = Box::new(move || {
                        let rendered = scraper.render();
                        // Clear first: a scrape arriving after this point
                        // wants a fresh look, not this one.
                        *scraper.in_flight.lock().unwrap_or_else(|p| p.into_inner()) = None;
                        let _ = sender.send(Some(rendered));
                    });
                    let jobs = self
                        .jobs
                        .get_or_init(|| Mutex::new(collection_thread()))
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    // A send fails only if the thread could not start; the
                    // dropped job's sender then fails this scrape below.
                    let _ = jobs.send(job);
                    receiver
                }
            }
        };
        match receiver.wait_for(Option::is_some).await {
            Ok(value) => value.clone().expect("waited for Some"),
            Err(_) => {
                // The sender vanished: the collection panicked. Let the next
                // scrape start over.
                *self.in_flight.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Err("the collection stopped unexpectedly".to_string())
            }
        }
    }

    /// Collects and encodes synchronously (the blocking half of a scrape;
    /// also what tests and benchmarks call directly).
    pub fn render(&self) -> Rendered {
        let snapshot = Arc::new(self.collector.scrape());
        let listeners = SnapshotFamilies(&snapshot);
        let registered = Gathered(self.registry.gather());
        let last_len = self.last_len.load(Ordering::Relaxed);
        let mut text = std::mem::take(&mut *self.spare.lock().unwrap_or_else(|p| p.into_inner()));
        text.clear();
        text.reserve(last_len + 64 * 1024);
        write_sorted(&[&listeners, &registered], &mut text);
        self.last_len.store(text.len(), Ordering::Relaxed);
        // A host whose exposition shrank for good does not keep the
        // biggest buffer it ever needed.
        if text.capacity() > 2 * (text.len() + 64 * 1024) {
            text.shrink_to(text.len() + 64 * 1024);
        }
        Ok(Arc::new(Scrape {
            text,
            snapshot,
            spare: Arc::clone(&self.spare),
        }))
    }
}
