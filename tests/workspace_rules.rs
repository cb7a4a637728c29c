//! Rules of the workspace's shape that a change must not break.

use std::path::Path;

/// The library crates never depend on each other (DESIGN.md): only `examples/` and
/// `tests/` compose them. `connection-store-sql` implements `connection-store`'s trait
/// and is the one allowed edge.
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
            if other_library {
                assert!(
                    allowed.contains(&(crate_name, dependency.as_str())),
                    "{crate_name} depends on {dependency}: library crates never depend on each other"
                );
            }
        }
    }
}

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
