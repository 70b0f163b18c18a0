//! Turns one collection into exposition text, one collection at a time.
//!
//! Scrapes that arrive while a collection is running wait for it and share
//! its result instead of starting their own, so ten Prometheus replicas
//! scraping at once cost one look at the socket table. The collection runs on
//! tokio's blocking pool: it reads /proc and netlink synchronously.
//!
//! The flow is one way: the [`ListenerCollector`] returns a snapshot, the
//! snapshot becomes metric families (`crate::metrics::snapshot`) beside the
//! other registered collectors (collection errors, info gauges, events,
//! sampler, process metrics), and the result carries both the text and the
//! snapshot, so the landing page shows exactly what `/metrics` said.

use crate::collect::collector::ListenerCollector;
use crate::model::Snapshot;
use prometheus::{Encoder, Registry, TextEncoder};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// One finished scrape.
#[derive(Debug)]
pub struct Scrape {
    /// The exposition text.
    pub text: Vec<u8>,
    /// What the listener collection found.
    pub snapshot: Snapshot,
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
}

impl Scraper {
    pub fn new(collector: Arc<ListenerCollector>, registry: Registry) -> Arc<Scraper> {
        Arc::new(Scraper {
            collector,
            registry,
            in_flight: Mutex::new(None),
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
                    tokio::task::spawn_blocking(move || {
                        let rendered = scraper.render();
                        // Clear first: a scrape arriving after this point
                        // wants a fresh look, not this one.
                        *scraper.in_flight.lock().unwrap_or_else(|p| p.into_inner()) = None;
                        let _ = sender.send(Some(rendered));
                    });
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
        let snapshot = self.collector.scrape();
        let mut families = crate::metrics::snapshot::families(&snapshot);
        // Series exist only for what is there: no listeners, no family.
        families.retain(|family| !family.get_metric().is_empty());
        // Label order, as the registry's own gather gives (vectors keep
        // their series in a hash map).
        for family in &mut families {
            family.mut_metric().sort_unstable_by(|a, b| {
                let pairs_a = a.get_label().iter().map(|p| (p.name(), p.value()));
                let pairs_b = b.get_label().iter().map(|p| (p.name(), p.value()));
                pairs_a.cmp(pairs_b)
            });
        }
        families.extend(self.registry.gather());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut text = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&families, &mut text)
            .map_err(|err| format!("cannot encode metrics: {err}"))?;
        Ok(Arc::new(Scrape { text, snapshot }))
    }
}
