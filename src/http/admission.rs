//! Which connections the server keeps: a cap per source address and a cap in total,
//! enforced at accept by shedding a stalled connection of the busiest source, never by
//! making the accept loop wait. Running the connections is left to `server`.
//!
//! # Implementation
//!
//! A global semaphore taken before `accept` lets one source that opens connections and
//! never finishes a head hold every slot: everyone else waits in the listen backlog
//! (issue 10: 2,000 stalled connections from one address kept other callers out for
//! minutes). Here every connection is accepted at once and registered in a table with
//! its source and its [`Activity`]. A connection is *stalled* when it waits on its
//! client: for a head (a half-sent one, or the next one on a kept-alive connection),
//! stalled since the last request ended; or for the rest of a request body (an upload
//! sent a byte a second is as cheap to hold as a half-sent head), stalled since its
//! last byte. When a new connection would put its source over
//! `max_connections_per_address`, the oldest stalled connection of that source is
//! closed; when it would put the server over `max_connections`, the oldest stalled one
//! of the source holding the most connections goes. Connections whose request the node
//! is working on or answering are never shed; if there is nothing to shed, the new
//! connection is refused (closed at once), so a source can only crowd out itself.
//!
//! A long-poll waiting for news (`changes?wait=`) is a request in flight that may last
//! 25 s, so counted as one it would let 32 watching spokes of an address, or 256 in all,
//! keep every other request out (issue 13: a hub with 1,000 spokes). A long-poll's
//! handler *parks* its request ([`Parking::park`]): the connection then counts
//! against `max_long_polls` (and a share per address) instead of the request caps,
//! until its next request starts, so a long-poll's answer and the moments until the
//! client's next long-poll do not count as a request either. Beyond those caps a
//! long-poll stays an ordinary request in flight, as before, so parking adds a bounded
//! number of connections and nothing else.
//!
//! The table is a plain `Vec` scanned at each accept and park: it holds at most
//! `max_connections + max_long_polls` entries (a few thousand), and a scan of that size
//! costs microseconds.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use smol::channel::{self, Receiver, Sender};

use super::wire::Activity;

/// Where a connection comes from, for the per-address cap: an IPv4 address, or the /64
/// network of an IPv6 one (one host usually holds a whole /64, so counting single IPv6
/// addresses would let it open billions of "sources").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    V4([u8; 4]),
    V6Network([u8; 8]),
}

impl Source {
    pub(crate) fn of(addr: &SocketAddr) -> Source {
        match addr.ip() {
            IpAddr::V4(ip) => Source::V4(ip.octets()),
            IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                Some(ip) => Source::V4(ip.octets()),
                None => {
                    let octets = ip.octets();
                    let mut network = [0u8; 8];
                    network.copy_from_slice(&octets[..8]);
                    Source::V6Network(network)
                }
            },
        }
    }
}

/// What the table decided about a new connection.
#[derive(Debug)]
pub(crate) enum Admitted {
    /// Serve it. The connection ends when the receiver's sender is dropped (it was shed
    /// or the server is shutting down), and the guard takes it off the table.
    Yes(Receiver<()>, AdmissionGuard),
    /// Close it at once: its source (or the server) is at its cap with every
    /// connection busy.
    Refused,
}

struct Entry {
    id: u64,
    source: Source,
    activity: Rc<Activity>,
    /// Dropping it tells the connection to close.
    close: Sender<()>,
}

/// The connections a server holds, by source.
#[derive(Debug)]
pub(crate) struct ConnectionTable {
    max_total: usize,
    max_per_source: usize,
    max_parked: usize,
    max_parked_per_source: usize,
    entries: RefCell<Vec<Entry>>,
    next_id: Cell<u64>,
    shed: Cell<u64>,
    refused: Cell<u64>,
    /// Notified whenever a connection leaves the table, so shutdown can wait for none.
    left: event_listener::Event,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("id", &self.id)
            .field("source", &self.source)
            .finish()
    }
}

impl ConnectionTable {
    /// A table holding at most `max_total` request connections (`max_per_source` from
    /// one source) and `max_parked` parked long-polls (`max_parked_per_source`).
    pub(crate) fn new(
        max_total: usize,
        max_per_source: usize,
        max_parked: usize,
        max_parked_per_source: usize,
    ) -> Rc<ConnectionTable> {
        let max_total = max_total.max(1);
        Rc::new(ConnectionTable {
            max_total,
            max_per_source: max_per_source.clamp(1, max_total),
            max_parked,
            max_parked_per_source: max_parked_per_source.min(max_parked),
            entries: RefCell::new(Vec::new()),
            next_id: Cell::new(0),
            shed: Cell::new(0),
            refused: Cell::new(0),
            left: event_listener::Event::new(),
        })
    }

    /// Registers a connection from `addr`, shedding a stalled one if a cap is reached.
    pub(crate) fn admit(self: &Rc<Self>, addr: &SocketAddr, activity: Rc<Activity>) -> Admitted {
        let source = Source::of(addr);
        let from_source = self.count(source);
        if from_source >= self.max_per_source && !self.shed_oldest_stalled(Some(source)) {
            self.refused.set(self.refused.get() + 1);
            return Admitted::Refused;
        }
        if self.requests_held() >= self.max_total {
            let busiest = self.busiest_source();
            if !self.shed_oldest_stalled(busiest) && !self.shed_oldest_stalled(None) {
                self.refused.set(self.refused.get() + 1);
                return Admitted::Refused;
            }
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (close, closed) = channel::bounded(1);
        self.entries.borrow_mut().push(Entry {
            id,
            source,
            activity,
            close,
        });
        Admitted::Yes(
            closed,
            AdmissionGuard {
                table: Rc::clone(self),
                id,
            },
        )
    }

    /// Connections held now, parked or not.
    pub(crate) fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    /// Connections held now that count against the request caps: all but the parked.
    fn requests_held(&self) -> usize {
        let entries = self.entries.borrow();
        entries
            .iter()
            .filter(|entry| !entry.activity.is_parked())
            .count()
    }

    /// Long-polls parked now.
    #[cfg(test)]
    pub(crate) fn parked_count(&self) -> usize {
        let entries = self.entries.borrow();
        entries
            .iter()
            .filter(|entry| entry.activity.is_parked())
            .count()
    }

    /// Moves a connection's request out of the request caps if the long-poll caps
    /// have room; false if they are full (or it is parked already).
    fn park(&self, activity: &Activity, source: Source) -> bool {
        if activity.is_parked() {
            return false;
        }
        let entries = self.entries.borrow();
        let (mut parked, mut from_source) = (0, 0);
        for entry in entries.iter().filter(|entry| entry.activity.is_parked()) {
            parked += 1;
            if entry.source == source {
                from_source += 1;
            }
        }
        if parked >= self.max_parked || from_source >= self.max_parked_per_source {
            return false;
        }
        activity.set_parked(true);
        true
    }

    /// Connections closed to make room for others, since start.
    pub(crate) fn shed_count(&self) -> u64 {
        self.shed.get()
    }

    /// Connections refused because their source had nothing to shed, since start.
    pub(crate) fn refused_count(&self) -> u64 {
        self.refused.get()
    }

    /// Tells every connection to close (shutdown); they leave the table as they end.
    pub(crate) fn close_all(&self) {
        for entry in self.entries.borrow_mut().iter_mut() {
            entry.close.close();
        }
    }

    /// Waits until no connection is left.
    pub(crate) async fn emptied(&self) {
        loop {
            let listener = self.left.listen();
            if self.len() == 0 {
                return;
            }
            listener.await;
        }
    }

    fn count(&self, source: Source) -> usize {
        let entries = self.entries.borrow();
        entries
            .iter()
            .filter(|entry| entry.source == source && !entry.activity.is_parked())
            .count()
    }

    fn busiest_source(&self) -> Option<Source> {
        let entries = self.entries.borrow();
        let mut counts: Vec<(Source, usize)> = Vec::new();
        for entry in entries.iter().filter(|entry| !entry.activity.is_parked()) {
            match counts
                .iter_mut()
                .find(|(source, _)| *source == entry.source)
            {
                Some((_, count)) => *count += 1,
                None => counts.push((entry.source, 1)),
            }
        }
        counts
            .into_iter()
            .max_by_key(|(_, count)| *count)
            .map(|(source, _)| source)
    }

    /// Closes the connection of `source` (any source for `None`) that has waited
    /// longest on its client (see [`Activity::stalled_since`]); false if the node is
    /// working on a request on every one.
    fn shed_oldest_stalled(&self, source: Option<Source>) -> bool {
        let mut entries = self.entries.borrow_mut();
        let oldest = entries
            .iter()
            .enumerate()
            .filter(|(_, entry)| source.is_none_or(|source| entry.source == source))
            // A parked connection is not on the request caps: closing it makes no room.
            .filter(|(_, entry)| !entry.activity.is_parked())
            .filter_map(|(index, entry)| Some((index, entry.activity.stalled_since()?)))
            .min_by_key(|(_, since)| *since)
            .map(|(index, _)| index);
        let Some(index) = oldest else {
            return false;
        };
        // Off the table now, so the new connection takes its place at once; the task
        // ends when it next runs and its guard finds nothing to remove.
        // A message, not just the channel closing (as at shutdown): a shed connection
        // reading a body closes at once instead of finishing its request.
        let entry = entries.swap_remove(index);
        let _ = entry.close.try_send(());
        entry.close.close();
        self.shed.set(self.shed.get() + 1);
        drop(entries);
        self.left.notify(usize::MAX);
        true
    }

    fn remove(&self, id: u64) {
        let mut entries = self.entries.borrow_mut();
        if let Some(index) = entries.iter().position(|entry| entry.id == id) {
            entries.swap_remove(index);
        }
        drop(entries);
        self.left.notify(usize::MAX);
    }
}

/// What a handler needs to park its request: the connection's table entry. A request
/// made outside a server (tests, tools) has none, and parking it does nothing.
#[derive(Clone, Default)]
pub struct Parking(Option<Rc<ParkSlot>>);

struct ParkSlot {
    table: Rc<ConnectionTable>,
    activity: Rc<Activity>,
    source: Source,
}

impl Parking {
    pub(crate) fn new(
        table: Rc<ConnectionTable>,
        activity: Rc<Activity>,
        addr: &SocketAddr,
    ) -> Parking {
        Parking(Some(Rc::new(ParkSlot {
            table,
            activity,
            source: Source::of(addr),
        })))
    }

    /// Called by a long-poll's handler (a request that may wait for news): from now
    /// until the connection's next request starts, it counts against `max_long_polls` and its share
    /// per address instead of `max_connections` and `max_connections_per_address`:
    /// through the wait, the answer and the moments until the client sends its next
    /// request (a watching spoke's next long-poll). Were it counted as a request again
    /// once its wait ended, the 1,000 long-polls one commit wakes at a hub would
    /// all land on the 256 request connections at once, and the table would shed
    /// watching spokes and refuse other callers (issue 13). False when this call did
    /// not park it: the long-poll caps are full (the request then waits as an ordinary
    /// one), or it is parked already.
    pub(crate) fn park(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|slot| slot.table.park(&slot.activity, slot.source))
    }
}

impl fmt::Debug for Parking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parking")
            .field("connection", &self.0.as_ref().map(|slot| slot.source))
            .finish()
    }
}

/// Takes its connection off the table when the connection ends.
#[derive(Debug)]
pub(crate) struct AdmissionGuard {
    table: Rc<ConnectionTable>,
    id: u64,
}

impl Drop for AdmissionGuard {
    fn drop(&mut self) {
        self.table.remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn admitted(
        table: &Rc<ConnectionTable>,
        from: &str,
    ) -> (Receiver<()>, AdmissionGuard, Rc<Activity>) {
        let activity = Activity::new();
        match table.admit(&addr(from), Rc::clone(&activity)) {
            Admitted::Yes(closed, guard) => (closed, guard, activity),
            Admitted::Refused => panic!("{from} refused"),
        }
    }

    #[test]
    fn a_source_over_its_cap_loses_its_oldest_stalled_connection() {
        let table = ConnectionTable::new(10, 2, 0, 0);
        let (first, _first_guard, _) = admitted(&table, "10.0.0.1:1000");
        let (second, _second_guard, _) = admitted(&table, "10.0.0.1:1001");
        let (_other, _other_guard, _) = admitted(&table, "10.0.0.2:1000");
        let (third, _third_guard, _) = admitted(&table, "10.0.0.1:1002");
        assert!(first.is_closed(), "the oldest of 10.0.0.1 was shed");
        assert!(!second.is_closed() && !third.is_closed());
        assert_eq!(table.len(), 3);
        assert_eq!(table.shed_count(), 1);
    }

    #[test]
    fn busy_connections_are_never_shed_and_the_newcomer_is_refused() {
        let table = ConnectionTable::new(10, 1, 0, 0);
        let (first, _guard, activity) = admitted(&table, "10.0.0.1:1000");
        let _in_flight = activity.start_request();
        assert!(matches!(
            table.admit(&addr("10.0.0.1:1001"), Activity::new()),
            Admitted::Refused
        ));
        assert!(!first.is_closed());
        assert_eq!(table.refused_count(), 1);
    }

    #[test]
    fn a_connection_waiting_for_its_body_is_shed_but_one_being_answered_is_not() {
        let table = ConnectionTable::new(10, 2, 0, 0);
        let (uploading, _g1, upload) = admitted(&table, "10.0.0.1:1");
        let (answering, _g2, answer) = admitted(&table, "10.0.0.1:2");
        let upload_request = upload.start_request();
        let _reading = upload_request.reading_body();
        let _answer_request = answer.start_request();
        let (_third, _g3, _) = admitted(&table, "10.0.0.1:3");
        assert!(
            uploading.is_closed(),
            "the upload waiting for bytes was shed"
        );
        assert!(!answering.is_closed());
        assert!(matches!(
            table.admit(&addr("10.0.0.1:4"), Activity::new()),
            Admitted::Yes(..)
        ));
    }

    #[test]
    fn at_the_total_cap_the_busiest_source_gives_way() {
        let table = ConnectionTable::new(3, 3, 0, 0);
        let (a1, _g1, _) = admitted(&table, "10.0.0.1:1");
        let (a2, _g2, _) = admitted(&table, "10.0.0.1:2");
        let (b1, _g3, _) = admitted(&table, "10.0.0.2:1");
        let (_c1, _g4, _) = admitted(&table, "10.0.0.3:1");
        assert!(a1.is_closed());
        assert!(!a2.is_closed() && !b1.is_closed());
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn parked_long_polls_leave_the_request_caps_to_others() {
        let table = ConnectionTable::new(2, 2, 3, 2);
        let mut held = Vec::new();
        for port in 1..=2 {
            let (closed, guard, activity) = admitted(&table, &format!("10.0.0.1:{port}"));
            let in_flight = activity.start_request();
            let parking =
                Parking::new(Rc::clone(&table), Rc::clone(&activity), &addr("10.0.0.1:1"));
            assert!(parking.park(), "room to park");
            held.push((closed, guard, in_flight, activity));
        }
        // Both long-polls are parked, so the same address and the total have room.
        let (_closed, _guard, third) = admitted(&table, "10.0.0.1:3");
        assert_eq!(table.parked_count(), 2);
        // The address's share of long-polls (2) is full: this one waits as a request.
        let _in_flight = third.start_request();
        let parking = Parking::new(Rc::clone(&table), Rc::clone(&third), &addr("10.0.0.1:3"));
        assert!(!parking.park());
        let (_other_closed, _other_guard, other) = admitted(&table, "10.0.0.2:1");
        let _other_in_flight = other.start_request();
        // Both request slots are busy now: a newcomer is refused.
        assert!(matches!(
            table.admit(&addr("10.0.0.3:1"), Activity::new()),
            Admitted::Refused
        ));
        // A long-poll stays parked while it is answered and until its connection's
        // next request starts; then that request counts as a request.
        let (closed, guard, in_flight, activity) = held.pop().expect("two held");
        drop(in_flight);
        assert_eq!(table.parked_count(), 2);
        assert!(
            !table.shed_oldest_stalled(None),
            "an answered long-poll is not shed for room on the request caps"
        );
        let _next = activity.start_request();
        assert_eq!(table.parked_count(), 1);
        assert!(!closed.is_closed());
        assert!(held.iter().all(|(closed, _, _, _)| !closed.is_closed()));
        drop(guard);
        assert!(!Parking::default().park());
    }

    #[test]
    fn ipv6_hosts_count_by_their_64() {
        assert_eq!(
            Source::of(&addr("[2001:db8:1:2::1]:1")),
            Source::of(&addr("[2001:db8:1:2:ffff::9]:1"))
        );
        assert_ne!(
            Source::of(&addr("[2001:db8:1:2::1]:1")),
            Source::of(&addr("[2001:db8:1:3::1]:1"))
        );
        assert_eq!(
            Source::of(&addr("[::ffff:10.0.0.1]:1")),
            Source::of(&addr("10.0.0.1:2"))
        );
    }

    #[test]
    fn guards_take_connections_off_the_table() {
        let table = ConnectionTable::new(4, 4, 0, 0);
        let (_closed, guard, _) = admitted(&table, "10.0.0.1:1");
        assert_eq!(table.len(), 1);
        drop(guard);
        assert_eq!(table.len(), 0);
        smol::block_on(table.emptied());
    }
}
