//! Checks of a process body that need no type information:
//! - non-deterministic calls outside tasks, each with its deterministic alternative;
//! - `parallel!` branches that use a result bound by the same `let` (or assignment);
//! - and, for the resource-access check of `access`, the paths each `parallel!` branch calls.
//!
//! Closures, async blocks and `fn` items declared in the body are entered, since they run as
//! part of the process. The visitors track the names bound by blocks, closures, arms and loops,
//! so a rebound name is not mistaken for a `parallel!` result, and the `use` declarations of
//! the body, so a renamed or imported function is judged by what it is.

use super::access::{probe_block, ProbeBlock};
use crate::options::{source_text, Errors};
use crate::parallel::macro_args;
use proc_macro2::{Delimiter, Group, Ident, TokenStream, TokenTree};
use quote::{quote, ToTokens};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use syn::visit::{self, Visit};
use syn::{Attribute, Block, Expr, FnArg, ItemFn, Macro, Pat, Stmt, UseTree};

/// Checks the body; returns the probes of its `parallel!` blocks for the access check.
pub(crate) fn body(func: &ItemFn, errors: &mut Errors) -> Vec<ProbeBlock> {
    let _parsed = crate::parallel::ParsedMacros::start();
    let mut v = Checker {
        errors,
        scopes: Scopes::new(params(&func.sig)),
        uses: Vec::new(),
        depth: 0,
        in_declaring_block: 0,
        in_fn_item: 0,
        marks: Vec::new(),
        blocks: Vec::new(),
    };
    v.visit_block(&func.block);
    v.blocks
}

/// The names a function's parameters bind.
fn params(sig: &syn::Signature) -> HashSet<String> {
    let mut names = Vec::new();
    for arg in &sig.inputs {
        if let FnArg::Typed(pt) = arg {
            pat_idents(&pt.pat, &mut names);
        }
    }
    names.iter().map(Ident::to_string).collect()
}

struct Checker<'e> {
    errors: &'e mut Errors,
    scopes: Scopes,
    /// The `use` declarations of the enclosing blocks, innermost last.
    uses: Vec<Uses>,
    /// How many blocks enclose the one being visited.
    depth: usize,
    /// How many of them are nested blocks that declare items or `use`s.
    in_declaring_block: usize,
    /// Inside a `fn` item declared in the body: checked, but not probed for access.
    in_fn_item: usize,
    /// The enclosing `#[deterministic]` marks, innermost last: the calls they allowed.
    marks: Vec<Mark>,
    blocks: Vec<ProbeBlock>,
}

/// The names a block's `use` declarations bring in: `use a::b as c;` maps `c` to `a::b`;
/// `use a::*;` adds the prefix `a`.
#[derive(Default)]
struct Uses {
    names: HashMap<String, Vec<String>>,
    globs: Vec<Vec<String>>,
}

impl Uses {
    fn of(block: &Block) -> Option<Uses> {
        let mut uses = Uses::default();
        for stmt in &block.stmts {
            if let Stmt::Item(syn::Item::Use(u)) = stmt {
                uses.tree(&u.tree, &mut Vec::new());
            }
        }
        (!uses.names.is_empty() || !uses.globs.is_empty()).then_some(uses)
    }

    fn tree(&mut self, tree: &UseTree, prefix: &mut Vec<String>) {
        match tree {
            UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.tree(&p.tree, prefix);
                prefix.pop();
            }
            UseTree::Name(n) => {
                let name = n.ident.to_string();
                if name == "self" {
                    if let Some(last) = prefix.last() {
                        self.names.insert(last.clone(), prefix.clone());
                    }
                } else {
                    let mut full = prefix.clone();
                    full.push(name.clone());
                    self.names.insert(name, full);
                }
            }
            UseTree::Rename(r) => {
                let mut full = prefix.clone();
                if r.ident != "self" {
                    full.push(r.ident.to_string());
                }
                self.names.insert(r.rename.to_string(), full);
            }
            UseTree::Glob(_) => self.globs.push(prefix.clone()),
            UseTree::Group(g) => g.items.iter().for_each(|t| self.tree(t, prefix)),
        }
    }
}

/// A `#[deterministic]` on a statement or expression, and whether it allowed anything.
struct Mark {
    attr: TokenStream,
    used: bool,
}

/// Whether `attr` is the escape hatch: `#[deterministic]` or `#[minder::deterministic]`.
pub(crate) fn is_mark(attr: &Attribute) -> bool {
    matches!(attr.style, syn::AttrStyle::Outer)
        && matches!(attr.meta, syn::Meta::Path(_))
        && attr
            .path()
            .segments
            .last()
            .is_some_and(|s| s.ident == "deterministic")
        && (attr.path().segments.len() == 1
            || (attr.path().segments.len() == 2 && attr.path().segments[0].ident == "minder"))
}

/// The tokens of a function with every `#[deterministic]` mark removed from its body: rustc
/// does not know the attribute (and would not take one on an expression).
pub(crate) fn strip_marks(tokens: TokenStream) -> TokenStream {
    let tts: Vec<TokenTree> = tokens.into_iter().collect();
    let mut out = Vec::with_capacity(tts.len());
    let mut i = 0;
    while i < tts.len() {
        if let (TokenTree::Punct(hash), Some(TokenTree::Group(g))) = (&tts[i], tts.get(i + 1)) {
            if hash.as_char() == '#' && g.delimiter() == Delimiter::Bracket {
                let text = g.stream().to_string().replace(' ', "");
                if text == "deterministic" || text == "minder::deterministic" {
                    i += 2;
                    continue;
                }
            }
        }
        match &tts[i] {
            TokenTree::Group(g) => {
                let mut group = Group::new(g.delimiter(), strip_marks(g.stream()));
                group.set_span(g.span());
                out.push(TokenTree::Group(group));
            }
            other => out.push(other.clone()),
        }
        i += 1;
    }
    out.into_iter().collect()
}

/// Kinds of non-determinism: what a call does wrong, and what to use instead.
type Why = (&'static str, &'static str);

/// A race: what it does wrong, and what to use instead.
const RACE: Why = (
    "picks the first to finish by timing, which differs on replay",
    "use `ctx.select(..)` or `ctx.race(..)`, which journal the winner",
);

/// A join outside `parallel!`: what it does wrong, and what to use instead.
const JOIN: Why = (
    "polls futures outside the journal's branch scopes, so the keys of their steps depend on timing",
    "use `parallel!(..)` (or `ctx.map`)",
);

const CLOCK: Why = (
    "reads the wall clock, which differs on replay",
    "use `ctx.now()`, which is recorded and replayed",
);
const RANDOM: Why = (
    "is random, which differs on replay",
    "use `ctx.random()` or `ctx.new_id()`, which are recorded and replayed",
);
const SPAWN: Why = (
    "spawns work the journal does not see",
    "run concurrent work with `parallel!` or `ctx.map`, or spawn inside a `#[task]`",
);
const ENV: Why = (
    "reads the environment, which may differ on resume",
    "pass the value in the process input, or read it inside a `#[task]`",
);
const IDENTITY: Why = (
    "reads which process, thread or machine runs the code, which differs on resume",
    "read it inside a `#[task]`, whose result is journaled",
);
const IO: Why = (
    "does I/O outside a task, so it is neither journaled nor retried",
    "move it into a `#[task]`",
);
const FS_QUERY: Why = (
    "asks the file system, whose answer may differ on resume",
    "ask inside a `#[task]`, whose result is journaled",
);
const SLEEP: Why = (
    "is a sleep that does not survive a restart",
    "use `ctx.sleep(..)` or `ctx.sleep_until(..)`, which are durable",
);

/// A macro that races or joins futures, by its last segment (`tokio::select!`,
/// `futures::select_biased!`, `futures::join!`, `tokio::try_join!`, ...).
fn racing_macro(name: &str) -> Option<Why> {
    match name {
        "select" | "select_biased" => Some(RACE),
        "join" | "try_join" => Some(JOIN),
        _ => None,
    }
}

/// Clock types of std and the common date-time crates (chrono, time, jiff, hifitime, tokio,
/// quanta, coarsetime), with their constructors that read the clock.
const CLOCKS: &[(&str, &[&str])] = &[
    ("SystemTime", &["now"]),
    ("Instant", &["now", "recent"]),
    ("Utc", &["now", "today"]),
    ("Local", &["now", "today"]),
    ("OffsetDateTime", &["now_utc", "now_local"]),
    ("UtcDateTime", &["now"]),
    ("UtcOffset", &["current_local_offset", "local_offset_at"]),
    ("Timestamp", &["now"]),
    ("Zoned", &["now"]),
    ("Epoch", &["now"]),
    ("Clock", &["now_since_epoch", "recent_since_epoch"]),
];

/// Methods that ask the file system (`Path::exists`, `Path::metadata`, ...): without types,
/// judged by name, when called without arguments as they are on a path.
const FS_METHODS: &[&str] = &[
    "exists",
    "try_exists",
    "is_file",
    "is_dir",
    "is_symlink",
    "metadata",
    "symlink_metadata",
    "read_dir",
    "read_link",
    "canonicalize",
];

/// What a path refers to when it is non-deterministic, and what to use instead.
fn nondeterministic(segments: &[String]) -> Option<Why> {
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let last = *s.last()?;
    let pair = |a: &str, b: &[&str]| s.windows(2).any(|w| w[0] == a && b.contains(&w[1]));
    if CLOCKS.iter().any(|(t, fs)| pair(t, fs)) {
        return Some(CLOCK);
    }
    if pair("rand", &["random", "thread_rng", "rng", "random_range"])
        || last == "thread_rng"
        || last == "OsRng"
        || pair("Uuid", &["new_v4", "now_v7", "now_v1", "now_v6"])
        || pair("Ulid", &["new"])
        || s.first() == Some(&"getrandom")
        || s.first() == Some(&"fastrand")
        || pair("RandomState", &["new", "default"])
    {
        return Some(RANDOM);
    }
    if pair("thread", &["spawn", "scope", "Builder"])
        || pair("tokio", &["spawn"])
        || pair("task", &["spawn", "spawn_blocking", "spawn_local"])
        || last == "spawn_blocking"
    {
        return Some(SPAWN);
    }
    if pair(
        "future",
        &["select", "select_all", "select_ok", "try_select"],
    ) || pair("stream", &["select", "select_all", "select_with_strategy"])
        || pair("time", &["timeout", "timeout_at"])
        || last == "select_all"
        || last == "select_ok"
    {
        return Some(RACE);
    }
    if pair(
        "future",
        &[
            "join",
            "join3",
            "join4",
            "join5",
            "join_all",
            "try_join",
            "try_join3",
            "try_join4",
            "try_join5",
            "try_join_all",
        ],
    ) || last == "join_all"
        || last == "try_join_all"
    {
        return Some(JOIN);
    }
    if pair(
        "env",
        &[
            "var",
            "vars",
            "var_os",
            "vars_os",
            "args",
            "args_os",
            "current_dir",
            "current_exe",
            "set_var",
            "remove_var",
            "temp_dir",
            "home_dir",
            "set_current_dir",
        ],
    ) {
        return Some(ENV);
    }
    if pair("process", &["id"])
        || pair("thread", &["current", "available_parallelism"])
        || last == "gethostname"
    {
        return Some(IDENTITY);
    }
    if pair("thread", &["sleep"])
        || pair("time", &["sleep", "sleep_until", "interval", "interval_at"])
    {
        return Some(SLEEP);
    }
    if (s.len() >= 2 && s[s.len() - 2] == "fs")
        || pair("File", &["open", "create", "options", "create_new"])
        || pair("OpenOptions", &["new"])
        || [
            "TcpStream",
            "TcpListener",
            "UdpSocket",
            "UnixStream",
            "UnixListener",
        ]
        .iter()
        .any(|t| pair(t, &["connect", "bind"]))
        || pair("Command", &["new"])
        || s.first() == Some(&"reqwest")
        || pair("io", &["stdin"])
    {
        return Some(IO);
    }
    None
}

/// How a `parallel!` result gets its names.
#[derive(Clone, Copy)]
enum Binder {
    Let,
    Assign,
}

impl Checker<'_> {
    /// The path with its first segment replaced by what a `use` of the body maps it to; and,
    /// for each glob `use` in scope, the path under the glob's prefix.
    fn resolved(&self, segments: &[String]) -> Vec<Vec<String>> {
        let first = &segments[0];
        let local = segments.len() == 1 && self.scopes.contains(first);
        let mut out = Vec::new();
        if !local {
            for uses in self.uses.iter().rev() {
                if let Some(full) = uses.names.get(first) {
                    let mut path = full.clone();
                    path.extend(segments[1..].iter().cloned());
                    out.push(path);
                    break;
                }
            }
            for uses in &self.uses {
                for prefix in &uses.globs {
                    let mut path = prefix.clone();
                    path.extend(segments.iter().cloned());
                    out.push(path);
                }
            }
        }
        out.push(segments.to_vec());
        out
    }

    /// Reports `why` under `tokens`, unless a `#[deterministic]` allows it (races and joins
    /// are never allowed: the journal cannot replay them).
    fn report(&mut self, tokens: impl ToTokens, what: String, why: Why) {
        let (does, instead) = why;
        let mut unless = "";
        if let Some(mark) = self.marks.last_mut() {
            mark.used = true;
            if why != RACE && why != JOIN {
                return;
            }
            unless = " (`#[deterministic]` does not cover it: no call can make the timing of \
                       futures the same on replay)";
        }
        self.errors.under(
            tokens,
            format!("{what} {does}; a process must replay exactly: {instead}{unless}"),
        );
    }

    fn check_path(&mut self, path: &syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        let written = segments.join("::");
        for full in self.resolved(&segments) {
            if let Some(why) = nondeterministic(&full) {
                let full = full.join("::");
                let what = if full == written {
                    format!("`{written}`")
                } else {
                    format!("`{written}` (`{full}`)")
                };
                self.report(path, what, why);
                return;
            }
        }
    }

    fn check_method(&mut self, m: &syn::ExprMethodCall) {
        if !m.args.is_empty() {
            return;
        }
        let name = m.method.to_string();
        let why = if FS_METHODS.contains(&name.as_str()) {
            FS_QUERY
        } else if name == "elapsed" {
            CLOCK
        } else {
            return;
        };
        let mut parens = Group::new(Delimiter::Parenthesis, TokenStream::new());
        parens.set_span(m.paren_token.span.join());
        let (dot, method) = (&m.dot_token, &m.method);
        self.report(quote!(#dot #method #parens), format!("`.{name}()`"), why);
    }

    /// Visits `f` under a `#[deterministic]` mark if `attrs` has one; a mark that allowed
    /// nothing is an error (the escape hatch stays narrow).
    fn marked(&mut self, attrs: &[Attribute], f: impl FnOnce(&mut Self)) {
        let Some(attr) = attrs.iter().find(|a| is_mark(a)) else {
            return f(self);
        };
        self.marks.push(Mark {
            attr: attr.to_token_stream(),
            used: false,
        });
        f(self);
        let mark = self.marks.pop().expect("pushed above");
        if !mark.used {
            self.errors.under(
                mark.attr,
                "this `#[deterministic]` allows nothing: it goes on a statement or expression \
                 that makes a call the process checks as non-deterministic (the wall clock, \
                 randomness, the environment, I/O, ...) and that you know gives the same \
                 result on every replay; remove it",
            );
        }
    }

    /// `PAT = parallel!(..)` (under `?`, `.await`, parentheses): no branch may use a name that
    /// PAT binds to a sibling branch's result.
    fn check_parallel_binding(&mut self, pat: &Pat, init: &Expr, binder: Binder) {
        let Some(mac) = parallel_macro(init) else {
            return;
        };
        let Some(parsed) = macro_args(mac) else {
            return;
        };
        let results = result_names(pat, parsed.branches.len());
        for (i, branch) in parsed.branches.iter().enumerate() {
            let names: HashSet<String> = results
                .iter()
                .filter(|(_, producer)| *producer != Some(i))
                .map(|(name, _)| name.to_string())
                .collect();
            if names.is_empty() {
                continue;
            }
            let mut uses = FreeUses {
                names: &names,
                scopes: Scopes::default(),
                found: Vec::new(),
            };
            uses.visit_expr(branch);
            for used in uses.found {
                let name = used.to_string();
                let producer = results
                    .iter()
                    .find(|(n, _)| *n == name)
                    .and_then(|(_, p)| *p)
                    .map(|p| (p, &parsed.branches[p]));
                let earlier = matches!(binder, Binder::Assign) || self.scopes.contains(&name);
                self.errors.at(
                    used.span(),
                    dependent_branch(&name, i, producer, earlier, binder),
                );
            }
        }
    }
}

/// The message for branch `user` using `name`, which names the result of `producer` (a branch
/// index and expression; `None`: the whole block).
fn dependent_branch(
    name: &str,
    user: usize,
    producer: Option<(usize, &Expr)>,
    earlier: bool,
    binder: Binder,
) -> String {
    let user = user + 1;
    let (what, fix) = match producer {
        Some((p, expr)) => {
            let p = p + 1;
            match describe(expr) {
                Some(call) => (
                    format!("the result of branch {p} ({call})"),
                    format!("await {call} before the `parallel!` and pass its result in"),
                ),
                None => (
                    format!("the result of branch {p}"),
                    "compute it before the `parallel!` and pass it in".to_string(),
                ),
            }
        }
        None => (
            "the result of this `parallel!`".to_string(),
            format!("compute what branch {user} needs before the `parallel!`"),
        ),
    };
    if earlier {
        let by = match binder {
            Binder::Let => "this `let`",
            Binder::Assign => "this assignment",
        };
        format!(
            "this `{name}` is the earlier variable, not {what} that {by} gives the same name: \
             branches of a `parallel!` run at the same time, so branch {user} cannot use a \
             sibling's result; to use the result, {fix}; to use the earlier value, give the \
             result another name"
        )
    } else {
        format!(
            "`{name}` is {what} of this `parallel!`, which runs at the same time as branch \
             {user}, so it does not exist yet: {fix}"
        )
    }
}

/// `` `fetch(..)` `` for a branch that calls a function or method, `None` otherwise.
fn describe(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Call(call) => match &*call.func {
            Expr::Path(p) => Some(format!("`{}(..)`", source_text(&p.path))),
            _ => None,
        },
        Expr::MethodCall(m) => Some(format!("`.{}(..)`", m.method)),
        Expr::Paren(p) => describe(&p.expr),
        _ => None,
    }
}

/// The names a pattern binds, each with the branch whose result it names: element `i` of a
/// tuple pattern names branch `i` (counted from the end after a `..`); any other pattern names
/// the whole result.
fn result_names(pat: &Pat, branches: usize) -> Vec<(Ident, Option<usize>)> {
    match pat {
        Pat::Type(t) => result_names(&t.pat, branches),
        Pat::Paren(p) => result_names(&p.pat, branches),
        Pat::Tuple(t) => {
            let elems: Vec<&Pat> = t.elems.iter().collect();
            let rest = elems.iter().position(|p| matches!(p, Pat::Rest(_)));
            let mut out = Vec::new();
            for (k, elem) in elems.iter().enumerate() {
                let index = match rest {
                    Some(r) if k > r => (branches + k).checked_sub(elems.len()),
                    _ => Some(k),
                };
                let mut names = Vec::new();
                pat_idents(elem, &mut names);
                out.extend(names.into_iter().map(|n| (n, index)));
            }
            out
        }
        other => {
            let mut names = Vec::new();
            pat_idents(other, &mut names);
            names.into_iter().map(|n| (n, None)).collect()
        }
    }
}

/// Names bound by enclosing blocks, closures, arms and loops, innermost last; for a `let`
/// of one name whose value may be a task, or run one (`let store = save_user;`, `let f = |x|
/// save(x);`, `let fut = save(x);`), that value, so the access check can follow the name.
#[derive(Default, Clone)]
pub(crate) struct Scopes(Vec<HashMap<String, Option<Rc<Expr>>>>);

impl Scopes {
    pub(crate) fn new(names: HashSet<String>) -> Scopes {
        Scopes(vec![names.into_iter().map(|n| (n, None)).collect()])
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|s| s.contains_key(name))
    }

    /// `None`: not a local; `Some(None)`: a local of unknown value; `Some(Some(e))`: a local
    /// bound to `e`.
    pub(crate) fn value(&self, name: &str) -> Option<Option<Rc<Expr>>> {
        self.0.iter().rev().find_map(|s| s.get(name).cloned())
    }

    pub(crate) fn bind(&mut self, pat: &Pat) {
        let mut names = Vec::new();
        pat_idents(pat, &mut names);
        let top = self.top();
        top.extend(names.iter().map(|n| (n.to_string(), None)));
    }

    fn top(&mut self) -> &mut HashMap<String, Option<Rc<Expr>>> {
        if self.0.is_empty() {
            self.0.push(HashMap::new());
        }
        self.0.last_mut().expect("pushed above")
    }

    /// Binds a `let`'s names, with the value when it binds one name to a value that may be a
    /// task or run one.
    pub(crate) fn bind_local(&mut self, local: &syn::Local) {
        let name = match &local.pat {
            Pat::Ident(p) if p.subpat.is_none() => Some(&p.ident),
            Pat::Type(t) => match &*t.pat {
                Pat::Ident(p) if p.subpat.is_none() => Some(&p.ident),
                _ => None,
            },
            _ => None,
        };
        let value = local
            .init
            .as_ref()
            .filter(|init| init.diverge.is_none() && may_run_a_task(&init.expr));
        match (name, value) {
            (Some(name), Some(init)) => {
                let value = Rc::new((*init.expr).clone());
                self.top().insert(name.to_string(), Some(value));
            }
            _ => self.bind(&local.pat),
        }
    }
}

/// Whether a `let`'s value may be a task, or run one when called or awaited.
fn may_run_a_task(e: &Expr) -> bool {
    match e {
        Expr::Path(_) | Expr::Closure(_) | Expr::Call(_) | Expr::Async(_) => true,
        Expr::Macro(m) => is_parallel(&m.mac),
        Expr::Paren(p) => may_run_a_task(&p.expr),
        Expr::Reference(r) => may_run_a_task(&r.expr),
        _ => false,
    }
}

/// A visitor that keeps [`Scopes`]; the `walk_*` functions below do the binding.
pub(crate) trait Scoped<'ast>: Visit<'ast> {
    /// Whether the scopes keep the values of `let`s (see [`Scopes`]).
    const VALUES: bool = false;
    fn scopes(&mut self) -> &mut Scopes;
}

fn scoped<'ast, V: Scoped<'ast>>(v: &mut V, f: impl FnOnce(&mut V)) {
    v.scopes().0.push(HashMap::new());
    f(v);
    v.scopes().0.pop();
}

pub(super) fn walk_block<'ast, V: Scoped<'ast>>(v: &mut V, b: &'ast Block) {
    scoped(v, |v| {
        for stmt in &b.stmts {
            match stmt {
                // `visit_local` visits the initializer; the names exist after it.
                Stmt::Local(local) => {
                    v.visit_local(local);
                    if V::VALUES {
                        v.scopes().bind_local(local);
                    } else {
                        v.scopes().bind(&local.pat);
                    }
                }
                other => v.visit_stmt(other),
            }
        }
    });
}

pub(super) fn walk_local_init<'ast, V: Scoped<'ast>>(v: &mut V, local: &'ast syn::Local) {
    if let Some(init) = &local.init {
        v.visit_expr(&init.expr);
        if let Some((_, diverge)) = &init.diverge {
            v.visit_expr(diverge);
        }
    }
}

pub(super) fn walk_closure<'ast, V: Scoped<'ast>>(v: &mut V, c: &'ast syn::ExprClosure) {
    scoped(v, |v| {
        c.inputs.iter().for_each(|p| v.scopes().bind(p));
        v.visit_expr(&c.body);
    });
}

pub(super) fn walk_arm<'ast, V: Scoped<'ast>>(v: &mut V, arm: &'ast syn::Arm) {
    scoped(v, |v| {
        v.scopes().bind(&arm.pat);
        // syn 3 keeps a guard in the pattern: `Some(x) if x > 0 => ...`.
        if let Pat::Guard(g) = &arm.pat {
            v.visit_expr(&g.guard);
        }
        v.visit_expr(&arm.body);
    });
}

/// The `&&`-separated parts of an `if` or `while` condition, `let`s included.
fn conjuncts(cond: &Expr) -> Vec<&Expr> {
    match cond {
        Expr::Binary(b) if matches!(b.op, syn::BinOp::And(_)) => {
            let mut parts = conjuncts(&b.left);
            parts.extend(conjuncts(&b.right));
            parts
        }
        other => vec![other],
    }
}

/// A condition whose `let`s bind names for `body`.
pub(super) fn walk_conditional<'ast, V: Scoped<'ast>>(
    v: &mut V,
    cond: &'ast Expr,
    body: &'ast Block,
) {
    scoped(v, |v| {
        for part in conjuncts(cond) {
            match part {
                Expr::Let(l) => {
                    v.visit_expr(&l.expr);
                    v.scopes().bind(&l.pat);
                }
                other => v.visit_expr(other),
            }
        }
        v.visit_block(body);
    });
}

pub(super) fn walk_if<'ast, V: Scoped<'ast>>(v: &mut V, e: &'ast syn::ExprIf) {
    walk_conditional(v, &e.cond, &e.then_branch);
    if let Some((_, els)) = &e.else_branch {
        v.visit_expr(els);
    }
}

pub(super) fn walk_for<'ast, V: Scoped<'ast>>(v: &mut V, e: &'ast syn::ExprForLoop) {
    v.visit_expr(&e.expr);
    scoped(v, |v| {
        v.scopes().bind(&e.pat);
        v.visit_block(&e.body);
    });
}

/// Visits the arguments of a macro whose body is comma-separated expressions (`parallel!`,
/// `format!`, `vec!`, ...); other macros are opaque. Of a named argument (`name = value`, as
/// in `format!("{name}", name = value)`) only the value is visited.
pub(super) fn walk_macro_args<V: for<'a> Visit<'a>>(v: &mut V, mac: &Macro) {
    if let Some(parsed) = macro_args(mac) {
        for e in &parsed.branches {
            match named_arg(e) {
                Some((_, value)) => v.visit_expr(value),
                None => v.visit_expr(e),
            }
        }
    }
}

/// `name = value` as a macro argument.
fn named_arg(e: &Expr) -> Option<(&Ident, &Expr)> {
    match e {
        Expr::Assign(a) => match &*a.left {
            Expr::Path(p) if p.qself.is_none() => Some((p.path.get_ident()?, &a.right)),
            _ => None,
        },
        _ => None,
    }
}

/// The attributes of an expression.
fn expr_attrs(e: &Expr) -> &[Attribute] {
    match e {
        Expr::Array(syn::ExprArray { attrs, .. })
        | Expr::Assign(syn::ExprAssign { attrs, .. })
        | Expr::Async(syn::ExprAsync { attrs, .. })
        | Expr::Await(syn::ExprAwait { attrs, .. })
        | Expr::Binary(syn::ExprBinary { attrs, .. })
        | Expr::Block(syn::ExprBlock { attrs, .. })
        | Expr::Break(syn::ExprBreak { attrs, .. })
        | Expr::Call(syn::ExprCall { attrs, .. })
        | Expr::Cast(syn::ExprCast { attrs, .. })
        | Expr::Closure(syn::ExprClosure { attrs, .. })
        | Expr::Const(syn::ExprConst { attrs, .. })
        | Expr::Continue(syn::ExprContinue { attrs, .. })
        | Expr::Field(syn::ExprField { attrs, .. })
        | Expr::ForLoop(syn::ExprForLoop { attrs, .. })
        | Expr::Group(syn::ExprGroup { attrs, .. })
        | Expr::If(syn::ExprIf { attrs, .. })
        | Expr::Index(syn::ExprIndex { attrs, .. })
        | Expr::Infer(syn::ExprInfer { attrs, .. })
        | Expr::Let(syn::ExprLet { attrs, .. })
        | Expr::Lit(syn::ExprLit { attrs, .. })
        | Expr::Loop(syn::ExprLoop { attrs, .. })
        | Expr::Macro(syn::ExprMacro { attrs, .. })
        | Expr::Match(syn::ExprMatch { attrs, .. })
        | Expr::MethodCall(syn::ExprMethodCall { attrs, .. })
        | Expr::Paren(syn::ExprParen { attrs, .. })
        | Expr::Path(syn::ExprPath { attrs, .. })
        | Expr::Range(syn::ExprRange { attrs, .. })
        | Expr::RawAddr(syn::ExprRawAddr { attrs, .. })
        | Expr::Reference(syn::ExprReference { attrs, .. })
        | Expr::Repeat(syn::ExprRepeat { attrs, .. })
        | Expr::Return(syn::ExprReturn { attrs, .. })
        | Expr::Struct(syn::ExprStruct { attrs, .. })
        | Expr::Try(syn::ExprTry { attrs, .. })
        | Expr::TryBlock(syn::ExprTryBlock { attrs, .. })
        | Expr::Tuple(syn::ExprTuple { attrs, .. })
        | Expr::Unary(syn::ExprUnary { attrs, .. })
        | Expr::Unsafe(syn::ExprUnsafe { attrs, .. })
        | Expr::While(syn::ExprWhile { attrs, .. })
        | Expr::Yield(syn::ExprYield { attrs, .. }) => attrs,
        _ => &[],
    }
}

/// `#[task]`, `#[minder::task]`, `#[task(..)]`.
fn is_task_attr(attr: &Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|s| s.ident == "task")
}

impl<'ast> Scoped<'ast> for Checker<'_> {
    const VALUES: bool = true;
    fn scopes(&mut self) -> &mut Scopes {
        &mut self.scopes
    }
}

impl Checker<'_> {
    /// A `fn` declared in the body: its own parameters, the `use`s around it, not probed.
    fn visit_fn_item(&mut self, sig: &syn::Signature, block: &Block) {
        let outer = std::mem::replace(&mut self.scopes, Scopes::new(params(sig)));
        self.in_fn_item += 1;
        self.visit_block(block);
        self.in_fn_item -= 1;
        self.scopes = outer;
    }
}

impl<'ast> Visit<'ast> for Checker<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        match item {
            // A task declared in the body is no part of the process: it runs as a step.
            syn::Item::Fn(f) if f.attrs.iter().any(is_task_attr) => {}
            syn::Item::Fn(f) => self.visit_fn_item(&f.sig, &f.block),
            syn::Item::Impl(i) => {
                for it in &i.items {
                    if let syn::ImplItem::Fn(f) = it {
                        self.visit_fn_item(&f.sig, &f.block);
                    }
                }
            }
            _ => {}
        }
    }

    fn visit_stmt(&mut self, stmt: &'ast Stmt) {
        match stmt {
            Stmt::Macro(m) => self.marked(&m.attrs, |v| v.visit_macro(&m.mac)),
            other => visit::visit_stmt(self, other),
        }
    }

    fn visit_expr(&mut self, e: &'ast Expr) {
        self.marked(expr_attrs(e), |v| visit::visit_expr(v, e));
    }

    fn visit_expr_path(&mut self, e: &'ast syn::ExprPath) {
        self.check_path(&e.path);
    }

    fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
        self.check_method(m);
        visit::visit_expr_method_call(self, m);
    }

    fn visit_local(&mut self, local: &'ast syn::Local) {
        self.marked(&local.attrs, |v| {
            if let Some(init) = &local.init {
                v.check_parallel_binding(&local.pat, &init.expr, Binder::Let);
            }
            walk_local_init(v, local);
        });
    }

    fn visit_expr_assign(&mut self, e: &'ast syn::ExprAssign) {
        if let Ok(pat) = syn::parse2::<PatOnly>(quote::ToTokens::to_token_stream(&e.left)) {
            self.check_parallel_binding(&pat.0, &e.right, Binder::Assign);
        }
        visit::visit_expr_assign(self, e);
    }

    fn visit_block(&mut self, b: &'ast Block) {
        let uses = Uses::of(b);
        let pushed_uses = uses.is_some();
        self.uses.extend(uses);
        // Items and `use`s of a nested block are not visible from the top of the body.
        let declares = self.depth > 0 && super::access::Hidden::of(b).is_some();
        self.in_declaring_block += usize::from(declares);
        self.depth += 1;
        walk_block(self, b);
        self.depth -= 1;
        self.in_declaring_block -= usize::from(declares);
        if pushed_uses {
            self.uses.pop();
        }
    }

    fn visit_expr_closure(&mut self, c: &'ast syn::ExprClosure) {
        walk_closure(self, c);
    }

    fn visit_arm(&mut self, arm: &'ast syn::Arm) {
        walk_arm(self, arm);
    }

    fn visit_expr_if(&mut self, e: &'ast syn::ExprIf) {
        walk_if(self, e);
    }

    fn visit_expr_while(&mut self, e: &'ast syn::ExprWhile) {
        walk_conditional(self, &e.cond, &e.body);
    }

    fn visit_expr_for_loop(&mut self, e: &'ast syn::ExprForLoop) {
        walk_for(self, e);
    }

    fn visit_macro(&mut self, mac: &'ast Macro) {
        let last = mac.path.segments.last().map(|s| s.ident.to_string());
        if let Some(why) = last.as_deref().and_then(racing_macro) {
            let (path, bang) = (&mac.path, &mac.bang_token);
            self.report(
                quote!(#path #bang),
                format!("`{}!`", source_text(path)),
                why,
            );
        }
        if is_parallel(mac) && self.in_fn_item == 0 {
            if let Some(parsed) = macro_args(mac) {
                let at_site = self.in_declaring_block > 0;
                let block = probe_block(mac, &parsed.branches, &self.scopes, at_site);
                self.blocks.push(block);
            }
        }
        walk_macro_args(self, mac);
    }
}

struct PatOnly(Pat);

impl syn::parse::Parse for PatOnly {
    fn parse(input: syn::parse::ParseStream<'_>) -> syn::Result<Self> {
        Pat::parse_single(input).map(PatOnly)
    }
}

/// The `parallel!` invocation an initializer consists of, under `?`, `.await` and parentheses.
pub(crate) fn parallel_macro(expr: &Expr) -> Option<&Macro> {
    match expr {
        Expr::Macro(m) if is_parallel(&m.mac) => Some(&m.mac),
        Expr::Try(t) => parallel_macro(&t.expr),
        Expr::Await(a) => parallel_macro(&a.base),
        Expr::Paren(p) => parallel_macro(&p.expr),
        _ => None,
    }
}

pub(crate) fn is_parallel(mac: &Macro) -> bool {
    mac.path
        .segments
        .last()
        .is_some_and(|s| s.ident == "parallel")
}

/// The identifiers a pattern binds.
fn pat_idents(pat: &Pat, out: &mut Vec<Ident>) {
    match pat {
        Pat::Ident(p) => {
            out.push(p.ident.clone());
            if let Some((_, sub)) = &p.subpat {
                pat_idents(sub, out);
            }
        }
        Pat::Tuple(t) => t.elems.iter().for_each(|p| pat_idents(p, out)),
        Pat::TupleStruct(t) => t.elems.iter().for_each(|p| pat_idents(p, out)),
        Pat::Struct(s) => s.fields.iter().for_each(|f| pat_idents(&f.pat, out)),
        Pat::Slice(s) => s.elems.iter().for_each(|p| pat_idents(p, out)),
        Pat::Reference(r) => pat_idents(&r.pat, out),
        Pat::Type(t) => pat_idents(&t.pat, out),
        Pat::Paren(p) => pat_idents(&p.pat, out),
        Pat::Or(o) => o.cases.iter().for_each(|p| pat_idents(p, out)),
        Pat::Guard(g) => pat_idents(&g.pat, out),
        _ => {}
    }
}

/// Finds free uses of `names` in a branch: not fields, not paths of several segments, not the
/// callee of a call (`lint(..)` calls the task even when a result is named `lint`), and not
/// names the branch binds itself. `{name}` captures in a format string count as uses.
struct FreeUses<'n> {
    names: &'n HashSet<String>,
    scopes: Scopes,
    found: Vec<Ident>,
}

impl FreeUses<'_> {
    fn is_free(&self, name: &str) -> bool {
        self.names.contains(name) && !self.scopes.contains(name)
    }
}

impl<'ast> Scoped<'ast> for FreeUses<'_> {
    fn scopes(&mut self) -> &mut Scopes {
        &mut self.scopes
    }
}

impl<'ast> Visit<'ast> for FreeUses<'_> {
    fn visit_item(&mut self, _: &'ast syn::Item) {}

    fn visit_expr_path(&mut self, e: &'ast syn::ExprPath) {
        if e.qself.is_none() && e.path.segments.len() == 1 && e.path.leading_colon.is_none() {
            let ident = &e.path.segments[0].ident;
            if self.is_free(&ident.to_string()) {
                self.found.push(ident.clone());
            }
        }
    }

    fn visit_expr_call(&mut self, e: &'ast syn::ExprCall) {
        match &*e.func {
            Expr::Path(p) if p.path.segments.len() == 1 => {}
            other => self.visit_expr(other),
        }
        e.args.iter().for_each(|a| self.visit_expr(a));
    }

    fn visit_local(&mut self, local: &'ast syn::Local) {
        walk_local_init(self, local);
    }

    fn visit_block(&mut self, b: &'ast Block) {
        walk_block(self, b);
    }

    fn visit_expr_closure(&mut self, c: &'ast syn::ExprClosure) {
        walk_closure(self, c);
    }

    fn visit_arm(&mut self, arm: &'ast syn::Arm) {
        walk_arm(self, arm);
    }

    fn visit_expr_if(&mut self, e: &'ast syn::ExprIf) {
        walk_if(self, e);
    }

    fn visit_expr_while(&mut self, e: &'ast syn::ExprWhile) {
        walk_conditional(self, &e.cond, &e.body);
    }

    fn visit_expr_for_loop(&mut self, e: &'ast syn::ExprForLoop) {
        walk_for(self, e);
    }

    fn visit_macro(&mut self, mac: &'ast Macro) {
        walk_macro_args(self, mac);
        // Implicit captures of the format string: `format!("{page}")`, `println!("{page:?}")`,
        // `format!("{:w$}", x)`; not `{{page}}` (escaped) nor a named argument (`page = ..`).
        let Some(parsed) = macro_args(mac) else {
            return;
        };
        let Some(s) = format_string(mac, &parsed.branches) else {
            return;
        };
        let named: HashSet<String> = parsed
            .branches
            .iter()
            .filter_map(named_arg)
            .map(|(name, _)| name.to_string())
            .collect();
        for name in format_captures(&s.value()) {
            if self.names.contains(&name) && !named.contains(&name) && !self.scopes.contains(&name)
            {
                self.found.push(Ident::new(&name, s.span()));
            }
        }
    }
}

/// The format string of a call of a formatting macro (std's, and the common logging and error
/// crates'), at its place among the arguments (`write!(f, "..")`, `assert_eq!(a, b, "..")`).
/// Other macros take no format string: a string literal there is text.
fn format_string<'a>(mac: &Macro, args: &'a [Expr]) -> Option<&'a syn::LitStr> {
    let name = mac.path.segments.last()?.ident.to_string();
    let at = match name.as_str() {
        "format" | "format_args" | "print" | "println" | "eprint" | "eprintln" | "panic"
        | "unreachable" | "todo" | "unimplemented" | "anyhow" | "bail" | "eyre" => 0,
        "write" | "writeln" | "assert" | "debug_assert" | "ensure" => 1,
        "assert_eq" | "assert_ne" | "debug_assert_eq" | "debug_assert_ne" => 2,
        // `log` / `tracing`: the message is the first string literal after the fields.
        "trace" | "debug" | "info" | "warn" | "error" | "event" | "log" => {
            return args.iter().find_map(|a| match a {
                Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s),
                _ => None,
            });
        }
        _ => return None,
    };
    match args.get(at)? {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => Some(s),
        _ => None,
    }
}

/// The names a format string captures from the scope: `{name}`, `{name:?}`, and the width and
/// precision arguments `{:name$}`, `{:.name$}`. Escaped braces (`{{`, `}}`) and positional
/// arguments (`{}`, `{0}`, `{:1$}`, `{:.*}`) capture nothing.
pub(super) fn format_captures(s: &str) -> Vec<String> {
    fn ident(s: &str) -> Option<String> {
        let s = s.trim();
        let s = s.strip_prefix("r#").unwrap_or(s);
        let mut chars = s.chars();
        let first = chars.next()?;
        let ok = (first.is_alphabetic() || first == '_')
            && chars.all(|c| c.is_alphanumeric() || c == '_')
            && s != "_";
        ok.then(|| s.to_string())
    }
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '{' if chars.get(i + 1) == Some(&'{') => i += 2,
            '}' if chars.get(i + 1) == Some(&'}') => i += 2,
            '{' => {
                let Some(len) = chars[i + 1..].iter().position(|c| *c == '}') else {
                    break;
                };
                let inner: String = chars[i + 1..i + 1 + len].iter().collect();
                let (arg, spec) = inner.split_once(':').unwrap_or((&inner, ""));
                out.extend(ident(arg));
                // `name$` in the spec: a width or precision taken from `name`.
                let spec: Vec<char> = spec.chars().collect();
                for (k, c) in spec.iter().enumerate() {
                    if *c != '$' {
                        continue;
                    }
                    let start = spec[..k]
                        .iter()
                        .rposition(|c| !(c.is_alphanumeric() || *c == '_'))
                        .map_or(0, |p| p + 1);
                    let name: String = spec[start..k].iter().collect();
                    out.extend(ident(&name));
                }
                i += len + 2;
            }
            _ => i += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_in(block: proc_macro2::TokenStream) -> Vec<String> {
        let func: ItemFn = syn::parse2(quote::quote! {
            async fn p(ctx: &Ctx, input: Input) -> Result<(), ProcessError> #block
        })
        .unwrap();
        let mut errors = Errors::default();
        body(&func, &mut errors);
        errors.messages()
    }

    #[test]
    fn sibling_result() {
        let errs = errors_in(quote::quote!({
            let (a, b) = parallel!(x(), y(a))?;
        }));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("`a` is the result of branch 1 (`x(..)`)"),
            "{errs:?}"
        );
    }

    #[test]
    fn earlier_variable_of_the_same_name() {
        let errs = errors_in(quote::quote!({
            let a = 1;
            let (a, b) = parallel!(x(), y(a))?;
        }));
        assert!(
            errs[0].starts_with("this `a` is the earlier variable"),
            "{errs:?}"
        );
        let errs = errors_in(quote::quote!({
            let (input, b) = parallel!(x(), y(input))?;
        }));
        assert!(
            errs[0].starts_with("this `input` is the earlier variable"),
            "{errs:?}"
        );
    }

    #[test]
    fn legal_look_alikes() {
        for ok in [
            quote::quote!({
                let (a, b) = parallel!(x(), y(|a| a + 1))?;
            }),
            quote::quote!({
                let (a, b) = parallel!(x(), y(cfg.a))?;
            }),
            quote::quote!({
                let (a, b) = parallel!(x(), async {
                    let a = z().await?;
                    y(a).await
                })?;
            }),
            quote::quote!({
                let (a, b) = parallel!(a(), b())?;
            }),
            quote::quote!({
                let (a, b) = parallel!(x(a), y())?;
            }),
            quote::quote!({
                let (a, b) = parallel!(
                    x(),
                    match q {
                        Some(a) => y(a),
                        None => y(0),
                    }
                )?;
            }),
            quote::quote!({
                let (a, b) = parallel!(x(), async {
                    if let Some(a) = q {
                        y(a).await
                    } else {
                        z().await
                    }
                })?;
            }),
        ] {
            assert_eq!(errors_in(ok.clone()), Vec::<String>::new(), "{ok}");
        }
    }

    #[test]
    fn rest_patterns_and_whole_bindings() {
        let errs = errors_in(quote::quote!({
            let (a, .., c) = parallel!(x(), y(c), z())?;
        }));
        assert!(errs[0].contains("branch 3 (`z(..)`)"), "{errs:?}");
        let errs = errors_in(quote::quote!({
            let r = parallel!(x(), y(r.0))?;
        }));
        assert!(
            errs[0].starts_with("`r` is the result of this `parallel!`"),
            "{errs:?}"
        );
    }

    #[test]
    fn match_guards() {
        // syn 3 parses a guard into the arm's pattern (`Pat::Guard`): a sibling's result in
        // the guard is still found, and a name the arm binds is still the arm's own.
        let errs = errors_in(quote::quote!({
            let (a, b) = parallel!(
                x(),
                y(match n {
                    Some(v) if v == a => 1,
                    _ => 2,
                })
            )?;
        }));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("`a` is the result of branch 1"),
            "{errs:?}"
        );
        let errs = errors_in(quote::quote!({
            let (a, b) = parallel!(
                x(),
                y(match n {
                    Some(a) if a > 0 => a,
                    _ => 2,
                })
            )?;
        }));
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn format_capture_of_a_result() {
        let errs = errors_in(quote::quote!({
            let (a, b) = parallel!(x(), y(format!("{a}")))?;
        }));
        assert_eq!(errs.len(), 1, "{errs:?}");
    }

    #[test]
    fn races_and_joins() {
        let errs = errors_in(quote::quote!({
            tokio::select! { a = x() => a, b = y() => b };
            let r = futures::future::select_all(v).await;
            let j = futures::join!(a(), b());
            let t = join_all(v).await;
            let o = tokio::time::timeout(d, x()).await;
            let s = ctx.select(a, b).await;
            let w = items.join(",");
            let p = path.join("x");
            let q = join(a, b);
            let z = select(a, b);
            let f = format!("{}", vec![1].len());
            let n = parallel!(a(), b())?;
        }));
        assert_eq!(errs.len(), 5, "{errs:?}");
        assert!(
            errs[0].starts_with("`tokio::select!` picks the first"),
            "{errs:?}"
        );
        assert!(
            errs[2].starts_with("`futures::join!` polls futures"),
            "{errs:?}"
        );
    }

    #[test]
    fn format_strings() {
        assert_eq!(
            format_captures("{a} {{b}} {c:?} {:w$} {:.p$} {0} {} {:1$} {:.*} {d:>width$} }}{{e}}"),
            ["a", "c", "w", "p", "d", "width"]
        );
        assert_eq!(
            format_captures("{r#type} {_x} {_} {é}"),
            ["type", "_x", "é"]
        );
        assert!(format_captures("{{a}}").is_empty());
        for ok in [
            quote::quote!({
                let (a, b) = parallel!(x(), y(format!("{{a}}")))?;
            }),
            quote::quote!({
                let (a, b) = parallel!(x(), y(format!("{a}", a = 1)))?;
            }),
            quote::quote!({
                let (a, b) = parallel!(x(), y(format!("{z:a}")))?;
            }),
            quote::quote!({
                let (a, b) = parallel!(x(), async {
                    let mut s = String::new();
                    write!(s, "{}", "{a}")?;
                    y(s).await
                })?;
            }),
        ] {
            assert_eq!(errors_in(ok.clone()), Vec::<String>::new(), "{ok}");
        }
        for bad in [
            quote::quote!({
                let (a, b) = parallel!(x(), y(format!("{:a$}", 1)))?;
            }),
            quote::quote!({
                let (a, b) = parallel!(x(), async {
                    let mut s = String::new();
                    write!(s, "{a}")?;
                    y(s).await
                })?;
            }),
            quote::quote!({
                let (a, b) = parallel!(x(), y(format!("{0}{a}", c = 1)))?;
            }),
        ] {
            assert_eq!(errors_in(bad.clone()).len(), 1, "{bad}");
        }
    }

    #[test]
    fn uses_renames_and_nested_fns() {
        let errs = errors_in(quote::quote!({
            use std::env::*;
            use std::thread::{self as threads, spawn};
            use std::time::SystemTime as Clock;
            let t = Clock::now();
            let h = spawn(|| 1);
            let g = threads::spawn(|| 1);
            let v = var("HOME");
            fn helper() -> u32 {
                std::process::id()
            }
            #[task]
            async fn stamp() -> Result<u64, TaskError> {
                Ok(std::time::SystemTime::now()
                    .elapsed()
                    .map_or(0, |d| d.as_secs()))
            }
        }));
        assert_eq!(errs.len(), 5, "{errs:?}");
        assert!(
            errs[0].starts_with("`Clock::now` (`std::time::SystemTime::now`) reads the wall clock"),
            "{errs:?}"
        );
        assert!(errs[3].starts_with("`var` (`std::env::var`)"), "{errs:?}");
        // A local of the same name is not the import.
        let errs = errors_in(quote::quote!({
            use std::thread::spawn;
            let spawn = |f: fn() -> u8| f();
            let x = spawn(|| 1);
        }));
        assert_eq!(errs, Vec::<String>::new());
    }

    #[test]
    fn identity_clock_and_fs_methods() {
        let errs = errors_in(quote::quote!({
            let p = std::process::id();
            let t = std::thread::current().id();
            let e = std::time::UNIX_EPOCH.elapsed();
            let x = std::path::Path::new("a").exists();
            let m = file.metadata();
            let d = jiff::Timestamp::now();
            let o = time::OffsetDateTime::now_utc();
            let ok = map.contains_key("a");
            let n = other.exists(1);
        }));
        assert_eq!(errs.len(), 7, "{errs:?}");
        assert!(
            errs[2].starts_with("`.elapsed()` reads the wall clock"),
            "{errs:?}"
        );
        assert!(
            errs[3].starts_with("`.exists()` asks the file system"),
            "{errs:?}"
        );
    }

    #[test]
    fn deterministic_marks() {
        let errs = errors_in(quote::quote!({
            #[deterministic]
            let t = std::time::Instant::now();
            let n = #[minder::deterministic]
            std::env::var("X");
            #[deterministic]
            let x = 1;
            #[deterministic]
            tokio::select! { a = x() => a };
        }));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with("this `#[deterministic]` allows nothing"),
            "{errs:?}"
        );
        assert!(errs[1].starts_with("`tokio::select!` picks"), "{errs:?}");
        assert!(errs[1].contains("does not cover it"), "{errs:?}");
        let stripped = strip_marks(quote::quote!({
            #[deterministic]
            let t = #[minder::deterministic]
            now();
        }));
        assert_eq!(
            stripped.to_string(),
            quote::quote!({
                let t = now();
            })
            .to_string()
        );
    }

    #[test]
    fn nondeterministic_paths() {
        let errs = errors_in(quote::quote!({
            let t = std::time::SystemTime::now();
            let h = RandomState::new();
            let c = calendar.now();
            let d = Clock::now();
        }));
        assert_eq!(errs.len(), 2, "{errs:?}");
    }
}
