//! No import cycles (issue 24), checked on the source: in a crate's module
//! tree, no two modules with the same parent reach each other, directly or
//! through their siblings.
//!
//! A module reaches another when a file in its subtree names a path into the
//! other's subtree: `crate::`, `super::` and `self::` paths, in `use` and in
//! code, with the names the crate root imports (`use a::b as c;`) resolved. A
//! module naming its own ancestors does not count (that is how a child reaches
//! its parent's items), so neither do the crate root's own items. A module
//! declared `#[cfg(test)]` (unit tests and their fakes) is left out: it is not
//! part of what the crate builds into; every other module counts whatever its
//! `cfg`, and `#[path]` is followed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

#[test]
fn host_shim_has_no_import_cycle() {
    assert_no_cycles("host-shim", "host-shim/src/main.rs");
}

#[test]
fn no_host_shim_suite_imports_another() {
    let tree = ModuleTree::parse(&crate_root("host-shim/src/main.rs"));
    let among: Vec<String> = tree.edges_among_children(&["suites"]).iter().map(Edge::to_string).collect();
    assert!(among.is_empty(), "suites import each other:\n{}", among.join("\n"));
}

#[test]
fn hyp_has_no_import_cycle() {
    assert_no_cycles("the hyp", "hyp/src/main.rs");
}

/// Panics with every cycle of the crate whose root is `root` (from the
/// repository's top), if it has any.
fn assert_no_cycles(name: &str, root: &str) {
    let cycles = ModuleTree::parse(&crate_root(root)).cycles();
    assert!(cycles.is_empty(), "import cycles in {name}:\n{}", cycles.join("\n"));
}

/// The checker itself, on a crate written for it.
#[test]
fn a_planted_cycle_is_found() {
    let dir = std::env::temp_dir().join(format!("import-cycles-{}", std::process::id()));
    let files = [
        ("main.rs", "mod a;\nmod b;\nmod c { pub use crate::a::X; }\nuse b::inner as alias;\n"),
        ("a.rs", "pub struct X;\nfn f() { let _ = crate::alias::Y; }\n"),
        ("b.rs", "pub mod inner;\n// crate::a is named in a comment only\nconst S: &str = \"crate::a\";\n"),
        ("b/inner.rs", "pub struct Y;\nuse super::super::c::X;\n"),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    let tree = ModuleTree::parse(&dir.join("main.rs"));
    let cycles = tree.cycles();
    fs::remove_dir_all(&dir).unwrap();
    // a -> b (through the alias), b -> c (super::super), c -> a.
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert!(cycles[0].starts_with("crate: a -> b -> c -> a (all of {a, b, c} reach each other)"), "{}", cycles[0]);
}

fn crate_root(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

/// One reference that makes a module reach a sibling.
struct Edge {
    parent: Vec<String>,
    from: String,
    to: String,
    /// Where: file, line, and the path as written.
    file: PathBuf,
    line: usize,
    path: String,
}

impl std::fmt::Display for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} -> {} ({}:{}: {})",
            display(&self.parent),
            self.from,
            self.to,
            self.file.display(),
            self.line,
            self.path
        )
    }
}

fn display(path: &[String]) -> String {
    if path.is_empty() {
        "crate".to_string()
    } else {
        path.join("::")
    }
}

struct ModuleTree {
    /// Every module (inline ones too), by path from the crate root.
    modules: BTreeSet<Vec<String>>,
    /// Names the crate root imports: name -> the path it stands for.
    root_aliases: BTreeMap<String, Vec<String>>,
    /// The paths each module names, resolved.
    references: Vec<Reference>,
}

/// A path as a module names it: the path, then the name it brings in.
struct Naming {
    module: Vec<String>,
    written: Vec<String>,
    file: PathBuf,
    line: usize,
}

/// A path a module names, resolved to the module it leads to.
struct Reference {
    from: Vec<String>,
    to: Vec<String>,
    file: PathBuf,
    line: usize,
    /// As written.
    path: String,
}

impl ModuleTree {
    fn parse(root: &Path) -> ModuleTree {
        let mut tree = ModuleTree { modules: BTreeSet::new(), root_aliases: BTreeMap::new(), references: Vec::new() };
        let mut uses = Vec::new();
        let text = fs::read_to_string(root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
        let tokens = tokenize(&text);
        let dir = root.parent().unwrap().to_path_buf();
        tree.modules.insert(Vec::new());
        tree.parse_module(root, &tokens, &[], &dir, &dir, &mut uses);
        // Names are resolved once every module is known. Each `uses` entry is
        // a path as written, then the name it brings in.
        for Naming { module, written, .. } in &uses {
            let (name, path) = written.split_last().unwrap();
            let path = path.strip_prefix(&["crate".to_string()]).unwrap_or(path);
            if module.is_empty() && path.first().is_some_and(|first| tree.modules.contains(&vec![first.clone()])) {
                // `use a::b as c;` at the root: `crate::c` means a::b.
                tree.root_aliases.insert(name.clone(), path.to_vec());
            }
        }
        for Naming { module, written, file, line } in uses {
            let path = &written[..written.len() - 1];
            if let Some(to) = tree.resolve(&module, path) {
                tree.references.push(Reference { from: module, to, file, line, path: path.join("::") });
            }
        }
        tree
    }

    /// Collects the modules under `module` (tokens of its file or inline
    /// block) and the paths it names. `file_dir` is the directory of its file,
    /// `child_dir` where its `mod x;` children are.
    fn parse_module(
        &mut self,
        file: &Path,
        tokens: &[Token],
        module: &[String],
        file_dir: &Path,
        child_dir: &Path,
        uses: &mut Vec<Naming>,
    ) {
        let mut path_attribute: Option<String> = None;
        let mut test_only = false;
        let mut i = 0;
        while i < tokens.len() {
            let token = &tokens[i];
            match &token.kind {
                Kind::Punct('#') if is_punct(tokens.get(i + 1), '[') => {
                    let end = matching(tokens, i + 1);
                    if let [Token { kind: Kind::Ident(cfg), .. }, Token { kind: Kind::Punct('('), .. }, Token { kind: Kind::Ident(test), .. }, Token { kind: Kind::Punct(')'), .. }] =
                        &tokens[i + 2..end]
                    {
                        test_only |= cfg == "cfg" && test == "test";
                    }
                    if let [Token { kind: Kind::Ident(name), .. }, Token { kind: Kind::Punct('='), .. }, Token { kind: Kind::Str(value), .. }] =
                        &tokens[i + 2..end]
                    {
                        if name == "path" {
                            path_attribute = Some(value.clone());
                        }
                    }
                    i = end + 1;
                    continue;
                }
                Kind::Ident(word) if word == "mod" && std::mem::take(&mut test_only) => {
                    // A test-only module: skipped, with its block if inline.
                    path_attribute = None;
                    i += if is_punct(tokens.get(i + 2), '{') { matching(tokens, i + 2) + 1 - i } else { 3 };
                    continue;
                }
                Kind::Ident(word) if word == "mod" => {
                    if let Some(Token { kind: Kind::Ident(name), .. }) = tokens.get(i + 1) {
                        let mut child = module.to_vec();
                        child.push(name.clone());
                        self.modules.insert(child.clone());
                        if is_punct(tokens.get(i + 2), '{') {
                            let end = matching(tokens, i + 2);
                            self.parse_module(file, &tokens[i + 3..end], &child, file_dir, &child_dir.join(name), uses);
                            i = end + 1;
                        } else {
                            let child_file = match path_attribute.take() {
                                Some(path) => file_dir.join(path),
                                None if child_dir.join(format!("{name}.rs")).exists() => {
                                    child_dir.join(format!("{name}.rs"))
                                }
                                None => child_dir.join(name).join("mod.rs"),
                            };
                            let text = fs::read_to_string(&child_file)
                                .unwrap_or_else(|e| panic!("{}: {e}", child_file.display()));
                            let child_tokens = tokenize(&text);
                            let child_file_dir = child_file.parent().unwrap().to_path_buf();
                            let grandchild_dir = if child_file.file_name().unwrap() == "mod.rs" {
                                child_file_dir.clone()
                            } else {
                                child_file_dir.join(child_file.file_stem().unwrap())
                            };
                            self.parse_module(
                                &child_file,
                                &child_tokens,
                                &child,
                                &child_file_dir,
                                &grandchild_dir,
                                uses,
                            );
                            i += 3;
                        }
                        continue;
                    }
                }
                Kind::Ident(word) if word == "use" && std::mem::take(&mut test_only) => {
                    // A test-only import.
                    i = (i..tokens.len()).find(|&j| is_punct(tokens.get(j), ';')).unwrap_or(tokens.len()) + 1;
                    continue;
                }
                Kind::Ident(word) if word == "use" => {
                    let end = (i..tokens.len()).find(|&j| is_punct(tokens.get(j), ';')).unwrap_or(tokens.len());
                    let mut leaves = Vec::new();
                    use_tree(&tokens[i + 1..end], Vec::new(), &mut leaves);
                    for leaf in leaves {
                        uses.push(Naming {
                            module: module.to_vec(),
                            written: leaf,
                            file: file.to_path_buf(),
                            line: token.line,
                        });
                    }
                    i = end + 1;
                    continue;
                }
                Kind::Ident(word)
                    if (word == "crate" || word == "super" || word == "self") && is_path_sep(tokens, i + 1) =>
                {
                    // A path in code: `crate::a::b`, read up to its last segment.
                    let mut segments = vec![word.clone()];
                    let mut j = i + 1;
                    while is_path_sep(tokens, j) {
                        match tokens.get(j + 2) {
                            Some(Token { kind: Kind::Ident(next), .. }) => segments.push(next.clone()),
                            _ => break,
                        }
                        j += 3;
                    }
                    // The same shape as a `use` leaf: the path, then its name.
                    let name = segments.last().unwrap().clone();
                    segments.push(name);
                    uses.push(Naming {
                        module: module.to_vec(),
                        written: segments,
                        file: file.to_path_buf(),
                        line: token.line,
                    });
                    i = j;
                    continue;
                }
                Kind::Ident(word) if word == "pub" || word == "crate" => {}
                Kind::Punct('(') | Kind::Punct(')') => {}
                // Any other item ends what a `#[cfg(test)]` applied to.
                _ => test_only = false,
            }
            i += 1;
        }
    }

    /// The module path (from the root) that `written`, named in `module`,
    /// leads to: the deepest module it names. `None` for another crate's.
    fn resolve(&self, module: &[String], written: &[String]) -> Option<Vec<String>> {
        let mut path: Vec<String> = match written.first().map(String::as_str) {
            Some("crate") => {
                let mut rest = written[1..].to_vec();
                if let Some(target) = rest.first().and_then(|first| self.root_aliases.get(first)) {
                    rest.splice(..1, target.iter().cloned());
                }
                rest
            }
            Some("super") | Some("self") => {
                let mut base = module.to_vec();
                let mut k = 0;
                while let Some(segment) = written.get(k) {
                    match segment.as_str() {
                        "super" => {
                            base.pop();
                        }
                        "self" => {}
                        _ => break,
                    }
                    k += 1;
                }
                base.extend(written[k..].iter().cloned());
                base
            }
            Some(first) => {
                // A path relative to this module: a child of it, or another crate.
                let mut child = module.to_vec();
                child.push(first.to_string());
                if !self.modules.contains(&child) {
                    return None;
                }
                let mut path = module.to_vec();
                path.extend(written.iter().cloned());
                path
            }
            None => return None,
        };
        while !self.modules.contains(&path) {
            path.pop();
        }
        Some(path)
    }

    /// Every reference from one module to a sibling's subtree (or a sibling of
    /// an ancestor's), as an edge between the two siblings.
    fn edges(&self) -> Vec<Edge> {
        let mut edges = Vec::new();
        for Reference { from, to, file, line, path } in &self.references {
            let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue;
            }
            edges.push(Edge {
                parent: from[..common].to_vec(),
                from: from[common].clone(),
                to: to[common].clone(),
                file: file.clone(),
                line: *line,
                path: path.clone(),
            });
        }
        edges
    }

    fn edges_among_children(&self, parent: &[&str]) -> Vec<Edge> {
        self.edges()
            .into_iter()
            .filter(|edge| edge.parent.iter().map(String::as_str).eq(parent.iter().copied()))
            .collect()
    }

    /// Each group of siblings that reach each other: one cycle through it,
    /// with one reference for each of its steps.
    fn cycles(&self) -> Vec<String> {
        let mut graphs: BTreeMap<Vec<String>, BTreeMap<String, BTreeMap<String, Edge>>> = BTreeMap::new();
        for edge in self.edges() {
            graphs
                .entry(edge.parent.clone())
                .or_default()
                .entry(edge.from.clone())
                .or_default()
                .entry(edge.to.clone())
                .or_insert(edge);
        }
        let mut cycles = Vec::new();
        for (parent, graph) in &graphs {
            for component in strongly_connected(graph) {
                // One cycle through the component, from its first module.
                let start = component.iter().next().unwrap().clone();
                let steps = cycle_through(graph, &component, &start);
                let names: Vec<&str> = steps.iter().map(|e| e.from.as_str()).chain([start.as_str()]).collect();
                let members: Vec<&str> = component.iter().map(String::as_str).collect();
                let mut text = format!(
                    "{}: {} (all of {{{}}} reach each other)",
                    display(parent),
                    names.join(" -> "),
                    members.join(", ")
                );
                for step in steps {
                    text.push_str(&format!("\n    {step}"));
                }
                cycles.push(text);
            }
        }
        cycles
    }
}

/// The components of more than one module (Tarjan's algorithm).
fn strongly_connected(graph: &BTreeMap<String, BTreeMap<String, Edge>>) -> Vec<BTreeSet<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeMap<String, Edge>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(state: &mut State<'a>, node: &'a str) {
        let n = state.index.len();
        state.index.insert(node, n);
        state.low.insert(node, n);
        state.stack.push(node);
        state.on_stack.insert(node);
        if let Some(targets) = state.graph.get(node) {
            for target in targets.keys() {
                let target = target.as_str();
                if !state.index.contains_key(target) {
                    visit(state, target);
                    let low = state.low[node].min(state.low[target]);
                    state.low.insert(node, low);
                } else if state.on_stack.contains(target) {
                    let low = state.low[node].min(state.index[target]);
                    state.low.insert(node, low);
                }
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = BTreeSet::new();
            while let Some(top) = state.stack.pop() {
                state.on_stack.remove(top);
                component.insert(top.to_string());
                if top == node {
                    break;
                }
            }
            if component.len() > 1 {
                state.components.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.components
}

/// The steps of a shortest cycle from `start` back to it, inside `component`.
fn cycle_through<'a>(
    graph: &'a BTreeMap<String, BTreeMap<String, Edge>>,
    component: &BTreeSet<String>,
    start: &str,
) -> Vec<&'a Edge> {
    let mut came_from: BTreeMap<&str, &Edge> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for (target, edge) in graph.get(node).into_iter().flatten() {
            if !component.contains(target) {
                continue;
            }
            if target == start {
                let mut steps = vec![edge];
                let mut at = node;
                while at != start {
                    let step = came_from[at];
                    steps.push(step);
                    at = step.from.as_str();
                }
                steps.reverse();
                return steps;
            }
            if !came_from.contains_key(target.as_str()) {
                came_from.insert(target, edge);
                queue.push_back(target);
            }
        }
    }
    unreachable!("a strongly connected component has a cycle through each of its modules")
}

/// The leaves of a `use` tree: each path, ending with the name it brings in.
fn use_tree(tokens: &[Token], prefix: Vec<String>, leaves: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i].kind {
            Kind::Punct('{') => {
                let end = matching(tokens, i);
                for part in split_top_level(&tokens[i + 1..end]) {
                    use_tree(part, path.clone(), leaves);
                }
                return;
            }
            Kind::Punct('*') => {
                let name = path.last().cloned().unwrap_or_default();
                path.push(name);
                leaves.push(path);
                return;
            }
            Kind::Ident(word) if word == "as" => {
                if let Some(Token { kind: Kind::Ident(alias), .. }) = tokens.get(i + 1) {
                    path.push(alias.clone());
                }
                leaves.push(path);
                return;
            }
            Kind::Ident(word) => path.push(word.clone()),
            _ => {}
        }
        i += 1;
    }
    if let Some(last) = path.last().cloned() {
        if last == "self" {
            // `use a::b::{self}`: brings in b.
            path.pop();
        }
        let name = path.last().cloned().unwrap_or_default();
        path.push(name);
        leaves.push(path);
    }
}

fn split_top_level(tokens: &[Token]) -> Vec<&[Token]> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, token) in tokens.iter().enumerate() {
        match token.kind {
            Kind::Punct('{') => depth += 1,
            Kind::Punct('}') => depth -= 1,
            Kind::Punct(',') if depth == 0 => {
                parts.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < tokens.len() {
        parts.push(&tokens[start..]);
    }
    parts
}

fn is_punct(token: Option<&Token>, c: char) -> bool {
    matches!(token, Some(Token { kind: Kind::Punct(p), .. }) if *p == c)
}

/// Whether `::` starts at `i`.
fn is_path_sep(tokens: &[Token], i: usize) -> bool {
    is_punct(tokens.get(i), ':') && is_punct(tokens.get(i + 1), ':')
}

/// The index of the bracket that closes the one at `open`.
fn matching(tokens: &[Token], open: usize) -> usize {
    let (opening, closing) = match tokens[open].kind {
        Kind::Punct('{') => ('{', '}'),
        Kind::Punct('[') => ('[', ']'),
        _ => ('(', ')'),
    };
    let mut depth = 0;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        match token.kind {
            Kind::Punct(c) if c == opening => depth += 1,
            Kind::Punct(c) if c == closing => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

#[derive(Debug)]
struct Token {
    kind: Kind,
    line: usize,
}

#[derive(Debug)]
enum Kind {
    Ident(String),
    /// A string literal's contents (escapes left as written).
    Str(String),
    Punct(char),
}

/// Identifiers, string literals and punctuation of Rust source; comments,
/// numbers, character literals and lifetimes are dropped.
fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let (mut i, mut line) = (0, 1);
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        let start_line = line;
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            _ if c.is_whitespace() => i += 1,
            '/' if at(i + 1) == '/' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if at(i + 1) == '*' => {
                let mut depth = 0;
                while i < chars.len() {
                    if chars[i] == '/' && at(i + 1) == '*' {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && at(i + 1) == '/' {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        line += usize::from(chars[i] == '\n');
                        i += 1;
                    }
                }
            }
            '"' => {
                let (value, next, lines) = string(&chars, i + 1, 0);
                tokens.push(Token { kind: Kind::Str(value), line: start_line });
                line += lines;
                i = next;
            }
            'r' | 'b' if raw_or_byte_string(&chars, i) => {
                let mut j = i + 1;
                if c == 'b' && at(j) == 'r' {
                    j += 1;
                }
                let hashes = (j..).take_while(|&k| at(k) == '#').count();
                let (value, next, lines) = string(&chars, j + hashes + 1, hashes);
                tokens.push(Token { kind: Kind::Str(value), line: start_line });
                line += lines;
                i = next;
            }
            '\'' => {
                // A character literal ('x', '\n', '\u{1f}') or a lifetime ('a).
                if at(i + 1) == '\\' {
                    // The quote, the backslash and the escaped character, then
                    // up to the closing quote ('\u{1f}').
                    i += 3;
                    while i < chars.len() && chars[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                } else if at(i + 2) == '\'' {
                    i += 3;
                } else {
                    i += 1;
                    while at(i).is_alphanumeric() || at(i) == '_' {
                        i += 1;
                    }
                }
            }
            _ if c.is_ascii_digit() => {
                while at(i).is_alphanumeric() || at(i) == '_' {
                    i += 1;
                }
            }
            _ if c.is_alphabetic() || c == '_' => {
                let start = i;
                while at(i).is_alphanumeric() || at(i) == '_' {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let word = word.strip_prefix("r#").map(str::to_string).unwrap_or(word);
                tokens.push(Token { kind: Kind::Ident(word), line: start_line });
            }
            _ => {
                tokens.push(Token { kind: Kind::Punct(c), line: start_line });
                i += 1;
            }
        }
    }
    tokens
}

/// Whether a raw string (`r"`, `r#"`) or a byte string (`b"`, `br"`,
/// `br#"`) starts at `i`, rather than an identifier (`r#type`, `break`).
fn raw_or_byte_string(chars: &[char], i: usize) -> bool {
    let mut j = i + 1;
    if chars[i] == 'b' {
        if chars.get(j) == Some(&'"') {
            return true;
        }
        if chars.get(j) != Some(&'r') {
            return false;
        }
        j += 1;
    }
    while chars.get(j) == Some(&'#') {
        j += 1;
    }
    chars.get(j) == Some(&'"')
}

/// A string literal's contents from `start` up to its closing quote (and
/// `hashes` #s for a raw one): (contents, index after it, newlines in it).
fn string(chars: &[char], start: usize, hashes: usize) -> (String, usize, usize) {
    let mut i = start;
    let mut lines = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' if hashes == 0 => i += 2,
            '"' if (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')) => {
                return (chars[start..i].iter().collect(), i + 1 + hashes, lines);
            }
            c => {
                lines += usize::from(c == '\n');
                i += 1;
            }
        }
    }
    (chars[start..].iter().collect(), chars.len(), lines)
}
