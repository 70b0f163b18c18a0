//! Turns the metric registry into exposition text, one collection at a time.
//!
//! Scrapes that arrive while a collection is running wait for it and share
//! its result instead of starting their own, so ten Prometheus replicas
//! scraping at once cost one look at the socket table. The collection runs on
//! tokio's blocking pool: it reads /proc and netlink synchronously.

use prometheus::{Encoder, Registry, TextEncoder};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Exposition text of one collection, or why it failed.
pub type Rendered = Result<Arc<Vec<u8>>, String>;

/// The single-flight front of the registry.
pub struct Scraper {
    registry: Registry,
    /// Receiver of the collection under way, if one is.
    in_flight: Mutex<Option<watch::Receiver<Option<Rendered>>>>,
}

impl Scraper {
    pub fn new(registry: Registry) -> Arc<Scraper> {
        Arc::new(Scraper {
            registry,
            in_flight: Mutex::new(None),
        })
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

    fn render(&self) -> Rendered {
        let families = self.registry.gather();
        let mut text = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&families, &mut text)
            .map_err(|err| format!("cannot encode metrics: {err}"))?;
        Ok(Arc::new(text))
    }
}
