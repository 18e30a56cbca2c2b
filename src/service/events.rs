//! [`EventBus`]: ARK's federation events (`peer-added`, `sync-complete`, ...) as JSON,
//! kept in a ring of recent events, streamed to Server-Sent Events subscribers and
//! handed to the `--on-event` command.
//!
//! # Implementation
//!
//! Emitting never waits: each subscriber has a bounded queue, and one that is full (a
//! client not reading) is dropped, which ends its stream; the hook command runs as a
//! task of its own, at most [`MAX_RUNNING_HOOKS`] at once, and events beyond that are
//! dropped with a warning. So a slow dashboard or a slow hook never holds up a sync.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncWriteExt, future};
use miniserde::json::{self, Number, Object, Value};
use smol::channel::{Receiver, Sender};
use smol::{LocalExecutor, Timer};

use crate::http::{Body, BodySender};
use crate::model::unix_millis_now;

/// Events kept for the status page and for subscribers that reconnect.
pub(crate) const RECENT_EVENTS: usize = 200;
/// Event streams open at once; each holds one of the server's connections.
pub(crate) const MAX_SUBSCRIBERS: usize = 8;
/// Events that may wait for a subscriber before it is dropped.
pub(crate) const SUBSCRIBER_QUEUE: usize = 256;
/// Hook commands running at once.
pub(crate) const MAX_RUNNING_HOOKS: usize = 4;
/// A hook still running after this is killed.
pub(crate) const HOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// A comment line sent to subscribers this often keeps proxies from closing the
/// stream and finds subscribers that have gone.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// ARK's event names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum EventKind {
    PeerAdded,
    PeerRemoved,
    SyncStarted,
    SyncComplete,
    ConflictResolved,
    PeerDiscovered,
    PeerExpired,
}

impl EventKind {
    pub(crate) const ALL: [EventKind; 7] = [
        EventKind::PeerAdded,
        EventKind::PeerRemoved,
        EventKind::SyncStarted,
        EventKind::SyncComplete,
        EventKind::ConflictResolved,
        EventKind::PeerDiscovered,
        EventKind::PeerExpired,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            EventKind::PeerAdded => "peer-added",
            EventKind::PeerRemoved => "peer-removed",
            EventKind::SyncStarted => "sync-started",
            EventKind::SyncComplete => "sync-complete",
            EventKind::ConflictResolved => "conflict-resolved",
            EventKind::PeerDiscovered => "peer-discovered",
            EventKind::PeerExpired => "peer-expired",
        }
    }
}

/// One event: `{"type", "id", "timestamp", "instanceId", ...fields}` as JSON text.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub id: u64,
    pub kind: EventKind,
    pub timestamp: u64,
    pub fields: Object,
    pub json: String,
}

impl Event {
    /// The Server-Sent Events frame: `id`, `event` and the JSON on one `data` line.
    fn sse_frame(&self) -> Vec<u8> {
        format!(
            "id: {}\nevent: {}\ndata: {}\n\n",
            self.id,
            self.kind.name(),
            self.json
        )
        .into_bytes()
    }
}

/// The event bus of one instance.
#[derive(Debug)]
pub(crate) struct EventBus {
    instance_id: String,
    next_id: Cell<u64>,
    recent: RefCell<VecDeque<Rc<Event>>>,
    subscribers: RefCell<Vec<BodySender>>,
    counts: RefCell<BTreeMap<EventKind, u64>>,
    hooks: RefCell<Option<HookQueue>>,
    verbose: bool,
}

#[derive(Debug)]
struct HookQueue {
    sender: Sender<Rc<Event>>,
    running: Rc<Cell<usize>>,
}

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TooManySubscribers;

impl EventBus {
    pub(crate) fn new(instance_id: String, verbose: bool) -> EventBus {
        EventBus {
            instance_id,
            next_id: Cell::new(1),
            recent: RefCell::new(VecDeque::with_capacity(RECENT_EVENTS)),
            subscribers: RefCell::new(Vec::new()),
            counts: RefCell::new(BTreeMap::new()),
            hooks: RefCell::new(None),
            verbose,
        }
    }

    /// Records an event and passes it on. Never waits.
    pub(crate) fn emit<const N: usize>(&self, kind: EventKind, pairs: [(&str, Value); N]) {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let timestamp = unix_millis_now();
        let fields: Object = pairs
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect();
        let mut object = fields.clone();
        object.insert("type".into(), Value::String(kind.name().to_owned()));
        object.insert("id".into(), Value::Number(Number::U64(id)));
        object.insert("timestamp".into(), Value::Number(Number::U64(timestamp)));
        object.insert("instanceId".into(), Value::String(self.instance_id.clone()));
        let event = Rc::new(Event {
            id,
            kind,
            timestamp,
            fields,
            json: json::to_string(&Value::Object(object)),
        });
        if self.verbose {
            eprintln!("ark:events {}", event.json);
        }
        *self.counts.borrow_mut().entry(kind).or_default() += 1;
        {
            let mut recent = self.recent.borrow_mut();
            if recent.len() == RECENT_EVENTS {
                recent.pop_front();
            }
            recent.push_back(event.clone());
        }
        let frame = event.sse_frame();
        self.broadcast(&frame);
        if let Some(hooks) = self.hooks.borrow().as_ref() {
            if hooks.running.get() >= MAX_RUNNING_HOOKS {
                eprintln!(
                    "warning: {MAX_RUNNING_HOOKS} --on-event commands are still running; event {} ({}) is not passed to another",
                    event.id,
                    kind.name()
                );
            } else if hooks.sender.try_send(event).is_ok() {
                hooks.running.set(hooks.running.get() + 1);
            }
        }
    }

    /// Sends `frame` to every subscriber, dropping those that are gone or not reading.
    fn broadcast(&self, frame: &[u8]) {
        self.subscribers.borrow_mut().retain(|subscriber| {
            let kept = subscriber.try_send(frame.to_vec()).is_ok();
            if !kept && self.verbose {
                eprintln!("ark:events dropped an event stream that is gone or not reading");
            }
            kept
        });
    }

    /// A new event stream: recent events after `last_id` (a reconnecting client's
    /// `Last-Event-ID`), then every new event.
    pub(crate) fn subscribe(&self, last_id: Option<u64>) -> Result<Body, TooManySubscribers> {
        let mut subscribers = self.subscribers.borrow_mut();
        subscribers.retain(|subscriber| !subscriber.is_closed());
        if subscribers.len() >= MAX_SUBSCRIBERS {
            return Err(TooManySubscribers);
        }
        let (sender, body) = Body::channel(SUBSCRIBER_QUEUE + RECENT_EVENTS);
        // Tells the client how long to wait before reconnecting, and gets the response
        // headers out at once.
        let _ = sender.try_send(b"retry: 3000\n\n".to_vec());
        if let Some(last_id) = last_id {
            for event in self
                .recent
                .borrow()
                .iter()
                .filter(|event| event.id > last_id)
            {
                let _ = sender.try_send(event.sse_frame());
            }
        }
        subscribers.push(sender);
        Ok(body)
    }

    /// Sends a keep-alive comment, which also drops subscribers that have gone.
    pub(crate) fn keep_alive(&self) {
        self.broadcast(b": keep-alive\n\n");
    }

    /// Ends every stream, so a graceful shutdown does not wait for them.
    pub(crate) fn close_subscribers(&self) {
        self.subscribers.borrow_mut().clear();
    }

    /// Open event streams; the tests check a full one is dropped.
    #[cfg(test)]
    fn subscriber_count(&self) -> usize {
        self.subscribers.borrow().len()
    }

    /// The newest `limit` events, newest first.
    pub(crate) fn recent(&self, limit: usize) -> Vec<Rc<Event>> {
        self.recent
            .borrow()
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }

    /// Events emitted since start, by kind.
    pub(crate) fn counts(&self) -> BTreeMap<EventKind, u64> {
        self.counts.borrow().clone()
    }

    /// Starts passing events to `command`; the returned task runs the hooks and must be
    /// kept alive on `executor`.
    pub(crate) fn start_hooks(
        &self,
        executor: &'static LocalExecutor<'static>,
        command: String,
    ) -> smol::Task<()> {
        let (sender, receiver) = smol::channel::bounded(MAX_RUNNING_HOOKS);
        let running = Rc::new(Cell::new(0));
        *self.hooks.borrow_mut() = Some(HookQueue {
            sender,
            running: running.clone(),
        });
        executor.spawn(dispatch_hooks(
            executor,
            receiver,
            Rc::from(command),
            running,
        ))
    }
}

async fn dispatch_hooks(
    executor: &'static LocalExecutor<'static>,
    receiver: Receiver<Rc<Event>>,
    command: Rc<str>,
    running: Rc<Cell<usize>>,
) {
    while let Ok(event) = receiver.recv().await {
        let command = command.clone();
        let running = running.clone();
        executor
            .spawn(async move {
                if let Err(error) = run_hook(&command, &event).await {
                    eprintln!(
                        "warning: --on-event command for event {} ({}): {error}",
                        event.id,
                        event.kind.name()
                    );
                }
                running.set(running.get().saturating_sub(1));
            })
            .detach();
    }
}

/// Runs `sh -c command` with the event's JSON (and a newline) on standard input and
/// `ARK_EVENT_TYPE` set; kills it after [`HOOK_TIMEOUT`].
async fn run_hook(command: &str, event: &Event) -> std::io::Result<()> {
    let mut child = smol::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("ARK_EVENT_TYPE", event.kind.name())
        .env("ARK_EVENT_ID", event.id.to_string())
        .stdin(smol::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        let mut input = event.json.clone().into_bytes();
        input.push(b'\n');
        // A command that does not read its input is fine: a broken pipe is not an error.
        let _ = stdin.write_all(&input).await;
        let _ = stdin.close().await;
    }
    let finished = future::or(async { Some(child.status().await) }, async {
        Timer::after(HOOK_TIMEOUT).await;
        None
    })
    .await;
    match finished {
        Some(Ok(status)) if status.success() => Ok(()),
        Some(Ok(status)) => Err(std::io::Error::other(format!("it exited with {status}"))),
        Some(Err(error)) => Err(error),
        None => {
            let _ = child.kill();
            Err(std::io::Error::other(format!(
                "it was still running after {} s and was killed",
                HOOK_TIMEOUT.as_secs()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &str) -> Value {
        Value::String(value.to_owned())
    }

    #[test]
    fn events_are_numbered_kept_and_counted() {
        let bus = EventBus::new("abc".into(), false);
        bus.emit(
            EventKind::PeerAdded,
            [("peer", text("http://10.0.0.2:9000"))],
        );
        bus.emit(
            EventKind::SyncStarted,
            [("peer", text("http://10.0.0.2:9000"))],
        );
        let recent = bus.recent(10);
        assert_eq!(recent.len(), 2);
        assert_eq!(recent[0].kind, EventKind::SyncStarted);
        let value: Value = json::from_str(&recent[1].json).unwrap();
        let Value::Object(object) = value else {
            panic!("an object")
        };
        let string = |name: &str| match object.get(name) {
            Some(Value::String(text)) => text.clone(),
            _ => panic!("no string {name}"),
        };
        assert_eq!(string("type"), "peer-added");
        assert_eq!(string("peer"), "http://10.0.0.2:9000");
        assert_eq!(string("instanceId"), "abc");
        assert_eq!(bus.counts().get(&EventKind::PeerAdded), Some(&1));
        for _ in 0..RECENT_EVENTS {
            bus.emit(EventKind::PeerExpired, []);
        }
        assert_eq!(bus.recent(usize::MAX).len(), RECENT_EVENTS);
    }

    #[test]
    fn a_subscriber_that_does_not_read_is_dropped_not_waited_for() {
        let bus = EventBus::new("abc".into(), false);
        let body = bus.subscribe(None).unwrap();
        assert_eq!(bus.subscriber_count(), 1);
        for _ in 0..SUBSCRIBER_QUEUE + RECENT_EVENTS + 1 {
            bus.emit(EventKind::SyncStarted, []);
        }
        assert_eq!(bus.subscriber_count(), 0);
        drop(body);
        let _open: Vec<Body> = (0..MAX_SUBSCRIBERS)
            .map(|_| bus.subscribe(None).unwrap())
            .collect();
        assert_eq!(bus.subscribe(None).unwrap_err(), TooManySubscribers);
    }

    #[test]
    fn a_reconnecting_subscriber_gets_what_it_missed() {
        let bus = EventBus::new("abc".into(), false);
        bus.emit(EventKind::PeerAdded, []);
        bus.emit(EventKind::PeerRemoved, []);
        let Body::Stream(stream) = bus.subscribe(Some(1)).unwrap() else {
            panic!("a stream");
        };
        let mut received = String::new();
        while let Ok(chunk) = stream.receiver.try_recv() {
            received.push_str(&String::from_utf8(chunk).unwrap());
        }
        assert!(received.starts_with("retry: 3000\n\n"), "{received}");
        assert!(received.contains("event: peer-removed"), "{received}");
        assert!(!received.contains("event: peer-added"), "{received}");
    }
}
