//! Whether the Secret store can be trusted right now. A watch that breaks misses changes until
//! it has caught up, and kube's watcher resumes from its last resourceVersion where it can, so
//! nothing marks the moment it has: after an apiserver restart a watch can sit for a minute
//! before it delivers again while its store shows the old Secret. Here a broken watch always
//! starts afresh with a full list, so the store is known current from the end of that list
//! (`InitDone`) until the next error; in between, reconciles read their Secrets directly.

use std::sync::atomic::{AtomicBool, Ordering};

use futures::{Stream, StreamExt, stream};
use kube::runtime::watcher::{self, Event};

/// Set while the store shows everything the apiserver has.
#[derive(Debug, Default)]
pub struct Freshness(AtomicBool);

impl Freshness {
    pub fn is_fresh(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Follows one item of a reflected watch stream.
    pub fn observe<K>(&self, item: &Result<Event<K>, watcher::Error>) {
        match item {
            Ok(Event::InitDone) => self.0.store(true, Ordering::Release),
            Err(_) => self.0.store(false, Ordering::Release),
            Ok(_) => {}
        }
    }
}

/// A watch that starts a new watcher (a full list) after every error instead of resuming: the
/// error passes through (for the caller's backoff and logs), and the next poll starts afresh.
pub fn relisting<K, S>(
    start: impl Fn() -> S + Send + 'static,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: Send + 'static,
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send + Unpin + 'static,
{
    stream::unfold((start, None), |(start, current)| async move {
        let mut watch = current.unwrap_or_else(&start);
        match watch.next().await? {
            Ok(event) => Some((Ok(event), (start, Some(watch)))),
            Err(error) => Some((Err(error), (start, None))),
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use futures::StreamExt;

    use super::*;

    fn failed() -> watcher::Error {
        watcher::Error::NoResourceVersion
    }

    #[tokio::test]
    async fn an_error_starts_a_new_watch_and_the_store_is_fresh_only_after_its_list() {
        let started = Arc::new(AtomicUsize::new(0));
        let counter = started.clone();
        // Each watch lists (Init, InitDone), delivers one change and then breaks.
        let events = relisting(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            stream::iter(vec![
                Ok(Event::Init),
                Ok(Event::InitDone),
                Ok(Event::Apply(1)),
                Err(failed()),
            ])
        });
        let freshness = Freshness::default();
        let mut fresh_after = Vec::new();
        let mut events = Box::pin(events.take(8));
        while let Some(item) = events.next().await {
            freshness.observe(&item);
            fresh_after.push(freshness.is_fresh());
        }
        assert_eq!(started.load(Ordering::SeqCst), 2, "one watch per error");
        assert_eq!(
            fresh_after,
            [false, true, true, false, false, true, true, false]
        );
    }
}
