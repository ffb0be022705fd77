//! No module of any crate of the workspace depends on itself through others.
//!
//! Each crate's modules are read from its sources with `syn`, from `lib.rs` or `main.rs`
//! down through every `mod`. A module depends on another when it names one of that module's
//! items (a `use`, or a path such as `crate::outcome::RejectReason` or `super::Body` in its
//! code). A path through a re-export (`pub use child::item`) is followed to the module that
//! defines the item, so a parent that re-exports its children does not depend on them, and
//! neither do `mod` declarations. The test fails when the graph has a circle, naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// A module's path inside its crate: `[]` is the crate root, `["http", "callback"]` is
/// `http::callback`.
type ModPath = Vec<String>;

#[derive(Default)]
struct Module {
    /// Items defined here (functions, types, constants, traits, macros).
    items: BTreeSet<String>,
    /// Child modules.
    children: BTreeSet<String>,
    /// Names brought in by `use`, with the path as written (relative to this module).
    imports: BTreeMap<String, Vec<String>>,
    /// Every path this module's code names, as written.
    paths: Vec<Vec<String>>,
    /// Paths of its `use` items that are not re-exports of its own descendants.
    use_paths: Vec<Vec<String>>,
}

struct Crate {
    name: String,
    modules: BTreeMap<ModPath, Module>,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every crate root of the workspace: each member's `src/lib.rs` and `src/main.rs`.
fn crate_roots() -> Vec<(String, PathBuf)> {
    let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
    let members = manifest
        .split_once("members = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .expect("the workspace's members")
        .0;
    let mut roots = Vec::new();
    for member in members.split(',').map(|m| m.trim().trim_matches('"')) {
        for root in ["src/lib.rs", "src/main.rs"] {
            let path = workspace_root().join(member).join(root);
            if !member.is_empty() && path.exists() {
                roots.push((format!("{member}/{root}"), path));
            }
        }
    }
    roots
}

fn read_crate(name: &str, root: &Path) -> Crate {
    let mut krate = Crate {
        name: name.to_owned(),
        modules: BTreeMap::new(),
    };
    let file = parse(root);
    let dir = root.parent().unwrap().to_path_buf();
    read_items(&mut krate, &[], &file.items, &dir, true);
    krate
}

fn parse(path: &Path) -> syn::File {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    syn::parse_file(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// Reads one module's items; `dir` is where its child modules' files are (`owns_dir`: the
/// module is a `mod.rs`, `lib.rs` or `main.rs`, so children sit beside it).
fn read_items(krate: &mut Crate, path: &[String], items: &[syn::Item], dir: &Path, owns_dir: bool) {
    let mut module = Module::default();
    let child_dir = if owns_dir {
        dir.to_path_buf()
    } else {
        dir.join(path.last().unwrap())
    };
    let mut children = Vec::new();
    for item in items {
        match item {
            syn::Item::Mod(child) => {
                let name = child.ident.to_string();
                module.children.insert(name.clone());
                children.push((name, child));
            }
            syn::Item::Use(item_use) => {
                let public = !matches!(item_use.vis, syn::Visibility::Inherited);
                let mut flat = Vec::new();
                flatten_use(&item_use.tree, Vec::new(), &mut flat);
                for (name, used) in flat {
                    let own_descendant = used
                        .first()
                        .is_some_and(|first| first == "self" || module.children.contains(first))
                        || children
                            .iter()
                            .any(|(child, _)| used.first() == Some(child));
                    if !(public && own_descendant) {
                        module.use_paths.push(used.clone());
                    }
                    if name != "*" {
                        module.imports.insert(name, used);
                    }
                }
            }
            other => {
                if let Some(name) = item_name(other) {
                    module.items.insert(name);
                }
                let mut collector = PathCollector::default();
                collector.visit_item(other);
                module.paths.extend(collector.paths);
            }
        }
    }
    krate.modules.insert(path.to_vec(), module);
    for (name, child) in children {
        let mut child_path = path.to_vec();
        child_path.push(name.clone());
        if let Some((_, inline)) = &child.content {
            read_items(krate, &child_path, inline, &child_dir, false);
            continue;
        }
        let file = child_dir.join(format!("{name}.rs"));
        let (file, owns) = if file.exists() {
            (file, false)
        } else {
            (child_dir.join(&name).join("mod.rs"), true)
        };
        let parsed = parse(&file);
        let next_dir = if owns {
            file.parent().unwrap().to_path_buf()
        } else {
            child_dir.clone()
        };
        read_items(krate, &child_path, &parsed.items, &next_dir, owns);
    }
}

fn item_name(item: &syn::Item) -> Option<String> {
    let ident = match item {
        syn::Item::Const(i) => &i.ident,
        syn::Item::Enum(i) => &i.ident,
        syn::Item::Fn(i) => &i.sig.ident,
        syn::Item::Static(i) => &i.ident,
        syn::Item::Struct(i) => &i.ident,
        syn::Item::Trait(i) => &i.ident,
        syn::Item::Type(i) => &i.ident,
        syn::Item::Union(i) => &i.ident,
        syn::Item::Macro(i) => i.ident.as_ref()?,
        _ => return None,
    };
    Some(ident.to_string())
}

/// `use a::{b, c::d as e}` as `(b, [a, b])` and `(e, [a, c, d])`.
fn flatten_use(tree: &syn::UseTree, prefix: Vec<String>, out: &mut Vec<(String, Vec<String>)>) {
    match tree {
        syn::UseTree::Path(p) => {
            let mut prefix = prefix;
            prefix.push(p.ident.to_string());
            flatten_use(&p.tree, prefix, out);
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            let mut path = prefix.clone();
            if name == "self" {
                let last = prefix.last().cloned().unwrap_or_default();
                out.push((last, path));
            } else {
                path.push(name.clone());
                out.push((name, path));
            }
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix;
            path.push(r.ident.to_string());
            out.push((r.rename.to_string(), path));
        }
        syn::UseTree::Glob(_) => out.push(("*".to_owned(), prefix)),
        syn::UseTree::Group(g) => {
            for tree in &g.items {
                flatten_use(tree, prefix.clone(), out);
            }
        }
    }
}

#[derive(Default)]
struct PathCollector {
    paths: Vec<Vec<String>>,
}

impl<'ast> Visit<'ast> for PathCollector {
    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() && path.segments.len() > 1 {
            self.paths
                .push(path.segments.iter().map(|s| s.ident.to_string()).collect());
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_item_use(&mut self, item_use: &'ast syn::ItemUse) {
        // A `use` inside a function body.
        let mut flat = Vec::new();
        flatten_use(&item_use.tree, Vec::new(), &mut flat);
        self.paths.extend(flat.into_iter().map(|(_, path)| path));
    }

    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {}
}

impl Crate {
    /// The module that defines what `path`, written in module `from`, names; `None` for
    /// other crates, the standard library and generic parameters.
    fn resolve(&self, from: &ModPath, path: &[String], depth: usize) -> Option<ModPath> {
        if depth > 16 || path.is_empty() {
            return None;
        }
        let (mut at, rest) = match path[0].as_str() {
            "crate" => (Vec::new(), &path[1..]),
            "self" => (from.clone(), &path[1..]),
            "super" => {
                let mut at = from.clone();
                let mut rest = path;
                while rest.first().map(String::as_str) == Some("super") {
                    at.pop()?;
                    rest = &rest[1..];
                }
                (at, rest)
            }
            _ => (from.clone(), path),
        };
        let mut rest = rest;
        loop {
            let Some(first) = rest.first() else {
                return Some(at);
            };
            let module = self.modules.get(&at)?;
            if module.children.contains(first) {
                at.push(first.clone());
                rest = &rest[1..];
                continue;
            }
            if module.items.contains(first) {
                return Some(at);
            }
            if let Some(imported) = module.imports.get(first) {
                let mut followed = imported.clone();
                followed.extend_from_slice(&rest[1..]);
                return self.resolve(&at, &followed, depth + 1);
            }
            return None;
        }
    }

    fn edges(&self) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
        let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
        for (from, module) in &self.modules {
            let targets = edges.entry(from.clone()).or_default();
            for path in module.use_paths.iter().chain(&module.paths) {
                if let Some(to) = self.resolve(from, path, 0) {
                    if &to != from {
                        targets.insert(to);
                    }
                }
            }
        }
        edges
    }
}

/// Strongly connected components with more than one module (Tarjan's algorithm).
fn circles(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    struct State<'a> {
        edges: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on_stack: BTreeSet<&'a ModPath>,
        found: Vec<Vec<ModPath>>,
    }
    fn connect<'a>(state: &mut State<'a>, node: &'a ModPath) {
        let next = state.index.len();
        state.index.insert(node, next);
        state.low.insert(node, next);
        state.stack.push(node);
        state.on_stack.insert(node);
        for target in state.edges.get(node).into_iter().flatten() {
            let Some((target, _)) = state.edges.get_key_value(target) else {
                continue;
            };
            if !state.index.contains_key(target) {
                connect(state, target);
                let low = state.low[node].min(state.low[target]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(target) {
                let low = state.low[node].min(state.index[target]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(top) = state.stack.pop() {
                state.on_stack.remove(top);
                component.push(top.clone());
                if top == node {
                    break;
                }
            }
            if component.len() > 1 {
                state.found.push(component);
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in edges.keys() {
        if !state.index.contains_key(node) {
            connect(&mut state, node);
        }
    }
    state.found
}

fn show(path: &ModPath) -> String {
    if path.is_empty() {
        "crate".to_owned()
    } else {
        path.join("::")
    }
}

#[test]
fn no_crate_has_a_circle_of_modules() {
    let roots = crate_roots();
    assert!(
        roots.iter().any(|(name, _)| name.starts_with("gateway/")),
        "the gateway crate was not found among {roots:?}"
    );
    let mut problems = Vec::new();
    for (name, root) in &roots {
        let krate = read_crate(name, root);
        let edges = krate.edges();
        let count: usize = edges.values().map(BTreeSet::len).sum();
        eprintln!(
            "{}: {} modules, {count} dependencies between them",
            krate.name,
            krate.modules.len()
        );
        for circle in circles(&edges) {
            let members: Vec<_> = circle.iter().map(show).collect();
            let links: Vec<_> = circle
                .iter()
                .flat_map(|from| {
                    edges[from]
                        .iter()
                        .filter(|to| circle.contains(to))
                        .map(move |to| format!("{} -> {}", show(from), show(to)))
                })
                .collect();
            problems.push(format!(
                "{}: a circle through {}: {}",
                krate.name,
                members.join(", "),
                links.join("; ")
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The reader sees a circle when there is one: two modules of a small crate that name each
/// other's items, and a parent whose re-export is not a dependency.
#[test]
fn a_circle_is_seen_and_a_reexport_is_not_one() {
    let dir = std::env::temp_dir().join(format!("module-graph-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("src/parent")).unwrap();
    let write = |file: &str, text: &str| std::fs::write(dir.join(file), text).unwrap();
    write("src/lib.rs", "mod a;\nmod b;\nmod parent;\n");
    write("src/a.rs", "use crate::b::Bee;\npub struct Ay;\n");
    write("src/b.rs", "pub struct Bee(crate::a::Ay);\n");
    write(
        "src/parent/mod.rs",
        "mod child;\npub use child::Kid;\npub type Shared = u8;\n",
    );
    write("src/parent/child.rs", "pub struct Kid(super::Shared);\n");
    let krate = read_crate("sample", &dir.join("src/lib.rs"));
    let found = circles(&krate.edges());
    std::fs::remove_dir_all(&dir).unwrap();
    let found: Vec<Vec<String>> = found
        .into_iter()
        .map(|c| {
            let mut c: Vec<_> = c.iter().map(show).collect();
            c.sort();
            c
        })
        .collect();
    assert_eq!(found, vec![vec!["a".to_owned(), "b".to_owned()]]);
}
