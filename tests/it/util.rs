//! Helpers for the integration tests: temp state dirs and running the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use miniserde::json::{self, Value};

/// A temp dir removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("ark-it-{name}-{}-{unique}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_ark-lattice")
}

/// `../shared/data/<name>`, or `None` (with a printed reason) when the data is missing.
pub fn shared_data(name: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name);
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "skipped: {} is missing (the tests expect ../shared beside the repo)",
            path.display()
        );
        None
    }
}

/// One instance's state dir, driven through the real binary.
pub struct Lattice {
    pub dir: TempDir,
}

/// What a run of the binary did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Panics with the output unless the run succeeded.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> Value {
        json::from_str(self.stdout.trim()).unwrap_or_else(|_| panic!("not JSON: {}", self.stdout))
    }
}

impl Lattice {
    pub fn new(name: &str) -> Lattice {
        Lattice {
            dir: TempDir::new(name),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path.join("state")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary());
        command
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(args)
            .env_remove("LATTICE_PATH")
            .env_remove("ARK_INSTANCE_TYPE")
            .env_remove("DEBUG")
            // Test servers must not multicast beacons onto the machine's real network;
            // tests/it/observe.rs turns discovery on with loopback-only settings.
            .env("FEDERATION_DISCOVERY", "false")
            .stdin(Stdio::null());
        command
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run ark-lattice"))
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Run {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ark-lattice");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        Run::from(child.wait_with_output().unwrap())
    }

    pub fn import(&self, path: &Path) -> Run {
        self.run(&["import", path.to_str().unwrap()])
    }

    pub fn stats(&self) -> Value {
        self.run(&["stats", "--json"]).ok().json()
    }

    /// id -> content hash of every live node.
    pub fn hashes(&self) -> std::collections::BTreeMap<String, String> {
        let listing = self.run(&["list", "--limit", "0", "--json"]).ok().json();
        array(field(&listing, "nodes"))
            .iter()
            .map(|node| {
                (
                    text(field(node, "id")).to_owned(),
                    text(field(node, "hash")).to_owned(),
                )
            })
            .collect()
    }
}

pub fn field<'a>(value: &'a Value, name: &str) -> &'a Value {
    match value {
        Value::Object(object) => object
            .get(name)
            .unwrap_or_else(|| panic!("no field {name}")),
        _ => panic!("not an object looking for {name}"),
    }
}

pub fn text(value: &Value) -> &str {
    match value {
        Value::String(text) => text,
        _ => panic!("not a string"),
    }
}

pub fn array(value: &Value) -> &[Value] {
    match value {
        Value::Array(array) => array,
        _ => panic!("not an array"),
    }
}

pub fn count(value: &Value) -> u64 {
    match value {
        Value::Number(json::Number::U64(n)) => *n,
        _ => panic!("not a count"),
    }
}
