//! Reads the static graph out of a process body: awaited calls, `ctx` operations, `parallel!`
//! blocks, `ctx.map`, loops and conditionals, in source order.

use super::check::is_parallel;
use crate::parallel::{branch_label, macro_args};
use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::visit::{self, Visit};
use syn::{Block, Expr, ExprMethodCall};

const CTX_OPS: &[&str] = &[
    "log",
    "now",
    "random",
    "new_id",
    "sleep",
    "sleep_until",
    "breakpoint",
    "breakpoint_with_timeout",
    "external",
    "child",
    "select",
    "race",
];

pub(crate) fn nodes(block: &Block, ctx: Option<&str>, krate: &TokenStream) -> Vec<TokenStream> {
    let _parsed = crate::parallel::ParsedMacros::start();
    let mut g = GraphReader {
        ctx,
        krate,
        out: Vec::new(),
    };
    g.visit_block(block);
    g.out
}

/// The span of an expression's first token: where `#[track_caller]` locates a call of it.
fn first_span(expr: &Expr) -> Span {
    expr.to_token_stream()
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |t| t.span())
}

/// The line and column of `site` in the user's file, as constant expressions (`line!()` and
/// `column!()` spanned there read the position of the user's token); `0, 0` for none.
fn at(site: Option<Span>) -> (TokenStream, TokenStream) {
    match site {
        Some(span) => (
            quote_spanned!(span=> ::core::line!()),
            quote_spanned!(span=> ::core::column!()),
        ),
        None => (quote!(0u32), quote!(0u32)),
    }
}

struct GraphReader<'a> {
    ctx: Option<&'a str>,
    krate: &'a TokenStream,
    out: Vec<TokenStream>,
}

impl<'a> GraphReader<'a> {
    fn nested(&self) -> GraphReader<'a> {
        GraphReader {
            ctx: self.ctx,
            krate: self.krate,
            out: Vec::new(),
        }
    }

    fn collect(&self, f: impl FnOnce(&mut GraphReader<'a>)) -> TokenStream {
        let mut inner = self.nested();
        f(&mut inner);
        let nodes = inner.out;
        quote!(&[#(#nodes),*])
    }

    fn is_ctx(&self, expr: &Expr) -> bool {
        match (expr, self.ctx) {
            (Expr::Path(p), Some(ctx)) => p.path.is_ident(ctx),
            _ => false,
        }
    }

    /// A `ctx.map(label, items, closure)` call at the bottom of a method chain.
    fn find_map<'e>(&self, e: &'e ExprMethodCall) -> Option<&'e ExprMethodCall> {
        if e.method == "map" && self.is_ctx(&e.receiver) {
            return Some(e);
        }
        match &*e.receiver {
            Expr::MethodCall(inner) => self.find_map(inner),
            _ => None,
        }
    }

    /// A call node at `site` (the call's first token; `None`: called indirectly, as the
    /// function a `ctx.map` is given).
    fn push_call(&mut self, name: String, site: Option<Span>) {
        let krate = self.krate;
        let (line, column) = at(site);
        self.out.push(
            quote!(#krate::__private::Node::Call { name: #name, line: #line, column: #column }),
        );
    }

    /// A branch or map body that is a future-valued expression (not awaited itself).
    fn future_expr(&mut self, expr: &Expr) {
        match expr {
            Expr::Call(c) => {
                if let Expr::Path(_) = &*c.func {
                    self.push_call(branch_label(expr), Some(first_span(&c.func)));
                    for arg in &c.args {
                        self.visit_expr(arg);
                    }
                    return;
                }
                self.visit_expr(expr)
            }
            Expr::Paren(p) => self.future_expr(&p.expr),
            // `|f| { let x = ..; task(x) }`: the statements, then the returned future.
            Expr::Block(b) => match b.block.stmts.split_last() {
                Some((syn::Stmt::Expr(tail, None), rest)) => {
                    for stmt in rest {
                        self.visit_stmt(stmt);
                    }
                    self.future_expr(tail);
                }
                _ => self.visit_block(&b.block),
            },
            _ => self.visit_expr(expr),
        }
    }

    /// Pushes a loop node, unless its body has no steps (like an `if` without steps).
    fn push_loop(&mut self, kind: &str, body: Vec<TokenStream>) {
        if body.is_empty() {
            return;
        }
        let krate = self.krate;
        self.out
            .push(quote!(#krate::__private::Node::Loop { kind: #kind, body: &[#(#body),*] }));
    }
}

impl<'ast> Visit<'ast> for GraphReader<'_> {
    fn visit_item(&mut self, _: &'ast syn::Item) {}

    fn visit_expr_await(&mut self, e: &'ast syn::ExprAwait) {
        match &*e.base {
            Expr::Call(c) if matches!(&*c.func, Expr::Path(_)) => {
                for arg in &c.args {
                    self.visit_expr(arg);
                }
                self.push_call(branch_label(&e.base), Some(first_span(&c.func)));
            }
            _ => self.visit_expr(&e.base),
        }
    }

    fn visit_expr_method_call(&mut self, e: &'ast ExprMethodCall) {
        if let Some(map) = self.find_map(e) {
            let krate = self.krate;
            let label = match map.args.first() {
                Some(Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                })) => s.value(),
                _ => "items".to_string(),
            };
            if let Some(items) = map.args.iter().nth(1) {
                self.visit_expr(items);
            }
            let body = self.collect(|g| {
                match map.args.iter().nth(2) {
                    Some(Expr::Closure(c)) => g.future_expr(&c.body),
                    // `ctx.map("x", items, task)`: the function is called for each item.
                    Some(Expr::Path(p)) => {
                        if let Some(last) = p.path.segments.last() {
                            g.push_call(last.ident.to_string(), None);
                        }
                    }
                    Some(f) => g.visit_expr(f),
                    None => {}
                }
            });
            self.out
                .push(quote!(#krate::__private::Node::Map { label: #label, body: #body }));
            return;
        }
        if self.is_ctx(&e.receiver) && CTX_OPS.contains(&e.method.to_string().as_str()) {
            for arg in &e.args {
                self.visit_expr(arg);
            }
            let krate = self.krate;
            let op = e.method.to_string();
            // A method call's caller location is its method name (what `#[track_caller]`
            // reports).
            let (line, column) = at(Some(e.method.span()));
            self.out.push(
                quote!(#krate::__private::Node::Ctx { op: #op, line: #line, column: #column }),
            );
            return;
        }
        visit::visit_expr_method_call(self, e);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        let Some(parsed) = macro_args(mac) else {
            return;
        };
        if !is_parallel(mac) {
            for b in &parsed.branches {
                self.visit_expr(b);
            }
            return;
        }
        let krate = self.krate;
        let label = parsed
            .branches
            .iter()
            .map(branch_label)
            .collect::<Vec<_>>()
            .join("+");
        let settle = parsed.settle;
        let branches: Vec<TokenStream> = parsed
            .branches
            .iter()
            .map(|b| self.collect(|g| g.future_expr(b)))
            .collect();
        self.out.push(quote!(#krate::__private::Node::Parallel {
            label: #label,
            settle: #settle,
            branches: &[#(#branches),*],
        }));
    }

    fn visit_expr_for_loop(&mut self, e: &'ast syn::ExprForLoop) {
        self.visit_expr(&e.expr);
        let mut body = self.nested();
        body.visit_block(&e.body);
        self.push_loop("for", body.out);
    }

    fn visit_expr_while(&mut self, e: &'ast syn::ExprWhile) {
        let mut body = self.nested();
        body.visit_expr(&e.cond);
        body.visit_block(&e.body);
        self.push_loop("while", body.out);
    }

    fn visit_expr_loop(&mut self, e: &'ast syn::ExprLoop) {
        let mut body = self.nested();
        body.visit_block(&e.body);
        self.push_loop("loop", body.out);
    }

    fn visit_expr_if(&mut self, e: &'ast syn::ExprIf) {
        self.visit_expr(&e.cond);
        let mut then = self.nested();
        then.visit_block(&e.then_branch);
        let mut els = self.nested();
        if let Some((_, expr)) = &e.else_branch {
            els.visit_expr(expr);
        }
        if then.out.is_empty() && els.out.is_empty() {
            return;
        }
        let (a, b) = (then.out, els.out);
        let krate = self.krate;
        self.out.push(quote!(#krate::__private::Node::Branch {
            kind: "if",
            arms: &[&[#(#a),*], &[#(#b),*]],
        }));
    }

    fn visit_expr_match(&mut self, e: &'ast syn::ExprMatch) {
        self.visit_expr(&e.expr);
        let arms: Vec<Vec<TokenStream>> = e
            .arms
            .iter()
            .map(|arm| {
                let mut g = self.nested();
                g.visit_expr(&arm.body);
                g.out
            })
            .collect();
        if arms.iter().all(Vec::is_empty) {
            return;
        }
        let krate = self.krate;
        let arms = arms.iter().map(|a| quote!(&[#(#a),*]));
        self.out.push(quote!(#krate::__private::Node::Branch {
            kind: "match",
            arms: &[#(#arms),*],
        }));
    }
}
