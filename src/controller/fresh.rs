//! Whether the Secret store can be trusted right now. A watch that breaks misses changes until
//! it has caught up, and nothing in a resumed watch marks that moment: after an apiserver
//! restart a list can succeed while the watch after it sits for up to a minute (the apiserver's
//! watch cache is still filling), and the store shows the old Secret all that time. So a broken
//! Secret watch starts afresh, as a streaming list where the apiserver serves one: the initial
//! objects come over the watch itself and end with a bookmark, so the end of the list
//! (`InitDone`) means the watch is live and caught up. The store is trusted from then until the
//! next error; in between, reconciles read their Secrets directly.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use futures::{Stream, StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    api::PartialObjectMeta,
    runtime::watcher::{self, Event, watcher},
};
use tracing::warn;

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

/// The Secret watch: a streaming list, or a plain list and watch on an apiserver that refuses
/// streaming lists (the `WatchList` feature is off), started afresh after every error.
pub fn secret_watch(
    api: Api<PartialObjectMeta<Secret>>,
    config: watcher::Config,
) -> impl Stream<Item = Result<Event<PartialObjectMeta<Secret>>, watcher::Error>> + Send {
    let streaming = Arc::new(AtomicBool::new(true));
    let start = {
        let streaming = streaming.clone();
        move || {
            let config = if streaming.load(Ordering::Acquire) {
                config.clone().streaming_lists()
            } else {
                config.clone()
            };
            watcher(api.clone(), config).boxed()
        }
    };
    relisting(start).inspect_err(move |error| {
        if refuses_streaming_lists(error) && streaming.swap(false, Ordering::AcqRel) {
            warn!(
                %error,
                "the apiserver does not serve streaming lists (feature WatchList); Secrets are listed, then watched, so a Secret changed in the first minute after an apiserver restart may be seen only when its watch catches up"
            );
        }
    })
}

/// An apiserver without the `WatchList` feature answers a watch with `sendInitialEvents` as
/// an invalid request.
fn refuses_streaming_lists(error: &watcher::Error) -> bool {
    let status = match error {
        watcher::Error::WatchStartFailed(kube::Error::Api(status)) => status,
        watcher::Error::WatchError(status) => status,
        _ => return false,
    };
    matches!(status.code, 400 | 422)
}

/// A watch that starts a new watcher (a full list) after every error instead of resuming: the
/// error passes through (for the caller's backoff and logs), and the next poll starts afresh.
fn relisting<K, S>(
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

    fn status(code: u16) -> Box<kube::core::Status> {
        Box::new(kube::core::Status {
            code,
            ..Default::default()
        })
    }

    #[test]
    fn an_invalid_watch_request_means_no_streaming_lists() {
        let start_failed = |code| watcher::Error::WatchStartFailed(kube::Error::Api(status(code)));
        assert!(refuses_streaming_lists(&start_failed(422)));
        assert!(refuses_streaming_lists(&start_failed(400)));
        assert!(refuses_streaming_lists(&watcher::Error::WatchError(
            status(422)
        )));
        assert!(!refuses_streaming_lists(&start_failed(403)));
        assert!(!refuses_streaming_lists(&watcher::Error::WatchError(
            status(410)
        )));
        assert!(!refuses_streaming_lists(&failed()));
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
