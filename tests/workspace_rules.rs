//! Rules of the workspace's shape that a change must not break.

use std::path::Path;

/// The library crates never depend on each other (DESIGN.md), nor on the app crate:
/// only the app crate `examples/app` (with the root's `examples/` and `tests/` over it)
/// composes them. `connection-store-sql` implements `connection-store`'s trait and is the
/// one allowed edge.
#[test]
fn library_crates_do_not_depend_on_each_other() {
    let libraries = [
        "entra-auth",
        "graph-client",
        "connection-store",
        "tenant-sim",
    ];
    let allowed: &[(&str, &str)] = &[("connection-store-sql", "connection-store")];
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for crate_name in libraries.iter().chain(["connection-store-sql"].iter()) {
        let manifest = root.join("crates").join(crate_name).join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest)
            .unwrap_or_else(|err| panic!("reading {}: {err}", manifest.display()));
        let manifest: toml_like::Manifest = toml_like::parse(&text);
        for dependency in manifest.dependency_names() {
            // A crate may dev-depend on itself to turn on a feature in its own tests.
            let other_library = dependency != crate_name
                && (libraries.contains(&dependency.as_str())
                    || dependency == "connection-store-sql");
            assert!(
                dependency != APP_CRATE,
                "{crate_name} depends on {APP_CRATE}: the app crate composes the libraries, not the other way round"
            );
            if other_library {
                assert!(
                    allowed.contains(&(crate_name, dependency.as_str())),
                    "{crate_name} depends on {dependency}: library crates never depend on each other"
                );
            }
        }
    }
}

/// The app crate depends on every library crate, so it stays out of the registry.
#[test]
fn app_crate_is_not_published() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/app/Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .unwrap_or_else(|err| panic!("reading {}: {err}", manifest.display()));
    assert!(
        text.lines().any(|line| line.trim() == "publish = false"),
        "{APP_CRATE} must say `publish = false`"
    );
}

/// The package name of `examples/app`.
const APP_CRATE: &str = "m365-link-app";

/// A deliberately small reader for the `[dependencies]`-style tables of our own manifests:
/// the names at the start of each line inside any table whose header ends in
/// `dependencies`.
mod toml_like {
    pub struct Manifest {
        names: Vec<String>,
    }

    impl Manifest {
        pub fn dependency_names(&self) -> impl Iterator<Item = &String> {
            self.names.iter()
        }
    }

    pub fn parse(text: &str) -> Manifest {
        let mut in_dependencies = false;
        let mut names = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_dependencies = line.trim_matches(['[', ']']).ends_with("dependencies");
                continue;
            }
            if in_dependencies
                && !line.is_empty()
                && !line.starts_with('#')
                && let Some(name) = line.split(['=', '.', ' ']).next()
            {
                names.push(name.trim().to_owned());
            }
        }
        Manifest { names }
    }
}
