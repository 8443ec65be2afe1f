//! The event log behind `berth events` and the Engine API's `/events`: what changed under
//! the state root (containers, images, volumes, networks), appended by whichever berth
//! process made the change and read by followers that poll it.
//!
//! berth has no daemon to hold events in memory as dockerd does, so they live in
//! `events.db`: SQLite (WAL) because many processes append at once and readers must not
//! block them. The newest [`KEPT_EVENTS`] are kept. Changes are recorded through
//! `Store::record_event`, which logs and drops an event that cannot be written: telling of a
//! change never fails the change.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use rusqlite::{Connection, params};

use crate::{Filters, Result, meta::open_sqlite, retry_busy};

/// How many events the log keeps (dockerd keeps 256, in memory; this one outlives every
/// process, so it keeps more for `--since`).
pub const KEPT_EVENTS: i64 = 10_000;

/// The filters `events` takes.
pub const EVENT_FILTERS: &[&str] = &[
    "config",
    "container",
    "daemon",
    "event",
    "image",
    "label",
    "network",
    "node",
    "plugin",
    "scope",
    "secret",
    "service",
    "type",
    "volume",
];

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    time_nano  INTEGER NOT NULL,
    type       TEXT NOT NULL,
    action     TEXT NOT NULL,
    actor      TEXT NOT NULL,
    attributes TEXT NOT NULL
);
";

/// One event, in Docker's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `container`, `image`, `volume` or `network`.
    pub kind: String,
    /// `create`, `start`, `die`, `pull`, `tag`, ...
    pub action: String,
    /// The ID of what it is about (a container's or image's ID, a volume's name).
    pub actor: String,
    /// Details: `name`, `image`, `exitCode`, labels, ...
    pub attributes: BTreeMap<String, String>,
    /// When, in nanoseconds since the Unix epoch.
    pub time_nano: i64,
}

impl Event {
    /// An event happening now.
    pub fn now(kind: &str, action: &str, actor: &str) -> Event {
        Event {
            kind: kind.into(),
            action: action.into(),
            actor: actor.into(),
            attributes: BTreeMap::new(),
            time_nano: now_nano(),
        }
    }

    /// With one more attribute.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Event {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// With every attribute of `attrs` (labels, say) that it does not have yet.
    pub fn with_all<'a>(
        mut self,
        attrs: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Event {
        for (k, v) in attrs {
            self.attributes
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        self
    }

    /// Whether `filters` (Docker's `events` filters) let it through.
    pub fn matches(&self, filters: &Filters) -> bool {
        let any = |key: &str, test: &dyn Fn(&str) -> bool| {
            let wanted = filters.get(key);
            wanted.is_empty() || wanted.iter().any(|v| test(v))
        };
        let attr = |k: &str| self.attributes.get(k).map(String::as_str);
        let of_kind =
            |kind: &str, test: &dyn Fn(&str) -> bool| any(kind, &|v| self.kind == kind && test(v));
        // `exec_start: sh -c ...` is an `exec_start` event to a filter.
        let action = self.action.split(':').next().unwrap_or("");
        any("type", &|v| self.kind == v)
            && any("event", &|v| self.action == v || action == v)
            && any("scope", &|v| v == "local")
            && any("label", &|v| match v.split_once('=') {
                Some((k, want)) => attr(k) == Some(want),
                None => attr(v).is_some(),
            })
            && of_kind("container", &|v| self.named_like(v))
            && any("image", &|v| {
                // The image's ID and name (`image` of a container's event), with or without
                // the tag.
                let name = match self.kind.as_str() {
                    "image" => attr("name"),
                    _ => attr("image"),
                };
                [Some(self.actor.as_str()), name]
                    .into_iter()
                    .flatten()
                    .any(|n| n == v || strip_tag(n) == v)
            })
            && of_kind("volume", &|v| self.named_like(v))
            && of_kind("network", &|v| self.named_like(v))
            && ["config", "daemon", "node", "plugin", "secret", "service"]
                .iter()
                .all(|k| any(k, &|_| false))
    }
}

impl Event {
    /// Docker's `events.Message`, as `/events` sends it and `events --format` reads it.
    /// Containers' and images' events also carry the fields of Docker's first format
    /// (`status`, `id`, `from`), as dockerd still sends them.
    pub fn docker_message(&self) -> serde_json::Value {
        let mut m = serde_json::json!({
            "Type": self.kind,
            "Action": self.action,
            "Actor": { "ID": self.actor, "Attributes": self.attributes },
            "scope": "local",
            "time": self.time_nano.div_euclid(1_000_000_000),
            "timeNano": self.time_nano,
        });
        if matches!(self.kind.as_str(), "container" | "image") {
            m["status"] = self.action.clone().into();
            m["id"] = self.actor.clone().into();
            if let Some(image) = self
                .attributes
                .get("image")
                .filter(|_| self.kind == "container")
            {
                m["from"] = image.clone().into();
            }
        }
        m
    }

    /// Whether `prefix` starts its ID or its `name` (Docker's fuzzy match).
    fn named_like(&self, prefix: &str) -> bool {
        self.actor.starts_with(prefix)
            || self
                .attributes
                .get("name")
                .is_some_and(|n| n.starts_with(prefix))
    }
}

/// A reference without its tag (`busybox:1` → `busybox`; a registry's port stays).
fn strip_tag(name: &str) -> &str {
    let name = name.split('@').next().unwrap_or(name);
    match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    }
}

/// An event as read back, with its place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// Its sequence number: later events have larger ones.
    pub seq: i64,
    /// The event.
    pub event: Event,
}

/// The log under a state root.
pub struct EventLog {
    conn: Connection,
}

impl EventLog {
    /// Opens (creating if needed) `events.db` under `root`.
    pub fn open(root: &Path) -> Result<EventLog> {
        let conn = open_sqlite(&path(root))?;
        // An event is cheap to lose in a power cut; a commit's fsync on every one is not.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        retry_busy(|| conn.execute_batch(SCHEMA))?;
        Ok(EventLog { conn })
    }

    /// Appends one event, dropping the oldest beyond [`KEPT_EVENTS`].
    pub fn append(&self, event: &Event) -> Result<()> {
        let attributes = serde_json::to_string(&event.attributes).expect("strings serialize");
        self.conn.execute(
            "INSERT INTO events (time_nano, type, action, actor, attributes) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![event.time_nano, event.kind, event.action, event.actor, attributes],
        )?;
        let seq = self.conn.last_insert_rowid();
        // Trimming now and then keeps appends cheap.
        if seq % 100 == 0 {
            self.conn.execute(
                "DELETE FROM events WHERE seq <= ?1",
                params![seq - KEPT_EVENTS],
            )?;
        }
        Ok(())
    }

    /// Up to `limit` events after `seq`, oldest first.
    pub fn after(&self, seq: i64, limit: usize) -> Result<Vec<Logged>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, time_nano, type, action, actor, attributes FROM events
             WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![seq, limit as i64], |r| {
            let attributes: String = r.get(5)?;
            Ok(Logged {
                seq: r.get(0)?,
                event: Event {
                    time_nano: r.get(1)?,
                    kind: r.get(2)?,
                    action: r.get(3)?,
                    actor: r.get(4)?,
                    attributes: serde_json::from_str(&attributes).unwrap_or_default(),
                },
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The sequence number of the newest event (0 when there is none): a follower that
    /// wants only what happens from now on starts after it.
    pub fn last_seq(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?)
    }
}

/// How often a follower looks for new events.
const POLL: std::time::Duration = std::time::Duration::from_millis(100);
/// How many events a follower reads at once.
const BATCH: usize = 512;

/// What `events` shows, as Docker's daemon picks it: with `since`, the kept events from
/// then on, else only those that happen from now on; with `until`, up to then (waiting for
/// it when it is ahead), else for ever. Each event that `filters` let through goes to
/// `show`; following ends when `show` fails (the reader went away) or `gone` says so.
pub fn follow(
    log: &EventLog,
    since: Option<jiff::Timestamp>,
    until: Option<jiff::Timestamp>,
    filters: &Filters,
    gone: &dyn Fn() -> bool,
    show: &mut dyn FnMut(&Event) -> std::io::Result<()>,
) -> Result<()> {
    let nano = |t: jiff::Timestamp| i64::try_from(t.as_nanosecond()).unwrap_or(i64::MAX);
    let since = since.map(nano);
    let until = until.map(nano);
    let mut seq = match since {
        Some(_) => 0,
        None => log.last_seq()?,
    };
    loop {
        // Read before the clock: an event appended after this batch was read has a later
        // time than `now` below, so it is not lost to the `until` check.
        let batch = log.after(seq, BATCH)?;
        let now = now_nano();
        for logged in &batch {
            seq = logged.seq;
            let ev = &logged.event;
            if since.is_some_and(|s| ev.time_nano < s) || !ev.matches(filters) {
                continue;
            }
            if until.is_some_and(|u| ev.time_nano > u) {
                return Ok(());
            }
            if show(ev).is_err() {
                return Ok(());
            }
        }
        if batch.len() == BATCH {
            continue;
        }
        if until.is_some_and(|u| now >= u) || gone() {
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
}

fn path(root: &Path) -> PathBuf {
    root.join("events.db")
}

fn now_nano() -> i64 {
    let now = jiff::Timestamp::now();
    i64::try_from(now.as_nanosecond()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_appended_read_back_in_order_and_trimmed() {
        let tmp = tempfile::tempdir().unwrap();
        let log = EventLog::open(tmp.path()).unwrap();
        assert_eq!(log.last_seq().unwrap(), 0);
        let first = Event::now("container", "create", "abc").with("name", "web");
        log.append(&first).unwrap();
        log.append(&Event::now("container", "start", "abc"))
            .unwrap();
        let read = log.after(0, 10).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].event, first);
        assert_eq!(read[1].event.action, "start");
        assert!(read[1].seq > read[0].seq);
        assert!(log.after(read[1].seq, 10).unwrap().is_empty());
        assert_eq!(log.last_seq().unwrap(), read[1].seq);
    }

    #[test]
    fn follow_replays_since_and_stops_at_until() {
        let tmp = tempfile::tempdir().unwrap();
        let start = jiff::Timestamp::now();
        let log = EventLog::open(tmp.path()).unwrap();
        for (kind, action, actor) in [
            ("volume", "create", "a"),
            ("container", "create", "c"),
            ("volume", "destroy", "a"),
        ] {
            log.append(&Event::now(kind, action, actor)).unwrap();
        }
        let until = jiff::Timestamp::now();
        let mut seen = Vec::new();
        let volumes = Filters::parse(&["type=volume".to_string()], EVENT_FILTERS).unwrap();
        follow(
            &log,
            Some(start),
            Some(until),
            &volumes,
            &|| false,
            &mut |e| {
                seen.push(e.action.clone());
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, ["create", "destroy"]);
        // Without `since`, only what comes after: nothing here, and `until` has passed.
        let mut count = 0;
        follow(
            &log,
            None,
            Some(until),
            &Filters::default(),
            &|| false,
            &mut |_| {
                count += 1;
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(count, 0);
    }

    #[test]
    fn filters_select_as_dockers_do() {
        let ev = Event::now("container", "die", "abcdef")
            .with("name", "web")
            .with("image", "busybox")
            .with("exitCode", "0")
            .with("tier", "front");
        let f = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            Filters::parse(&args, EVENT_FILTERS).unwrap()
        };
        assert!(ev.matches(&f(&[])));
        assert!(ev.matches(&f(&["type=container", "event=die"])));
        assert!(ev.matches(&f(&["container=web"])));
        assert!(ev.matches(&f(&["container=abc"])));
        assert!(ev.matches(&f(&["label=tier=front", "label=exitCode"])));
        assert!(ev.matches(&f(&["event=start", "event=die"])));
        assert!(!ev.matches(&f(&["type=image"])));
        assert!(!ev.matches(&f(&["container=other"])));
        assert!(!ev.matches(&f(&["volume=data"])));
        assert!(!ev.matches(&f(&["label=tier=back"])));
        assert!(ev.matches(&f(&["image=busybox"])));
        let image = Event::now("image", "tag", "sha256:1234").with("name", "reg:5000/app:1");
        assert!(image.matches(&f(&["image=reg:5000/app"])));
        assert!(image.matches(&f(&["image=sha256:1234"])));
        assert!(!image.matches(&f(&["image=reg"])));
        let exec = Event::now("container", "exec_start: sh -c true", "abcdef");
        assert!(exec.matches(&f(&["event=exec_start"])));
    }
}
