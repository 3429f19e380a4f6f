//! Declared resource access (`#[task(reads = [..], writes = [..])]`) checked at `cargo check`.
//!
//! A constant can only name items, not the types of a body's values, and `cargo check` only
//! evaluates constants that need no monomorphization. So the check works from paths: for every
//! `parallel!` in the process body, every path a branch calls or passes (`save(x)`,
//! `async { db::save(x).await }`, `ctx.map("l", items, |i| count(i))`, `ctx.map("l", items,
//! count)`, a nested `parallel!`), and every local a branch calls or awaits that was bound to
//! such a value (`let store = save;`, `let f = |x| save(x);`, `let fut = save(x);`), becomes a
//! probe (`__minder_probe!`, in the runtime)
//!
//! ```text
//! { use minder::__private::probe::*; use db::save as __minder_t; __minder_t!(..) }
//! ```
//!
//! `#[task]` gives each task that declares access a macro of the task's own name (macro
//! namespace, where nothing else of that name usually is) expanding to its access, so a path to
//! a task (imported, renamed, re-exported) leads to its access; for any other path the glob
//! supplies a `__minder_t!` of no access. The probes sit in a `const _: () = { .. };` at the top
//! of the body, or, for a block inside a nested block that declares items or `use`s, one that
//! `parallel!` puts first in its expansion (where those names are visible): per block a
//! constant array of the calls, and per call of a later branch a constant that compares it
//! with the calls of the earlier branches and panics (at its caller's location, which is
//! spanned as the user's call) on a conflict.
//!
//! A `use` must name an item, so what may not be one is left to `parallel!`'s own check, made
//! when the process is compiled to code (`cargo build`): a call through a local whose value is
//! unknown (a parameter, a pattern), through an expression (`tasks[0](x)`), through a name a
//! block inside the branch declares, and a branch that is a method call. Such a block is then
//! checked there as a whole.

use super::check::{walk_macro_args, Scoped, Scopes};
use crate::options::source_text;
use crate::parallel::macro_args;
use proc_macro2::{Delimiter, Group, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, ToTokens};
use std::collections::{HashMap, HashSet};
use syn::visit::Visit;
use syn::{Block, Expr, Item, UseTree};

/// A path a branch calls or passes, which may name a task.
pub(crate) struct Probe {
    /// The path as written, without generic arguments.
    path: syn::Path,
    /// The path as the message shows it.
    name: String,
    /// The first and the last token of the call (or of the path), for the error's span.
    first: Span,
    last: Span,
}

/// The probes of one `parallel!`, branch by branch; the macro's tokens as text; and whether
/// the probes cover every branch that `parallel!`'s own check (at `cargo build`) would see.
pub(crate) struct ProbeBlock {
    branches: Vec<Vec<Probe>>,
    key: String,
    covered: bool,
    /// Inside a nested block that declares items or `use`s: the constant goes where the block
    /// is, not at the top of the body (where those names are not visible).
    at_site: bool,
}

/// What a nested block declares: its items and the names its `use`s bring in are not visible
/// from the top of the body, where the constants are.
#[derive(Clone, Default)]
pub(crate) struct Hidden {
    names: HashSet<String>,
    /// A glob `use`: any name may come from it.
    glob: bool,
}

impl Hidden {
    pub(crate) fn of(block: &Block) -> Option<Hidden> {
        let mut hidden = Hidden::default();
        for stmt in &block.stmts {
            if let syn::Stmt::Item(item) = stmt {
                hidden.item(item);
            }
        }
        (hidden.glob || !hidden.names.is_empty()).then_some(hidden)
    }

    fn item(&mut self, item: &Item) {
        let ident = match item {
            Item::Fn(i) => &i.sig.ident,
            Item::Struct(i) => &i.ident,
            Item::Enum(i) => &i.ident,
            Item::Union(i) => &i.ident,
            Item::Type(i) => &i.ident,
            Item::Trait(i) => &i.ident,
            Item::Mod(i) => &i.ident,
            Item::Const(i) => &i.ident,
            Item::Static(i) => &i.ident,
            Item::ExternCrate(i) => i.rename.as_ref().map(|(_, r)| r).unwrap_or(&i.ident),
            Item::Macro(i) => match &i.ident {
                Some(ident) => ident,
                None => return,
            },
            Item::Use(u) => return self.use_tree(&u.tree),
            _ => return,
        };
        self.names.insert(ident.to_string());
    }

    fn use_tree(&mut self, tree: &UseTree) {
        match tree {
            UseTree::Path(p) => self.use_tree(&p.tree),
            UseTree::Name(n) => {
                self.names.insert(n.ident.to_string());
            }
            UseTree::Rename(r) => {
                self.names.insert(r.rename.to_string());
            }
            UseTree::Glob(_) => self.glob = true,
            UseTree::Group(g) => g.items.iter().for_each(|t| self.use_tree(t)),
        }
    }
}

const PRIMITIVES: &[&str] = &[
    "bool", "char", "str", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64",
    "i128", "isize", "f32", "f64",
];

/// The path without generic arguments, when it may name a task function: every segment starts
/// with a lowercase letter or `_` (a type, variant or constant does not), the first is no
/// primitive type and not `std`, `core` or `alloc`, and it is not `self` alone.
fn candidate(path: &syn::Path) -> Option<syn::Path> {
    let mut out = path.clone();
    let last = out.segments.len().checked_sub(1)?;
    for (i, seg) in out.segments.iter_mut().enumerate() {
        let name = seg.ident.to_string();
        let name = name.strip_prefix("r#").unwrap_or(&name);
        let first = name.chars().next()?;
        if !(first.is_lowercase() || first == '_') {
            return None;
        }
        if i < last && !seg.arguments.is_none() {
            return None;
        }
        seg.arguments = syn::PathArguments::None;
    }
    let root = out.segments[0].ident.to_string();
    if out.leading_colon.is_none()
        && (PRIMITIVES.contains(&root.as_str()) || ["std", "core", "alloc"].contains(&&*root))
    {
        return None;
    }
    if out.segments.len() == 1 && ["self", "super", "crate"].contains(&root.as_str()) {
        return None;
    }
    // A `use` of it would bring the prelude's macro of that name.
    let last = out.segments.last()?.ident.to_string();
    if crate::options::is_prelude_macro(&last) {
        return None;
    }
    Some(out)
}

/// Collects the probes of one branch, and whether they are all its task calls can be.
struct Collector {
    scopes: Scopes,
    inner: Vec<Hidden>,
    found: Vec<Probe>,
    seen: HashSet<String>,
    /// Every call that may be a task's is probed.
    covered: bool,
    /// The span of the call (as written in the branch) a local's value is collected for.
    at: Option<(Span, Span)>,
    /// How many locals' values are being followed.
    depth: usize,
}

/// A path that is no task call: a constructor or a function of a type (`Some(x)`,
/// `Duration::from_secs(1)`: a task is a free function), or the standard library.
fn never_a_task(path: &syn::Path) -> bool {
    let starts_upper = |s: &syn::PathSegment| {
        let name = s.ident.to_string();
        let name = name.strip_prefix("r#").unwrap_or(&name).to_string();
        name.starts_with(|c: char| c.is_uppercase())
    };
    let root = path.segments[0].ident.to_string();
    path.segments.iter().any(starts_upper)
        || (PRIMITIVES.contains(&root.as_str()) || ["std", "core", "alloc"].contains(&&*root))
}

impl Collector {
    fn is_hidden(&self, path: &syn::Path) -> bool {
        let root = path.segments[0].ident.to_string();
        let relative =
            path.leading_colon.is_none() && !["crate", "super", "self"].contains(&root.as_str());
        self.inner
            .iter()
            .any(|h| h.names.contains(&root) || (h.glob && relative))
    }

    /// The local a path names, if it is one.
    fn local(&self, e: &syn::ExprPath) -> Option<String> {
        let path = &e.path;
        (e.qself.is_none() && path.leading_colon.is_none() && path.segments.len() == 1)
            .then(|| path.segments[0].ident.to_string())
            .filter(|name| self.scopes.contains(name))
    }

    /// The path to probe, if `e` may name a task function visible from the `parallel!`.
    fn probed(&self, e: &syn::ExprPath) -> Option<syn::Path> {
        if e.qself.is_some() || self.local(e).is_some() {
            return None;
        }
        let path = candidate(&e.path)?;
        (!self.is_hidden(&path)).then_some(path)
    }

    /// `e` runs (it is called, awaited, mapped with, or is the branch): a path is probed, a
    /// local is followed to its value, anything else is visited; what cannot be probed leaves
    /// the branch to `parallel!`'s check at `cargo build`.
    fn runs(&mut self, e: &Expr, covering: &dyn ToTokens) {
        match e {
            Expr::Path(p) => {
                if let Some(name) = self.local(p) {
                    self.follow(&name, covering);
                } else if self.probed(p).is_some() {
                    self.consider(p, covering);
                } else if p.qself.is_some() || !never_a_task(&p.path) {
                    self.covered = false;
                }
            }
            Expr::Paren(p) => self.runs(&p.expr, covering),
            Expr::Reference(r) => self.runs(&r.expr, covering),
            // A function taken from a field or a collection.
            Expr::Field(_) | Expr::Index(_) => {
                self.covered = false;
                self.visit_expr(e);
            }
            // Calls, blocks, closures, macros, method calls (a method is no task), ...
            other => self.visit_expr(other),
        }
    }

    /// A local that runs: what its value calls (`let store = save;`, `let f = |x| save(x);`,
    /// `let fut = save(x);`), or, when its value is unknown, nothing can be said.
    fn follow(&mut self, name: &str, covering: &dyn ToTokens) {
        match self.scopes.value(name) {
            Some(Some(value)) if self.depth < 8 => {
                let at = self.at.take();
                self.at = at.or_else(|| Some(first_last(covering)));
                self.depth += 1;
                self.runs(&value, covering);
                self.depth -= 1;
                self.at = at;
            }
            _ => self.covered = false,
        }
    }

    fn consider(&mut self, e: &syn::ExprPath, covering: &dyn ToTokens) {
        let Some(path) = self.probed(e) else {
            return;
        };
        let name = source_text(&path);
        if !self.seen.insert(name.clone()) {
            return;
        }
        let (first, last) = self.at.unwrap_or_else(|| first_last(covering));
        self.found.push(Probe {
            path,
            name,
            first,
            last,
        });
    }
}

/// The spans of the first and the last token of `tokens`.
fn first_last(tokens: &dyn ToTokens) -> (Span, Span) {
    let mut tokens = tokens.to_token_stream().into_iter();
    let first = tokens
        .next()
        .map(|t| t.span())
        .unwrap_or_else(Span::call_site);
    let last = tokens.last().map(|t| t.span()).unwrap_or(first);
    (first, last)
}

impl<'ast> Scoped<'ast> for Collector {
    const VALUES: bool = true;
    fn scopes(&mut self) -> &mut Scopes {
        &mut self.scopes
    }
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item(&mut self, _: &'ast Item) {}

    fn visit_expr_path(&mut self, e: &'ast syn::ExprPath) {
        // A value passed on (`retry(fut)`, `ctx.map("l", items, count)`): a local is followed
        // when its value is known; a path is probed.
        if let Some(name) = self.local(e) {
            if let Some(Some(_)) = self.scopes.value(&name) {
                self.follow(&name, e);
            }
        } else {
            self.consider(e, e);
        }
    }

    fn visit_expr_call(&mut self, e: &'ast syn::ExprCall) {
        // The error covers the whole call.
        self.runs(&e.func, e);
        e.args.iter().for_each(|a| self.visit_expr(a));
    }

    fn visit_expr_await(&mut self, e: &'ast syn::ExprAwait) {
        self.runs(&e.base, &e.base);
    }

    fn visit_block(&mut self, b: &'ast Block) {
        let hidden = Hidden::of(b);
        let pushed = hidden.is_some();
        self.inner.extend(hidden);
        super::check::walk_block(self, b);
        if pushed {
            self.inner.pop();
        }
    }

    fn visit_local(&mut self, local: &'ast syn::Local) {
        super::check::walk_local_init(self, local);
    }

    fn visit_expr_closure(&mut self, c: &'ast syn::ExprClosure) {
        super::check::walk_closure(self, c);
    }

    fn visit_arm(&mut self, arm: &'ast syn::Arm) {
        super::check::walk_arm(self, arm);
    }

    fn visit_expr_if(&mut self, e: &'ast syn::ExprIf) {
        super::check::walk_if(self, e);
    }

    fn visit_expr_while(&mut self, e: &'ast syn::ExprWhile) {
        super::check::walk_conditional(self, &e.cond, &e.body);
    }

    fn visit_expr_for_loop(&mut self, e: &'ast syn::ExprForLoop) {
        super::check::walk_for(self, e);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        // The branches of a nested `parallel!` run.
        match macro_args(mac).filter(|_| super::check::is_parallel(mac)) {
            Some(parsed) => parsed.branches.iter().for_each(|b| self.runs(b, b)),
            None => walk_macro_args(self, mac),
        }
    }

    fn visit_expr_method_call(&mut self, e: &'ast syn::ExprMethodCall) {
        self.visit_expr(&e.receiver);
        for (i, arg) in e.args.iter().enumerate() {
            // The function of `ctx.map(label, items, f)` runs.
            if e.method == "map" && e.args.len() == 3 && i == 2 {
                self.runs(arg, arg);
            } else {
                self.visit_expr(arg);
            }
        }
    }

    fn visit_expr_struct(&mut self, e: &'ast syn::ExprStruct) {
        // The path is a type; field values are expressions.
        for field in &e.fields {
            self.visit_expr(&field.expr);
        }
        if let Some(rest) = &e.rest {
            self.visit_expr(rest);
        }
    }
}

/// Whether a method call is an operation of the process's context: `ctx.map(label, items,
/// f)` (with `.limit(n)`, `.settle()`), `ctx.sleep(d)`, `ctx.select(..)`, ...
fn is_ctx_operation(mut m: &syn::ExprMethodCall) -> bool {
    const CTX: &[&str] = &[
        "sleep",
        "sleep_until",
        "select",
        "race",
        "breakpoint",
        "breakpoint_with_timeout",
        "external",
    ];
    loop {
        if m.method == "map" && m.args.len() == 3 {
            return true;
        }
        match &*m.receiver {
            Expr::MethodCall(inner) => m = inner,
            Expr::Path(p) if p.path.get_ident().is_some() => {
                return CTX.iter().any(|c| m.method == c);
            }
            _ => return false,
        }
    }
}

/// The probes of the branches of one `parallel!`, given the locals in scope where it is.
pub(crate) fn probe_block(
    mac: &syn::Macro,
    branches: &[Expr],
    locals: &Scopes,
    at_site: bool,
) -> ProbeBlock {
    let mut out = Vec::with_capacity(branches.len());
    let mut covered = true;
    for branch in branches {
        let mut c = Collector {
            scopes: locals.clone(),
            inner: Vec::new(),
            found: Vec::new(),
            seen: HashSet::new(),
            covered: true,
            at: None,
            depth: 0,
        };
        // A method call as the branch may return a task's call (its type tells, at `cargo
        // build`), unless it is an operation of the context (`ctx.map(..)`, `ctx.sleep(..)`).
        if let Expr::MethodCall(m) = branch {
            c.covered = is_ctx_operation(m);
        }
        // So may a function of a type (`Db::save(x)`).
        if let Expr::Call(call) = branch {
            if let Expr::Path(p) = &*call.func {
                let last = p.path.segments.len() - 1;
                let typed = p.path.segments.iter().take(last).any(|s| {
                    let name = s.ident.to_string();
                    name.starts_with(|c: char| c.is_uppercase())
                });
                if p.qself.is_some() || typed {
                    c.covered = false;
                }
            }
        }
        c.runs(branch, branch);
        covered &= c.covered;
        out.push(c.found);
    }
    ProbeBlock {
        branches: out,
        key: mac.tokens.to_string(),
        covered,
        at_site,
    }
}

/// The marker `#[process]` puts first in a `parallel!` whose branches its probes cover:
/// `parallel!(@__minder_checked { .. } branches..)`. The block then skips its own check (a
/// generic function's constants, evaluated at `cargo build`), which would only repeat the
/// probes'. The probes' constant is at the top of the body, one for all blocks, or, for a block
/// inside a nested block that declares items or `use`s, in the braces, which the block puts
/// first in its expansion (where those names are visible).
pub(crate) const CHECKED: &str = "__minder_checked";

/// `item` (a function) with the marker first in each `parallel!(..)` whose tokens are those of
/// a covered block, and the constants. A block is recognized by its text: blocks of the same
/// text must all be covered, by the same probes, to be marked. With `krate` `None` (the process
/// has errors), every block is marked, without constants: no check adds to the errors.
pub(crate) fn mark_checked(
    item: TokenStream,
    blocks: &[ProbeBlock],
    krate: Option<&TokenStream>,
) -> TokenStream {
    let Some(krate) = krate else {
        let all = blocks.iter().map(|b| (b.key.as_str(), TokenStream::new()));
        return mark(item, &all.collect());
    };
    // Per text: the block, if every block of that text is covered by the same probes, and
    // whether one of them is inside a declaring block.
    let mut by_key: HashMap<&str, (Option<&ProbeBlock>, bool)> = HashMap::new();
    // In the order of the body, so the constants (and their errors) come in that order.
    let mut order: Vec<&str> = Vec::new();
    for b in blocks {
        if !by_key.contains_key(b.key.as_str()) {
            order.push(&b.key);
        }
        let same = |a: &ProbeBlock| {
            a.branches.len() == b.branches.len()
                && a.branches.iter().zip(&b.branches).all(|(x, y)| {
                    x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.name == q.name)
                })
        };
        by_key
            .entry(&b.key)
            .and_modify(|(seen, site)| {
                *seen = seen.filter(|a| b.covered && same(a));
                *site |= b.at_site;
            })
            .or_insert((b.covered.then_some(b), b.at_site));
    }
    let mut checked: HashMap<&str, TokenStream> = HashMap::new();
    let mut top = TokenStream::new();
    for (n, key) in order.into_iter().enumerate() {
        let (Some(block), at_site) = by_key[key] else {
            continue;
        };
        let calls = calls(block, n);
        if at_site {
            checked.insert(key, consts(calls, krate));
        } else {
            checked.insert(key, TokenStream::new());
            top.extend(calls);
        }
    }
    if checked.is_empty() {
        return item;
    }
    inject(mark(item, &checked), consts(top, krate))
}

fn mark(tokens: TokenStream, checked: &HashMap<&str, TokenStream>) -> TokenStream {
    let tts: Vec<TokenTree> = tokens.into_iter().collect();
    let mut out = Vec::with_capacity(tts.len());
    for (i, tt) in tts.iter().enumerate() {
        let TokenTree::Group(g) = tt else {
            out.push(tt.clone());
            continue;
        };
        let is_parallel = i >= 2
            && matches!(&tts[i - 1], TokenTree::Punct(p) if p.as_char() == '!')
            && matches!(&tts[i - 2], TokenTree::Ident(id) if id == "parallel");
        let inner = mark(g.stream(), checked);
        let found = is_parallel
            .then(|| checked.get(g.stream().to_string().as_str()))
            .flatten();
        let stream = match found {
            Some(consts) => {
                let marker = format_ident!("{}", CHECKED);
                quote!(@ #marker { #consts } #inner)
            }
            None => inner,
        };
        let mut group = Group::new(g.delimiter(), stream);
        group.set_span(g.span());
        out.push(TokenTree::Group(group));
    }
    out.into_iter().collect()
}

/// The probes and checks of block number `n` (see the module's doc). `__minder_probe!` is a
/// `macro_rules!` of the runtime: rustc expands it more cheaply than it takes the same tokens
/// from this macro. Each check is its own constant, so that every conflicting call is reported.
fn calls(block: &ProbeBlock, n: usize) -> TokenStream {
    let branches = &block.branches;
    if branches.iter().filter(|b| !b.is_empty()).count() < 2 {
        return TokenStream::new();
    }
    let calls = format_ident!("__MINDER_CALLS_{}", n, span = Span::mixed_site());
    let mut entries = Vec::new();
    let mut checks = Vec::new();
    for (b, probes) in branches.iter().enumerate() {
        for probe in probes {
            let (path, name) = (&probe.path, &probe.name);
            // The invocation under the user's call: an error inside it points there.
            let probe_mac = format_ident!("__minder_probe", span = probe.first);
            let mut args = Group::new(Delimiter::Parenthesis, quote!(#b #name #path));
            args.set_span(probe.last);
            entries.push(quote!(#probe_mac! #args));
            if b == 0 {
                continue;
            }
            // `check_call` (which panics at its caller's location) at the call's first token,
            // its parentheses at its last: the error covers the call.
            let at = entries.len() - 1;
            let check = format_ident!("check_call", span = probe.first);
            let mut args = Group::new(Delimiter::Parenthesis, quote!(#calls, #at));
            args.set_span(probe.last);
            checks.push(quote!(const _: () = #check #args;));
        }
    }
    quote! {
        const #calls: &[ProbedCall] = &[#(#entries),*];
        #(#checks)*
    }
}

/// One constant holding `calls`, with the imports they use: the glob supplies the `__minder_t!`
/// of a path that is no task with declared access (see the runtime's `__minder_probe!`).
fn consts(calls: TokenStream, krate: &TokenStream) -> TokenStream {
    if calls.is_empty() {
        return calls;
    }
    quote! {
        #[allow(unused_imports, deprecated)]
        const _: () = {
            use #krate::__private::probe::*;
            use #krate::__private::{__minder_probe, check_call, ProbedCall};
            #calls
        };
    }
}

/// `item` (a function) with `consts` at the top of its body, after any inner attributes.
pub(crate) fn inject(item: TokenStream, consts: TokenStream) -> TokenStream {
    if consts.is_empty() {
        return item;
    }
    let mut tokens: Vec<TokenTree> = item.into_iter().collect();
    let Some(TokenTree::Group(body)) = tokens.last() else {
        return tokens.into_iter().collect();
    };
    let inner: Vec<TokenTree> = body.stream().into_iter().collect();
    // `#![..]` pairs at the start stay first.
    let mut split = 0;
    while let (
        Some(TokenTree::Punct(hash)),
        Some(TokenTree::Punct(bang)),
        Some(TokenTree::Group(_)),
    ) = (inner.get(split), inner.get(split + 1), inner.get(split + 2))
    {
        if hash.as_char() != '#' || bang.as_char() != '!' {
            break;
        }
        split += 3;
    }
    let (attrs, rest) = inner.split_at(split);
    let (attrs, rest): (TokenStream, TokenStream) = (
        attrs.iter().cloned().collect(),
        rest.iter().cloned().collect(),
    );
    let mut group = Group::new(body.delimiter(), quote!(#attrs #consts #rest));
    group.set_span(body.span());
    *tokens.last_mut().expect("checked above") = TokenTree::Group(group);
    tokens.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn probes(body: TokenStream) -> Vec<Vec<String>> {
        let mac: syn::Macro = syn::parse2(body).unwrap();
        let branches = crate::parallel::macro_args(&mac).unwrap();
        let locals = Scopes::default();
        let mut scopes = locals.clone();
        scopes.bind(&syn::parse_quote!(local));
        let block = probe_block(&mac, &branches.branches, &scopes, false);
        block
            .branches
            .iter()
            .map(|b| b.iter().map(|p| p.name.clone()).collect())
            .collect()
    }

    #[test]
    fn paths_that_may_name_a_task() {
        let found = probes(quote!(parallel!(
            save::<u8>(x),
            async {
                let f = |v| g(v);
                let n = db::count(local).await?;
                let b = Box::pin(h(n)).await?;
                u64::from(b);
                std::mem::drop(b);
                f(1);
                local(2);
                Ok(n)
            },
            ctx.map("l", items, tally),
            {
                use other::hidden;
                hidden(1)
            },
            format!("{x}", x = named(1)),
        )));
        assert_eq!(
            found,
            [
                vec!["save", "x"],
                vec!["g", "db::count", "h"],
                vec!["ctx", "items", "tally"],
                vec![],
                vec!["named"],
            ]
        );
    }

    #[test]
    fn covered_blocks_are_marked() {
        let mac: syn::Macro = syn::parse_quote!(parallel!(a(x), async { b(y).await }));
        let branches = crate::parallel::macro_args(&mac).unwrap();
        let covered = probe_block(&mac, &branches.branches, &Scopes::default(), false);
        assert!(covered.covered);
        let mac2: syn::Macro = syn::parse_quote!(parallel!(a(x), f.call(y)));
        let branches2 = crate::parallel::macro_args(&mac2).unwrap();
        let not = probe_block(&mac2, &branches2.branches, &Scopes::default(), false);
        assert!(!not.covered);
        let body = quote!({
            let r = parallel!(a(x), async { b(y).await });
            let s = parallel!(a(x), f.call(y));
        });
        let krate = quote!(::minder);
        let marked = mark_checked(body, &[covered, not], Some(&krate)).to_string();
        assert_eq!(marked.matches("@ __minder_checked").count(), 1, "{marked}");
        // The constant is at the top of the body: a probe of each call.
        let (before, after) = marked.split_once("@ __minder_checked {").expect("marked");
        assert!(before.ends_with("parallel ! ("), "{marked}");
        assert!(
            before.contains("__minder_probe ! (0usize \"a\" a)"),
            "{marked}"
        );
        assert!(
            before.contains("__minder_probe ! (1usize \"b\" b)"),
            "{marked}"
        );
        assert!(after.starts_with(" } a (x)"), "{marked}");
        assert!(
            marked.contains("parallel ! (a (x) , f . call (y))"),
            "{marked}"
        );
        // Inside a nested block that declares names: the constant goes with the block.
        let nested = probe_block(&mac, &branches.branches, &Scopes::default(), true);
        let body = quote!({ parallel!(a(x), async { b(y).await }) });
        let marked = mark_checked(body, &[nested], Some(&krate)).to_string();
        let (before, after) = marked.split_once("@ __minder_checked {").expect("marked");
        assert!(!before.contains("__minder_probe"), "{marked}");
        assert!(
            after.contains("__minder_probe ! (1usize \"b\" b)"),
            "{marked}"
        );
    }

    #[test]
    fn locals_are_followed_to_their_values() {
        let mac: syn::Macro = syn::parse_quote!(parallel!(
            store(x),
            async { tally(y).await },
            pending,
            unknown(z),
        ));
        let branches = crate::parallel::macro_args(&mac).unwrap();
        let body: syn::Block = syn::parse_quote!({
            let store = db::save;
            let tally = |f| count(f);
            let pending = audit(1);
            let n = check(2).await;
        });
        let mut scopes = Scopes::default();
        scopes.bind(&syn::parse_quote!((unknown, x, y, z)));
        for stmt in &body.stmts {
            if let syn::Stmt::Local(local) = stmt {
                scopes.bind_local(local);
            }
        }
        let block = probe_block(&mac, &branches.branches[..3], &scopes, false);
        let names: Vec<Vec<&str>> = block
            .branches
            .iter()
            .map(|b| b.iter().map(|p| p.name.as_str()).collect())
            .collect();
        assert_eq!(names, [vec!["db::save"], vec!["count"], vec!["audit"]]);
        assert!(block.covered);
        // A local of unknown value, called: left to `parallel!`'s check at `cargo build`.
        let all = probe_block(&mac, &branches.branches, &scopes, false);
        assert!(!all.covered);
        // An awaited result is no future: `n` is not followed.
        assert!(scopes.value("n").is_some_and(|v| v.is_none()));
        // The branches of a nested `parallel!` run too.
        let nested: syn::Macro = syn::parse_quote!(parallel!(a(x), parallel!(pending, unknown)));
        let branches = crate::parallel::macro_args(&nested).unwrap();
        let block = probe_block(&nested, &branches.branches, &scopes, false);
        assert_eq!(block.branches[1].len(), 1);
        assert!(!block.covered);
    }
}
