//! Rules of the workspace's shape that a change must not break.
//!
//! The dependency graph is read from `cargo metadata`, which resolves what a reader of
//! the manifests could miss: a renamed dependency (`foo = { package = "entra-auth" }`),
//! target-specific tables and `workspace = true` inheritance.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The library crates: they never depend on each other (DESIGN.md), nor on the app crate.
const LIBRARIES: [&str; 5] = [
    "entra-auth",
    "graph-client",
    "connection-store",
    "connection-store-sql",
    "tenant-sim",
];

/// `connection-store-sql` implements `connection-store`'s trait: the one allowed edge.
const ALLOWED: [(&str, &str); 1] = [("connection-store-sql", "connection-store")];

/// The package name of `examples/app`.
const APP_CRATE: &str = "m365-link-app";

/// Only the app crate `examples/app` (with the root's `examples/` and `tests/` over it)
/// composes the libraries.
#[test]
fn library_crates_do_not_depend_on_each_other() {
    let metadata = workspace_metadata();
    let found = forbidden_edges(&metadata);
    assert!(found.is_empty(), "{}", found.join("\n"));
    // The rule reads real data: every library is in the workspace and the allowed edge
    // is seen as an edge.
    let edges = edges(&metadata);
    for library in LIBRARIES {
        assert!(
            edges.iter().any(|(from, _)| from == library),
            "{library} is not a workspace package with dependencies"
        );
    }
    assert!(edges.contains(&(
        "connection-store-sql".to_owned(),
        "connection-store".to_owned()
    )));
}

/// The checker sees through a renamed dependency and a target-specific table, and lets
/// a crate dev-depend on itself (to turn on a feature in its own tests).
#[test]
fn a_renamed_or_target_specific_dependency_is_still_an_edge() {
    let metadata: Value = serde_json::from_str(
        r#"{"packages":[
            {"name":"graph-client","dependencies":[
                {"name":"entra-auth","rename":"foo","kind":null,"target":null},
                {"name":"graph-client","rename":null,"kind":"dev","target":null}]},
            {"name":"tenant-sim","dependencies":[
                {"name":"m365-link-app","rename":"app","kind":"dev","target":"cfg(unix)"}]},
            {"name":"connection-store-sql","dependencies":[
                {"name":"connection-store","rename":null,"kind":null,"target":null}]}],
          "workspace_members":[]}"#,
    )
    .unwrap();
    let found = forbidden_edges(&metadata);
    assert_eq!(
        found,
        [
            "graph-client depends on entra-auth: library crates never depend on each other",
            "tenant-sim depends on m365-link-app: the app crate composes the libraries, not the other way round",
        ]
    );
}

/// The app crate depends on every library crate, so it stays out of the registry.
#[test]
fn app_crate_is_not_published() {
    let metadata = workspace_metadata();
    let app = packages(&metadata)
        .find(|package| package["name"] == APP_CRATE)
        .expect("the app crate is a workspace package");
    assert_eq!(
        app["publish"],
        serde_json::json!([]),
        "{APP_CRATE} must say `publish = false`"
    );
}

/// The library crates build on every platform: an OS-specific part of `std`
/// (`std::os::unix`, `std::os::windows`) is imported only under a `#[cfg(…)]` on the line
/// before, and named nowhere else. `connection-store-sql` once imported `std::os::unix`
/// unconditionally, so it did not build on Windows; this machine has no Windows target to
/// build for, so the rule is read from the sources.
#[test]
fn library_crates_gate_os_specific_std() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut offences = Vec::new();
    for library in LIBRARIES {
        let mut files = vec![root.join("crates").join(library).join("src")];
        while let Some(path) = files.pop() {
            if path.is_dir() {
                let entries = std::fs::read_dir(&path).expect("a source folder");
                files.extend(entries.map(|entry| entry.expect("a folder entry").path()));
                continue;
            }
            if path.extension().is_none_or(|extension| extension != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("a source file");
            let lines: Vec<&str> = text.lines().collect();
            for (index, line) in lines.iter().enumerate() {
                if !(line.contains("std::os::unix") || line.contains("std::os::windows")) {
                    continue;
                }
                let gated = line.trim_start().starts_with("use ")
                    && index > 0
                    && lines[index - 1].trim_start().starts_with("#[cfg(");
                if !gated {
                    offences.push(format!("{}:{}: {}", path.display(), index + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "OS-specific std used without a #[cfg] on the line before:\n{}",
        offences.join("\n")
    );
}

fn workspace_metadata() -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

fn packages(metadata: &Value) -> impl Iterator<Item = &Value> {
    metadata["packages"].as_array().into_iter().flatten()
}

/// Every (package, dependency package) pair, by package name (a rename is ignored).
fn edges(metadata: &Value) -> Vec<(String, String)> {
    let mut edges = Vec::new();
    for package in packages(metadata) {
        let Some(name) = package["name"].as_str() else {
            continue;
        };
        for dependency in package["dependencies"].as_array().into_iter().flatten() {
            if let Some(other) = dependency["name"].as_str() {
                edges.push((name.to_owned(), other.to_owned()));
            }
        }
    }
    edges
}

fn forbidden_edges(metadata: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for (from, to) in edges(metadata) {
        if !LIBRARIES.contains(&from.as_str()) || from == to {
            continue;
        }
        if to == APP_CRATE {
            found.push(format!(
                "{from} depends on {APP_CRATE}: the app crate composes the libraries, not the other way round"
            ));
        } else if LIBRARIES.contains(&to.as_str())
            && !ALLOWED.contains(&(from.as_str(), to.as_str()))
        {
            found.push(format!(
                "{from} depends on {to}: library crates never depend on each other"
            ));
        }
    }
    found
}
