//! The access check `parallel!` makes itself, evaluated when the code is compiled to a program
//! (`cargo build`, `cargo test`): for a block outside a `#[process]`, or one whose calls the
//! constant of `#[process]` cannot all name (see `process::access`).
//!
//! Every call in a branch that may be a task's, at any depth (in `async` blocks, closures, a
//! nested `parallel!`), is wrapped in `tap(&slot, call)`, which gives the slot the call's type;
//! so is every awaited value and a function `ctx.map` is given by name (`tap_fn`). After the
//! branches are created, `(&slot).__minder_slot()` picks the task's type (or `NotATask`), and
//! so does `(&value).__minder_probe()` for each branch's own value; a generic function's
//! constants then compare the calls of each branch with those of the earlier ones.

use crate::options::source_text;
use proc_macro2::{Delimiter, Group, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::visit_mut::{self, VisitMut};
use syn::{Expr, Ident};

/// The name of the runtime's tap: a branch whose value is a tapped call keeps the call's label.
pub(crate) const TAP: &str = "__minder_tap";

/// One entry of the check: a call (or a branch's value) in branch `branch`, how the message
/// names it, where it is, and the expression giving `PhantomData<its task or NotATask>`.
pub(super) struct Entry {
    pub(super) branch: usize,
    pub(super) name: String,
    pub(super) first: Span,
    pub(super) last: Span,
    pub(super) probe: TokenStream,
}

/// Wraps the calls of branches in taps; collects their slots.
pub(super) struct Tapper<'k> {
    krate: &'k TokenStream,
    branch: usize,
    /// `(slot, entry)` per tap.
    pub(super) taps: Vec<(Ident, Entry)>,
}

impl<'k> Tapper<'k> {
    pub(super) fn new(krate: &'k TokenStream) -> Self {
        Tapper {
            krate,
            branch: 0,
            taps: Vec::new(),
        }
    }

    /// Taps the calls inside branch `i` (not the branch's own value, which is probed as it is).
    pub(super) fn branch(&mut self, i: usize, expr: &mut Expr) {
        self.branch = i;
        self.inside(expr);
    }

    /// Taps what is inside `e`, not `e` itself.
    fn inside(&mut self, e: &mut Expr) {
        match e {
            Expr::Macro(m) if super::is_parallel_path(&m.mac.path) => self.nested(&mut m.mac),
            Expr::Await(a) => self.visit_expr_mut(&mut a.base),
            _ => visit_mut::visit_expr_mut(self, e),
        }
    }

    /// Replaces `e` by `tap(&slot, e)` (or `tap_fn`).
    fn wrap(&mut self, e: &mut Expr, tap: &str) {
        let mut tokens = e.to_token_stream().into_iter();
        let first = tokens
            .next()
            .map(|t| t.span())
            .unwrap_or_else(Span::call_site);
        let last = tokens.last().map(|t| t.span()).unwrap_or(first);
        let name = match &*e {
            Expr::Call(c) => source_text(&c.func),
            other => source_text(other),
        }
        .replace(" [", "[");
        let slot = format_ident!("__minder_s{}", self.taps.len(), span = Span::mixed_site());
        let krate = self.krate;
        let tap = Ident::new(tap, first);
        let probe = quote_spanned!(Span::mixed_site()=> (&#slot).__minder_slot());
        let mut args = Group::new(Delimiter::Parenthesis, quote!(&#slot, #e));
        args.set_span(last);
        *e = Expr::Verbatim(quote_spanned!(first=> #krate::__private::#tap #args));
        self.taps.push((
            slot,
            Entry {
                branch: self.branch,
                name,
                first,
                last,
                probe,
            },
        ));
    }

    /// A `parallel!` inside a branch: its branches' calls, and their own values, are tapped.
    fn nested(&mut self, mac: &mut syn::Macro) {
        let tts: Vec<TokenTree> = mac.tokens.clone().into_iter().collect();
        // `@__minder_checked { .. }` (from `#[process]`) stays first.
        let (marker, rest) = match tts.as_slice() {
            [at @ TokenTree::Punct(p), m @ TokenTree::Ident(_), g @ TokenTree::Group(_), rest @ ..]
                if p.as_char() == '@' =>
            {
                (vec![at.clone(), m.clone(), g.clone()], rest)
            }
            _ => (Vec::new(), tts.as_slice()),
        };
        let rest: TokenStream = rest.iter().cloned().collect();
        let Ok(mut parsed) = syn::parse2::<super::Branches>(rest) else {
            return;
        };
        for branch in &mut parsed.branches {
            self.inside(branch);
            if may_be_task_call(branch) {
                self.wrap(branch, TAP);
            }
        }
        let settle = parsed.settle.then(|| quote!(settle:));
        let branches = &parsed.branches;
        let marker: TokenStream = marker.into_iter().collect();
        mac.tokens = quote!(#marker #settle #(#branches),*);
    }
}

/// Whether a call may return a task's call: any call but of a constructor (`Some(x)`, `Ok(x)`,
/// `Point(1, 2)`), of the standard library or of a tap.
fn may_be_task_call(e: &Expr) -> bool {
    let Expr::Call(c) = e else {
        return false;
    };
    let mut func = &*c.func;
    while let Expr::Paren(p) = func {
        func = &p.expr;
    }
    let Expr::Path(p) = func else {
        return true;
    };
    if p.qself.is_some() {
        return true;
    }
    let (Some(first), Some(last)) = (p.path.segments.first(), p.path.segments.last()) else {
        return false;
    };
    let last = last.ident.to_string();
    let last = last.strip_prefix("r#").unwrap_or(&last);
    let root = first.ident.to_string();
    !(last.starts_with(|c: char| c.is_uppercase())
        || last.starts_with("__minder")
        || (p.path.leading_colon.is_none() && ["std", "core", "alloc"].contains(&root.as_str())))
}

fn has_cfg(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| a.path().is_ident("cfg"))
}

impl VisitMut for Tapper<'_> {
    // Items declared in a branch run as whatever calls them.
    fn visit_item_mut(&mut self, _: &mut syn::Item) {}

    // Constant contexts (`const { .. }`, an array's length, a const generic argument, a type)
    // cannot call a tap.
    fn visit_expr_const_mut(&mut self, _: &mut syn::ExprConst) {}

    fn visit_expr_repeat_mut(&mut self, e: &mut syn::ExprRepeat) {
        self.visit_expr_mut(&mut e.expr);
    }

    fn visit_generic_argument_mut(&mut self, _: &mut syn::GenericArgument) {}

    fn visit_type_mut(&mut self, _: &mut syn::Type) {}

    fn visit_stmt_mut(&mut self, s: &mut syn::Stmt) {
        // A statement that may be compiled out: a slot tapped there would learn no type.
        let attrs = match s {
            syn::Stmt::Local(l) => &l.attrs,
            syn::Stmt::Macro(m) => &m.attrs,
            syn::Stmt::Expr(e, _) => match e {
                Expr::Call(c) => &c.attrs,
                Expr::MethodCall(m) => &m.attrs,
                Expr::Block(b) => &b.attrs,
                _ => return visit_mut::visit_stmt_mut(self, s),
            },
            syn::Stmt::Item(_) => return,
        };
        if !has_cfg(attrs) {
            visit_mut::visit_stmt_mut(self, s);
        }
    }

    fn visit_expr_mut(&mut self, e: &mut Expr) {
        match e {
            Expr::Call(_) => {
                visit_mut::visit_expr_mut(self, e);
                if may_be_task_call(e) {
                    self.wrap(e, TAP);
                }
            }
            Expr::Await(a) => {
                self.visit_expr_mut(&mut a.base);
                // Not a tapped call again, nor a macro (a nested `parallel!` awaits itself).
                if !matches!(&*a.base, Expr::Verbatim(_) | Expr::Macro(_)) {
                    self.wrap(&mut a.base, TAP);
                }
            }
            Expr::MethodCall(m) if m.method == "map" && m.args.len() == 3 => {
                visit_mut::visit_expr_method_call_mut(self, m);
                // `ctx.map(label, items, f)` with a function by name: its return type.
                if let Some(f @ Expr::Path(_)) = m.args.iter_mut().nth(2) {
                    self.wrap(f, "__minder_tap_fn");
                }
            }
            Expr::Macro(m) if super::is_parallel_path(&m.mac.path) => self.nested(&mut m.mac),
            _ => visit_mut::visit_expr_mut(self, e),
        }
    }
}

/// The check of `entries` (see the module's doc): nothing when fewer than two branches have
/// entries. `slots` are declared before the branches are created, the check after.
pub(super) fn check(krate: &TokenStream, entries: &[Entry]) -> TokenStream {
    let mut branches: Vec<usize> = entries.iter().map(|e| e.branch).collect();
    branches.dedup();
    branches.sort_unstable();
    branches.dedup();
    if branches.len() < 2 {
        return TokenStream::new();
    }
    let mixed = Span::mixed_site();
    let params: Vec<_> = (0..entries.len())
        .map(|i| format_ident!("P{}", i, span = mixed))
        .collect();
    let calls = entries.iter().zip(&params).map(|(e, p)| {
        let (branch, name) = (e.branch, &e.name);
        quote_spanned! {mixed=>
            #krate::__private::ProbedCall {
                branch: #branch,
                name: #name,
                access: <#p as #krate::__private::HasAccess>::ACCESS,
            }
        }
    });
    let calls = quote!(&[#(#calls),*]);
    let consts = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.branch > branches[0])
        .map(|(at, e)| {
            // `check_call` (which panics at its caller's location) at the call's first token,
            // its parentheses at its last: the error covers the call.
            let check = Ident::new("check_call", e.first);
            let mut args = Group::new(Delimiter::Parenthesis, quote!(#calls, #at));
            args.set_span(e.last);
            quote_spanned!(e.first=> const { #check #args };)
        });
    let probes = entries.iter().map(|e| &e.probe);
    quote_spanned! {mixed=>
        {
            #[allow(unused_imports)]
            use #krate::__private::{
                ProbeOther as _, ProbeTask as _, SlotOther as _, SlotTask as _,
            };
            #[allow(clippy::too_many_arguments)]
            fn __minder_access_check<#(#params: #krate::__private::HasAccess),*>(
                #(_: #krate::__private::PhantomData<#params>),*
            ) {
                use #krate::__private::check_call;
                #(#consts)*
            }
            __minder_access_check(#(#probes),*);
        }
    }
}
