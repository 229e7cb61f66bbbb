//! Reconcile triggers that agree with the store. A reflector shows a re-list's objects only
//! once the list is complete (`InitDone`), but kube's `touched_objects`/`applied_objects` pass
//! each listed object on as it arrives: a reconcile it wakes reads the store from before the
//! re-list, finds the old Secret version or the old spec, and nothing wakes it again. Here a
//! re-list triggers only when the store shows it, and only for what it changed: objects new or
//! of another resourceVersion, and objects that are gone (deletes the watch could not see).

use std::{collections::HashMap, sync::Arc};

use futures::{Stream, StreamExt, stream};
use kube::{
    Resource,
    runtime::{
        reflector::{ObjectRef, Store},
        watcher::{self, Event},
    },
};

/// The objects to look at, from a stream that has already been reflected into `store`.
pub fn settled_objects<K>(
    events: impl Stream<Item = Result<Event<K>, watcher::Error>>,
    store: Store<K>,
) -> impl Stream<Item = Result<K, watcher::Error>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    // What the store held when the re-list began, to compare with what it holds after it.
    let mut before: Option<Snapshot<K>> = None;
    events
        .map(move |event| {
            let triggers = match event {
                Err(error) => vec![Err(error)],
                Ok(Event::Apply(obj) | Event::Delete(obj)) => vec![Ok(obj)],
                Ok(Event::Init) => {
                    before = Some(snapshot(&store));
                    Vec::new()
                }
                Ok(Event::InitApply(_)) => Vec::new(),
                Ok(Event::InitDone) => changed(before.take().unwrap_or_default(), &store)
                    .into_iter()
                    .map(Ok)
                    .collect(),
            };
            stream::iter(triggers)
        })
        .flatten()
}

type Snapshot<K> = HashMap<ObjectRef<K>, Arc<K>>;

fn snapshot<K: Resource<DynamicType = ()> + Clone>(store: &Store<K>) -> Snapshot<K> {
    store
        .state()
        .into_iter()
        .map(|obj| (ObjectRef::from_obj(&*obj), obj))
        .collect()
}

/// Objects in `store` that `before` did not hold as they are now, then those it held that are gone.
fn changed<K: Resource<DynamicType = ()> + Clone>(
    mut before: Snapshot<K>,
    store: &Store<K>,
) -> Vec<K> {
    let mut triggers = Vec::new();
    for obj in store.state() {
        let old = before.remove(&ObjectRef::from_obj(&*obj));
        if old.is_none_or(|old| identity(&*old) != identity(&*obj)) {
            triggers.push((*obj).clone());
        }
    }
    triggers.extend(before.into_values().map(|gone| (*gone).clone()));
    triggers
}

fn identity<K: Resource>(obj: &K) -> (Option<&str>, Option<&str>) {
    let meta = obj.meta();
    (meta.uid.as_deref(), meta.resource_version.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::{
        api::ObjectMeta,
        runtime::{WatchStreamExt, reflector},
    };

    fn object(name: &str, version: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("apps".into()),
                uid: Some(format!("uid-{name}")),
                resource_version: Some(version.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// The triggers `events` produce, each with whether the store held that very version of
    /// the object at the moment the trigger came out.
    async fn triggers(events: Vec<Event<ConfigMap>>) -> Vec<(String, String, bool)> {
        let (store, writer) = reflector::store();
        let reflected = stream::iter(events.into_iter().map(Ok)).reflect(writer);
        settled_objects(reflected, store.clone())
            .map_ok(|obj| {
                let shown = store.get(&ObjectRef::from_obj(&obj)).is_some_and(|now| {
                    now.metadata.resource_version == obj.metadata.resource_version
                });
                let meta = obj.metadata;
                (meta.name.unwrap(), meta.resource_version.unwrap(), shown)
            })
            .try_collect()
            .await
            .unwrap()
    }

    fn trigger(name: &str, version: &str, shown: bool) -> (String, String, bool) {
        (name.into(), version.into(), shown)
    }

    #[tokio::test]
    async fn a_relist_triggers_once_the_store_shows_it_and_only_for_changes() {
        let events = vec![
            Event::Init,
            Event::InitApply(object("a", "1")),
            Event::InitApply(object("b", "1")),
            Event::InitDone,
            Event::Apply(object("a", "2")),
            // The watch broke; meanwhile b was deleted and c created; a is unchanged.
            Event::Init,
            Event::InitApply(object("a", "2")),
            Event::InitApply(object("c", "1")),
            Event::InitDone,
            Event::Delete(object("c", "1")),
        ];
        // Within one re-list the order is the store's (a map's); compare as sorted lists.
        let mut seen = triggers(events).await;
        seen.sort();
        let mut expected = [
            trigger("a", "1", true),
            trigger("b", "1", true),
            trigger("a", "2", true),
            trigger("c", "1", true),
            // Gone: the deletes the broken watch could not deliver.
            trigger("b", "1", false),
            trigger("c", "1", false),
        ];
        expected.sort();
        assert_eq!(seen, expected);
    }
}
