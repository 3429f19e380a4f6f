//! Checks of a process body that need no type information:
//! - non-deterministic calls outside tasks, each with its deterministic alternative;
//! - `parallel!` branches that use a result bound by the same `let` (or assignment).
//!
//! Nested items are not entered (they are not the process body); closures and async blocks
//! are, since they run as part of the process. Both visitors track the names bound by blocks,
//! closures, arms and loops, so a rebound name is not mistaken for a `parallel!` result.

use crate::options::{source_text, Errors};
use crate::parallel::macro_args;
use proc_macro2::Ident;
use std::collections::HashSet;
use syn::visit::{self, Visit};
use syn::{Block, Expr, FnArg, ItemFn, Macro, Pat, Stmt};

pub(crate) fn body(func: &ItemFn, errors: &mut Errors) {
    let _parsed = crate::parallel::ParsedMacros::start();
    let mut params = Vec::new();
    for arg in &func.sig.inputs {
        if let FnArg::Typed(pt) = arg {
            pat_idents(&pt.pat, &mut params);
        }
    }
    let mut v = Checker {
        errors,
        scopes: Scopes(vec![params.iter().map(Ident::to_string).collect()]),
    };
    v.visit_block(&func.block);
}

struct Checker<'e> {
    errors: &'e mut Errors,
    scopes: Scopes,
}

/// A race: what it does wrong, and what to use instead.
const RACE: (&str, &str) = (
    "picks the first to finish by timing, which differs on replay",
    "use `ctx.select(..)` or `ctx.race(..)`, which journal the winner",
);

/// A join outside `parallel!`: what it does wrong, and what to use instead.
const JOIN: (&str, &str) = (
    "polls futures outside the journal's branch scopes, so the keys of their steps depend on timing",
    "use `parallel!(..)` (or `ctx.map`)",
);

/// A macro that races or joins futures, by its last segment (`tokio::select!`,
/// `futures::select_biased!`, `futures::join!`, `tokio::try_join!`, ...).
fn racing_macro(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "select" | "select_biased" => Some(RACE),
        "join" | "try_join" => Some(JOIN),
        _ => None,
    }
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
        || pair("RandomState", &["new", "default"])
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
            "set_var",
            "remove_var",
            "temp_dir",
            "home_dir",
            "set_current_dir",
        ],
    ) {
        return Some((
            ENV,
            "pass the value in the process input, or read it inside a `#[task]`",
        ));
    }
    if pair("thread", &["sleep"])
        || pair("time", &["sleep", "sleep_until", "interval", "interval_at"])
    {
        return Some((
            SLEEP,
            "use `ctx.sleep(..)` or `ctx.sleep_until(..)`, which are durable",
        ));
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
        return Some((IO, "move it into a `#[task]`"));
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
    fn check_path(&mut self, path: &syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if let Some((why, instead)) = nondeterministic(&segments) {
            self.errors.under(
                path,
                format!(
                    "`{}` {why}; a process must replay exactly: {instead}",
                    segments.join("::")
                ),
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

/// Names bound by enclosing blocks, closures, arms and loops, innermost last.
#[derive(Default)]
struct Scopes(Vec<HashSet<String>>);

impl Scopes {
    fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|s| s.contains(name))
    }

    fn bind(&mut self, pat: &Pat) {
        let mut names = Vec::new();
        pat_idents(pat, &mut names);
        if self.0.is_empty() {
            self.0.push(HashSet::new());
        }
        let top = self.0.last_mut().expect("pushed above");
        top.extend(names.iter().map(Ident::to_string));
    }
}

/// A visitor that keeps [`Scopes`]; the `walk_*` functions below do the binding.
trait Scoped<'ast>: Visit<'ast> {
    fn scopes(&mut self) -> &mut Scopes;
}

fn scoped<'ast, V: Scoped<'ast>>(v: &mut V, f: impl FnOnce(&mut V)) {
    v.scopes().0.push(HashSet::new());
    f(v);
    v.scopes().0.pop();
}

fn walk_block<'ast, V: Scoped<'ast>>(v: &mut V, b: &'ast Block) {
    scoped(v, |v| {
        for stmt in &b.stmts {
            match stmt {
                // `visit_local` visits the initializer; the names exist after it.
                Stmt::Local(local) => {
                    v.visit_local(local);
                    v.scopes().bind(&local.pat);
                }
                other => v.visit_stmt(other),
            }
        }
    });
}

fn walk_local_init<'ast, V: Scoped<'ast>>(v: &mut V, local: &'ast syn::Local) {
    if let Some(init) = &local.init {
        v.visit_expr(&init.expr);
        if let Some((_, diverge)) = &init.diverge {
            v.visit_expr(diverge);
        }
    }
}

fn walk_closure<'ast, V: Scoped<'ast>>(v: &mut V, c: &'ast syn::ExprClosure) {
    scoped(v, |v| {
        c.inputs.iter().for_each(|p| v.scopes().bind(p));
        v.visit_expr(&c.body);
    });
}

fn walk_arm<'ast, V: Scoped<'ast>>(v: &mut V, arm: &'ast syn::Arm) {
    scoped(v, |v| {
        v.scopes().bind(&arm.pat);
        if let Some((_, guard)) = &arm.guard {
            v.visit_expr(guard);
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
fn walk_conditional<'ast, V: Scoped<'ast>>(v: &mut V, cond: &'ast Expr, body: &'ast Block) {
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

fn walk_if<'ast, V: Scoped<'ast>>(v: &mut V, e: &'ast syn::ExprIf) {
    walk_conditional(v, &e.cond, &e.then_branch);
    if let Some((_, els)) = &e.else_branch {
        v.visit_expr(els);
    }
}

fn walk_for<'ast, V: Scoped<'ast>>(v: &mut V, e: &'ast syn::ExprForLoop) {
    v.visit_expr(&e.expr);
    scoped(v, |v| {
        v.scopes().bind(&e.pat);
        v.visit_block(&e.body);
    });
}

/// Visits the arguments of a macro whose body is comma-separated expressions (`parallel!`,
/// `format!`, `vec!`, ...); other macros are opaque.
fn walk_macro_args<V: for<'a> Visit<'a>>(v: &mut V, mac: &Macro) {
    if let Some(parsed) = macro_args(mac) {
        for e in &parsed.branches {
            v.visit_expr(e);
        }
    }
}

impl<'ast> Scoped<'ast> for Checker<'_> {
    fn scopes(&mut self) -> &mut Scopes {
        &mut self.scopes
    }
}

impl<'ast> Visit<'ast> for Checker<'_> {
    fn visit_item(&mut self, _: &'ast syn::Item) {}

    fn visit_expr_path(&mut self, e: &'ast syn::ExprPath) {
        self.check_path(&e.path);
    }

    fn visit_local(&mut self, local: &'ast syn::Local) {
        if let Some(init) = &local.init {
            self.check_parallel_binding(&local.pat, &init.expr, Binder::Let);
        }
        walk_local_init(self, local);
    }

    fn visit_expr_assign(&mut self, e: &'ast syn::ExprAssign) {
        if let Ok(pat) = syn::parse2::<PatOnly>(quote::ToTokens::to_token_stream(&e.left)) {
            self.check_parallel_binding(&pat.0, &e.right, Binder::Assign);
        }
        visit::visit_expr_assign(self, e);
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
        let last = mac.path.segments.last().map(|s| s.ident.to_string());
        if let Some((why, instead)) = last.as_deref().and_then(racing_macro) {
            let (path, bang) = (&mac.path, &mac.bang_token);
            self.errors.under(
                quote::quote!(#path #bang),
                format!(
                    "`{}!` {why}; a process must replay exactly: {instead}",
                    source_text(path)
                ),
            );
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
        // Implicit captures: `format!("{page}")`, `println!("{page:?}")`.
        if let Some(parsed) = macro_args(mac) {
            if let Some(Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            })) = parsed.branches.first()
            {
                let text = s.value();
                for name in self.names {
                    let captured = text.contains(&format!("{{{name}}}"))
                        || text.contains(&format!("{{{name}:"));
                    if captured && !self.scopes.contains(name) {
                        self.found.push(Ident::new(name, s.span()));
                    }
                }
            }
        }
    }
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
    fn format_captures() {
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
