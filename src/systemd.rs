//! systemd service-manager notifications (`sd_notify`) with nothing but std: readiness,
//! watchdog keep-alives and shutdown, for `Type=notify` in `systemd/ark-lattice.service`.
//! What the server does between those messages is left to `server`.
//!
//! # Implementation
//!
//! The protocol is one datagram of newline-separated `KEY=VALUE` lines sent to the
//! `AF_UNIX` socket named by `$NOTIFY_SOCKET`: a path, or an abstract-namespace name
//! when it starts with `@` (see sd_notify(3)). libsystemd is not needed for that, and a
//! static musl binary could not link it anyway.
//!
//! The environment is read once, by config, into a [`Notifier`]; this module never reads
//! it itself, so tests build a `Notifier` from values. Every function is a no-op when
//! `$NOTIFY_SOCKET` was unset, which is how the binary runs outside systemd. A failed
//! send is returned to the caller rather than ignored, but is never fatal: systemd will
//! notice a missing `READY=1` or a stopped watchdog by itself.
//!
//! `$NOTIFY_SOCKET` is not removed from the environment after reading (that needs
//! `unsafe` since edition 2024, and this crate denies it); ark-lattice starts no child
//! processes that could inherit it, and the default `NotifyAccess=main` makes systemd
//! ignore messages from any other process.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::time::Duration;

/// Where notifications go, decided once from the environment; see the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notifier {
    socket: Option<NotifySocket>,
    watchdog_interval: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NotifySocket {
    Path(PathBuf),
    /// The name after the leading `@`, without it.
    Abstract(Vec<u8>),
}

/// The variables systemd passes to a `Type=notify` service, as read by config.
#[derive(Debug, Clone, Default)]
pub struct NotifyEnv {
    /// `$NOTIFY_SOCKET`.
    pub notify_socket: Option<OsString>,
    /// `$WATCHDOG_USEC`: the `WatchdogSec=` timeout in microseconds.
    pub watchdog_usec: Option<OsString>,
    /// `$WATCHDOG_PID`: the process the watchdog is meant for, when set.
    pub watchdog_pid: Option<OsString>,
    /// This process's id, compared with `watchdog_pid`.
    pub own_pid: u32,
}

impl NotifyEnv {
    /// Reads the variables from this process's environment. Only config calls this, once.
    pub(crate) fn from_process() -> NotifyEnv {
        NotifyEnv {
            notify_socket: std::env::var_os("NOTIFY_SOCKET"),
            watchdog_usec: std::env::var_os("WATCHDOG_USEC"),
            watchdog_pid: std::env::var_os("WATCHDOG_PID"),
            own_pid: std::process::id(),
        }
    }
}

impl Notifier {
    #[cfg(test)]
    /// A notifier that sends nothing, as when not started by systemd.
    pub(crate) fn disabled() -> Notifier {
        Notifier::default()
    }

    /// Reads the environment of this process; config calls this once at startup.
    pub fn from_env() -> Notifier {
        Notifier::new(&NotifyEnv::from_process())
    }

    /// Builds the notifier from the variables systemd set. An unset, empty or unusable
    /// `NOTIFY_SOCKET` (systemd only ever sets an absolute path or an `@` name) disables
    /// it. The watchdog interval is half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3)
    /// recommends, and is `None` when the watchdog is off, is meant for another process
    /// (`WATCHDOG_PID`), or there is no socket to send the keep-alives to.
    pub fn new(env: &NotifyEnv) -> Notifier {
        let socket = env.notify_socket.as_deref().and_then(parse_socket);
        let watchdog_interval = match socket {
            Some(_) => watchdog_interval(env),
            None => None,
        };
        Notifier {
            socket,
            watchdog_interval,
        }
    }

    #[cfg(test)]
    /// Whether messages are sent anywhere at all.
    pub(crate) fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// How often to call [`Notifier::watchdog`], when systemd expects it. Send the
    /// keep-alive from the loop whose liveness it vouches for (the server's executor),
    /// not from a thread of its own that would keep ticking while the server hangs.
    pub(crate) fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog_interval
    }

    /// `READY=1`: the service is up; send it once the listening socket is open.
    pub(crate) fn ready(&self) -> io::Result<()> {
        self.send("READY=1")
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) -> io::Result<()> {
        self.send("STOPPING=1")
    }

    /// `WATCHDOG=1`: the keep-alive for `WatchdogSec=`.
    pub(crate) fn watchdog(&self) -> io::Result<()> {
        self.send("WATCHDOG=1")
    }

    /// `STATUS=...`: one line shown by `systemctl status`. Newlines in `text` would start
    /// new assignments, so they are replaced by spaces.
    pub fn status(&self, text: &str) -> io::Result<()> {
        self.send(&format!("STATUS={}", text.replace('\n', " ")))
    }

    /// Sends raw `KEY=VALUE` lines in one datagram; a no-op when disabled.
    pub fn send(&self, state: &str) -> io::Result<()> {
        let Some(socket) = &self.socket else {
            return Ok(());
        };
        let address = match socket {
            NotifySocket::Path(path) => SocketAddr::from_pathname(path)?,
            NotifySocket::Abstract(name) => SocketAddr::from_abstract_name(name)?,
        };
        let datagram = UnixDatagram::unbound()?;
        let sent = datagram.send_to_addr(state.as_bytes(), &address)?;
        if sent != state.len() {
            return Err(io::Error::other(format!(
                "notify socket took {sent} of {} bytes",
                state.len()
            )));
        }
        Ok(())
    }
}

fn parse_socket(value: &OsStr) -> Option<NotifySocket> {
    let bytes = value.as_bytes();
    match bytes.first() {
        Some(b'/') => Some(NotifySocket::Path(PathBuf::from(value))),
        Some(b'@') if bytes.len() > 1 => Some(NotifySocket::Abstract(bytes[1..].to_vec())),
        // Newer systemd can pass `vsock:...` to a VM guest; that is not a place
        // ark-lattice runs, so it is treated like an unset variable.
        _ => None,
    }
}

fn watchdog_interval(env: &NotifyEnv) -> Option<Duration> {
    if let Some(pid) = &env.watchdog_pid {
        let pid: u32 = pid.to_str()?.trim().parse().ok()?;
        if pid != env.own_pid {
            return None;
        }
    }
    let usec: u64 = env
        .watchdog_usec
        .as_deref()?
        .to_str()?
        .trim()
        .parse()
        .ok()?;
    if usec == 0 {
        return None;
    }
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A bound datagram socket in a fresh directory, standing in for systemd's.
    struct Listener {
        socket: UnixDatagram,
        directory: PathBuf,
        name: OsString,
    }

    impl Listener {
        fn at_path() -> Listener {
            let directory = unique_directory();
            let path = directory.join("notify");
            let socket = UnixDatagram::bind(&path).unwrap();
            Listener::finish(socket, directory, path.into_os_string())
        }

        fn at_abstract_name() -> Listener {
            let directory = unique_directory();
            let name = directory.file_name().unwrap().to_str().unwrap().to_owned();
            let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            let socket = UnixDatagram::bind_addr(&address).unwrap();
            Listener::finish(socket, directory, format!("@{name}").into())
        }

        fn finish(socket: UnixDatagram, directory: PathBuf, name: OsString) -> Listener {
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            Listener {
                socket,
                directory,
                name,
            }
        }

        fn notifier(&self) -> Notifier {
            Notifier::new(&env(Some(self.name.clone()), Some("30000000"), None))
        }

        fn receive(&self) -> String {
            let mut buffer = [0u8; 4096];
            let length = self.socket.recv(&mut buffer).unwrap();
            String::from_utf8(buffer[..length].to_vec()).unwrap()
        }
    }

    impl Drop for Listener {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.directory);
        }
    }

    fn unique_directory() -> PathBuf {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let directory = std::env::temp_dir().join(format!(
            "ark-lattice-notify-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&directory).unwrap();
        directory
    }

    const OWN_PID: u32 = 4242;

    fn env(socket: Option<OsString>, usec: Option<&str>, pid: Option<&str>) -> NotifyEnv {
        NotifyEnv {
            notify_socket: socket,
            watchdog_usec: usec.map(OsString::from),
            watchdog_pid: pid.map(OsString::from),
            own_pid: OWN_PID,
        }
    }

    fn check_interval(usec: Option<&str>, pid: Option<&str>, expected: Option<Duration>) {
        let notifier = Notifier::new(&env(Some("/run/notify".into()), usec, pid));
        assert_eq!(
            notifier.watchdog_interval(),
            expected,
            "usec {usec:?} pid {pid:?}"
        );
    }

    #[test]
    fn sends_each_message_to_a_path_socket() {
        let listener = Listener::at_path();
        let notifier = listener.notifier();
        assert!(notifier.is_enabled());
        notifier.ready().unwrap();
        assert_eq!(listener.receive(), "READY=1");
        notifier.watchdog().unwrap();
        assert_eq!(listener.receive(), "WATCHDOG=1");
        notifier.status("listening on\n0.0.0.0:9000").unwrap();
        assert_eq!(listener.receive(), "STATUS=listening on 0.0.0.0:9000");
        notifier.stopping().unwrap();
        assert_eq!(listener.receive(), "STOPPING=1");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let listener = Listener::at_abstract_name();
        listener.notifier().ready().unwrap();
        assert_eq!(listener.receive(), "READY=1");
    }

    #[test]
    fn unset_socket_disables_everything() {
        for socket in [
            None,
            Some(""),
            Some("@"),
            Some("relative/path"),
            Some("vsock:2:9"),
        ] {
            let notifier = Notifier::new(&env(socket.map(OsString::from), Some("30000000"), None));
            assert!(!notifier.is_enabled(), "socket {socket:?}");
            assert_eq!(notifier.watchdog_interval(), None, "socket {socket:?}");
            notifier.ready().unwrap();
            notifier.watchdog().unwrap();
        }
        assert_eq!(Notifier::disabled(), Notifier::new(&NotifyEnv::default()));
    }

    #[test]
    fn watchdog_interval_is_half_the_timeout_for_this_process_only() {
        check_interval(Some("30000000"), None, Some(Duration::from_secs(15)));
        check_interval(
            Some("30000000"),
            Some("4242"),
            Some(Duration::from_secs(15)),
        );
        check_interval(Some("1000001"), None, Some(Duration::from_micros(500_000)));
        check_interval(Some("30000000"), Some("1"), None);
        check_interval(Some("30000000"), Some("not-a-pid"), None);
        check_interval(Some("0"), None, None);
        check_interval(Some("soon"), None, None);
        check_interval(None, Some("4242"), None);
    }

    #[test]
    fn missing_listener_is_an_error_not_a_panic() {
        let directory = unique_directory();
        let path = directory.join("nobody-listens");
        let notifier = Notifier::new(&env(Some(path.into_os_string()), None, None));
        assert!(notifier.ready().is_err());
        std::fs::remove_dir_all(directory).unwrap();
    }
}
