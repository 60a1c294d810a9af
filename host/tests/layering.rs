//! The host's layering, kept by a test: below the routes nothing knows HTTP's top layers or
//! the application state, and the modules' imports form no cycle.
//!
//! Read from the sources with std only: every `crate::…`, `super::…` and imported-module
//! path (`use crate::routes;` then `routes::…`) is resolved to the longest module (file) it
//! names. A file's `#[cfg(test)]` part counts for the layering, not for cycles (a test may see
//! the crate from the top).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The modules at the top: the binary, the command line (with its config file), the server,
/// the state, the OpenAPI document and contract, the routes and the console. Every other
/// module is below them.
const TOP: [&str; 7] = [
    "main",
    "cli",
    "server",
    "state",
    "api_doc",
    "api_contract",
    "routes",
];
const TOP_TREES: [&str; 3] = ["routes", "console", "cli"];
/// What a module below the routes must never name.
const ABOVE: [&str; 6] = ["state", "server", "routes", "api_doc", "console", "cli"];

struct Module {
    /// `send::executor`; the crate root is "".
    name: String,
    /// Edges from the code that is not `#[cfg(test)]`, then from the test part.
    imports: BTreeSet<String>,
    test_imports: BTreeSet<String>,
}

#[test]
fn no_module_below_the_routes_names_the_state_the_server_or_the_routes() {
    let upward = upward_imports(&read_modules(&source_dir()));
    assert!(
        upward.is_empty(),
        "modules below the routes import upward: {upward:#?}"
    );
}

#[test]
fn the_host_modules_imports_form_no_cycle() {
    let modules = read_modules(&source_dir());
    let cycles = cycles(&modules);
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
}

#[test]
fn the_reader_sees_an_upward_import_and_a_cycle() {
    // The checks above must not pass for lack of edges: plant both faults and see them found.
    let sources = [
        ("lib.rs", "pub mod send;\npub mod state;\n"),
        ("state.rs", "use crate::send::Sender;\n"),
        (
            "send/mod.rs",
            "pub mod metrics;\nuse crate::state::AppState;\nuse super::other;\n",
        ),
        ("send/metrics.rs", "use crate::send::{Sender, self};\n"),
    ];
    let dir = std::env::temp_dir().join(format!("layering-{}", std::process::id()));
    for (path, text) in sources {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let modules = read_modules(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(upward_imports(&modules), vec!["send -> state".to_owned()]);
    assert!(modules["send::metrics"].imports.contains("send"));
    let cycles = cycles(&modules);
    assert_eq!(cycles, vec![vec!["send".to_owned(), "state".to_owned()]]);
    // And the real sources have edges to check.
    let real = read_modules(&source_dir());
    assert!(real["live::lifecycle"]
        .imports
        .contains("live::live_connector"));
    assert!(real["api_doc"].imports.contains("routes::connectors"));
}

/// `module -> target` for each import from below the routes into what is above them.
fn upward_imports(modules: &BTreeMap<String, Module>) -> Vec<String> {
    let mut upward = Vec::new();
    for module in modules.values() {
        if is_top(&module.name) {
            continue;
        }
        for target in module.imports.iter().chain(&module.test_imports) {
            if ABOVE.contains(&first_segment(target)) {
                upward.push(format!("{} -> {target}", module.name));
            }
        }
    }
    upward
}

fn source_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn is_top(name: &str) -> bool {
    name.is_empty() || TOP.contains(&name) || TOP_TREES.contains(&first_segment(name))
}

fn first_segment(name: &str) -> &str {
    name.split("::").next().unwrap_or(name)
}

fn read_modules(dir: &Path) -> BTreeMap<String, Module> {
    let mut files = Vec::new();
    collect_rust_files(dir, &mut files);
    let names: BTreeMap<String, String> = files
        .iter()
        .map(|file| {
            let relative = file.strip_prefix(dir).unwrap().with_extension("");
            let mut segments: Vec<String> = relative
                .components()
                .map(|part| part.as_os_str().to_string_lossy().into_owned())
                .collect();
            if segments.last().is_some_and(|last| last == "mod") || segments == ["lib"] {
                segments.pop();
            }
            (segments.join("::"), std::fs::read_to_string(file).unwrap())
        })
        .collect();
    let known: BTreeSet<String> = names.keys().cloned().collect();
    names
        .iter()
        .map(|(name, text)| {
            let (imports, test_imports) = imports_of(name, text, &known);
            (
                name.clone(),
                Module {
                    name: name.clone(),
                    imports,
                    test_imports,
                },
            )
        })
        .collect()
}

fn collect_rust_files(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rust_files(&path, files);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
}

/// The modules `text` (the module `name`) refers to: from its code, and from its tests.
fn imports_of(
    name: &str,
    text: &str,
    known: &BTreeSet<String>,
) -> (BTreeSet<String>, BTreeSet<String>) {
    // Comment lines name modules in prose and doc links, not imports.
    let code: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .map(|line| format!("{line}\n"))
        .collect();
    let tests_start = code.find("#[cfg(test)]").unwrap_or(code.len());
    let parent: Vec<String> = {
        let mut segments: Vec<String> = name.split("::").map(str::to_owned).collect();
        segments.pop();
        segments
    };
    // `use crate::routes;` makes `routes::…` a path into that module.
    let mut roots: BTreeMap<String, Vec<String>> = BTreeMap::new();
    roots.insert("crate".to_owned(), Vec::new());
    roots.insert("super".to_owned(), parent.clone());
    for start in find_paths(&code, "use crate::") {
        for path in parse_tree(&code, start + "use crate::".len()) {
            if !path.is_empty() && known.contains(&path.join("::")) {
                roots.insert(path.last().unwrap().clone(), path);
            }
        }
    }
    let (mut imports, mut test_imports) = (BTreeSet::new(), BTreeSet::new());
    for (root, prefix) in &roots {
        let needle = format!("{root}::");
        for start in find_paths(&code, &needle) {
            let in_tests = start >= tests_start;
            // Inside a file's test module, `super::` is the file itself.
            if root == "super" && in_tests {
                continue;
            }
            for path in parse_tree(&code, start + needle.len()) {
                let full: Vec<String> = prefix.iter().cloned().chain(path).collect();
                if let Some(target) = longest_module(&full, known) {
                    if target != name && !target.is_empty() {
                        if in_tests {
                            test_imports.insert(target);
                        } else {
                            imports.insert(target);
                        }
                    }
                }
            }
        }
    }
    (imports, test_imports)
}

/// Where `needle` starts a path: not in the middle of a longer identifier or path.
fn find_paths(code: &str, needle: &str) -> Vec<usize> {
    code.match_indices(needle)
        .map(|(start, _)| start)
        .filter(|&start| {
            code[..start]
                .chars()
                .next_back()
                .is_none_or(|before| !(before.is_alphanumeric() || before == '_' || before == ':'))
        })
        .collect()
}

/// The paths of a use tree starting at `at`: `a::b::{c, d::e}` is `a::b::c` and `a::b::d::e`.
fn parse_tree(code: &str, at: usize) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    parse_subtree(code.as_bytes(), at, Vec::new(), &mut paths);
    paths
}

fn parse_subtree(
    code: &[u8],
    mut at: usize,
    mut prefix: Vec<String>,
    paths: &mut Vec<Vec<String>>,
) -> usize {
    loop {
        at = skip_space(code, at);
        let start = at;
        while at < code.len() && (code[at].is_ascii_alphanumeric() || code[at] == b'_') {
            at += 1;
        }
        if at > start {
            let segment = String::from_utf8_lossy(&code[start..at]).into_owned();
            if segment != "self" {
                prefix.push(segment);
            }
        } else if code.get(at) == Some(&b'{') {
            at += 1;
            loop {
                at = parse_subtree(code, at, prefix.clone(), paths);
                at = skip_space(code, at);
                match code.get(at) {
                    Some(b',') => {
                        at += 1;
                        if code.get(skip_space(code, at)) == Some(&b'}') {
                            return skip_space(code, at) + 1;
                        }
                    }
                    Some(b'}') => return at + 1,
                    _ => return at,
                }
            }
        }
        if code[at..].starts_with(b"::") {
            at += 2;
        } else {
            paths.push(prefix);
            return at;
        }
    }
}

fn skip_space(code: &[u8], mut at: usize) -> usize {
    while at < code.len() && code[at].is_ascii_whitespace() {
        at += 1;
    }
    at
}

fn longest_module(path: &[String], known: &BTreeSet<String>) -> Option<String> {
    (0..=path.len())
        .rev()
        .map(|length| path[..length].join("::"))
        .find(|candidate| known.contains(candidate))
}

/// The strongly connected groups of more than one module (Tarjan), over non-test imports.
fn cycles(modules: &BTreeMap<String, Module>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        modules: &'a BTreeMap<String, Module>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, module: &'a str) {
            let index = self.index.len();
            self.index.insert(module, index);
            self.low.insert(module, index);
            self.stack.push(module);
            self.on_stack.insert(module);
            for target in &self.modules[module].imports {
                let target = target.as_str();
                if !self.index.contains_key(target) {
                    self.visit(target);
                    let low = self.low[module].min(self.low[target]);
                    self.low.insert(module, low);
                } else if self.on_stack.contains(target) {
                    let low = self.low[module].min(self.index[target]);
                    self.low.insert(module, low);
                }
            }
            if self.low[module] == self.index[module] {
                let mut group = Vec::new();
                while let Some(member) = self.stack.pop() {
                    self.on_stack.remove(member);
                    group.push(member.to_owned());
                    if member == module {
                        break;
                    }
                }
                if group.len() > 1 {
                    group.sort();
                    self.found.push(group);
                }
            }
        }
    }
    let mut walk = Walk {
        modules,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for module in modules.keys() {
        if !walk.index.contains_key(module.as_str()) {
            walk.visit(module);
        }
    }
    walk.found
}
