//! The crate's leaf modules stay leaves: `error` (every module's error types) depends on
//! no other module, and no module that `error`, `cloud` or `id_token` reach leads back to
//! them (the cycle `error` → `id_token` → `cloud` → `error` is gone).

use std::collections::{BTreeMap, BTreeSet};

/// Each `src/*.rs` module and the sibling modules its code (not its comments) names as
/// `crate::<module>`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let dir = format!("{}/src", env!("CARGO_MANIFEST_DIR"));
    let sources: BTreeMap<String, String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    sources
        .iter()
        .map(|(name, text)| {
            let mut uses = BTreeSet::new();
            for line in text
                .lines()
                .map(str::trim)
                .filter(|line| !line.starts_with("//"))
            {
                // `use crate::{a, b::C}` and `crate::a::...` paths.
                for (index, _) in line.match_indices("crate::") {
                    let rest = &line[index + "crate::".len()..];
                    let rest = rest.strip_prefix('{').unwrap_or(rest);
                    for part in rest.split(',') {
                        let module: String = part
                            .trim()
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        if modules.contains(&module) && module != *name {
                            uses.insert(module);
                        }
                        if !rest.starts_with(|c: char| c.is_ascii_lowercase()) {
                            break;
                        }
                    }
                }
            }
            (name.clone(), uses)
        })
        .collect()
}

fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, target: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<&str> = graph[from].iter().map(String::as_str).collect();
    while let Some(module) = stack.pop() {
        if module == target {
            return true;
        }
        if seen.insert(module) {
            stack.extend(graph[module].iter().map(String::as_str));
        }
    }
    false
}

#[test]
fn error_is_a_leaf_module() {
    let graph = module_graph();
    assert!(graph["error"].is_empty(), "error uses {:?}", graph["error"]);
}

#[test]
fn error_cloud_and_id_token_form_no_cycle() {
    let graph = module_graph();
    for module in ["error", "cloud", "id_token"] {
        assert!(
            !reaches(&graph, module, module),
            "{module} reaches itself through {:?}",
            graph[module]
        );
    }
    // The graph is read at all: the edges these modules do have are seen.
    assert!(graph["cloud"].contains("error"));
    assert!(graph["id_token"].contains("cloud"));
}
