//! A TCP proxy per directed link between soak nodes: it keeps its port while the node
//! behind it restarts on a new one, and cuts the link (a partition) until healed.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One direction of one link: `from` reaches `to` at [`LinkProxy::url`].
pub struct LinkProxy {
    pub from: usize,
    pub to: usize,
    pub port: u16,
    shared: Arc<Shared>,
}

struct Shared {
    upstream_port: AtomicU16,
    blocked: AtomicBool,
    stop: AtomicBool,
    next_id: AtomicU64,
    /// Open connections (the client side), so a partition also cuts keep-alive
    /// connections made before it.
    open: Mutex<HashMap<u64, TcpStream>>,
}

impl LinkProxy {
    pub fn new(from: usize, to: usize, upstream_port: u16) -> LinkProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a link proxy");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            upstream_port: upstream_port.into(),
            blocked: false.into(),
            stop: false.into(),
            next_id: 0.into(),
            open: Mutex::new(HashMap::new()),
        });
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                // A partitioned link: the connection is closed at once, as a dropped
                // route shows up to a client that already had a connection.
                if accepting.blocked.load(Ordering::SeqCst) {
                    continue;
                }
                let port = accepting.upstream_port.load(Ordering::SeqCst);
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", port)) else {
                    continue;
                };
                let id = accepting.next_id.fetch_add(1, Ordering::SeqCst);
                if let Ok(copy) = client.try_clone() {
                    accepting.open.lock().unwrap().insert(id, copy);
                }
                let shared = accepting.clone();
                std::thread::spawn(move || {
                    relay(client, upstream);
                    shared.open.lock().unwrap().remove(&id);
                });
            }
        });
        LinkProxy {
            from,
            to,
            port,
            shared,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The node behind the link restarted on `port`.
    pub fn point_to(&self, port: u16) {
        self.shared.upstream_port.store(port, Ordering::SeqCst);
    }

    /// Cuts the link, open connections included, until [`LinkProxy::heal`].
    pub fn block(&self) {
        self.shared.blocked.store(true, Ordering::SeqCst);
        for (_, stream) in self.shared.open.lock().unwrap().drain() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    pub fn heal(&self) {
        self.shared.blocked.store(false, Ordering::SeqCst);
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.block();
        // Wakes the accepting thread so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies both ways until either side closes, then closes both.
fn relay(client: TcpStream, upstream: TcpStream) {
    let (Ok(client_reader), Ok(upstream_writer)) = (client.try_clone(), upstream.try_clone())
    else {
        return;
    };
    let requests = std::thread::spawn(move || copy(client_reader, upstream_writer));
    copy(upstream, client);
    let _ = requests.join();
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = vec![0; 32 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                if to.write_all(&buffer[..read]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
