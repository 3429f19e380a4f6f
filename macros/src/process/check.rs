//! Checks of a process body that need no type information:
//! - non-deterministic calls outside tasks, each with its deterministic alternative;
//! - `parallel!` branches that use a result bound by the same `let`.
//!
//! Nested items are not entered (they are not the process body); closures and async blocks
//! are, since they run as part of the process.

use crate::options::Errors;
use crate::parallel::Branches;
use proc_macro2::Span;
use std::collections::HashSet;
use syn::spanned::Spanned;
use syn::visit::{self, Visit};
use syn::{Block, Expr, Macro, Pat, Stmt};

pub(crate) fn body(block: &Block, errors: &mut Errors) {
    let mut v = Checker { errors };
    v.visit_block(block);
}

struct Checker<'e> {
    errors: &'e mut Errors,
}

/// What a path refers to when it is non-deterministic, and what to use instead.
fn nondeterministic(segments: &[String]) -> Option<(&'static str, &'static str)> {
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let last = *s.last()?;
    let pair = |a: &str, b: &[&str]| s.windows(2).any(|w| w[0] == a && b.contains(&w[1]));
    const CLOCK: &str = "reads the wall clock, which differs on replay";
    const RANDOM: &str = "is random, which differs on replay";
    const SPAWN: &str = "spawns work the journal does not see";
    const ENV: &str = "reads the environment, which may differ on resume";
    const IO: &str = "does I/O outside a task, so it is neither journaled nor retried";
    const SLEEP: &str = "is a sleep that does not survive a restart";
    if ["SystemTime", "Instant", "Utc", "Local"]
        .iter()
        .any(|t| pair(t, &["now"]))
        || pair("OffsetDateTime", &["now_utc", "now_local"])
    {
        return Some((CLOCK, "use `ctx.now()`, which is recorded and replayed"));
    }
    if pair("rand", &["random", "thread_rng", "rng", "random_range"])
        || last == "thread_rng"
        || last == "OsRng"
        || pair("Uuid", &["new_v4", "now_v7"])
        || s.first() == Some(&"getrandom")
    {
        return Some((
            RANDOM,
            "use `ctx.random()` or `ctx.new_id()`, which are recorded and replayed",
        ));
    }
    if pair("thread", &["spawn", "scope"])
        || pair("tokio", &["spawn"])
        || pair("task", &["spawn", "spawn_blocking", "spawn_local"])
        || last == "spawn_blocking"
    {
        return Some((
            SPAWN,
            "run concurrent work with `parallel!` or `ctx.map`, or spawn inside a `#[task]`",
        ));
    }
    if pair(
        "env",
        &[
            "var", "vars", "var_os", "vars_os", "args", "args_os", "current_dir", "set_var",
            "remove_var", "temp_dir", "home_dir", "set_current_dir",
        ],
    ) {
        return Some((
            ENV,
            "pass the value in the process input, or read it inside a `#[task]`",
        ));
    }
    if pair("thread", &["sleep"]) || pair("time", &["sleep", "sleep_until", "interval", "interval_at"])
    {
        return Some((SLEEP, "use `ctx.sleep(..)` or `ctx.sleep_until(..)`, which are durable"));
    }
    if (s.len() >= 2 && s[s.len() - 2] == "fs")
        || pair("File", &["open", "create", "options", "create_new"])
        || pair("OpenOptions", &["new"])
        || ["TcpStream", "TcpListener", "UdpSocket", "UnixStream", "UnixListener"]
            .iter()
            .any(|t| pair(t, &["connect", "bind"]))
        || pair("Command", &["new"])
        || s.first() == Some(&"reqwest")
        || pair("io", &["stdin"])
    {
        return Some((IO, "move it into a `#[task]`"));
    }
    None
}

impl Checker<'_> {
    fn check_path(&mut self, path: &syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if let Some((why, instead)) = nondeterministic(&segments) {
            let shown = segments.join("::");
            self.errors.at(
                path.span(),
                format!("`{shown}` {why}; a process must replay exactly: {instead}"),
            );
        }
    }

    /// `let PAT = parallel!(..)` (with `?` or `.await`): no branch may use a name PAT binds.
    fn check_local(&mut self, pat: &Pat, init: &Expr) {
        let Some(mac) = parallel_macro(init) else {
            return;
        };
        let Ok(branches) = mac.parse_body::<Branches>() else {
            return;
        };
        let mut bound = Vec::new();
        pat_idents(pat, &mut bound);
        if bound.is_empty() {
            return;
        }
        let names: HashSet<String> = bound.iter().map(|(n, _)| n.clone()).collect();
        for (i, branch) in branches.branches.iter().enumerate() {
            let mut uses = FreeUses {
                names: &names,
                shadowed: Vec::new(),
                found: Vec::new(),
            };
            uses.visit_expr(branch);
            for (name, span) in uses.found {
                let producer = bound
                    .iter()
                    .position(|(n, _)| *n == name)
                    .and_then(|pos| branches.branches.get(pos))
                    .map(|b| format!(" (`{}`)", crate::parallel::branch_label(b)))
                    .unwrap_or_default();
                self.errors.at(
                    span,
                    format!(
                        "branch {i} of this `parallel!` uses `{name}`, the result of a sibling branch{producer}; \
                         branches run at the same time, so `{name}` does not exist yet. Await the producing task \
                         before the `parallel!` and pass its result in (if an outer variable is meant, rename it: \
                         it shares a name with a result of this block)"
                    ),
                );
            }
        }
    }
}

impl<'ast> Visit<'ast> for Checker<'_> {
    fn visit_item(&mut self, _: &'ast syn::Item) {}

    fn visit_expr_path(&mut self, e: &'ast syn::ExprPath) {
        self.check_path(&e.path);
        visit::visit_expr_path(self, e);
    }

    fn visit_local(&mut self, local: &'ast syn::Local) {
        if let Some(init) = &local.init {
            self.check_local(&local.pat, &init.expr);
        }
        visit::visit_local(self, local);
    }

    fn visit_expr_assign(&mut self, e: &'ast syn::ExprAssign) {
        if let Ok(pat) = syn::parse2::<PatOnly>(quote::ToTokens::to_token_stream(&e.left)) {
            self.check_local(&pat.0, &e.right);
        }
        visit::visit_expr_assign(self, e);
    }

    fn visit_macro(&mut self, mac: &'ast Macro) {
        // Look inside macro arguments that parse as expressions (`parallel!`, `format!`, ...).
        if let Ok(branches) = mac.parse_body::<Branches>() {
            for b in &branches.branches {
                self.visit_expr(b);
            }
        }
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

/// The identifiers a pattern binds, with their spans.
fn pat_idents(pat: &Pat, out: &mut Vec<(String, Span)>) {
    match pat {
        Pat::Ident(p) => {
            out.push((p.ident.to_string(), p.ident.span()));
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
        _ => {}
    }
}

/// Finds free uses of `names` in an expression: not fields, not paths with several segments,
/// not names rebound by a closure parameter, a `let`, a `match` arm, an `if let` or a `for`.
struct FreeUses<'n> {
    names: &'n HashSet<String>,
    shadowed: Vec<HashSet<String>>,
    found: Vec<(String, Span)>,
}

impl FreeUses<'_> {
    fn is_shadowed(&self, name: &str) -> bool {
        self.shadowed.iter().any(|s| s.contains(name))
    }

    fn with_bindings(&mut self, pats: &[&Pat], f: impl FnOnce(&mut Self)) {
        let mut bound = Vec::new();
        for p in pats {
            pat_idents(p, &mut bound);
        }
        self.shadowed.push(bound.into_iter().map(|(n, _)| n).collect());
        f(self);
        self.shadowed.pop();
    }
}

impl<'ast> Visit<'ast> for FreeUses<'_> {
    fn visit_item(&mut self, _: &'ast syn::Item) {}

    fn visit_expr_path(&mut self, e: &'ast syn::ExprPath) {
        if e.qself.is_none() && e.path.segments.len() == 1 && e.path.leading_colon.is_none() {
            let name = e.path.segments[0].ident.to_string();
            if self.names.contains(&name) && !self.is_shadowed(&name) {
                self.found.push((name, e.path.span()));
            }
        }
    }

    fn visit_expr_closure(&mut self, c: &'ast syn::ExprClosure) {
        let pats: Vec<&Pat> = c.inputs.iter().collect();
        self.with_bindings(&pats, |v| v.visit_expr(&c.body));
    }

    fn visit_block(&mut self, b: &'ast Block) {
        self.shadowed.push(HashSet::new());
        for stmt in &b.stmts {
            match stmt {
                Stmt::Local(local) => {
                    if let Some(init) = &local.init {
                        self.visit_expr(&init.expr);
                        if let Some((_, diverge)) = &init.diverge {
                            self.visit_expr(diverge);
                        }
                    }
                    let mut bound = Vec::new();
                    pat_idents(&local.pat, &mut bound);
                    let top = self.shadowed.last_mut().expect("pushed above");
                    top.extend(bound.into_iter().map(|(n, _)| n));
                }
                other => self.visit_stmt(other),
            }
        }
        self.shadowed.pop();
    }

    fn visit_arm(&mut self, arm: &'ast syn::Arm) {
        self.with_bindings(&[&arm.pat], |v| {
            if let Some((_, guard)) = &arm.guard {
                v.visit_expr(guard);
            }
            v.visit_expr(&arm.body);
        });
    }

    fn visit_expr_if(&mut self, e: &'ast syn::ExprIf) {
        if let Expr::Let(l) = &*e.cond {
            self.visit_expr(&l.expr);
            self.with_bindings(&[&l.pat], |v| v.visit_block(&e.then_branch));
            if let Some((_, els)) = &e.else_branch {
                self.visit_expr(els);
            }
        } else {
            visit::visit_expr_if(self, e);
        }
    }

    fn visit_expr_while(&mut self, e: &'ast syn::ExprWhile) {
        if let Expr::Let(l) = &*e.cond {
            self.visit_expr(&l.expr);
            self.with_bindings(&[&l.pat], |v| v.visit_block(&e.body));
        } else {
            visit::visit_expr_while(self, e);
        }
    }

    fn visit_expr_for_loop(&mut self, e: &'ast syn::ExprForLoop) {
        self.visit_expr(&e.expr);
        self.with_bindings(&[&e.pat], |v| v.visit_block(&e.body));
    }

    fn visit_macro(&mut self, mac: &'ast Macro) {
        if let Ok(branches) = mac.parse_body::<Branches>() {
            for b in &branches.branches {
                self.visit_expr(b);
            }
        }
    }
}
