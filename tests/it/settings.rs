//! Settings from the environment with garbage values, given to the real binary as an
//! operator's unit file would: each is refused at start with exit code 2 and a message
//! naming the variable, never taken as a default, ignored until first use, or a panic.
//! (`config`'s unit tests cover every variable it parses; these are the ones whose
//! value is a file or a key, read after parsing.)

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::{Lattice, Run, TempDir, spare_key};

/// `serve` with `env`, which must exit by itself within 20 s (it is killed otherwise,
/// and the test fails: a server that starts on a bad setting runs until stopped).
fn serve_with(lattice: &Lattice, env: &[(&str, &str)]) -> Run {
    let mut child = lattice
        .command(&["serve", "--port", "0", "--bind", "127.0.0.1"])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ark-lattice");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            let run = Run::from(child.wait_with_output().unwrap());
            panic!("serve started with {env:?}: {}", run.stderr);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Run::from(child.wait_with_output().unwrap())
}

#[test]
fn files_and_keys_from_the_environment_that_do_not_load_stop_the_start_by_name() {
    let files = TempDir::new("settings-files");
    let garbage = files.file("garbage.pem", "-----BEGIN CERTIFICATE-----\nnot base64\n");
    let missing = files.path.join("missing.pem");
    let garbage = garbage.to_str().unwrap();
    let missing = missing.to_str().unwrap();
    let key = spare_key();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("ARK_CA_FILE", missing)], "ARK_CA_FILE"),
        (&[("ARK_CA_FILE", garbage)], "ARK_CA_FILE"),
        (
            &[("ARK_TLS_CERT", missing), ("ARK_TLS_KEY", garbage)],
            "ARK_TLS_CERT",
        ),
        (
            &[("ARK_TLS_CERT", garbage), ("ARK_TLS_KEY", garbage)],
            "ARK_TLS_CERT",
        ),
        (&[("ARK_FED_PUBKEY", "not a key")], "ARK_FED_PUBKEY"),
        (&[("ARK_FED_PUBKEY", &key[..20])], "ARK_FED_PUBKEY"),
        (&[("ARK_FED_PRIVKEY", "not a seed")], "ARK_FED_PRIVKEY"),
        (&[("ARK_NODE_ID", "hub\nwarning: forged")], "ARK_NODE_ID"),
    ];
    for (env, name) in cases {
        let lattice = Lattice::new("settings-serve");
        let run = serve_with(&lattice, env);
        assert_eq!(run.code, 2, "{env:?}: {}", run.stderr);
        assert!(run.stderr.contains(name), "{env:?}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{env:?}: {}", run.stderr);
    }
}

/// `ARK_STORE_WAIT=18446744073709551615` panicked ("overflow when adding duration to
/// instant") in every command that opens the store.
#[test]
fn a_store_wait_too_long_to_add_to_the_clock_is_refused_not_a_panic() {
    let lattice = Lattice::new("settings-store-wait");
    for value in ["18446744073709551615", "86401"] {
        let run = lattice.run_with_env(&["stats"], &[("ARK_STORE_WAIT", value)]);
        assert_eq!(run.code, 2, "{value}: {}", run.stderr);
        assert!(run.stderr.contains("ARK_STORE_WAIT"), "{}", run.stderr);
    }
    lattice
        .run_with_env(&["stats"], &[("ARK_STORE_WAIT", "86400")])
        .ok();
}
