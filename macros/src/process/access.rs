//! Declared resource access (`#[task(reads = [..], writes = [..])]`) checked at `cargo check`.
//!
//! A constant can only name items, not the types of a body's values, and `cargo check` only
//! evaluates constants that need no monomorphization. So the check works from paths: for every
//! `parallel!` in the process body, every path a branch calls or passes (`save(x)`,
//! `async { db::save(x).await }`, `ctx.map("l", items, |i| count(i))`, `ctx.map("l", items,
//! count)`, a nested `parallel!`) becomes a probe (`__minder_probe!`, in the runtime)
//!
//! ```text
//! { use db::save as __minder_t; { use __minder_t::*; access_of(__minder_access) } }
//! ```
//!
//! `#[task]` gives each task a hidden enum of the task's own name (type namespace) whose variant
//! `__minder_access` names the task's type, so a path to a task (imported, renamed, re-exported)
//! leads to its access; for any other path the glob `use minder::__private::probe::*` around
//! the probes supplies `__minder_t` (a module) and `__minder_access` (no access). All of a
//! process's probes sit in one `const _: () = { .. };` at the top of its body: per block a
//! constant array of the calls, and per call of a later branch a constant that compares it with
//! the calls of the earlier branches and panics (at its caller's location, which is spanned as
//! the user's call) on a conflict.
//!
//! A `use` must name an item, so paths that may not be one are left out: locals (closure
//! parameters, `let`s, the process's parameters), names declared by items or `use`s inside a
//! nested block (not visible from the top of the body), paths through a type (`Type::f`,
//! `u8::from`), and `std`/`core`/`alloc` paths. A direct task call among them is still checked
//! when the process is compiled to code (the check `parallel!` makes on its branch values).

use super::check::{walk_macro_args, Scoped, Scopes};
use crate::options::source_text;
use proc_macro2::{Delimiter, Group, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, ToTokens};
use std::collections::{HashMap, HashSet};
use syn::visit::{self, Visit};
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
    Some(out)
}

/// Collects the probes of one branch.
struct Collector<'h> {
    scopes: Scopes,
    hidden: Vec<&'h Hidden>,
    inner: Vec<Hidden>,
    found: Vec<Probe>,
    seen: HashSet<String>,
}

impl Collector<'_> {
    fn is_hidden(&self, path: &syn::Path) -> bool {
        let root = path.segments[0].ident.to_string();
        let relative =
            path.leading_colon.is_none() && !["crate", "super", "self"].contains(&root.as_str());
        let all = self.hidden.iter().copied().chain(self.inner.iter());
        for h in all {
            if h.names.contains(&root) || (h.glob && relative) {
                return true;
            }
        }
        false
    }

    /// The path to probe, if `e` may name a task function visible from the top of the body.
    fn probed(&self, e: &syn::ExprPath) -> Option<syn::Path> {
        if e.qself.is_some() {
            return None;
        }
        let path = candidate(&e.path)?;
        if path.segments.len() == 1
            && path.leading_colon.is_none()
            && self.scopes.contains(&path.segments[0].ident.to_string())
        {
            return None;
        }
        (!self.is_hidden(&path)).then_some(path)
    }

    /// Whether the check at `cargo check` covers all that the check of `parallel!` at
    /// `cargo build` would see in this branch: a call of a probed path, or a branch whose value
    /// is never a task call (an `async` block, a nested `parallel!`).
    fn covers(&self, branch: &Expr) -> bool {
        match branch {
            Expr::Async(_) => true,
            Expr::Macro(m) => super::check::is_parallel(&m.mac),
            Expr::Call(c) => matches!(&*c.func, Expr::Path(p) if self.probed(p).is_some()),
            Expr::Paren(p) => self.covers(&p.expr),
            _ => false,
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
        let mut tokens = covering.to_token_stream().into_iter();
        let first = tokens
            .next()
            .map(|t| t.span())
            .unwrap_or_else(Span::call_site);
        let last = tokens.last().map(|t| t.span()).unwrap_or(first);
        self.found.push(Probe {
            path,
            name,
            first,
            last,
        });
    }
}

impl<'ast> Scoped<'ast> for Collector<'_> {
    fn scopes(&mut self) -> &mut Scopes {
        &mut self.scopes
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item(&mut self, _: &'ast Item) {}

    fn visit_expr_path(&mut self, e: &'ast syn::ExprPath) {
        self.consider(e, e);
    }

    fn visit_expr_call(&mut self, e: &'ast syn::ExprCall) {
        match &*e.func {
            // The error covers the whole call.
            Expr::Path(p) => self.consider(p, e),
            other => self.visit_expr(other),
        }
        e.args.iter().for_each(|a| self.visit_expr(a));
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
        walk_macro_args(self, mac);
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

    fn visit_expr_method_call(&mut self, e: &'ast syn::ExprMethodCall) {
        visit::visit_expr_method_call(self, e);
    }
}

/// The probes of the branches of one `parallel!`, given the locals in scope where it is and
/// what the nested blocks around it declare.
pub(crate) fn probe_block(
    mac: &syn::Macro,
    branches: &[Expr],
    locals: &Scopes,
    hidden: &[Hidden],
) -> ProbeBlock {
    let mut out = Vec::with_capacity(branches.len());
    let mut covered = true;
    for branch in branches {
        let mut c = Collector {
            scopes: locals.clone(),
            hidden: hidden.iter().collect(),
            inner: Vec::new(),
            found: Vec::new(),
            seen: HashSet::new(),
        };
        covered &= c.covers(branch);
        c.visit_expr(branch);
        out.push(c.found);
    }
    ProbeBlock {
        branches: out,
        key: mac.tokens.to_string(),
        covered,
    }
}

/// The marker `#[process]` puts first in a `parallel!` whose branches its constant covers: the
/// block then skips its own check (a generic function's constants, evaluated at `cargo build`),
/// which would only repeat it.
pub(crate) const CHECKED: &str = "__minder_checked";

/// `item` with `@__minder_checked` first in each `parallel!(..)` whose tokens are those of a
/// covered block (and of no block that is not covered: a block is recognized by its text).
pub(crate) fn mark_checked(item: TokenStream, blocks: &[ProbeBlock]) -> TokenStream {
    let mut checked: HashMap<&str, bool> = HashMap::new();
    for b in blocks {
        *checked.entry(&b.key).or_insert(true) &= b.covered;
    }
    if !checked.values().any(|c| *c) {
        return item;
    }
    mark(item, &checked)
}

fn mark(tokens: TokenStream, checked: &HashMap<&str, bool>) -> TokenStream {
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
        let stream = if is_parallel && checked.get(g.stream().to_string().as_str()) == Some(&true) {
            let marker = format_ident!("{}", CHECKED);
            quote!(@ #marker #inner)
        } else {
            inner
        };
        let mut group = Group::new(g.delimiter(), stream);
        group.set_span(g.span());
        out.push(TokenTree::Group(group));
    }
    out.into_iter().collect()
}

/// The constant of `blocks`, to put at the top of the process body (see the module's doc).
/// `__minder_probe!` is a `macro_rules!` of the runtime: rustc expands it more cheaply than it
/// takes the same tokens from this macro. Each check is its own constant, so that every
/// conflicting call is reported.
pub(crate) fn consts(blocks: &[ProbeBlock], krate: &TokenStream) -> TokenStream {
    let mixed = Span::mixed_site();
    let mut items = TokenStream::new();
    for (n, ProbeBlock { branches, .. }) in blocks.iter().enumerate() {
        if branches.iter().filter(|b| !b.is_empty()).count() < 2 {
            continue;
        }
        let calls = format_ident!("__MINDER_CALLS_{}", n, span = mixed);
        let mut entries = Vec::new();
        let mut checks = Vec::new();
        for (b, probes) in branches.iter().enumerate() {
            for probe in probes {
                let (path, name) = (&probe.path, &probe.name);
                // The invocation under the user's call: an error inside it (a glob of a struct
                // that has the function's name) points there.
                let probe_mac = format_ident!("__minder_probe", span = probe.first);
                let mut args = Group::new(Delimiter::Parenthesis, quote!(#b #name #path));
                args.set_span(probe.last);
                entries.push(quote!(#probe_mac! #args));
                if b == 0 {
                    continue;
                }
                // `check_call` (which panics at its caller's location) at the call's first
                // token, its parentheses at its last: the error covers the call. One constant
                // per call, so that every conflicting call is reported.
                let at = entries.len() - 1;
                let check = format_ident!("check_call", span = probe.first);
                let mut args = Group::new(Delimiter::Parenthesis, quote!(#calls, #at));
                args.set_span(probe.last);
                checks.push(quote!(const _: () = #check #args;));
            }
        }
        items.extend(quote! {
            const #calls: &[ProbedCall] = &[#(#entries),*];
            #(#checks)*
        });
    }
    if items.is_empty() {
        return items;
    }
    quote! {
        #[allow(unused_imports, deprecated)]
        const _: () = {
            use #krate::__private::probe::*;
            use #krate::__private::{check_call, ProbedCall};
            #items
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
        let block = probe_block(&mac, &branches.branches, &scopes, &[]);
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
        let covered = probe_block(&mac, &branches.branches, &Scopes::default(), &[]);
        assert!(covered.covered);
        let mac2: syn::Macro = syn::parse_quote!(parallel!(a(x), f.call(y)));
        let branches2 = crate::parallel::macro_args(&mac2).unwrap();
        let not = probe_block(&mac2, &branches2.branches, &Scopes::default(), &[]);
        assert!(!not.covered);
        let body = quote!({
            let r = parallel!(a(x), async { b(y).await });
            let s = parallel!(a(x), f.call(y));
        });
        let marked = mark_checked(body, &[covered, not]).to_string();
        assert_eq!(marked.matches("@ __minder_checked").count(), 1, "{marked}");
        assert!(
            marked.contains("parallel ! (@ __minder_checked a (x)"),
            "{marked}"
        );
    }
}
