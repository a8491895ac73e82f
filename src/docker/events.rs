//! Docker's event stream, reduced to what can change the ruleset.
//!
//! bollard's stream has no reconnect of its own: it ends when dockerd restarts. The daemon
//! resubscribes and resyncs then; this module only opens the stream and says what an event
//! means (pure, so it is tested on events as Docker 20.10 sends them).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::EventsOptionsBuilder;
use futures_util::Stream;

/// Container actions that can change which addresses and ports are published, or the name
/// that policies and other containers' legacy links refer to (`rename`).
pub const CONTAINER_ACTIONS: &[&str] = &[
    "start", "die", "destroy", "restart", "pause", "unpause", "rename",
];
/// Network actions that can change bridges, ICC, or a container's endpoints.
pub const NETWORK_ACTIONS: &[&str] = &["create", "destroy", "connect", "disconnect"];

/// How far back the subscription asks dockerd to replay. The subscription is opened before
/// the full read; dockerd replays events newer than `since`, so nothing that happens
/// between the moment we ask and the moment dockerd registers us is lost. Replayed events
/// that the full read already covers only cause a redundant re-read.
const REPLAY: Duration = Duration::from_secs(2);

/// What an event asks the daemon to re-read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Re-read one container (by full ID): it started, stopped, or its endpoints changed.
    Container(String),
    /// Re-read the network list: a bridge appeared or went away.
    Networks,
    /// Re-read every container: one was renamed. Policies are keyed by container name, and
    /// the legacy links of other containers name it too (dockerd reports a parent's links
    /// with the child's current name), so more than the renamed container can change.
    AllContainers,
}

/// A classified event: what to re-read, and a short label for logs ("container start 3f2a…").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub changes: Vec<Change>,
    pub label: String,
    /// When dockerd emitted it (ns since the epoch), if it said.
    pub time_nano: Option<i64>,
}

/// Subscribe to the events that matter, replaying the last couple of seconds (see [`REPLAY`]).
pub fn subscribe(
    docker: &Docker,
) -> impl Stream<Item = Result<EventMessage, bollard::errors::Error>> + use<> {
    let since = SystemTime::now()
        .checked_sub(REPLAY)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .to_string();
    let actions: Vec<String> = CONTAINER_ACTIONS
        .iter()
        .chain(NETWORK_ACTIONS)
        .map(|a| a.to_string())
        .collect();
    let filters = HashMap::from([
        (
            "type".to_string(),
            vec!["container".to_string(), "network".to_string()],
        ),
        ("event".to_string(), actions),
    ]);
    let options = EventsOptionsBuilder::new()
        .since(&since)
        .filters(&filters)
        .build();
    docker.events(Some(options))
}

/// What an event means for the ruleset; `None` for events that cannot change it.
pub fn classify(event: &EventMessage) -> Option<Classified> {
    let action = event.action.as_deref()?;
    let actor = event.actor.as_ref()?;
    let id = actor.id.as_deref().filter(|id| !id.is_empty())?;
    let changes = match event.typ? {
        EventMessageTypeEnum::CONTAINER if action == "rename" => vec![Change::AllContainers],
        EventMessageTypeEnum::CONTAINER if CONTAINER_ACTIONS.contains(&action) => {
            vec![Change::Container(id.to_string())]
        }
        EventMessageTypeEnum::NETWORK => match action {
            "create" | "destroy" => vec![Change::Networks],
            "connect" | "disconnect" => {
                let container = actor.attributes.as_ref()?.get("container")?;
                vec![Change::Container(container.clone())]
            }
            _ => return None,
        },
        _ => return None,
    };
    let kind = match event.typ {
        Some(EventMessageTypeEnum::NETWORK) => "network",
        _ => "container",
    };
    Some(Classified {
        changes,
        label: format!("{kind} {action} {}", short_id(id)),
        time_nano: event.time_nano,
    })
}

fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> EventMessage {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn container_start_rereads_that_container() {
        // As Docker 20.10.24 sends it (trimmed).
        let e = event(
            r#"{"status":"start","id":"3f2a9c","Type":"container","Action":"start",
                "Actor":{"ID":"3f2a9c","Attributes":{"image":"busybox","name":"web"}},
                "scope":"local","time":1700000000,"timeNano":1700000000123456789}"#,
        );
        let c = classify(&e).unwrap();
        assert_eq!(c.changes, vec![Change::Container("3f2a9c".into())]);
        assert_eq!(c.label, "container start 3f2a9c");
        assert_eq!(c.time_nano, Some(1700000000123456789));
    }

    #[test]
    fn a_rename_rereads_every_container() {
        // As Docker 20.10.24 sends it (trimmed).
        let e = event(
            r#"{"status":"rename","id":"3f2a9c","Type":"container","Action":"rename",
                "Actor":{"ID":"3f2a9c","Attributes":{"name":"db2","oldName":"/db"}},
                "scope":"local","time":1700000000,"timeNano":1700000000123456789}"#,
        );
        let c = classify(&e).unwrap();
        assert_eq!(c.changes, vec![Change::AllContainers]);
        assert_eq!(c.label, "container rename 3f2a9c");
        assert!(CONTAINER_ACTIONS.contains(&"rename"), "subscribed to");
    }

    #[test]
    fn network_connect_rereads_the_container_and_create_the_networks() {
        let connect = event(
            r#"{"Type":"network","Action":"connect",
                "Actor":{"ID":"netid","Attributes":{"container":"ctr1","name":"web","type":"bridge"}}}"#,
        );
        assert_eq!(
            classify(&connect).unwrap().changes,
            vec![Change::Container("ctr1".into())]
        );
        let create = event(
            r#"{"Type":"network","Action":"create","Actor":{"ID":"netid","Attributes":{"name":"web"}}}"#,
        );
        assert_eq!(classify(&create).unwrap().changes, vec![Change::Networks]);
    }

    #[test]
    fn irrelevant_or_malformed_events_are_ignored() {
        for json in [
            r#"{"Type":"container","Action":"exec_create: sh","Actor":{"ID":"c"}}"#,
            r#"{"Type":"image","Action":"pull","Actor":{"ID":"busybox"}}"#,
            r#"{"Type":"container","Action":"start","Actor":{"ID":""}}"#,
            r#"{"Type":"network","Action":"connect","Actor":{"ID":"n","Attributes":{}}}"#,
            r#"{"Action":"start"}"#,
        ] {
            assert_eq!(classify(&event(json)), None, "{json}");
        }
    }
}
