//! The crate's layering, checked on its own source: every `crate::` reference goes down a layer
//! (or stays in its own module), and files that are not each other's ancestor never refer to
//! each other in a loop. `cargo test --release -p blocklet-migrate --lib layering -- --nocapture`
//! prints the import graph between top-level modules that it checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, top first: a module may use only modules of the layers after its own.
const LAYERS: &[&[&str]] =
    &[&["cli"], &["service"], &["job"], &["sandbox"], &["capability"], &["backend"], &["policy"], &["wit", "text"]];

type Module = Vec<String>;

fn layer_of(top: &str) -> usize {
    LAYERS.iter().position(|layer| layer.contains(&top)).unwrap_or_else(|| panic!("{top} is in no layer"))
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `job/mod.rs` → `job`, `job/flow.rs` → `job::flow`, `lib.rs` → the crate root (empty).
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Module = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

/// A file's code without its unit tests and comments.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The known modules named by the path that starts at `text` (after a `::`), from `base`:
/// `a::b::Item` names `base::a::b`; `{a::x, b}` names `base::a` and `base::b`.
fn modules_named(base: &Module, text: &str, known: &BTreeSet<Module>, found: &mut BTreeSet<Module>) {
    if let Some(group) = text.strip_prefix('{') {
        let mut depth = 0;
        let mut item_start = 0;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    modules_named(base, group[item_start..i].trim_start(), known, found);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    modules_named(base, group[item_start..i].trim_start(), known, found);
                    item_start = i + 1;
                }
                _ => {}
            }
        }
        return;
    }
    let name: String = text.chars().take_while(|&c| is_ident(c)).collect();
    let mut next = base.clone();
    next.push(name.clone());
    if name.is_empty() || !known.contains(&next) {
        if !base.is_empty() {
            found.insert(base.clone());
        }
        return;
    }
    match text[name.len()..].strip_prefix("::") {
        Some(rest) => modules_named(&next, rest, known, found),
        None => {
            found.insert(next);
        }
    }
}

/// The modules a file of `module` refers to through `crate::` and `super::` paths.
fn references(module: &Module, text: &str, known: &BTreeSet<Module>) -> BTreeSet<Module> {
    let mut found = BTreeSet::new();
    let parent: Module = module[..module.len().saturating_sub(1)].to_vec();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent)] {
        for (at, _) in text.match_indices(prefix) {
            if text[..at].chars().next_back().is_some_and(is_ident) {
                continue;
            }
            modules_named(&base, &text[at + prefix.len()..], known, &mut found);
        }
    }
    found
}

/// A loop of references through `node`, if there is one.
fn cycle_from<'a>(
    node: &'a Module,
    edges: &BTreeMap<&'a Module, Vec<&'a Module>>,
    stack: &mut Vec<&'a Module>,
    done: &mut BTreeSet<&'a Module>,
) -> Option<String> {
    if let Some(at) = stack.iter().position(|n| *n == node) {
        let names: Vec<String> = stack[at..].iter().chain([&node]).map(|n| n.join("::")).collect();
        return Some(names.join(" → "));
    }
    if !done.insert(node) {
        return None;
    }
    stack.push(node);
    for next in edges.get(node).into_iter().flatten() {
        if let Some(cycle) = cycle_from(next, edges, stack, done) {
            return Some(cycle);
        }
    }
    stack.pop();
    None
}

#[test]
fn layers_import_only_downward_and_files_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let known: BTreeSet<Module> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    let mut upward = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let Some(top) = module.first().filter(|t| *t != "layering") else { continue };
        let refs = references(&module, &code(&std::fs::read_to_string(file).unwrap()), &known);
        for r in refs.iter().filter(|r| r[0] != *top) {
            if layer_of(&r[0]) <= layer_of(top) {
                upward.push(format!("{} → {}", module.join("::"), r.join("::")));
            }
        }
        graph.insert(module, refs);
    }
    let mut tops: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (from, refs) in &graph {
        tops.entry(&from[0]).or_default().extend(refs.iter().filter(|r| r[0] != from[0]).map(|r| r[0].as_str()));
    }
    for (from, to) in &tops {
        println!("{from} → {}", to.iter().copied().collect::<Vec<_>>().join(", "));
    }
    assert!(upward.is_empty(), "imports that do not go down a layer:\n{}", upward.join("\n"));

    // A parent module naming its children, and children using their parent's items, is how
    // Rust modules work; any other loop is a cycle.
    let related = |a: &Module, b: &Module| a.starts_with(b) || b.starts_with(a);
    let edges: BTreeMap<&Module, Vec<&Module>> =
        graph.iter().map(|(from, refs)| (from, refs.iter().filter(|r| !related(from, r)).collect())).collect();
    let cycles: Vec<String> =
        edges.keys().filter_map(|node| cycle_from(node, &edges, &mut Vec::new(), &mut BTreeSet::new())).collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_check_sees_grouped_and_nested_paths() {
    let known: BTreeSet<Module> =
        [vec!["a"], vec!["a", "b"], vec!["c"]].into_iter().map(|m| m.into_iter().map(String::from).collect()).collect();
    let refs = references(&vec!["c".to_string()], "use crate::{a::b::X, c};\nlet y = super::a::f();", &known);
    let names: Vec<String> = refs.iter().map(|m| m.join("::")).collect();
    assert_eq!(names, ["a", "a::b", "c"]);
}
