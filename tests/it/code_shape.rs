//! Invariants of the source that a grep or a count checks (ARCHITECTURE.md,
//! "Invariants"): no function outside tests over 100 lines without a comment saying
//! why, no module of the server importing the CLI's, and nothing but `main` parsing
//! argv.

use std::path::{Path, PathBuf};

/// The longest function, in lines from `fn` to its closing brace.
const MAX_FUNCTION_LINES: usize = 100;

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
}

/// `(name, first line, length)` of every function of `text` before its `#[cfg(test)]`
/// module, with whether the comments right above it say why it is long.
fn functions(text: &str) -> Vec<(String, usize, usize, bool)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        // `pub(in path) ` first: the sync core's machines are visible to `sync` only.
        let trimmed = trimmed
            .strip_prefix("pub(in ")
            .and_then(|rest| rest.split_once(") "))
            .map_or(trimmed, |(_, rest)| rest);
        let signature = [
            "pub(crate) ",
            "pub(super) ",
            "pub ",
            "async ",
            "const ",
            "unsafe ",
        ]
        .iter()
        .fold(trimmed, |rest, prefix| {
            rest.strip_prefix(prefix).unwrap_or(rest)
        });
        let signature = signature.strip_prefix("async ").unwrap_or(signature);
        let Some(rest) = signature.strip_prefix("fn ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // The body opens on the signature's last line; a declaration without a body
        // (in a trait) ends with `;`.
        let Some(open) = (index..lines.len()).find(|&at| {
            let end = lines[at].trim_end();
            end.ends_with('{') || end.ends_with(';')
        }) else {
            continue;
        };
        if lines[open].trim_end().ends_with(';') {
            continue;
        }
        let close = format!("{}}}", " ".repeat(indent));
        let Some(end) = (open + 1..lines.len()).find(|&at| lines[at].trim_end() == close) else {
            continue;
        };
        // The comments and attributes right above the function.
        let says_why = lines[..index]
            .iter()
            .rev()
            .take_while(|line| {
                let line = line.trim_start();
                line.starts_with("//") || line.starts_with("#[")
            })
            .any(|line| line.to_ascii_lowercase().contains("over 100 lines"));
        found.push((name, index + 1, end - index + 1, says_why));
    }
    found
}

#[test]
fn no_function_outside_tests_is_over_100_lines_without_saying_why() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&source, &mut files);
    let mut too_long = Vec::new();
    for file in &files {
        if file.file_name().is_some_and(|name| name == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for (name, line, length, says_why) in functions(&text) {
            if length <= MAX_FUNCTION_LINES || says_why {
                continue;
            }
            too_long.push(format!("{}:{line} {name}: {length} lines", file.display()));
        }
    }
    assert!(
        too_long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines without a comment saying why:\n{}",
        too_long.join("\n")
    );
}

#[test]
fn the_scan_measures_a_function_from_fn_to_its_closing_brace() {
    let text = "/// why: over 100 lines on purpose\npub(crate) fn a() {\n    x();\n}\n\n    async fn b(\n        y: u8,\n    ) -> u8 {\n        y\n    }\nfn c();\n    pub(super) fn e() {\n    }\n    pub(in crate::sync) fn f() {\n    }\n#[cfg(test)]\nfn d() {\n}\n";
    assert_eq!(
        functions(text),
        vec![
            ("a".to_owned(), 2, 3, true),
            ("b".to_owned(), 6, 5, false),
            ("e".to_owned(), 12, 2, false),
            ("f".to_owned(), 14, 2, false),
        ]
    );
}

#[test]
fn the_server_does_not_import_the_cli() {
    let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server");
    let mut files = Vec::new();
    rust_files(&server, &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("crate::commands"),
            "{} imports crate::commands",
            file.display()
        );
    }
}

/// Only `main` parses a command line (issue 15: the server once re-parsed the CLI's
/// argv to run a command for it): outside `main.rs`, `argh` is named only by `cli.rs`'s
/// definitions and by tests, which make a `Config` as `main` does.
#[test]
fn nothing_but_main_parses_argv() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&source, &mut files);
    for file in files {
        let name = file
            .strip_prefix(&source)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if name == "main.rs" || name == "cli.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        // What follows `#[cfg(test)]` is tests; comments may name argh.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for line in code.lines() {
            let line = line.trim_start();
            assert!(
                line.starts_with("//") || !(line.contains("argh") || line.contains("FromArgs")),
                "src/{name} names argh outside its tests: {line}"
            );
        }
    }
}
