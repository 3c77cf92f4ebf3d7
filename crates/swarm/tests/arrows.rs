//! The arrows between the swarm crate's modules run one way.
//!
//! Reads `src/`, lists every `crate::…` (and, inside a directory module,
//! `super::…`) reference outside comments and test modules as an edge
//! between modules, and fails on a cycle, naming it. The event loop sits on
//! top and orchestrates; protocol modules own their state and return
//! outcomes; wire types sit at the bottom. `cargo test -p firefly-swarm
//! --test arrows -- --nocapture` prints the edges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module, as a path below the crate root: `["transfer", "service"]`.
type Module = Vec<String>;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every source file with the module it belongs to (`mod.rs` and `x.rs`
/// beside a directory `x/` are the module `x`).
fn files(dir: &Path, module: &Module, out: &mut Vec<(Module, PathBuf)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("src is readable")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("utf-8 file names")
            .to_string();
        if path.is_dir() {
            let mut child = module.clone();
            child.push(name);
            files(&path, &child, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let mut owner = module.clone();
            if name != "mod" && name != "lib" {
                owner.push(name);
            }
            out.push((owner, path));
        }
    }
}

/// The code of a file without comments and without its `#[cfg(test)]`
/// modules (tests may reach anywhere).
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            // Skip the item that follows, to its closing brace.
            let mut depth = 0i32;
            let mut opened = false;
            for line in lines.by_ref() {
                if !opened && !line.contains('{') && line.trim_end().ends_with(';') {
                    break;
                }
                depth += line.matches('{').count() as i32;
                depth -= line.matches('}').count() as i32;
                opened |= line.contains('{');
                if opened && depth <= 0 {
                    break;
                }
            }
            continue;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        let line = match line.find("// ") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The first path segments named after `prefix` (`crate::`, `super::`):
/// `crate::a::b` gives `a`, `crate::{a, b::c}` gives `a` and `b`.
fn heads(code: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| is_ident(c) || c == '$' || c == ':') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            let mut items = Vec::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => items.push(std::mem::take(&mut item)),
                    _ if depth == 0 => item.push(c),
                    _ => {}
                }
            }
            items.push(item);
            for item in items {
                let head: String = item.trim().chars().take_while(|c| is_ident(*c)).collect();
                if !head.is_empty() {
                    out.push(head);
                }
            }
        } else {
            let head: String = rest.chars().take_while(|c| is_ident(*c)).collect();
            if !head.is_empty() {
                out.push(head);
            }
        }
    }
    out
}

/// The crate root's `pub use module::{Item, …}` lines: item name → module.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let code = code(lib);
    let mut rest = code.as_str();
    while let Some(at) = rest.find("pub use ") {
        rest = &rest[at + "pub use ".len()..];
        let end = rest.find(';').unwrap_or(rest.len());
        let statement: String = rest[..end].split_whitespace().collect();
        let Some((module, items)) = statement.split_once("::") else {
            continue;
        };
        let items = items.trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',') {
            let name = item.rsplit("::").next().unwrap_or(item);
            let name = name.rsplit(" as ").next().unwrap_or(name);
            if !name.is_empty() {
                out.insert(name.to_string(), module.to_string());
            }
        }
    }
    out
}

/// The module graph at one level: the children of `parent`, with the
/// edges between them.
fn graph(
    all: &[(Module, String)],
    parent: &[String],
    reexported: &BTreeMap<String, String>,
) -> BTreeMap<String, BTreeSet<String>> {
    let children: BTreeSet<String> = all
        .iter()
        .filter(|(m, _)| m.len() > parent.len() && m.starts_with(parent))
        .map(|(m, _)| m[parent.len()].clone())
        .collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = children
        .iter()
        .map(|c| (c.clone(), BTreeSet::new()))
        .collect();
    for (module, code) in all {
        if module.len() <= parent.len() || !module.starts_with(parent) {
            continue;
        }
        let from = module[parent.len()].clone();
        let mut targets = Vec::new();
        if parent.is_empty() {
            for head in heads(code, "crate::") {
                if children.contains(&head) {
                    targets.push(head);
                } else if let Some(module) = reexported.get(&head) {
                    targets.push(module.clone());
                }
            }
        } else {
            // `crate::parent::x` and, from a direct child, `super::x`.
            let prefix = format!("crate::{}::", parent.join("::"));
            targets.extend(heads(code, &prefix));
            if module.len() == parent.len() + 1 {
                targets.extend(heads(code, "super::"));
            }
        }
        for to in targets {
            if to != from && children.contains(&to) {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    edges
}

/// Whether `to` can be reached from `from`.
fn reaches(edges: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(node) = todo.pop() {
        if node == to {
            return true;
        }
        if seen.insert(node.clone()) {
            todo.extend(edges.get(&node).into_iter().flatten().cloned());
        }
    }
    false
}

/// Every edge that lies on a cycle (`a -> b` where `b` leads back to `a`).
fn arrows_in_circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut out = Vec::new();
    for (from, targets) in edges {
        for to in targets {
            if reaches(edges, to, from) {
                out.push(format!("{from} -> {to}"));
            }
        }
    }
    out
}

fn modules() -> (Vec<(Module, String)>, BTreeMap<String, String>) {
    let mut found = Vec::new();
    files(&src_dir(), &Vec::new(), &mut found);
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).expect("lib.rs is readable");
    let all = found
        .into_iter()
        .map(|(m, path)| {
            let text = std::fs::read_to_string(&path).expect("a readable source file");
            (m, code(&text))
        })
        .collect();
    (all, reexports(&lib))
}

#[test]
fn the_swarm_modules_import_each_other_one_way() {
    let (all, reexported) = modules();
    let parents: BTreeSet<Module> = all
        .iter()
        .flat_map(|(m, _)| (0..m.len()).map(move |n| m[..n].to_vec()))
        .collect();
    let mut cycles = Vec::new();
    for parent in &parents {
        let edges = graph(&all, parent, &reexported);
        let name = if parent.is_empty() {
            "crate".to_string()
        } else {
            parent.join("::")
        };
        for (from, to) in &edges {
            if !to.is_empty() {
                let to: Vec<&str> = to.iter().map(String::as_str).collect();
                println!("{name}: {from} -> {}", to.join(", "));
            }
        }
        for arrow in arrows_in_circles(&edges) {
            cycles.push(format!("{name}: {arrow}"));
        }
    }
    assert!(
        cycles.is_empty(),
        "arrows between modules that run in a circle: {cycles:#?}"
    );
}

#[test]
fn the_checker_sees_a_cycle() {
    let all: Vec<_> = [
        ("a", "use crate::b::X;"),
        ("b", "use crate::{c, d::Y};"),
        ("c", "fn f() { crate::a::g() }"),
        (
            "d",
            "// crate::a in a comment\n#[cfg(test)]\nmod tests {\n use crate::a;\n}",
        ),
    ]
    .into_iter()
    .map(|(m, text)| (vec![m.to_string()], code(text)))
    .collect();
    let edges = graph(&all, &[], &BTreeMap::new());
    assert_eq!(arrows_in_circles(&edges), ["a -> b", "b -> c", "c -> a"]);
    let all: Vec<_> = all.into_iter().filter(|(m, _)| m[0] != "c").collect();
    assert!(arrows_in_circles(&graph(&all, &[], &BTreeMap::new())).is_empty());
}
